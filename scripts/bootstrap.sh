#!/usr/bin/env bash
# Installs everything state-ext needs to run its demo and its tests, idempotently:
#   .tools/   uv (from PyPI) unless uv is already on PATH
#   .venv/    state-ext itself (editable) with every extra and the test tools
#   .venv-meltano/  the real Meltano CLI 4.4.1, kept apart from our dependencies
#   PostgreSQL server binaries (Debian package) for the systemdb tests
# Usage: bash scripts/bootstrap.sh [--no-postgres]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
MELTANO_VERSION=${MELTANO_VERSION:-4.4.1}

if command -v uv >/dev/null 2>&1; then
  UV=$(command -v uv)
else
  if [ ! -x .tools/bin/uv ]; then
    "$PYTHON" -m venv .tools
    .tools/bin/pip install -q 'uv>=0.4'
  fi
  UV=$ROOT/.tools/bin/uv
fi
export UV

if [ ! -x .venv/bin/python ]; then
  "$UV" venv -q -p "$PYTHON" .venv
fi
VIRTUAL_ENV=$ROOT/.venv "$UV" pip install -q -e '.[all,dev]'

if [ ! -x .venv-meltano/bin/meltano ] || ! .venv-meltano/bin/meltano --version 2>/dev/null | grep -q "$MELTANO_VERSION"; then
  "$UV" venv -q -p "$PYTHON" .venv-meltano
  VIRTUAL_ENV=$ROOT/.venv-meltano "$UV" pip install -q "meltano[s3,gcs,azure,postgres]==$MELTANO_VERSION"
fi

if [ "${1:-}" != "--no-postgres" ]; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      echo "PostgreSQL server binaries (initdb, pg_ctl) are needed: sudo apt-get install postgresql" >&2
      exit 1
    fi
  fi
fi
echo "bootstrap: ok (uv: $UV)" >&2
