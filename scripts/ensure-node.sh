#!/usr/bin/env bash
# Makes sure Node.js 18 or newer and npm are installed (the TypeScript SDK's build and tests, and the
# end-to-end tests that run its example participant): does nothing if they are, installs Debian's
# packages with apt-get if not.
set -euo pipefail

fits() {
  command -v node >/dev/null && command -v npm >/dev/null &&
    [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 18 ]
}

if fits; then
  exit 0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

echo "ensure-node: Node.js 18+ with npm is missing; installing it with apt-get" >&2
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
if ! fits; then
  echo "ensure-node: need Node.js 18 or newer with npm, found $(node --version 2>/dev/null || echo none)" >&2
  exit 1
fi
