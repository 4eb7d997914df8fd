#!/usr/bin/env python3
"""A tiny Singer target for the integration tests (standard library only).

Reads Singer messages on stdin and writes the ``value`` of every STATE message as one
JSON line on stdout: that is what Meltano persists as ``singer_state``. Records are
counted; the count goes to stderr. Invalid lines make it fail (exit 1), as a real
target would.
"""

import json
import sys


def main():
    records = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        message = json.loads(line)
        if message.get("type") == "RECORD":
            records += 1
        elif message.get("type") == "STATE":
            sys.stdout.write(json.dumps(message["value"]) + "\n")
            sys.stdout.flush()
    sys.stderr.write(f"target-mini: {records} record(s)\n")


if __name__ == "__main__":
    main()
