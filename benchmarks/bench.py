"""Whole-process latency of state_extension against the real ``meltano state`` CLI.

Usage: .venv/bin/python benchmarks/bench.py [--states 5000] [--repeat 3] [--json PATH]

Builds a throw-away Meltano project, fills a systemdb (SQLite) store and a file:// store
with ``meltano state import`` (so both stores are written by the reference implementation),
then times ``--help``, ``list`` and ``export`` of both tools as separate processes, the way
a user or an orchestrator pays for them. Outputs of the two tools must agree, otherwise the
script exits 1; the PASS/FAIL goal marks are a report and never change the exit code.
Progress goes to stderr, the markdown table to stdout. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HELP_GOAL_S = 0.3  # state_extension --help must answer in under this many seconds
SPEEDUP_GOAL = 3.0  # list/export must be at least this many times faster than meltano
MELTANO_YML = """\
version: 1
project_id: state-ext-benchmark
default_environment: dev
send_anonymous_usage_stats: false
environments:
- name: dev
"""


class BenchError(Exception):
    """A command failed or the tools disagree: the numbers would be meaningless."""


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def clean_env(pycache: Path, **extra: str) -> dict[str, str]:
    """The inherited env minus anything that could point either tool at another project/store.

    LOG_* goes too (state_extension reads LOG_LEVEL), as in tests/support/cli.py. Bytecode
    caching is forced on, into a private prefix: with PYTHONDONTWRITEBYTECODE and no .pyc
    files in a venv every call recompiles its imports, which is not what users run (pip
    writes .pyc) and would triple meltano's time; the prefix leaves the venvs untouched.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MELTANO_", "STATE_EXT_", "LOG_", "PYTHONDONTWRITEBYTECODE"))}
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(extra)
    return env


def generate_states(count: int) -> dict[str, dict]:
    """An export document of small, realistic states, deterministic across runs.

    Two or three streams with replication-key bookmarks, like a typical SDK tap; every
    tenth ID also carries a partial state, as an interrupted run leaves behind.
    """
    rng = random.Random(20261121)
    streams = ["orders", "customers", "invoices", "events"]
    doc = {}
    for i in range(count):
        def bookmark():
            day = rng.randint(1, 28)
            return {"replication_key": "updated_at",
                    "replication_key_value": f"2026-{rng.randint(1, 11):02d}-{day:02d}T"
                                             f"{rng.randint(0, 23):02d}:00:00+00:00"}
        chosen = rng.sample(streams, rng.choice((2, 3)))
        completed = {"singer_state": {"bookmarks": {s: bookmark() for s in chosen}}}
        partial = {"singer_state": {"bookmarks": {chosen[0]: bookmark()}}} if i % 10 == 0 else {}
        doc[f"dev:tap-{i:04d}-to-target-x"] = {"completed": completed, "partial": partial}
    return doc


def cpu_children() -> float:
    """User+system CPU seconds of finished children: less sensitive to a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Run one whole process; return (wall s, CPU s, stdout). Any failure is fatal."""
    cpu, start = cpu_children(), time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    elapsed, cpu = time.perf_counter() - start, cpu_children() - cpu
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return elapsed, cpu, proc.stdout


def time_pair(name, meltano_argv, ext_argv, *, cwd, env, repeat):
    """Median wall clock of both commands after one warm-up each (OS caches, .pyc files).

    The two tools alternate within each round so that background load drifts onto both.
    Returns the wall-clock medians, every sample (wall and CPU) and each tool's last stdout.
    """
    log(f"{name}: warm-up")
    run(meltano_argv, cwd=cwd, env=env)
    run(ext_argv, cwd=cwd, env=env)
    samples = {"meltano": [], "state-ext": []}
    cpu = {"meltano": [], "state-ext": []}
    outputs = {}
    for i in range(repeat):
        for tool, argv in (("meltano", meltano_argv), ("state-ext", ext_argv)):
            elapsed, cpu_s, outputs[tool] = run(argv, cwd=cwd, env=env)
            samples[tool].append(elapsed)
            cpu[tool].append(cpu_s)
        log(f"{name}: run {i + 1}/{repeat}: meltano {samples['meltano'][-1]:.3f} s, "
            f"state-ext {samples['state-ext'][-1]:.3f} s")
    medians = {tool: statistics.median(values) for tool, values in samples.items()}
    return medians, {"wall_s": samples, "cpu_s": cpu}, outputs


def check_list(backend: str, outputs: dict[str, str], expected: dict) -> None:
    """Both tools must list exactly the imported IDs (order is backend-defined, so sets)."""
    for tool, text in outputs.items():
        ids = text.split()
        if len(ids) != len(set(ids)) or set(ids) != set(expected):
            odd = (set(expected) - set(ids)) | (set(ids) - set(expected))
            raise BenchError(f"{tool} list on {backend}: {len(ids)} lines for {len(expected)} "
                             f"IDs, {len(ids) - len(set(ids))} duplicates, {len(odd)} missing "
                             f"or unexpected (e.g. {sorted(odd)[:3]})")


def check_export(backend: str, outputs: dict[str, str], expected: dict) -> None:
    """Both export documents must parse to the same dict, equal to what was imported."""
    docs = {}
    for tool, text in outputs.items():
        try:
            docs[tool] = json.loads(text)
        except ValueError as exc:
            raise BenchError(f"{tool} export on {backend} is not JSON: {exc}") from None
    if docs["meltano"] != docs["state-ext"]:
        diff = [k for k in docs["meltano"].keys() | docs["state-ext"].keys()
                if docs["meltano"].get(k) != docs["state-ext"].get(k)]
        raise BenchError(f"export on {backend}: the tools disagree on {len(diff)} IDs, "
                         f"e.g. {sorted(diff)[:3]}")
    if docs["meltano"] != expected:
        raise BenchError(f"export on {backend} does not round-trip the imported document")


def build_stores(root: Path, meltano: str, doc: dict) -> dict[str, dict[str, str]]:
    """Write meltano.yml, then import the same states into both stores with meltano itself.

    Returns the env for each backend. The systemdb store is .meltano/meltano.db (created
    and migrated by meltano); the file store is selected with MELTANO_STATE_BACKEND_URI.
    """
    (root / "meltano.yml").write_text(MELTANO_YML)
    docfile = root / "states.json"
    docfile.write_text(json.dumps(doc))
    pycache = root / "pycache"
    envs = {"systemdb": clean_env(pycache),
            "file://": clean_env(pycache, MELTANO_STATE_BACKEND_URI=(root / "state").as_uri())}
    for backend, env in envs.items():
        log(f"importing {len(doc)} states into {backend} with meltano")
        elapsed, _, _ = run([meltano, "state", "import", str(docfile)], cwd=root, env=env)
        log(f"  done in {elapsed:.1f} s")
    return envs


def render(rows: list[dict], context: str) -> str:
    """The markdown table plus the goals line (context: what the numbers are)."""
    lines = ["| operation | backend | meltano (s) | state-ext (s) | speed-up | goal |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        mark = "PASS" if r["pass"] else "FAIL"
        lines.append(f"| {r['operation']} | {r['backend']} | {r['meltano_s']:.3f} | "
                     f"{r['state_ext_s']:.3f} | {r['speedup']:.1f}x | {mark} ({r['goal']}) |")
    passed = sum(r["pass"] for r in rows)
    lines += ["", f"Goals: `--help` < {HELP_GOAL_S} s; list/export >= {SPEEDUP_GOAL:g}x faster "
                  f"than meltano. {passed}/{len(rows)} PASS. {context}"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=5000, help="state IDs in each store")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--meltano", default=str(REPO_ROOT / ".venv-meltano/bin/meltano"))
    parser.add_argument("--state-ext", default=str(REPO_ROOT / ".venv/bin/state_extension"))
    args = parser.parse_args()
    if args.states < 1 or args.repeat < 1:
        parser.error("--states and --repeat must be at least 1")
    for tool in (args.meltano, args.state_ext):
        if not os.access(tool, os.X_OK):
            log(f"{tool} is not executable: run `bash scripts/bootstrap.sh`")
            return 2

    doc = generate_states(args.states)
    rows, load_before = [], os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="state-ext-bench-",
                                         ignore_cleanup_errors=True) as tmp:
            root = Path(tmp)
            envs = build_stores(root, args.meltano, doc)
            plan = [("--help", "-", ["--help"], ["--help"], envs["systemdb"])]
            for backend, env in envs.items():
                plan += [("list", backend, ["state", "list"], ["list"], env),
                         ("export", backend, ["state", "export"], ["export"], env)]
            for operation, backend, m_args, e_args, env in plan:
                medians, samples, outputs = time_pair(
                    f"{operation} ({backend})", [args.meltano, *m_args],
                    [args.state_ext, *e_args], cwd=root, env=env, repeat=args.repeat)
                if operation == "list":
                    check_list(backend, outputs, doc)
                elif operation == "export":
                    check_export(backend, outputs, doc)
                speedup = medians["meltano"] / medians["state-ext"]
                if operation == "--help":
                    goal, ok = f"< {HELP_GOAL_S} s", medians["state-ext"] < HELP_GOAL_S
                else:
                    goal, ok = f">= {SPEEDUP_GOAL:g}x", speedup >= SPEEDUP_GOAL
                rows.append({"operation": operation, "backend": backend,
                             "meltano_s": medians["meltano"], "state_ext_s": medians["state-ext"],
                             "speedup": speedup, "goal": goal, "pass": bool(ok),
                             "samples": samples})
    except (BenchError, subprocess.TimeoutExpired) as exc:
        log(f"FAILED: {exc}")
        return 1

    print(render(rows, f"({args.states} states; wall clock, median of {args.repeat} runs "
                       f"after 1 warm-up; {os.cpu_count()} CPUs, load average "
                       f"{load_before[0]:.1f} -> {os.getloadavg()[0]:.1f})"))
    if args.json:
        args.json.write_text(json.dumps({
            "date": date.today().isoformat(), "states": args.states, "repeat": args.repeat,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
            "rows": rows}, indent=2) + "\n")
        log(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
