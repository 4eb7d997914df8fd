"""What the safe-run steps cost: ``snapshot`` against ``meltano state export > file``, and
``guard`` of every state against a snapshot.

Usage: .venv/bin/python benchmarks/bench_safety.py [--states 10000] [--repeat 3]

Builds a throw-away project (its SQLite system database created by meltano), fills a
systemdb store and a file:// store with the same states (bench.py's generator: 2-3
SDK bookmarks per state, a partial half on every tenth), then times whole processes, one
warm-up and the median of ``--repeat`` runs, the two tools alternating:

* ``meltano state export > FILE`` against ``state_extension snapshot --keep 2`` (gzip,
  atomic, sidecar), on each store;
* ``state_extension guard`` (the whole process), and the guard's work alone, measured in
  one process after its imports: choose the snapshot, read and parse it, read every state,
  compare.

Progress goes to stderr, a Markdown table to stdout. Goals: snapshot at least 3x faster
than meltano's export; guard's work under 1 s for 10,000 states.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import MELTANO_YML, REPO_ROOT, clean_env, generate_states, log, run  # noqa: E402

SPEEDUP_GOAL = 3.0
GUARD_WORK_GOAL_S = 1.0
GUARD_WORK = """
import json, sys, time
from state_ext.backends import open_backend
from state_ext.guard import check
from state_ext.settings import ProjectSettings
from state_ext.snapshot_stores import open_store
from state_ext.snapshots import find, load_states
import sqlalchemy, gzip  # start-up: what any command of this backend imports
start = time.perf_counter()
settings = ProjectSettings()
store = open_store(settings)
before = load_states(store, find(store, latest=True), strict=False)
with open_backend(settings.backend_settings()) as backend:
    problems = check(before, backend.iter_all())
print(json.dumps({"seconds": time.perf_counter() - start, "checked": len(before),
                  "problems": len(problems)}))
"""


def median_runs(argv, *, cwd, env, repeat) -> float:
    run(argv, cwd=cwd, env=env)  # warm-up
    return statistics.median(run(argv, cwd=cwd, env=env)[0] for _ in range(repeat))


def compare(name, meltano_argv, ext_argv, *, cwd, env, repeat) -> dict:
    log(f"{name}: warm-up")
    run(meltano_argv, cwd=cwd, env=env)
    run(ext_argv, cwd=cwd, env=env)
    samples = {"meltano": [], "state-ext": []}
    for _ in range(repeat):
        samples["meltano"].append(run(meltano_argv, cwd=cwd, env=env)[0])
        samples["state-ext"].append(run(ext_argv, cwd=cwd, env=env)[0])
    medians = {tool: statistics.median(values) for tool, values in samples.items()}
    log(f"{name}: meltano {medians['meltano']:.3f} s, state-ext {medians['state-ext']:.3f} s")
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--states", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    meltano = str(REPO_ROOT / ".venv-meltano" / "bin" / "meltano")
    ext = str(REPO_ROOT / ".venv" / "bin" / "state_extension")
    python = str(REPO_ROOT / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory(prefix="state-ext-bench-safety-") as tmp:
        root = Path(tmp)
        (root / "meltano.yml").write_text(MELTANO_YML)
        env = clean_env(root / "pycache")
        doc = generate_states(args.states)
        (root / "doc.json").write_text(json.dumps(doc))
        log(f"creating the system database and importing {args.states} states")
        run([meltano, "state", "list"], cwd=root, env=env)
        stores = {"systemdb": env,
                  "file://": dict(env, MELTANO_STATE_BACKEND_URI=f"file://{root}/state")}
        rows = []
        for backend, backend_env in stores.items():
            run([ext, "import", "doc.json"], cwd=root, env=backend_env)
            export = ["sh", "-c", f'exec "{meltano}" state export > "{root}/export.json"']
            medians = compare(f"snapshot {backend}", export, [ext, "snapshot", "--keep", "2"],
                              cwd=root, env=backend_env, repeat=args.repeat)
            speedup = medians["meltano"] / medians["state-ext"]
            rows.append(("`snapshot` vs `meltano state export > file`", backend,
                         f"{medians['meltano']:.3f}", f"{medians['state-ext']:.3f}",
                         f"{speedup:.1f}x",
                         f"{'PASS' if speedup >= SPEEDUP_GOAL else 'FAIL'} (>= 3x)"))
            wall = median_runs([ext, "guard"], cwd=root, env=backend_env, repeat=args.repeat)
            works = []
            for _ in range(args.repeat):
                out = subprocess.run([python, "-c", GUARD_WORK], cwd=root, env=backend_env,
                                     capture_output=True, text=True, check=True).stdout
                result = json.loads(out)
                assert result["checked"] == args.states and result["problems"] == 0, result
                works.append(result["seconds"])
            work = statistics.median(works)
            log(f"guard {backend}: process {wall:.3f} s, work {work:.3f} s")
            rows.append(("`guard` (whole process)", backend, "-", f"{wall:.3f}", "-", "-"))
            rows.append(("`guard` work beyond start-up", backend, "-", f"{work:.3f}", "-",
                         f"{'PASS' if work < GUARD_WORK_GOAL_S else 'FAIL'} (< 1 s)"))
    print(f"{args.states} states, median of {args.repeat} runs after 1 warm-up\n")
    print("| operation | backend | meltano (s) | state-ext (s) | speed-up | goal |")
    print("|---|---|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
