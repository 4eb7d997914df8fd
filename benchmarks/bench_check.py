"""`check` of N states on each object store emulator, against the emulator's own floor.

`check` reads every state (concurrently) and judges it; nothing in Meltano does the same.
What bounds it on an emulator is the server, not state-ext: moto, fake-gcs-server and
Azurite each answer one request at a time on one core, spending milliseconds of CPU on
each. So each run is judged against two floors measured in the same run:

* the emulator's CPU: the server process's CPU seconds while the command ran (read from
  /proc), which no client can go below when the server is busy the whole time;
* `state_extension export --output FILE`: the same GET per state with nothing judged.

Starts each server on 127.0.0.1, fills a fresh bucket with `state_extension import` of
bench.py's states, then times whole processes (median of --runs after a warm-up).

    .venv/bin/python benchmarks/bench_check.py [--states 10000] [--runs 3] [--only s3,gs,azure]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from bench import generate_states, log  # noqa: E402

from tests.support.cli import clean_env, state_ext  # noqa: E402
from tests.support.emulators import (  # noqa: E402
    AzuriteServer,
    FakeGcsServer,
    MotoServer,
    StoreCase,
    unique_bucket,
)

SERVERS = {"s3": MotoServer, "gs": FakeGcsServer, "azure": AzuriteServer}
NAMES = {"s3": "S3 (moto)", "gs": "GCS (fake-gcs-server)", "azure": "Azure (Azurite)"}
TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its children that were waited for (utime + stime...)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS


def timed_run(argv, *, cwd, env, pid) -> tuple[float, float, object]:
    cpu, started = server_cpu(pid), time.perf_counter()
    result = state_ext(*argv, cwd=cwd, env=env, check=False, timeout=1800)
    wall = time.perf_counter() - started
    if result.returncode not in (0,):
        raise SystemExit(f"{argv[0]} failed: {result.stderr.strip()[-400:]}")
    return wall, server_cpu(pid) - cpu, result


def bench(scheme: str, states: int, runs: int) -> list[tuple]:
    server = SERVERS[scheme]().start()
    try:
        case = StoreCase(scheme, server)
        bucket = unique_bucket("check")
        server.create_bucket(bucket)
        uri = f"{scheme}://{bucket}/meltano/state"
        root = Path(tempfile.mkdtemp(prefix="bench-check-"))
        env = clean_env(**case.settings_env(uri))
        (root / "doc.json").write_text(json.dumps(generate_states(states)))
        log(f"{scheme}: importing {states} states")
        state_ext("import", "--no-snapshot", "doc.json", cwd=root, env=env, timeout=1800)
        pid = server.proc.pid
        commands = {"check": ["check", "--format", "json"],
                    "export": ["export", "--output", str(root / "export.json")]}
        samples = {name: [] for name in commands}
        for name, argv in commands.items():  # warm-up, and the answers are right
            _, _, result = timed_run(argv, cwd=root, env=env, pid=pid)
            if name == "check":
                findings = json.loads(result.stdout)
                log(f"{scheme}: check ran, {len(findings.get('findings', findings))} finding(s)")
        for _ in range(runs):
            for name, argv in commands.items():
                wall, cpu, _ = timed_run(argv, cwd=root, env=env, pid=pid)
                samples[name].append((wall, cpu))
        rows = []
        for name, values in samples.items():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            rows.append((NAMES[scheme], f"`{name}`", states, f"{wall:.2f}", f"{cpu:.2f}",
                         f"{1000 * cpu / states:.2f}", f"{wall / cpu:.2f}x"))
            log(f"{scheme} {name}: {wall:.2f} s wall, server CPU {cpu:.2f} s")
        check_wall = statistics.median(v[0] for v in samples["check"])
        export_wall = statistics.median(v[0] for v in samples["export"])
        rows.append((NAMES[scheme], "`check` / `export`", states, "", "", "",
                     f"{check_wall / export_wall:.2f}x"))
        return rows
    finally:
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--states", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="s3,gs,azure")
    args = parser.parse_args()
    rows = []
    for scheme in args.only.split(","):
        rows += bench(scheme, args.states, args.runs)
    print(f"{args.states} states, median of {args.runs} runs after a warm-up\n")
    print("| store | command | states | wall (s) | server CPU (s) | server ms/state "
          "| wall / server CPU |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
