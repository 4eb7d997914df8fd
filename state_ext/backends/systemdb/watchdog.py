"""The client's own bound on a PostgreSQL server that froze in the middle of a statement.

The server bounds its statements itself (``statement_timeout``), but a frozen server
(SIGSTOP, a hung VM) runs no timer, and its kernel still acknowledges every packet and
keepalive, so neither libpq nor TCP ever gives up: the client would wait forever. This
thread looks, about once a second, at the connections the engine has handed out, and
cuts one (``shutdown`` of its socket, so the waiting driver call fails at once) only when
all of this holds:

* libpq says a command is in flight (``transaction_status`` ACTIVE);
* nothing the server sent is waiting to be read (so a slow *client* is never blamed);
* no data went either way for ``after`` seconds, longer than any statement may take on
  a live server (the lock wait plus twice the stall window), so a live server's own
  timeout always fires first and only a dead or frozen one meets this.

Linux only (``TCP_INFO``); elsewhere nothing is watched. Public APIs only: psycopg's
``pgconn.socket`` and ``transaction_status``, and the socket module.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
import threading
import time

# struct tcp_info (linux/tcp.h): __u32 tcpi_last_data_sent at byte 44, _recv at byte 52
_LAST_DATA_SENT, _LAST_DATA_RECV, _TCP_INFO_SIZE = 44, 52, 104


class Watchdog:
    def __init__(self, after: float) -> None:
        self.after = after
        self.fired = False
        self._watched: dict[int, object] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def attach(self, engine) -> None:
        if not hasattr(socket, "TCP_INFO"):
            return
        from sqlalchemy import event

        @event.listens_for(engine, "checkout")
        def _checkout(dbapi_connection, record, proxy):
            if hasattr(dbapi_connection, "pgconn"):  # psycopg 3
                with self._lock:
                    self._watched[id(dbapi_connection)] = dbapi_connection
                    if self._thread is None:
                        self._thread = threading.Thread(target=self._run, daemon=True,
                                                        name="state-ext-systemdb-watchdog")
                        self._thread.start()

        @event.listens_for(engine, "checkin")
        def _checkin(dbapi_connection, record):
            with self._lock:
                self._watched.pop(id(dbapi_connection), None)

    def _run(self) -> None:
        while True:
            time.sleep(min(1.0, self.after / 4))
            with self._lock:
                watched = list(self._watched.values())
            for connection in watched:
                self._cut_if_stalled(connection)

    def _cut_if_stalled(self, connection) -> bool:
        """Cut ``connection`` if its server owes an answer and has sent nothing for too long."""
        from psycopg import pq

        try:
            pgconn = connection.pgconn
            if pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
                return False
            with socket.socket(fileno=os.dup(pgconn.socket)) as sock:
                unread = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD,
                                                        b"\0\0\0\0"))[0]
                if unread:
                    return False
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
                quiet_ms = min(struct.unpack_from("I", info, _LAST_DATA_SENT)[0],
                               struct.unpack_from("I", info, _LAST_DATA_RECV)[0])
                if quiet_ms < self.after * 1000:
                    return False
                self.fired = True  # before the cut: the driver's error is read at once
                sock.shutdown(socket.SHUT_RDWR)  # the socket, not just this duplicate
                return True
        except Exception:  # noqa: BLE001 - a connection closed meanwhile: nothing to watch
            return False
