"""What this machine allows at best: the floors under `bench_migrate.py`'s goals.

`bench_migrate.py` asks `migrate` to be 3x faster than `meltano state export | meltano
state import`. `meltano state import` writes each state with no lock and no read-back
(`set_all`, see ../shared/reference/meltano-state.md), which is already the least work a
write can be; `migrate` must lock, write atomically and verify. This script measures the
cost of that least work on this machine, so that a missed goal can be told apart from a
slow implementation:

* file://: creating N state folders in Meltano's layout with bare system calls (what
  `meltano state import` does: mkdir + write `state.json`), and with the lock protocol and
  an atomic rename (what any locked, crash-safe writer has to do), on 1 and 4 threads;
* S3 (moto) and GCS (fake-gcs-server): the server's own CPU time per request (read from
  /proc, so the client's speed does not matter), also once the bucket already holds
  ``--fill`` objects, and, on S3, how many requests each tool
  sends per new state (counted in moto's request log) during a real migration and a real
  `meltano state import`.

Usage: .venv/bin/python benchmarks/bench_floor.py [--states 10000] [--requests 1000]
       [--count-states 200] [--fill 5000] [--dir DIR]
Prints Markdown tables on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.emulators import FakeGcsServer, MotoServer  # noqa: E402

BODY = json.dumps({"completed": {"singer_state": {"bookmarks": {"orders": {
    "replication_key": "updated_at", "replication_key_value": "2026-11-21T00:00:00+00:00"}}}},
    "partial": {}}).encode()


def log(message: str) -> None:
    print(f"[floor] {message}", file=sys.stderr, flush=True)


# -- file:// -------------------------------------------------------------------------------
def bare_write(root: str, n: int) -> None:
    """`meltano state import` on file://: mkdir, then create and write state.json."""
    folder = f"{root}/dev:tap-{n:06d}-to-target-x"
    os.mkdir(folder)
    with open(f"{folder}/state.json", "wb") as out:
        out.write(BODY)


def locked_atomic_write(root: str, n: int) -> None:
    """The least a locked, crash-safe writer does: lock (O_EXCL), temporary file,
    rename, unlock; no fsync (migrate syncs the filesystem once at the end)."""
    folder = f"{root}/dev:tap-{n:06d}-to-target-x"
    os.mkdir(folder)
    lock = os.open(f"{folder}/lock", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(lock, str(time.time()).encode())
    os.close(lock)
    tmp = os.open(f"{folder}/.state.json.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(tmp, BODY)
    os.close(tmp)
    os.rename(f"{folder}/.state.json.tmp", f"{folder}/state.json")
    os.unlink(f"{folder}/lock")


def file_floor(states: int, base: str | None) -> list[tuple]:
    rows = []
    for write in (bare_write, locked_atomic_write):
        for threads in (1, 4):
            root = tempfile.mkdtemp(prefix="floor-", dir=base)
            try:
                started = time.perf_counter()
                if threads == 1:
                    for n in range(states):
                        write(root, n)
                else:
                    with ThreadPoolExecutor(threads) as pool:
                        list(pool.map(write, [root] * states, range(states), chunksize=100))
                elapsed = time.perf_counter() - started
            finally:
                shutil.rmtree(root)
            log(f"file {write.__name__} x{threads}: {elapsed:.2f} s")
            rows.append((write.__name__, threads, elapsed, elapsed / states * 1e6))
    return rows


# -- object stores ---------------------------------------------------------------------------
def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_per_request(server, operations: dict, requests: int) -> dict[str, float]:
    """ms of server CPU per request, for each operation run ``requests`` times in turn."""
    result = {}
    for name, call in operations.items():
        before = process_cpu(server.proc.pid)
        for n in range(requests):
            call(n)
        result[name] = (process_cpu(server.proc.pid) - before) / requests * 1000
        log(f"{server.name} {name}: {result[name]:.2f} ms server CPU per request")
    return result


def put_cost_when_full(server, operations: dict, fill: int, requests: int) -> float:
    """ms of server CPU per PUT once the bucket already holds ``fill`` objects.

    fake-gcs-server's memory backend gets slower with every object a bucket holds;
    a migration of 10,000 states writes into an ever fuller bucket."""
    put = operations["PUT"]
    for n in range(fill):
        put(n)
    before = process_cpu(server.proc.pid)
    for n in range(fill, fill + requests):
        put(n)
    cost = (process_cpu(server.proc.pid) - before) / requests * 1000
    log(f"{server.name} PUT with {fill} objects in the bucket: {cost:.2f} ms server CPU")
    return cost


def s3_operations(server, bucket: str) -> dict:
    client = server.client()
    key = "p/dev:tap-{:06d}-to-target-x/state.json".format
    return {
        "PUT": lambda n: client.put_object(Bucket=bucket, Key=key(n), Body=BODY),
        "GET": lambda n: client.get_object(Bucket=bucket, Key=key(n))["Body"].read(),
        "DELETE": lambda n: client.delete_object(Bucket=bucket, Key=key(n)),
    }


def gcs_operations(server, bucket: str) -> dict:
    client = server.client().bucket(bucket)
    key = "p/dev:tap-{:06d}-to-target-x/state.json".format
    return {
        "PUT": lambda n: client.blob(key(n)).upload_from_string(BODY),
        "GET": lambda n: client.blob(key(n)).download_as_bytes(),
        "DELETE": lambda n: client.blob(key(n)).delete(),
    }


def count_s3_requests(server, states: int) -> dict[str, collections.Counter]:
    """Requests per kind that each tool sends to moto to write ``states`` new states."""
    project = Path(tempfile.mkdtemp(prefix="floor-project-"))
    try:
        (project / "meltano.yml").write_text(
            "version: 1\nproject_id: floor\ndefault_environment: dev\n"
            "environments:\n- name: dev\n")
        document = {f"dev:tap-{n:06d}-to-target-x": json.loads(BODY) for n in range(states)}
        (project / "doc.json").write_text(json.dumps(document))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MELTANO_", "STATE_EXT_"))}
        env.update(server.env(), MELTANO_SEND_ANONYMOUS_USAGE_STATS="false")
        bindir = Path(sys.executable).parent
        state_extension = bindir / "state_extension"
        meltano = REPO / ".venv-meltano" / "bin" / "meltano"
        source = f"file://{project}/source"
        subprocess.run([state_extension, "import", "doc.json", "--uri", source],
                       cwd=project, env=env, check=True, capture_output=True)
        runs = {
            "state-ext migrate": ([state_extension, "migrate", "--from", source,
                                   "--to", "s3://count-ours/p"], {}),
            "meltano state import": ([meltano, "state", "import", "doc.json"],
                                     {"MELTANO_STATE_BACKEND_URI": "s3://count-meltano/p"}),
        }
        counts = {}
        for label, (command, extra) in runs.items():
            bucket = command[-1][5:].split("/")[0] if "migrate" in label else "count-meltano"
            server.create_bucket(bucket)
            start = len(server.log.read_text().splitlines())
            subprocess.run(command, cwd=project, env={**env, **extra}, check=True,
                           capture_output=True)
            counter = collections.Counter()
            for line in server.log.read_text().splitlines()[start:]:
                match = re.search(r'"(?:\x1b\[[0-9;]*m)*(\w+) /' + bucket + r'(\S*) HTTP', line)
                if match:
                    name = match.group(2).split("?")[0].rsplit("/", 1)[-1]
                    if name not in ("state.json", "lock"):
                        name = "(listing)"
                    counter[f"{match.group(1)} {name}"] += 1
            counts[label] = counter
            log(f"s3 {label}: {sum(counter.values())} requests for {states} states")
        return counts
    finally:
        shutil.rmtree(project)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--states", type=int, default=10000, help="state folders on file://")
    parser.add_argument("--requests", type=int, default=1000, help="requests per operation")
    parser.add_argument("--count-states", type=int, default=200,
                        help="states migrated and imported to count S3 requests")
    parser.add_argument("--fill", type=int, default=5000,
                        help="objects in the bucket before the last PUTs are timed")
    parser.add_argument("--dir", default=None, help="where the file:// floor writes")
    args = parser.parse_args()

    print(f"## file://: {args.states:,} new states\n")
    print("| writer | threads | seconds | µs per state |\n|---|---:|---:|---:|")
    for name, threads, seconds, micros in file_floor(args.states, args.dir):
        print(f"| {name} | {threads} | {seconds:.2f} | {micros:.0f} |")

    cpu = {}
    for server_class, operations in ((MotoServer, s3_operations), (FakeGcsServer, gcs_operations)):
        server = server_class().start()
        try:
            server.create_bucket("floor")
            cpu[server.name] = server_cpu_per_request(
                server, operations(server, "floor"), args.requests)
            server.create_bucket("full")
            cpu[server.name]["PUT full"] = put_cost_when_full(
                server, operations(server, "full"), args.fill, args.requests)
            if server_class is MotoServer:
                counts = count_s3_requests(server, args.count_states)
        finally:
            server.close()

    print(f"\n## Server CPU per request ({args.requests:,} sequential requests each)\n")
    print(f"| server | PUT (ms) | GET (ms) | DELETE (ms) | PUT, {args.fill:,} objects in the "
          "bucket (ms) |\n|---|---:|---:|---:|---:|")
    for name, ms in cpu.items():
        print(f"| {name} | {ms['PUT']:.2f} | {ms['GET']:.2f} | {ms['DELETE']:.2f} "
              f"| {ms['PUT full']:.2f} |")

    print(f"\n## S3 requests per new state (moto's log, {args.count_states} states)\n")
    print("| tool | requests per state | of which | moto CPU floor for 10,000 states (s) |")
    print("|---|---:|---|---:|")
    per_kind = {"PUT": cpu["moto"]["PUT"], "GET": cpu["moto"]["GET"],
                "DELETE": cpu["moto"]["DELETE"]}
    for label, counter in counts.items():
        total = sum(counter.values()) / args.count_states
        floor = sum(n * per_kind.get(kind.split()[0], per_kind["GET"])
                    for kind, n in counter.items()) / args.count_states * 10000 / 1000
        detail = ", ".join(f"{kind} {n / args.count_states:.2f}"
                           for kind, n in counter.most_common())
        print(f"| {label} | {total:.2f} | {detail} | {floor:.1f} |")
    print("\nmoto serves requests on one core (one Python process); the floor is its CPU alone, "
          "before any client work, network or start-up.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
