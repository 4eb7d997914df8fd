"""`state_extension migrate` against Meltano's two ways of moving state between backends.

Usage: .venv/bin/python benchmarks/bench_migrate.py [--states 10000] [--sample 20]
           [--rss-states 100000] [--repeat 1] [--json PATH] [--pg-to '{url}']
           [--latency-ms MS] [--meltano-repeat 1]

For each pair (SQLite systemdb -> file, file -> S3 on moto, S3 -> GCS on fake-gcs-server,
SQLite systemdb -> Azure Blob on Azurite, SQLite systemdb -> PostgreSQL systemdb on a
scratch cluster) the source holds N states of
bench.py's generator, imported with `state_extension import` (the SQLite schema is created
by meltano). Each tool writes into a fresh, empty destination (new folder, bucket or
database; a PostgreSQL schema is created by meltano first, untimed), every one a whole process:

* state-ext: `state_extension migrate --to DEST` (source = the configured backend);
* export|import: `meltano state export | meltano state import`, two meltano processes with
  the source's and the destination's MELTANO_STATE_BACKEND_URI / MELTANO_DATABASE_URI;
* per-ID loop (Meltano's documented procedure): `meltano state get ID > f` then
  `meltano state set --force ID --input-file f`, timed on --sample IDs, extrapolated to N.

With ``--latency-ms MS`` (0 included) every object-store server sits behind
``latency_proxy.py``: each request waits MS before it is forwarded (a cloud round trip), and
the requests each tool sends to the destination are counted (``req/state`` columns).

Two floors are measured in the same run, so that a figure can be judged against what the
machine allows (issue 13): for pairs with an object store, the emulators' own CPU seconds
while state-ext migrated (read from /proc: a client cannot finish before the server has
done its work, so ``wall / server CPU`` near 1 is the floor); for SQLite -> file, the
bare-write floor of ``bench_floor.py`` (mkdir + write of each state.json in one Python
loop, what `meltano state import` does) for the same number of states, in the same folder.

Every migration is checked with `state_extension diff --to DEST --uri SRC` (exit 0), else
the run fails. Then the peak RSS (ru_maxrss) of `state_extension migrate` of --rss-states
states systemdb -> file. Progress on stderr, a markdown table on stdout.
Exit 1 if a command or a verification fails (other pairs still run); goals are a report.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench import MELTANO_YML, BenchError, clean_env, generate_states, log  # noqa: E402
from benchmarks.bench_floor import bare_write  # noqa: E402
from benchmarks.latency_proxy import start_in_thread  # noqa: E402
from tests.support.emulators import (  # noqa: E402
    AzuriteServer,
    FakeGcsServer,
    MotoServer,
    StoreCase,
    unique_bucket,
)
from tests.support.postgres import PostgresServer  # noqa: E402

LOOP_GOAL, RSS_GOAL_MB = 100.0, 200.0
# Issue 13's goals against export|import: raw emulators, and at 20 ms per request.
RAW_GOALS = {("systemdb", "file"): 2.0, ("file", "s3"): 1.5, ("systemdb", "postgres"): 3.0}
LATENCY_GOALS = {("file", "s3"): 5.0, ("s3", "gs"): 5.0, ("systemdb", "azure"): 5.0}
FLOOR_GOALS = {("file", "s3"): 1.3, ("systemdb", "file"): 1.5}  # x the floor, at most
TICKS = os.sysconf("SC_CLK_TCK")
PAIRS = [("systemdb", "file"), ("file", "s3"), ("s3", "gs"), ("systemdb", "azure"),
         ("systemdb", "postgres")]
LABEL = {"systemdb": "systemdb (SQLite)", "file": "file", "s3": "S3", "gs": "GCS",
         "azure": "Azure", "postgres": "systemdb (PostgreSQL)"}
CLOUDS = ("s3", "gs", "azure")


@dataclass
class Store:
    """A store: its state-ext URI, the env making it meltano's (and state-ext's) configured
    backend, and the env state-ext needs to reach it by URI (credentials, emulator hosts)."""
    uri: str
    env: dict[str, str] = field(default_factory=dict)
    ext_env: dict[str, str] = field(default_factory=dict)


def run(argv, *, cwd, env, stdout=subprocess.PIPE, timeout=3600) -> tuple[float, str]:
    """Run one whole process; (wall s, stdout). A non-zero exit is fatal."""
    started = time.perf_counter()
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
                         f"{proc.stderr[-2000:]}")
    return elapsed, proc.stdout or ""


# Peak RSS through a small intermediate process: Linux charges a child's ru_maxrss with the
# peak RSS of the process it was forked from (recorded at exec), and this script holds the
# generated states, so wait4/RUSAGE_CHILDREN here would report our peak, not state-ext's.
RSS_PROBE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
             "stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def pipe(first, first_env, second, second_env, *, cwd, timeout=3600) -> float:
    """`first | second`, each with its own env; wall seconds until both have exited."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err1, tempfile.TemporaryFile() as err2:
        p1 = subprocess.Popen(first, cwd=cwd, env=first_env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=err1)
        p2 = subprocess.Popen(second, cwd=cwd, env=second_env, stdin=p1.stdout,
                              stdout=subprocess.DEVNULL, stderr=err2)
        p1.stdout.close()
        try:
            codes = p2.wait(timeout), p1.wait(timeout)
        except subprocess.TimeoutExpired:
            p1.kill(), p2.kill(), p1.wait(), p2.wait()
            raise
        elapsed = time.perf_counter() - started
        for code, argv, err in ((codes[1], first, err1), (codes[0], second, err2)):
            if code != 0:
                err.seek(0)
                raise BenchError(f"{' '.join(argv)} exited {code}:\n"
                                 f"{err.read().decode(errors='replace')[-2000:]}")
    return elapsed


def server_cpu(server) -> float:
    """CPU seconds the emulator process has used so far (utime + stime, with waited children)."""
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS


def bare_write_floor(root: Path, n: int) -> float:
    """Seconds for bench_floor's bare writes of ``n`` states into a new folder under ``root``."""
    folder = Path(tempfile.mkdtemp(prefix="floor-", dir=root))
    started = time.perf_counter()
    for i in range(n):
        bare_write(str(folder), i)
    elapsed = time.perf_counter() - started
    import shutil

    shutil.rmtree(folder)
    return elapsed


class Bench:
    def __init__(self, args, root: Path):
        self.args, self.root, self.count = args, root, 0
        self.base_env = clean_env(root / "pycache")
        self.servers, self.proxies, self.raw_servers = [], {}, {}
        kinds = {k for pair in pairs_of(args) for k in pair}
        for kind, server_class in (("s3", MotoServer), ("gs", FakeGcsServer),
                                   ("azure", AzuriteServer)):
            if kind not in kinds:
                continue
            server = server_class().start()
            self.servers.append(server)
            self.raw_servers[kind] = server
            if args.latency_ms is not None:  # point every client at a proxy instead
                import copy

                proxy = self.proxies[kind] = start_in_thread(server.port,
                                                             latency_ms=args.latency_ms)
                server = copy.copy(server)
                server.port = proxy.port
            setattr(self, kind, StoreCase(kind, server))
        self.pg = PostgresServer().start() if "postgres" in kinds else None
        self.sources = {"systemdb": Store("systemdb")}  # the project's SQLite database

    def requests(self, kind: str) -> int | None:
        """Requests the proxy of ``kind`` forwarded since its last reset (None: no proxy)."""
        proxy = self.proxies.get(kind)
        return None if proxy is None else proxy.stats()["requests"]

    def reset_requests(self) -> None:
        for proxy in self.proxies.values():
            proxy.reset()
        time.sleep(0.05)  # the reset runs on the proxy's loop

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        stops = [server.stop for server in self.servers] + ([self.pg.stop] if self.pg else [])
        for stop in stops:
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - cleanup must go on
                log(f"cleanup: {exc}")

    def env(self, store: Store, dest: Store | None = None) -> dict[str, str]:
        """``store`` is the configured backend; ``dest`` is reachable by its URI."""
        return {**self.base_env, **(dest.ext_env if dest else {}), **store.env}

    def meltano(self, *argv, store: Store, **kw):
        return run([self.args.meltano, *argv], cwd=self.root, env=self.env(store), **kw)

    def state_ext(self, *argv, src: Store, dst: Store | None = None, **kw):
        return run([self.args.state_ext, *argv], cwd=self.root, env=self.env(src, dst), **kw)

    def fresh(self, kind: str) -> Store:
        """A new, empty store of this kind."""
        self.count += 1
        if kind == "file":
            uri = (self.root / f"state-{self.count}").as_uri()
            return Store(uri, {"MELTANO_STATE_BACKEND_URI": uri})
        if kind in CLOUDS:
            case = getattr(self, kind)
            bucket = unique_bucket("bench")
            case.server.create_bucket(bucket)
            uri = f"{kind}://{bucket}/meltano/state"
            env = case.settings_env(uri)
            return Store(uri, env, {k: v for k, v in env.items() if "_URI" not in k})
        url = self.pg.create_database()
        store = Store(self.args.pg_to.format(url=url), {"MELTANO_DATABASE_URI": url})
        self.meltano("state", "list", store=store)  # meltano creates its schema
        return store

    def verify(self, src: Store, dst: Store, what: str) -> None:
        _, out = self.state_ext("diff", "--to", dst.uri, "--uri", src.uri, "--format", "json",
                                src=src, dst=dst, timeout=1800)
        report = json.loads(out)
        if not report["same"] or report["identical"] != self.args.states:
            raise BenchError(f"{what}: destination differs from source: {report}")

    def pair(self, src_kind: str, dst_kind: str, ids: list[str], docfile: Path) -> dict:
        n, name = self.args.states, f"{LABEL[src_kind]} -> {LABEL[dst_kind]}"
        src = self.sources.get(src_kind)
        if src is None:
            src = self.sources[src_kind] = self.fresh(src_kind)
            log(f"{name}: importing {n} states into the source with state_extension import")
            self.state_ext("import", "--uri", src.uri, docfile, src=src)
        row = {"pair": name, "dst": dst_kind}
        times, requests, cpus, floors = [], [], [], []
        emulators = [self.raw_servers[k] for k in (src_kind, dst_kind) if k in self.raw_servers]
        for i in range(self.args.repeat):
            dst = self.fresh(dst_kind)
            self.reset_requests()
            before = [server_cpu(e) for e in emulators]
            elapsed, _ = self.state_ext("migrate", "--to", dst.uri, src=src, dst=dst)
            if emulators:  # the busiest emulator bounds the wall clock
                cpus.append(max(server_cpu(e) - b for e, b in zip(emulators, before, strict=True)))
            requests.append(self.requests(dst_kind))
            if dst_kind == "file":
                floors.append(bare_write_floor(self.root, n))
            self.verify(src, dst, f"state-ext migrate {name}")
            times.append(elapsed)
            log(f"{name}: state_extension migrate {i + 1}/{self.args.repeat}: {elapsed:.1f} s "
                f"({n / elapsed:.0f} states/s), {requests[-1]} requests, verified")
        row["state_ext_s"] = statistics.median(times)
        row["state_ext_samples"] = times
        row["state_ext_req"] = requests[-1]
        row["server_cpu_s"] = statistics.median(cpus) if cpus else None
        row["server_cpu_samples"] = cpus
        row["bare_write_s"] = statistics.median(floors) if floors else None
        row["bare_write_samples"] = floors
        row["src"] = src_kind
        if cpus:
            log(f"{name}: emulator CPU during state-ext migrate: "
                f"{', '.join(f'{c:.1f}' for c in cpus)} s")
        if floors:
            log(f"{name}: bare-write floor: {', '.join(f'{f:.2f}' for f in floors)} s")
        m, theirs, their_requests = str(self.args.meltano), [], None
        for _ in range(self.args.meltano_repeat):
            dst = self.fresh(dst_kind)
            self.reset_requests()
            theirs.append(pipe([m, "state", "export"], self.env(src),
                               [m, "state", "import"], self.env(dst), cwd=self.root))
            their_requests = self.requests(dst_kind)
        row["export_import_s"] = statistics.median(theirs)
        row["export_import_samples"] = theirs
        row["export_import_req"] = their_requests
        try:
            self.verify(src, dst, f"meltano export|import {name}")
            row["export_import_exact"] = True
        except BenchError as exc:  # meltano's result is reported, not ours to fail on
            log(f"note: {exc}")
            row["export_import_exact"] = False
        log(f"{name}: meltano state export | meltano state import: {row['export_import_s']:.1f} s"
            f", {their_requests} requests")
        if not self.args.sample:
            row["loop_per_id_s"] = row["loop_est_s"] = None
            return row
        dst, loop_s = self.fresh(dst_kind), 0.0
        sample = ids[:: max(1, len(ids) // self.args.sample)][: self.args.sample]
        for state_id in sample:
            tmp = self.root / "loop-state.json"
            with open(tmp, "w") as handle:
                loop_s += self.meltano("state", "get", state_id, store=src, stdout=handle)[0]
            loop_s += self.meltano("state", "set", "--force", state_id, "--input-file", tmp,
                                   store=dst)[0]
        row["loop_per_id_s"] = loop_s / len(sample)
        row["loop_est_s"] = row["loop_per_id_s"] * n
        log(f"{name}: per-ID loop: {row['loop_per_id_s']:.2f} s/ID on {len(sample)} IDs, "
            f"~{row['loop_est_s']:.0f} s for {n}")
        return row

    def rss(self) -> dict:
        n = self.args.rss_states
        root = self.root / "rss"
        root.mkdir()
        (root / "meltano.yml").write_text(MELTANO_YML)
        docfile = root / "states.json"
        docfile.write_text(json.dumps(generate_states(n)))
        env = dict(self.base_env)
        run([self.args.meltano, "state", "list"], cwd=root, env=env)  # meltano's schema
        log(f"RSS: importing {n} states into a systemdb with state_extension import")
        run([self.args.state_ext, "import", docfile], cwd=root, env=env)
        docfile.unlink()
        dest = (root / "state").as_uri()
        log(f"RSS: state_extension migrate of {n} states systemdb -> file")
        elapsed, peak_kib = run([sys.executable, "-c", RSS_PROBE, self.args.state_ext, "migrate",
                                 "--to", dest], cwd=root, env=env)
        peak_mb = int(peak_kib) / 1024
        _, out = run([self.args.state_ext, "diff", "--to", dest, "--format", "json"],
                        cwd=root, env=env)
        if not json.loads(out)["same"]:
            raise BenchError(f"RSS run: {dest} differs from the source")
        log(f"RSS: {peak_mb:.0f} MB peak, {elapsed:.1f} s, verified")
        return {"states": n, "peak_mb": peak_mb, "elapsed_s": elapsed}


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render(rows: list[dict], rss: dict | None, n: int, rss_run: bool = True,
           latency: float | None = None) -> str:
    goals = LATENCY_GOALS if latency else RAW_GOALS
    lines = [f"| pair ({n} states) | state-ext (s, states/s) | req/state | export\\|import (s) "
             "| req/state | x faster | floor (s) | state-ext / floor | per-ID loop (s est.) "
             "| x faster |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def per_state(count):
        return "-" if count is None else f"{count / n:.3f}"

    for r in rows:
        if "error" in r:
            lines.append(f"| {r['pair']} | ERROR | | | | | | | | |")
            continue
        ext, exp, loop = r["state_ext_s"], r["export_import_s"], r["loop_est_s"]
        pair = (r.get("src"), r["dst"])
        note = "" if r["export_import_exact"] else " (not exact)"
        goal = goals.get(pair)
        speed = f"{exp / ext:.1f}x" + (f" {mark(exp / ext >= goal)} (>= {goal:g}x)" if goal else "")
        floor = r.get("bare_write_s") or r.get("server_cpu_s")
        floor_cells = "- | -"
        if floor:
            what = "bare writes" if r.get("bare_write_s") else "emulator CPU"
            ratio, limit = ext / floor, FLOOR_GOALS.get(pair) if not latency else None
            floor_cells = (f"{floor:.2f} ({what}) | {ratio:.2f}x"
                           + (f" {mark(ratio <= limit)} (<= {limit:g}x)" if limit else ""))
        loop_cells = "- | -"
        if loop is not None:
            loop_x = loop / ext
            loop_cells = (f"{loop:,.0f} ({r['loop_per_id_s']:.2f} s/ID) | {loop_x:,.0f}x "
                          f"{mark(loop_x >= LOOP_GOAL)}")
        lines.append(
            f"| {r['pair']} | {ext:.1f} ({n / ext:,.0f}/s) | {per_state(r.get('state_ext_req'))} "
            f"| {exp:.1f}{note} | {per_state(r.get('export_import_req'))} | {speed} | "
            f"{floor_cells} | {loop_cells} |")
    lines.append("")
    if rss:
        lines.append(f"Peak RSS of `state_extension migrate`, {rss['states']:,} states systemdb -> "
                     f"file: {rss['peak_mb']:.0f} MB {mark(rss['peak_mb'] < RSS_GOAL_MB)} "
                     f"(goal < {RSS_GOAL_MB:.0f} MB); {rss['elapsed_s']:.1f} s, "
                     f"{rss['states'] / rss['elapsed_s']:,.0f} states/s.")
    elif rss_run:
        lines.append("Peak RSS: ERROR (see stderr).")
    else:
        lines.append("Peak RSS: not measured (--rss-states 0).")
    lines.append("Goals (issue 13): " + ("at this latency, " if latency else "raw, ")
                 + ", ".join(f"{LABEL[a]} -> {LABEL[b]} >= {g:g}x" for (a, b), g in goals.items())
                 + " faster than export|import"
                 + ("" if latency else ", within "
                    + ", ".join(f"{g:g}x of the floor on {LABEL[a]} -> {LABEL[b]}"
                                for (a, b), g in FLOOR_GOALS.items()))
                 + f"; >= {LOOP_GOAL:g}x faster than the per-ID loop; peak RSS < "
                 f"{RSS_GOAL_MB:.0f} MB.")
    return "\n".join(lines)


def pairs_of(args) -> list[tuple[str, str]]:
    return [p for p in PAIRS if not args.only or "-".join(p) in args.only.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=10000, help="states in each source")
    parser.add_argument("--sample", type=int, default=20, help="IDs timed with the per-ID loop")
    parser.add_argument("--rss-states", type=int, default=100000, help="states for the RSS run")
    parser.add_argument("--repeat", type=int, default=1, help="state-ext runs per pair (median)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--meltano", default=str(REPO_ROOT / ".venv-meltano/bin/meltano"))
    parser.add_argument("--state-ext", default=str(REPO_ROOT / ".venv/bin/state_extension"))
    parser.add_argument("--pg-to", default="{url}",
                        help="state-ext URI of a PostgreSQL systemdb; {url} = its SQLAlchemy URL")
    parser.add_argument("--only", default="",
                        help="comma-separated pairs to run, e.g. s3-gs,systemdb-file "
                             "(default: all five); --rss-states 0 skips the RSS run")
    parser.add_argument("--latency-ms", type=float, default=None,
                        help="put each object store behind latency_proxy.py with this delay per "
                             "request, and count requests (0: count only)")
    parser.add_argument("--meltano-repeat", type=int, default=1,
                        help="export|import runs per pair (median)")
    args = parser.parse_args()
    pairs = pairs_of(args)
    if args.only and not pairs:
        parser.error(f"--only: none of {args.only!r} is one of "
                     f"{', '.join('-'.join(p) for p in PAIRS)}")
    if args.rss_states == 0:
        args.rss_states = None
    if min(args.states, args.rss_states or 1, args.repeat, args.meltano_repeat) < 1 or \
            args.sample < 0:
        parser.error("--states, --rss-states and the repeats must be at least 1 (--sample 0 "
                     "skips the per-ID loop)")
    args.sample = min(args.sample, args.states)

    doc = generate_states(args.states)
    rows, rss, failed, load = [], None, False, os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="state-ext-bench-migrate-",
                                     ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        (root / "meltano.yml").write_text(MELTANO_YML)
        docfile = root / "states.json"
        docfile.write_text(json.dumps(doc))
        b = Bench(args, root)
        try:
            log(f"creating the SQLite system database with meltano, importing {args.states} "
                "states with state_extension import")
            b.meltano("state", "list", store=b.sources["systemdb"])
            b.state_ext("import", docfile, src=b.sources["systemdb"])
            for src_kind, dst_kind in pairs:
                try:
                    rows.append(b.pair(src_kind, dst_kind, sorted(doc), docfile))
                except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
                    log(f"FAILED {src_kind} -> {dst_kind}: {exc}")
                    rows.append({"pair": f"{LABEL[src_kind]} -> {LABEL[dst_kind]}",
                                 "error": str(exc)})
                    failed = True
            try:
                rss = b.rss() if args.rss_states else None
            except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
                log(f"FAILED RSS run: {exc}")
                failed = True
        except (BenchError, subprocess.TimeoutExpired) as exc:
            log(f"FAILED: {exc}")
            return 1
        finally:
            b.close()
    print(render(rows, rss, args.states, rss_run=bool(args.rss_states), latency=args.latency_ms))
    latency = "" if args.latency_ms is None else \
        f"; object stores behind a {args.latency_ms:g} ms-per-request proxy"
    print(f"({os.cpu_count()} CPUs, load average {load:.1f} -> {os.getloadavg()[0]:.1f}; "
          f"wall clock of whole processes; state-ext median of {args.repeat}, meltano median "
          f"of {args.meltano_repeat}{latency}; req/state = requests to the destination.)")
    if args.json:
        args.json.write_text(json.dumps({"states": args.states, "rows": rows, "rss": rss},
                                        indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
