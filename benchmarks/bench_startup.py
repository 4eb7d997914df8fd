"""What each start-up measure of ``state_ext/startup.py`` buys, one at a time.

Usage: .venv/bin/python benchmarks/bench_startup.py [--repeat 15] [--states 50]

Runs ``state_extension list`` and ``export`` on a SQLite system database (the
commands that import SQLAlchemy, structlog and typer) as separate processes, with all
three measures (the console script as shipped) and with each one switched off in turn,
interleaved so machine noise spreads evenly. Prints a Markdown table of medians and the
cost of switching each measure off; a measure belongs in startup.py only if it buys at
least 10 ms. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DDL = ("CREATE TABLE state (state_id VARCHAR(900) NOT NULL, partial_state VARCHAR, "
       "completed_state VARCHAR, updated_at DATETIME, PRIMARY KEY (state_id), UNIQUE (state_id))")

# Each variant is the console script with one measure replaced by Python's default.
PRELUDE = "import sys; from state_ext import startup\n"
VARIANTS = {
    "shipped": "",
    "no GC threshold": "startup.collect_rarely = lambda: None\n",
    "ordinary exit": "startup.exit_now = lambda code: sys.exit(code)\n",
    "structlog with rich": (
        "def _plain():\n    import structlog\n    return structlog\n"
        "startup.import_structlog = _plain\n"),
}
RUN = "from state_ext.main import cli\nsys.argv = ['state_extension', *sys.argv[1:]]\ncli()\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--states", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "meltano.yml").write_text("project_id: bench\ndefault_environment: dev\n")
        (root / ".meltano").mkdir()
        with sqlite3.connect(root / ".meltano" / "meltano.db") as conn:
            conn.execute(DDL)
            conn.executemany(
                "INSERT INTO state VALUES (?, '{}', ?, NULL)",
                [(f"dev:tap-{i}-to-target", json.dumps({"singer_state": {"i": i}}))
                 for i in range(args.states)])
        rows = []
        for command in (["list"], ["export"]):
            times = {name: [] for name in VARIANTS}
            for _ in range(args.repeat):
                for name, patch in VARIANTS.items():
                    started = time.perf_counter()
                    subprocess.run([sys.executable, "-c", PRELUDE + patch + RUN, *command],
                                   cwd=root, check=True, capture_output=True)
                    times[name].append(time.perf_counter() - started)
            medians = {name: statistics.median(t) for name, t in times.items()}
            for name, median in medians.items():
                extra = median - medians["shipped"]
                rows.append(f"| `{' '.join(command)}` | {name} | {median * 1000:.0f} | "
                            + ("" if name == "shipped" else f"{extra * 1000:+.0f}") + " |")
    print("| command | variant | median ms | cost of switching the measure off (ms) |")
    print("|---|---|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
