"""`list` and `export` of N states on each object store: state_extension vs `meltano state`.

Starts moto (S3), fake-gcs-server (GCS) and Azurite (Azure Blob) on 127.0.0.1, seeds N
states under one prefix, and times each CLI as a whole process (wall clock, median of
--runs, after checking both print the same IDs / document). Prints a Markdown table.

    .venv/bin/python benchmarks/bench_objectstores.py [--states 2000] [--runs 3] \
        [--only s3,gs,azure]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from state_ext.model import Envelope  # noqa: E402
from tests.support.cli import clean_env, meltano, state_ext  # noqa: E402
from tests.support.emulators import (  # noqa: E402
    AzuriteServer,
    FakeGcsServer,
    MotoServer,
    StoreCase,
    unique_bucket,
)
from tests.support.project import write_project  # noqa: E402

SERVERS = {"s3": MotoServer, "gs": FakeGcsServer, "azure": AzuriteServer}


def timed(function, runs: int):
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def bench(scheme: str, states: int, runs: int, meltano_runs: int) -> list[tuple]:
    server = SERVERS[scheme]().start()
    try:
        store = StoreCase(scheme, server)
        bucket = unique_bucket("bench")
        server.create_bucket(bucket)
        uri = f"{scheme}://{bucket}/meltano/state"
        with store.backend(uri) as backend:
            blobs = {backend.key(f"dev:tap-{i:05d}-to-target-x"): Envelope.complete(
                {"singer_state": {"bookmarks": {"stream": {"id": i}}}}).to_json().encode()
                for i in range(states)}
            backend._run("seed", backend._put_raw_many, blobs, timeout=600)
        root = write_project(Path(tempfile.mkdtemp(prefix="bench-")) / "project")
        env = clean_env(**store.settings_env(uri))
        meltano("state", "list", cwd=root, env=env)  # create the system DB once
        rows = []
        for command in ("list", "export"):
            ours_t, ours = timed(
                lambda c=command: state_ext(c, cwd=root, env=env, timeout=900), runs)
            theirs_t, theirs = timed(
                lambda c=command: meltano("state", c, cwd=root, env=env, timeout=1800),
                meltano_runs)
            if command == "list":
                assert sorted(ours.stdout.split()) == sorted(theirs.stdout.split())
                assert len(ours.stdout.split()) == states
            else:
                assert json.loads(ours.stdout) == json.loads(theirs.stdout)
            rows.append((scheme, command, states, ours_t, theirs_t, theirs_t / ours_t))
        return rows
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--states", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--meltano-runs", type=int, default=1)
    parser.add_argument("--only", default="s3,gs,azure")
    args = parser.parse_args()
    print("| store | command | states | state_extension (s) | meltano state (s) | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for scheme in args.only.split(","):
        for row in bench(scheme, args.states, args.runs, args.meltano_runs):
            print("| {} | {} | {} | {:.2f} | {:.2f} | {:.1f}x |".format(*row), flush=True)


if __name__ == "__main__":
    main()
