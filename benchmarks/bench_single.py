"""Single commands (`get`, `set`, `merge`) against the code before issue 13's bulk fast path.

Issue 13 asked that one-state commands stay no slower while bulk writes learned one
conditional create per new state. This script times `state_extension get ID`,
`set --force ID STATE` and `merge ID PATCH` as whole processes on a SQLite system database,
on file:// and on S3 (moto), GCS (fake-gcs-server) and Azure (Azurite), each store holding
--states states, for two versions of
state_ext: this checkout, and --baseline (a git revision, default the parent of the commit
that added the fast path), unpacked with `git archive` and put first on PYTHONPATH, so both
run with the same interpreter and dependencies. Runs are interleaved (baseline, current,
baseline, ...) so machine noise spreads evenly. Each object store is reached through its own
``latency_proxy.py`` (``--latency-ms``, default 0: count only), which counts the requests
each command sends: on
a real cloud each one is a round trip, and the count does not depend on the machine's load.
Prints a Markdown table of medians; a command is "no slower" when its median is within 5%
of the baseline's and it sends no more requests.

Usage: .venv/bin/python benchmarks/bench_single.py [--states 2000] [--repeat 15]
       [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench import MELTANO_YML, clean_env, generate_states, log  # noqa: E402
from tests.support.emulators import (  # noqa: E402
    AzuriteServer,
    FakeGcsServer,
    MotoServer,
    StoreCase,
    proxied,
    unique_bucket,
)

CLOUDS = {"S3 (moto)": ("s3", MotoServer), "GCS (fake-gcs-server)": ("gs", FakeGcsServer),
          "Azure (Azurite)": ("azure", AzuriteServer)}

BASELINE = "3ac871c^"  # the commit before "Fast path for new states (issue 13)"
TOLERANCE = 1.05
STATE = json.dumps({"singer_state": {"bookmarks": {"orders": {
    "replication_key": "updated_at", "replication_key_value": "2026-12-01T00:00:00+00:00"}}}})
PATCH = json.dumps({"singer_state": {"bookmarks": {"customers": {
    "replication_key": "id", "replication_key_value": 42}}}})


def unpack(revision: str, into: Path) -> Path:
    """state_ext as of ``revision``, as a folder to put first on PYTHONPATH."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "state_ext"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def timed(argv, *, cwd, env) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-600:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay per S3 request (the proxy counts requests either way)")
    parser.add_argument("--state-ext", default=str(REPO / ".venv/bin/state_extension"))
    parser.add_argument("--meltano", default=str(REPO / ".venv-meltano/bin/meltano"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-single-") as tmp:
        root = Path(tmp)
        old = unpack(args.baseline, Path(tempfile.mkdtemp(dir=root)))
        (root / "meltano.yml").write_text(MELTANO_YML)
        (root / "states.json").write_text(json.dumps(generate_states(args.states)))
        servers, proxies = [], {}
        try:
            stores = {
                "systemdb": {},
                "file://": {"MELTANO_STATE_BACKEND_URI": (root / "state").as_uri()},
            }
            for name, (scheme, kind) in CLOUDS.items():
                server = kind().start()
                servers.append(server)
                through, proxies[name] = proxied(StoreCase(scheme, server),
                                                 latency_ms=args.latency_ms)
                bucket = unique_bucket("single")
                server.create_bucket(bucket)
                stores[name] = through.settings_env(f"{scheme}://{bucket}/meltano/state")
            base = clean_env(root / "pycache")
            subprocess.run([args.meltano, "state", "list"], cwd=root, env=base, check=True,
                           capture_output=True)  # the system database's schema
            for name, extra in stores.items():
                env = {**base, **extra}
                log(f"{name}: importing {args.states} states")
                timed([args.state_ext, "import", "--no-snapshot", "states.json"], cwd=root,
                      env=env)
                state_id = "dev:tap-0007-to-target-x"
                commands = {"get": ["get", state_id],
                            "set": ["set", "--force", state_id, STATE],
                            "merge": ["merge", state_id, PATCH]}
                for command, argv in commands.items():
                    samples = {"baseline": [], "current": []}
                    requests = {}
                    for _ in range(args.repeat):
                        for variant in samples:
                            variant_env = dict(env)
                            if variant == "baseline":
                                variant_env["PYTHONPATH"] = str(old)
                            proxy = proxies.get(name)
                            if proxy is not None:
                                proxy.reset()
                                time.sleep(0.05)  # the reset runs on the proxy's loop
                            samples[variant].append(
                                timed([args.state_ext, *argv], cwd=root, env=variant_env))
                            if proxy is not None:
                                requests[variant] = proxy.stats()["requests"]
                    before = statistics.median(samples["baseline"])
                    after = statistics.median(samples["current"])
                    counts = (requests["baseline"], requests["current"]) if requests \
                        else (None, None)
                    rows.append((command, name, before, after, *counts))
                    log(f"{name} {command}: {before * 1000:.0f} ms -> {after * 1000:.0f} ms, "
                        f"requests {counts[0]} -> {counts[1]}")
        finally:
            for proxy in proxies.values():
                proxy.stop()
            for server in servers:
                server.close()
    print("| command | backend | before issue 13 (ms) | now (ms) | now / before | requests "
          "before -> now | goal |")
    print("|---|---|---:|---:|---:|---:|---|")
    for command, name, before, after, req_before, req_after in rows:
        ratio = after / before
        fewer = req_before is None or req_after <= req_before
        verdict = "PASS" if ratio <= TOLERANCE and fewer else "FAIL"
        count = "-" if req_before is None else f"{req_before} -> {req_after}"
        print(f"| `{command}` | {name} | {before * 1000:.0f} | {after * 1000:.0f} | "
              f"{ratio:.2f}x | {count} | {verdict} (no slower: <= {TOLERANCE:.2f}x) |")
    print(f"\n(medians of {args.repeat} interleaved runs, whole processes, {args.states} states "
          f"in each store; baseline {args.baseline})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
