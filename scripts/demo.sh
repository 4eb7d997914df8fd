#!/usr/bin/env bash
# The main job on the bundled demo project (the repo-root meltano.yml, SQLite system
# database in .meltano/), with nothing but Python: installs uv and the real Meltano CLI
# (scripts/bootstrap.sh --demo), lets Meltano install state-ext from this checkout and
# write the demo's sample state, migrates it with `meltano invoke state-ext:migrate` (to
# the plugin setting migrate_to, a file:// store under .meltano/), compares both stores
# with `state-ext:diff`, then shows that Meltano itself reads the migrated store.
# Re-running it starts from a clean demo state.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --demo
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false
MELTANO=$PWD/.venv-meltano/bin/meltano
# Run the demo against this folder's project, whatever the caller's Meltano variables say.
unset MELTANO_PROJECT_ROOT MELTANO_DATABASE_URI MELTANO_STATE_BACKEND_URI MELTANO_SYS_DIR_ROOT
TARGET=file://$PWD/.meltano/demo-migrated-state
rm -rf .meltano/demo-migrated-state

step() { printf '\n== %s\n' "$*" >&2; }
step "meltano install (state-ext from this checkout, pip_url: -e .)"
"$MELTANO" --log-level=warning install
step "meltano state import demo/sample-state.json (the real Meltano writes the demo state)"
"$MELTANO" --log-level=warning state import demo/sample-state.json
step "meltano invoke state-ext:list"
"$MELTANO" --log-level=warning invoke state-ext:list
# Meltano re-logs state-ext's stderr at info: its default log level shows the summaries.
step "meltano invoke state-ext:migrate  (systemdb -> $TARGET)"
"$MELTANO" invoke state-ext:migrate
step "meltano invoke state-ext:diff --to $TARGET  (no differences: exit 0)"
"$MELTANO" invoke state-ext:diff --to "$TARGET"
step "MELTANO_STATE_BACKEND_URI=$TARGET meltano state export  (Meltano reads the result)"
MELTANO_STATE_BACKEND_URI=$TARGET "$MELTANO" --log-level=warning state export
