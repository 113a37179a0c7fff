#!/usr/bin/env bash
# Makes everything a TLS + token stack needs, for development and tests, in DIR (default: certs):
#   ca.pem / ca.key                 a CA (sagad trusts it for client certificates, clients for sagad)
#   server.pem / server.key         sagad's (and the demo participants') certificate: localhost, 127.0.0.1
#   client.pem / client.key         a client certificate, CN=billing-service,O=Acme
#   sagad-client.pem / .key         sagad's client certificate towards mTLS participants, CN=sagad,O=Acme
#   client.token / operator.token   two random bearer tokens
#   principals.toml                 auth.tokens_file: billing-service (client, purchase_plan and
#                                   payment_refund) and ops (operator), by their tokens' SHA-256
# Never use these outside development: the keys sit unencrypted next to the CA key.
set -euo pipefail

dir=${1:-certs}
mkdir -p "$dir"
cd "$dir"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -subj "/CN=sagad dev CA" -keyout ca.key -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

issue() { # name subject extensions
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$2" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf '%b\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm "$1.csr" "$1.ext"
}
issue server "/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
issue client "/CN=billing-service/O=Acme" "extendedKeyUsage=clientAuth"
issue sagad-client "/CN=sagad/O=Acme" "extendedKeyUsage=clientAuth"

hash() { printf %s "$(cat "$1")" | sha256sum | cut -d' ' -f1; }
openssl rand -hex 24 >client.token
openssl rand -hex 24 >operator.token
cat >principals.toml <<TOML
[[principal]]
name = "billing-service"
token_sha256 = "$(hash client.token)"
roles = ["client"]
saga_types = ["purchase_plan", "payment_refund"]

[[principal]]
name = "ops"
token_sha256 = "$(hash operator.token)"
roles = ["operator"]
TOML
echo "dev-certs: wrote CA, server and client certificates, tokens and principals.toml to $PWD" >&2
