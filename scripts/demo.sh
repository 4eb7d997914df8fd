#!/usr/bin/env bash
# The main job on the bundled demo project (the repo-root meltano.yml, SQLite system
# database in .meltano/): installs everything, lets the real Meltano CLI write the demo's
# sample state, migrates it with `meltano invoke state-ext:migrate` (to the plugin
# setting migrate_to, a file:// store under .meltano/), then shows that Meltano itself
# reads the migrated store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --no-postgres
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
MELTANO=$PWD/.venv-meltano/bin/meltano
# Run the demo against this folder's project, whatever the caller's Meltano variables say.
unset MELTANO_PROJECT_ROOT MELTANO_DATABASE_URI MELTANO_STATE_BACKEND_URI MELTANO_SYS_DIR_ROOT
TARGET=file://$PWD/.meltano/demo-migrated-state

echo "== meltano install (state-ext from this checkout, pip_url: -e .)" >&2
"$MELTANO" --log-level=warning install
echo "== meltano state import demo/sample-state.json (the real Meltano writes the demo state)" >&2
"$MELTANO" --log-level=warning state import demo/sample-state.json
echo "== meltano invoke state-ext:list" >&2
"$MELTANO" --log-level=warning invoke state-ext:list
echo "== meltano invoke state-ext:migrate  (systemdb -> $TARGET)" >&2
"$MELTANO" --log-level=warning invoke state-ext:migrate
echo "== meltano invoke state-ext:diff --to $TARGET  (no differences: exit 0)" >&2
"$MELTANO" --log-level=warning invoke state-ext:diff --to "$TARGET"
echo "== MELTANO_STATE_BACKEND_URI=$TARGET meltano state export  (Meltano reads the result)" >&2
MELTANO_STATE_BACKEND_URI=$TARGET "$MELTANO" --log-level=warning state export
