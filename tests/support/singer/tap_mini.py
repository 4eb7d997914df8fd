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

Several streams, the Singer SDK's way (for the stream commands' tests; off by default):
``$TAP_MINI_STREAMS=items,orders`` emits each named stream with ids 1..``$TAP_MINI_TOTAL``,
resuming after its bookmark's ``replication_key_value`` (else from the start), and
``$TAP_MINI_PARTITIONED=events:2`` adds a stream ``events`` with partitions whose contexts are
``{"account": 1}`` and ``{"account": 2}``, each resuming after its own bookmark. Every STATE
message then carries every stream's bookmark (``replication_key`` ``id``,
``replication_key_value`` the last id, ``new`` the records since the bookmark) and keeps the
bookmarks of streams it did not emit. ``$TAP_MINI_RECORDS_FILE``, when set, receives one JSON
line per record emitted: ``{"stream": ..., "id": ..., "context": ...}``.
``$TAP_MINI_SLEEP=N`` waits N seconds before emitting anything (a run that is still going).
"""

import argparse
import json
import os
import sys
import time


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

    if os.environ.get("TAP_MINI_SLEEP"):
        time.sleep(float(os.environ["TAP_MINI_SLEEP"]))
    if os.environ.get("TAP_MINI_STREAMS") or os.environ.get("TAP_MINI_PARTITIONED"):
        emit_streams(state, total)
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
        if new == int(os.environ.get("TAP_MINI_FAIL_AFTER", "0")):
            sys.exit(1)  # a tap that fails halfway, after some state went out
    if not new:
        emit({"type": "STATE", "value": {"bookmarks": {stream: mark(bookmark, 0)}}})


def mark(last_id, new):
    bookmark = {"last_id": last_id, "new": new}
    if os.environ.get("TAP_MINI_SDK") == "1":
        bookmark.update(replication_key="id", replication_key_value=last_id)
    return bookmark


def emit_streams(state, total):
    """The SDK layout: every STATE message holds every stream's bookmark."""
    marks = dict(state.get("bookmarks") or {})
    names = [n for n in os.environ.get("TAP_MINI_STREAMS", "").split(",") if n]
    for name in names:
        old = marks.get(name) if isinstance(marks.get(name), dict) else {}
        marks[name] = emit_range(name, None, old, total, marks)
    if os.environ.get("TAP_MINI_PARTITIONED"):
        name, count = os.environ["TAP_MINI_PARTITIONED"].split(":")
        old_parts = (marks.get(name) or {}).get("partitions") or []
        contexts = [{"account": account} for account in range(1, int(count) + 1)]
        olds = [next((p for p in old_parts if p.get("context") == c), {"context": c})
                for c in contexts]
        marks[name] = {"partitions": [dict(p) for p in olds]}
        for context, old in zip(contexts, olds, strict=True):
            emit_range(name, context, old, total, marks)


def emit_range(stream, context, old, total, marks):
    """Records after ``old``'s replication_key_value, then the STATE with the new bookmark."""
    emit({"type": "SCHEMA", "stream": stream, "key_properties": ["id"],
          "schema": {"type": "object", "properties": {"id": {"type": "integer"}}}})
    start = old.get("replication_key_value", 0)
    mark = {"replication_key": "id", "replication_key_value": start, "new": 0}
    for record_id in range(start + 1, total + 1):
        emit({"type": "RECORD", "stream": stream, "record": {"id": record_id}})
        if os.environ.get("TAP_MINI_RECORDS_FILE"):
            with open(os.environ["TAP_MINI_RECORDS_FILE"], "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"stream": stream, "id": record_id,
                                         "context": context}) + "\n")
        mark = {"replication_key": "id", "replication_key_value": record_id,
                "new": mark["new"] + 1}
        set_mark(marks, stream, context, mark)
        emit({"type": "STATE", "value": {"bookmarks": marks}})
    set_mark(marks, stream, context, mark)
    emit({"type": "STATE", "value": {"bookmarks": marks}})
    return mark


def set_mark(marks, stream, context, mark):
    if context is None:
        marks[stream] = mark
        return
    parts = marks[stream]["partitions"]
    index = next(i for i, p in enumerate(parts) if p.get("context") == context)
    parts[index] = {"context": context, **mark}


def emit_catalog(stream):
    sys.stdout.write(json.dumps({"streams": [{
        "tap_stream_id": stream, "stream": stream,
        "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
        "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}],
    }]}) + "\n")


if __name__ == "__main__":
    main()
