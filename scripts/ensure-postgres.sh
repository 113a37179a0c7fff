#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432 and lets user `postgres` in without a password:
# does nothing if it already does, starts an installed but stopped server, installs one if missing.
set -euo pipefail

url="postgres://postgres@127.0.0.1:5432/postgres"

answers() { psql "$url" -Atqc 'SELECT 1' >/dev/null 2>&1; }

if command -v psql >/dev/null && answers; then
  exit 0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

fresh_install=0
if ! ls /etc/postgresql/*/main/postgresql.conf >/dev/null 2>&1; then
  echo "ensure-postgres: PostgreSQL is not installed; installing it with apt-get" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >/dev/null
  fresh_install=1
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
if [ "$fresh_install" = 1 ]; then
  # A fresh Debian install asks for passwords on loopback; the tests and the local stack use
  # trust auth on 127.0.0.1 and ::1 only, as the development machines do.
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  as_root sed -i -E 's/^(host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1\/32|::1\/128)[[:space:]]+)[a-z0-9-]+/\1trust/' "$hba"
fi

if ! pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
  echo "ensure-postgres: starting PostgreSQL $version" >&2
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi

for _ in $(seq 1 60); do
  if answers; then
    exit 0
  fi
  sleep 0.5
done
echo "ensure-postgres: PostgreSQL $version is running but $url does not accept user postgres without a password" >&2
exit 1
