"""`list` and `export` of N states on each object store: state_extension vs `meltano state`.

Starts moto (S3), fake-gcs-server (GCS) and Azurite (Azure Blob) on 127.0.0.1, seeds N
states under one prefix, and times each CLI as a whole process (wall clock, median of
--runs, after checking both print the same IDs / document). Prints a Markdown table.

    .venv/bin/python benchmarks/bench_objectstores.py [--states 2000] [--runs 3] \
        [--only s3,gs,azure] [--latency-ms MS]

With ``--latency-ms MS`` (0 included) both tools reach the server through
``latency_proxy.py``, which holds each request MS before forwarding it (a cloud round trip)
and counts the requests each command sends (``req/state`` columns: per listed state).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.latency_proxy import start_in_thread  # noqa: E402
from state_ext.model import Envelope  # noqa: E402
from tests.support.cli import clean_env, meltano, state_ext  # noqa: E402
from tests.support.emulators import (  # noqa: E402
    AzuriteServer,
    FakeGcsServer,
    MotoServer,
    StoreCase,
    seed_objects,
    unique_bucket,
)
from tests.support.project import write_project  # noqa: E402

SERVERS = {"s3": MotoServer, "gs": FakeGcsServer, "azure": AzuriteServer}


def timed(function, runs: int, proxy=None):
    """(median wall seconds, last result, requests of the last run or None)."""
    times, result, requests = [], None, None
    for _ in range(runs):
        if proxy is not None:
            proxy.reset()
            time.sleep(0.05)
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
        if proxy is not None:
            requests = proxy.stats()["requests"]
    return statistics.median(times), result, requests


def bench(scheme: str, states: int, runs: int, meltano_runs: int,
          latency_ms: float | None = None) -> list[tuple]:
    server = SERVERS[scheme]().start()
    proxy = None
    try:
        store = StoreCase(scheme, server)
        bucket = unique_bucket("bench")
        server.create_bucket(bucket)
        uri = f"{scheme}://{bucket}/meltano/state"
        with store.backend(uri) as backend:
            blobs = {backend.key(f"dev:tap-{i:05d}-to-target-x"): Envelope.complete(
                {"singer_state": {"bookmarks": {"stream": {"id": i}}}}).to_json().encode()
                for i in range(states)}
            seed_objects(backend, blobs)
        if latency_ms is not None:  # both tools through the proxy from here on
            proxy = start_in_thread(server.port, latency_ms=latency_ms)
            proxied = copy.copy(server)
            proxied.port = proxy.port
            store = StoreCase(scheme, proxied)
        root = write_project(Path(tempfile.mkdtemp(prefix="bench-")) / "project")
        env = clean_env(**store.settings_env(uri))
        meltano("state", "list", cwd=root, env=env)  # create the system DB once
        rows = []
        for command in ("list", "export"):
            ours_t, ours, ours_n = timed(
                lambda c=command: state_ext(c, cwd=root, env=env, timeout=900), runs, proxy)
            theirs_t, theirs, theirs_n = timed(
                lambda c=command: meltano("state", c, cwd=root, env=env, timeout=1800),
                meltano_runs, proxy)
            if command == "list":
                assert sorted(ours.stdout.split()) == sorted(theirs.stdout.split())
                assert len(ours.stdout.split()) == states
            else:
                assert json.loads(ours.stdout) == json.loads(theirs.stdout)
            per = ["-" if n is None else f"{n / states:.3f}" for n in (ours_n, theirs_n)]
            rows.append((scheme, command, states, ours_t, per[0], theirs_t, per[1],
                         theirs_t / ours_t))
        return rows
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--states", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--meltano-runs", type=int, default=1)
    parser.add_argument("--only", default="s3,gs,azure")
    parser.add_argument("--latency-ms", type=float, default=None,
                        help="reach each server through latency_proxy.py with this delay per "
                             "request, and count requests (0: count only)")
    args = parser.parse_args()
    print("| store | command | states | state_extension (s) | req/state | meltano state (s) | "
          "req/state | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for scheme in args.only.split(","):
        for row in bench(scheme, args.states, args.runs, args.meltano_runs, args.latency_ms):
            print("| {} | {} | {} | {:.2f} | {} | {:.2f} | {} | {:.1f}x |".format(*row),
                  flush=True)


if __name__ == "__main__":
    main()
