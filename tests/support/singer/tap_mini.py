#!/usr/bin/env python3
"""A tiny Singer tap for the integration tests (standard library only).

Stream: ``$TAP_MINI_STREAM`` (default ``items``) with ids 1..``$TAP_MINI_TOTAL`` (default 3).
It reads Meltano's ``--state FILE`` and resumes after the stream's bookmark ``last_id``,
emitting a RECORD and then a STATE message for each new id:
``{"bookmarks": {<stream>: {"last_id": <id>, "new": <records since the bookmark>}}}``.
With nothing new it still emits one STATE message echoing the bookmark (``new`` = 0).
``$TAP_MINI_ARGV_FILE``, when set, receives the argv and the state it was given (JSON).

Misbehaviours for the safety tests (all off by default):
``$TAP_MINI_SDK=1`` adds the Singer SDK's ``replication_key``/``replication_key_value``
(= ``last_id``) to each bookmark; ``$TAP_MINI_REWIND=N`` ignores the state and ends on
the older bookmark ``N``; ``$TAP_MINI_EMPTY=1`` emits only a state without bookmarks.
"""

import argparse
import json
import os
import sys


def emit(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--state")
    parser.add_argument("--catalog")
    parser.add_argument("--properties")
    parser.add_argument("--discover", action="store_true")
    args = parser.parse_args()

    stream = os.environ.get("TAP_MINI_STREAM", "items")
    total = int(os.environ.get("TAP_MINI_TOTAL", "3"))
    state = {}
    if args.state:
        with open(args.state, encoding="utf-8") as handle:
            state = json.load(handle) or {}
    if os.environ.get("TAP_MINI_ARGV_FILE"):
        with open(os.environ["TAP_MINI_ARGV_FILE"], "w", encoding="utf-8") as handle:
            json.dump({"argv": sys.argv[1:], "state": state}, handle)
    if args.discover:
        emit_catalog(stream)
        return

    if os.environ.get("TAP_MINI_EMPTY") == "1":
        emit({"type": "STATE", "value": {"bookmarks": {}}})
        return
    bookmark = state.get("bookmarks", {}).get(stream, {}).get("last_id", 0)
    if os.environ.get("TAP_MINI_REWIND"):
        bookmark, total = 0, int(os.environ["TAP_MINI_REWIND"])
    emit({"type": "SCHEMA", "stream": stream, "key_properties": ["id"],
          "schema": {"type": "object", "properties": {"id": {"type": "integer"}}}})
    new = 0
    for record_id in range(bookmark + 1, total + 1):
        new += 1
        emit({"type": "RECORD", "stream": stream, "record": {"id": record_id}})
        emit({"type": "STATE", "value": {"bookmarks": {stream: mark(record_id, new)}}})
    if not new:
        emit({"type": "STATE", "value": {"bookmarks": {stream: mark(bookmark, 0)}}})


def mark(last_id, new):
    bookmark = {"last_id": last_id, "new": new}
    if os.environ.get("TAP_MINI_SDK") == "1":
        bookmark.update(replication_key="id", replication_key_value=last_id)
    return bookmark


def emit_catalog(stream):
    sys.stdout.write(json.dumps({"streams": [{
        "tap_stream_id": stream, "stream": stream,
        "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
        "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}],
    }]}) + "\n")


if __name__ == "__main__":
    main()
