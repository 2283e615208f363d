"""The websocket hub: which connection watches which topic, and how frames reach it.

Publishing only queues an event's frame, encoded once, on every watching
connection (``zerg.realtime.connection``), whose writer sends it. Under
gunicorn's gevent worker the writers, simple-websocket's readers (see
:func:`reader_thread`) and the keepalive are greenlets: an idle client costs
memory, not a thread.

The hub also admits clients: past ``WS_MAX_CONNECTIONS`` in this process, a
handshake is refused before the upgrade (:meth:`Hub.admit`).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from typing import Any

from flask import Flask
from flask import current_app

from zerg.realtime import events
from zerg.realtime.connection import Connection
from zerg.realtime.connection import Socket
from zerg.realtime.connection import text_frame
from zerg.realtime.events import Event
from zerg.realtime.keepalive import Keepalive

EXTENSION_KEY = "zerg.hub"


class Hub:
    """Topic → connections, safe to use from any thread."""

    def __init__(
        self, queue_size: int, drop_grace: float, max_connections: int, ping_interval: float
    ) -> None:
        self.queue_size = queue_size
        self.drop_grace = drop_grace
        self.max_connections = max_connections
        self.keepalive = Keepalive(ping_interval)
        self._lock = threading.Lock()
        self._admitted = 0
        self._connections: set[Connection] = set()
        self._topics: defaultdict[str, set[Connection]] = defaultdict(set)

    def admit(self) -> bool:
        """Reserve a place for one more client, if this process has one left."""
        with self._lock:
            if self._admitted >= self.max_connections:
                return False
            self._admitted += 1
            return True

    def leave(self) -> None:
        """Give back the place an admitted client held."""
        with self._lock:
            self._admitted -= 1

    def connect(self, ws: Socket) -> Connection:
        """Register a new client, start its writer and its keepalive pings."""
        connection = Connection(ws, self.queue_size, self.drop_grace)
        with self._lock:
            self._connections.add(connection)
        connection.start()
        self.keepalive.watch(connection)
        return connection

    def disconnect(self, connection: Connection) -> None:
        """Forget a client and all its subscriptions, then stop its writer."""
        with self._lock:
            self._connections.discard(connection)
            for topic in list(connection.topics):
                self._unlink(connection, topic)
        self.keepalive.forget(connection)
        connection.close()

    def subscribe(self, connection: Connection, topic: str) -> None:
        with self._lock:
            if connection in self._connections:
                connection.topics.add(topic)
                self._topics[topic].add(connection)

    def unsubscribe(self, connection: Connection, topic: str) -> None:
        with self._lock:
            self._unlink(connection, topic)

    def _unlink(self, connection: Connection, topic: str) -> None:
        """Remove one subscription; the caller holds the lock."""
        connection.topics.discard(topic)
        watchers = self._topics.get(topic)
        if watchers is not None:
            watchers.discard(connection)
            if not watchers:
                del self._topics[topic]

    def deliver(self, event: Event) -> None:
        """Queue the event once for every connection watching any of its topics."""
        with self._lock:
            targets = set().union(*(self._topics.get(topic, ()) for topic in event.topics))
        if not targets:
            return
        data = text_frame(json.dumps(event.frame()))
        for connection in targets:
            if not connection.send_event(event.id, data):
                # Dropped: stop feeding it now; its handler removes it entirely.
                with self._lock:
                    for topic in list(connection.topics):
                        self._unlink(connection, topic)

    def close_all(self, code: int, reason: str) -> int:
        """Close every connection with ``code`` (e.g. 1012: restarting, reconnect)."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.request_close(code, reason)
        return len(connections)

    def stats(self) -> dict[str, int]:
        """Count connections and subscriptions (for health checks and tests)."""
        with self._lock:
            return {
                "connections": len(self._connections),
                "subscriptions": sum(len(c) for c in self._topics.values()),
                "topics": len(self._topics),
            }


def reader_thread(target: Any) -> threading.Thread:
    """Build simple-websocket's reader thread so that its end always wakes the receiver.

    simple-websocket's reader stops without setting the event a blocked
    ``receive()`` waits on when our side closed first (its loop ends on
    ``connected``), and its ``close()`` never sets it: a handler waiting with
    no timeout would wait forever. Setting it once the reader is done, with
    the connection marked closed, makes ``receive()`` raise ConnectionClosed,
    so the handler can block without polling.
    """
    # The target is the connection's bound method ``_thread``.
    ws = target.__self__

    def read() -> None:
        try:
            target()
        finally:
            ws.connected = False
            ws.event.set()

    return threading.Thread(target=read, daemon=True)


def get_hub(app: Flask | None = None) -> Hub:
    """Return the current (or given) app's hub."""
    target = app if app is not None else current_app
    hub: Hub = target.extensions[EXTENSION_KEY]
    return hub


def init_app(app: Flask) -> None:
    """Give the app a hub fed by its event bus."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("zerg.realtime.hub is already registered on this app")
    hub = Hub(
        queue_size=app.config["WS_SEND_QUEUE_SIZE"],
        drop_grace=app.config["WS_DROP_GRACE_SECONDS"],
        max_connections=app.config["WS_MAX_CONNECTIONS"],
        ping_interval=app.config["WS_PING_INTERVAL"],
    )
    # flask-sock hands SOCK_SERVER_OPTIONS to every simple-websocket server.
    # Its readers do not ping (``ping_interval`` unset): the hub's keepalive does.
    app.config["SOCK_SERVER_OPTIONS"]["thread_class"] = reader_thread
    app.extensions[EXTENSION_KEY] = hub
    events.get_bus(app).subscribe(hub.deliver)
