"""A TCP proxy that delays each forwarded HTTP request, counts requests, and can corrupt one.

Local emulators answer in well under a millisecond, so a benchmark against them measures
CPU, not what users pay: against real S3, GCS or Azure every request costs a round trip
(10-30 ms from a cloud VM in the same region, more across regions). Put this proxy in
front of an emulator and point the tool at the proxy: each request is held for
``--latency-ms`` before it is forwarded, on its own connection only, so concurrent requests
overlap exactly as they would over a real network, and a tool that sends N requests per
state pays N round trips per state.

A request is a client-to-server chunk that starts with an HTTP method; its other chunks (the
rest of a body) follow without delay. Requests are counted per method (``stats()``, or the
``--stats-file`` JSON, rewritten every 0.2 s and at exit), which is how the benchmarks report
requests per state.

``--corrupt OLD=NEW`` (same length) replaces the first ``--corrupt-count`` occurrences of
OLD in request bytes: a body damaged in transit, to test that uploads are verified by the
service's checksum.

Usage::

    python benchmarks/latency_proxy.py --target 127.0.0.1:9000 --latency-ms 20 \
        [--port 0] [--stats-file stats.json] [--corrupt OLD=NEW]

It prints ``listening on <port>`` on stdout once it accepts connections. In process:
``proxy = start_in_thread(9000, latency_ms=20)``, then ``proxy.port``, ``proxy.stats()``,
``proxy.reset()``, ``proxy.stop()``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections import Counter

METHODS = (b"GET ", b"PUT ", b"POST ", b"DELETE ", b"HEAD ", b"PATCH ", b"OPTIONS ")


class LatencyProxy:
    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1",
                 latency_ms: float = 0.0, port: int = 0, corrupt: tuple[bytes, bytes] | None = None,
                 corrupt_count: int = 1):
        if corrupt and len(corrupt[0]) != len(corrupt[1]):
            raise ValueError("--corrupt OLD=NEW needs OLD and NEW of the same length")
        self.target = (target_host, target_port)
        self.delay = latency_ms / 1000.0
        self.listen_port = port
        self.corrupt, self.corrupt_left = corrupt, corrupt_count
        self.by_method: Counter = Counter()
        self.corrupted = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    def stats(self) -> dict:
        return {"requests": sum(self.by_method.values()), "by_method": dict(self.by_method),
                "corrupted": self.corrupted}

    def reset(self) -> None:
        self.by_method.clear()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.listen_port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pump(reader, upstream_writer, requests=True),
                             self._pump(upstream_reader, writer, requests=False))

    async def _pump(self, reader, writer, *, requests: bool) -> None:
        try:
            while data := await reader.read(65536):
                if requests:
                    if data.startswith(METHODS):
                        self.by_method[data.split(b" ", 1)[0].decode()] += 1
                        if self.delay:
                            await asyncio.sleep(self.delay)
                    if self.corrupt and self.corrupt_left and self.corrupt[0] in data:
                        data = data.replace(self.corrupt[0], self.corrupt[1], 1)
                        self.corrupt_left -= 1
                        self.corrupted += 1
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


class _Threaded:
    """A proxy on its own event loop in a daemon thread (for the benchmarks)."""

    def __init__(self, proxy: LatencyProxy):
        self.proxy = proxy
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(proxy.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True, name="latency-proxy")
        self.thread.start()
        ready.wait(10)

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    def stats(self) -> dict:
        return self.proxy.stats()

    def reset(self) -> None:
        self.loop.call_soon_threadsafe(self.proxy.reset)

    def stop(self) -> None:
        async def shut() -> None:
            if self.proxy.server is not None:
                self.proxy.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def start_in_thread(target_port: int, **kwargs) -> _Threaded:
    return _Threaded(LatencyProxy(target_port, **kwargs))


async def _main(args) -> None:
    host, _, port = args.target.rpartition(":")
    corrupt = None
    if args.corrupt:
        old, _, new = args.corrupt.partition("=")
        corrupt = (old.encode(), new.encode())
    proxy = LatencyProxy(int(port), target_host=host or "127.0.0.1", latency_ms=args.latency_ms,
                         port=args.port, corrupt=corrupt, corrupt_count=args.corrupt_count)
    await proxy.start()
    print(f"listening on {proxy.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def dump() -> None:
        if args.stats_file:
            tmp = f"{args.stats_file}.{os.getpid()}.tmp"
            with open(tmp, "w") as handle:
                json.dump(proxy.stats(), handle)
            os.replace(tmp, args.stats_file)

    while not stop.is_set():
        dump()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    dump()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument("--stats-file", help="JSON request counts, rewritten every 0.2 s")
    parser.add_argument("--corrupt", help="OLD=NEW: replace OLD in request bytes (same length)")
    parser.add_argument("--corrupt-count", type=int, default=1)
    args = parser.parse_args(argv)
    if args.corrupt and len(args.corrupt.partition("=")[0]) != len(args.corrupt.partition("=")[2]):
        print("--corrupt OLD=NEW needs OLD and NEW of the same length", file=sys.stderr)
        return 2
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
