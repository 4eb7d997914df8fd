#!/usr/bin/env bash
# The long version of the reliability tests (issue #14): more processes, more trials.
#
#   bash scripts/stress.sh            # everything below, then a table of figures
#   STRESS_ONLY=mixed bash scripts/stress.sh   # one group: mixed, frozen, debris
#
# * mixed:  N state-ext + N `meltano state merge` processes x M merges on one state, on
#           file://, S3, GCS and Azure (tests/test_merge_mixed.py; N=5, M=25 here, or
#           STATE_EXT_MIXED_PROCS / STATE_EXT_MIXED_MERGES)
# * frozen: SIGSTOP the S3, GCS and Azure emulators mid-migrate, then list and get, then a
#           re-run after SIGCONT (tests/test_stall.py; 3 trials each, or
#           STATE_EXT_STALL_TRIALS), and the plugin-backend watchdog
# * debris: SIGKILL trials, if tests/test_debris*.py exist (run with STATE_EXT_STRESS=1)
#
# The CI runs the same files with their short defaults. The table shows, per test and
# store: lost acknowledged merges (state-ext's, and Meltano's own for comparison), corrupt
# states, leftover objects or files, and the worst time from the freeze to the failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export STATE_EXT_TEST_MELTANO=${STATE_EXT_TEST_MELTANO:-$PWD/.venv-meltano/bin/meltano}
export STATE_EXT_STRESS=1
report=$(mktemp "${TMPDIR:-/tmp}/state-ext-stress.XXXXXX")
export STATE_EXT_STRESS_REPORT=$report
only=${STRESS_ONLY:-}
status=0

run() {  # run <group> <pytest args...>
  local group=$1
  shift
  if [[ -n $only && $only != "$group" ]]; then
    return
  fi
  echo "== $group: pytest $*" >&2
  .venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=1
}

run mixed tests/test_merge_mixed.py
run frozen tests/test_stall.py tests/test_objectstore_outage.py
shopt -s nullglob
debris=(tests/test_debris*.py)
if ((${#debris[@]})); then
  run debris "${debris[@]}"
else
  echo "== debris: no tests/test_debris*.py in this checkout; skipped" >&2
fi

.venv/bin/python - "$report" <<'EOF'
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
groups = {}
for row in rows:
    key = (row.get("test", "?"), row.get("store", "?"))
    group = groups.setdefault(key, {"trials": 0, "lost": 0, "meltano_lost": 0, "acked": 0,
                                    "corrupt": 0, "leftovers": 0, "worst": None,
                                    "reapplied": 0})
    group["trials"] += 1
    group["reapplied"] += int(row.get("state-ext_reapplied", 0))
    lost = row.get("state-ext_lost", row.get("lost", 0))
    group["lost"] += len(lost) if isinstance(lost, list) else int(lost)
    group["acked"] += int(row.get("state-ext_acknowledged", 0))
    meltano_lost = row.get("meltano_lost")
    if isinstance(meltano_lost, list):
        group["meltano_lost"] += len(meltano_lost)
        group.setdefault("meltano_acked", 0)
        group["meltano_acked"] += int(row.get("meltano_acknowledged", 0))
    group["corrupt"] += int(row.get("corrupt", 0))
    group["leftovers"] += int(row.get("leftovers", 0))
    worst = row.get("worst_seconds_to_fail")
    if worst is not None:
        group["worst"] = max(group["worst"] or 0, worst)

header = ("test", "store", "trials", "lost (state-ext)", "re-applied", "lost (meltano)",
          "corrupt", "leftovers", "worst s to fail")
table = [header]
for (test, store), g in sorted(groups.items()):
    lost = f"{g['lost']} of {g['acked']}" if g["acked"] else str(g["lost"])
    meltano = f"{g['meltano_lost']} of {g['meltano_acked']}" if "meltano_acked" in g else "-"
    worst = "-" if g["worst"] is None else f"{g['worst']:.1f}"
    table.append((test, store, str(g["trials"]), lost, str(g["reapplied"]), meltano,
                  str(g["corrupt"]),
                  str(g["leftovers"]), worst))
widths = [max(len(row[i]) for row in table) for i in range(len(header))]
for n, row in enumerate(table):
    print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    if n == 0:
        print("-+-".join("-" * w for w in widths))
if not rows:
    print("(no figures were reported)")
EOF
rm -f "$report"
exit $status
