"""An event bus shared by every process through a Redis stream.

Publishing appends the event to one stream (XADD, capped at ``window``
entries); every process, the publisher included, reads the stream with a
blocking XREAD on one listener thread and hands each event to its local
subscribers. So all processes see all events in the same order, a websocket
client on one worker hears what a request on another worker did, and the
stream's ids double as the ids a reconnecting client resumes from.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from typing import cast

import redis

from zerg.errors import StartupError
from zerg.realtime.events import Event
from zerg.realtime.events import EventBus
from zerg.realtime.events import id_key
from zerg.realtime.events import valid_id

log = logging.getLogger(__name__)

# redis-py's sync client returns these; its annotations also admit awaitables.
Entries = list[tuple[bytes, dict[bytes, bytes]]]

BLOCK_MS = 1000
RETRY_SECONDS = 1.0


class RedisEventBus(EventBus):
    """The in-memory bus's interface, with Redis carrying the events between processes."""

    def __init__(self, url: str, *, stream: str, window: int) -> None:
        """Prepare the client; connect to nothing (redis-py connects on first use)."""
        super().__init__(window=window)
        self.stream = stream
        self.window = window
        self._redis = redis.Redis.from_url(url)
        self._stopping = threading.Event()
        self._last = "0-0"
        self._listener: threading.Thread | None = None

    def start(self) -> None:
        """Start the listener thread, reading after what the stream already holds.

        Those events happened before this process was listening. Called by
        the serving process (``zerg.serving.start``), so that building an app
        for a CLI command or a test neither needs Redis nor starts a thread.
        """
        if self._listener is not None:
            return
        try:
            newest = cast(Entries, self._redis.xrevrange(self.stream, count=1))
        except redis.RedisError as exc:
            raise StartupError(
                f"EVENT_BACKEND=redis, but Redis at REDIS_URL fails: {exc}"
            ) from None
        self._last = newest[0][0].decode() if newest else "0-0"
        self._listener = threading.Thread(
            target=self._listen, name="zerg-redis-events", daemon=True
        )
        self._listener.start()

    def publish(self, event: Event) -> None:
        """Append the event to the stream; the listener delivers it, here and everywhere."""
        self._redis.xadd(
            self.stream, {"event": event.to_json()}, maxlen=self.window, approximate=True
        )

    def since(self, event_id: str) -> list[Event] | None:
        """Return the stream's events after ``event_id``, or None if some were trimmed."""
        if not valid_id(event_id) or len(id_key(event_id)) != 2:
            return None
        oldest = cast(Entries, self._redis.xrange(self.stream, count=1))
        if oldest and id_key(oldest[0][0].decode()) > id_key(event_id):
            # Entries after event_id have been trimmed away.
            return None
        entries = cast(Entries, self._redis.xrange(self.stream, min=f"({event_id}", max="+"))
        return [Event.from_json(fields[b"event"], raw.decode()) for raw, fields in entries]

    def close(self) -> None:
        """Stop the listener and the connection pool."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.join(timeout=BLOCK_MS / 1000 + 2)
        self._redis.close()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                batches = cast(
                    "list[tuple[Any, Entries]] | None",
                    self._redis.xread({self.stream: self._last}, block=BLOCK_MS, count=500),
                )
            except redis.RedisError:
                log.exception("reading events from Redis failed; retrying")
                self._stopping.wait(RETRY_SECONDS)
                continue
            for _stream, entries in batches or ():
                for raw_id, fields in entries:
                    self._last = raw_id.decode()
                    try:
                        event = Event.from_json(fields[b"event"], self._last)
                    except (KeyError, ValueError):
                        log.exception("skipping a malformed event %s", self._last)
                        continue
                    self.dispatch(event)
