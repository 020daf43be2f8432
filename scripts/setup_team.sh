#!/usr/bin/env bash
# What `aiwb team up` needs, installed only when missing: Debian's PostgreSQL server programs (initdb, pg_ctl under
# /usr/lib/postgresql/*/bin; the package also creates the `postgres` user the cluster runs as when aiwb runs as root).
# The psycopg driver comes with the venv (pyproject.toml). Idempotent: a second run changes nothing.
# Usage: scripts/setup_team.sh
set -euo pipefail
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "Debian's PostgreSQL is missing: sudo apt-get install postgresql" >&2; exit 1
  fi
fi
# The Debian package starts a cluster of its own (port 5432) on install; `aiwb team up` runs a separate one in its
# team folder and needs none of it, so a default cluster is left as the package made it.
