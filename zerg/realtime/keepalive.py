"""Keepalive pings for a process's websockets, sent from one thread.

simple-websocket can ping by itself (``ping_interval``), but it does so from
every connection's reader, with a selector around every read: under gevent
that is a watcher made and torn down for each frame received and each ping.
For 10,000 idle sockets it took about 18 % of a core, nearly all of the idle
workers' CPU. Here one thread (a greenlet under gevent) walks a queue of
connections in the order their pings fall due, and a reader only reads.

A connection is pinged every ``interval`` seconds after it joined (up to
``BATCH_SECONDS`` later); one that
has not answered the previous ping by then is dropped (see
:meth:`Connection.expire <zerg.realtime.connection.Connection.expire>`). Every
connection gets the same interval, so appending at ``now + interval`` keeps
the queue in due order without a heap. The thread runs only while the hub
holds connections, so an app without clients keeps no thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol

# Pings sent back to back before letting other work run: under gevent a ping
# only waits when a client's socket buffer is full, so a thousand falling due
# together (clients that connected together) would otherwise hold the hub.
PINGS_PER_TURN = 50
# How late a ping may be, so that the thread wakes once for a batch of them:
# connections join at scattered moments, and waking for each one (a timer
# armed and fired, two switches) cost more than the ping itself.
BATCH_SECONDS = 0.5


class Pingable(Protocol):
    """What the keepalive needs of a connection."""

    def ping(self) -> bool:
        """Ping it; False if it is over (closed, dropped, or expired just now)."""
        ...


class Keepalive:
    """Pings every watched connection each ``interval`` seconds, from one thread."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._due: deque[tuple[float, Pingable]] = deque()
        self._watched = 0
        self._thread: threading.Thread | None = None
        # Set when the last connection leaves, so the thread ends now rather
        # than when the next ping would have fallen due.
        self._emptied = threading.Event()

    def watch(self, connection: Pingable) -> None:
        """Start pinging a new connection, one interval from now."""
        with self._lock:
            self._watched += 1
            self._due.append((time.monotonic() + self.interval, connection))
            self._emptied.clear()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="zerg-ws-keepalive", daemon=True
                )
                self._thread.start()

    def forget(self, connection: Pingable) -> None:
        """Note that a connection left; its entry is skipped when it falls due."""
        with self._lock:
            self._watched -= 1
            if self._watched == 0:
                self._due.clear()
                self._emptied.set()

    def _run(self) -> None:
        sent = 0
        while True:
            with self._lock:
                if not self._due:
                    self._thread = None
                    return
                due, connection = self._due[0]
                wait = due - time.monotonic()
                if wait <= 0:
                    self._due.popleft()
            if wait > 0:
                sent = 0
                self._emptied.wait(max(wait, BATCH_SECONDS))
                continue
            if connection.ping():
                with self._lock:
                    if self._watched:
                        self._due.append((time.monotonic() + self.interval, connection))
            sent += 1
            if sent % PINGS_PER_TURN == 0:
                time.sleep(0)
