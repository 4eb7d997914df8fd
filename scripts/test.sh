#!/usr/bin/env bash
# Sets everything up (scripts/bootstrap.sh) and runs the whole test suite.
# Extra arguments go to pytest, e.g. bash scripts/test.sh -k systemdb -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export STATE_EXT_TEST_MELTANO=$PWD/.venv-meltano/bin/meltano
exec .venv/bin/python -m pytest "$@"
