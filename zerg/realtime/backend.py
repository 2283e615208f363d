"""Give each app its event bus backend: the one place that chooses one.

``zerg.realtime.events`` defines the bus (and keeps it in memory);
``zerg.realtime.redis_bus`` shares it between processes through Redis and is
built on the former. Choosing between them here, rather than inside the
module that defines the interface, keeps the two from importing each other.
"""

from __future__ import annotations

from flask import Flask

from zerg.realtime.events import EXTENSION_KEY
from zerg.realtime.events import EventBus


def init_app(app: Flask) -> None:
    """Give the app its bus: in memory, or through Redis when processes must share it."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("zerg.events is already registered on this app")
    window = app.config["EVENT_REPLAY_WINDOW"]
    bus: EventBus
    if app.config["EVENT_BACKEND"] == "redis":
        # Imported here, not at the top: redis imports ssl, and a gevent worker
        # must patch ssl before anything imports it, which an app without Redis
        # should not have to arrange.
        from zerg.realtime.redis_bus import RedisEventBus

        bus = RedisEventBus(
            app.config["REDIS_URL"],
            stream=app.config["EVENT_STREAM"],
            window=window,
            outbox_size=app.config["EVENT_OUTBOX_SIZE"],
            connect_timeout=app.config["REDIS_CONNECT_TIMEOUT_SECONDS"],
            timeout=app.config["REDIS_SOCKET_TIMEOUT_SECONDS"],
        )
    else:
        bus = EventBus(window=window)
    app.extensions[EXTENSION_KEY] = bus
