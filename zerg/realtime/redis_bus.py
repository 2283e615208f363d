"""An event bus shared by every process through a Redis stream.

Publishing appends the event to one stream (XADD, capped at ``window``
entries); every process, the publisher included, reads the stream with a
blocking XREAD on one listener thread and hands each event to its local
subscribers. So all processes see all events in the same order, a websocket
client on one worker hears what a request on another worker did, and the
stream's ids double as the ids a reconnecting client resumes from.

No publisher waits for Redis. :meth:`RedisEventBus.publish` puts the event in
the bus's outbox (``zerg.realtime.outbox``); one publisher thread appends
what the outbox holds to the stream, in order and in batches, and retries a
batch until Redis takes it. A timeout does not say whether Redis took the
batch, so a retry may add an event twice: every entry carries the id of the
bus that published it and its number there, and readers skip a copy of what
they have seen. Every call has a connect and a socket timeout, so a Redis
that hangs or goes away costs the publisher thread its retries, a
reconnecting client a reload of its state, and a health check a short wait.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from typing import Any
from typing import cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.typing import EncodableT
from redis.typing import FieldT

from zerg.errors import StartupError
from zerg.realtime.events import Event
from zerg.realtime.events import EventBus
from zerg.realtime.events import id_key
from zerg.realtime.events import valid_id
from zerg.realtime.outbox import Outbox

log = logging.getLogger(__name__)

# redis-py's sync client returns these; its annotations also admit awaitables.
Fields = dict[bytes, bytes]
Entries = list[tuple[bytes, Fields]]

BLOCK_MS = 1000
RETRY_SECONDS = 1.0
# The publisher's first wait after a failure, doubled up to the most.
PUBLISH_RETRY_SECONDS, PUBLISH_RETRY_MAX_SECONDS = 0.2, 2.0
# Events appended per round trip.
BATCH = 500
# A health check answers within this, whatever the socket timeout.
HEALTH_TIMEOUT_SECONDS = 0.5
# A pooled connection idle this long is pinged before it is used again.
HEALTH_CHECK_INTERVAL = 30
# Publishers whose newest number a reader remembers (each process is one),
# and the ids of the copies the listener skipped that replays skip too.
PUBLISHERS_KEPT = COPIES_KEPT = 1024


def _client(url: str, connect_timeout: float, timeout: float) -> redis.Redis:
    """Build a client whose every call gives up after the timeouts, without retrying.

    The outbox and the listener retry on their own terms; a replay or a
    health check had better answer "not now" than wait longer.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        retry=Retry(NoBackoff(), 0),
    )


class Seen:
    """The newest number read from each publishing bus, to skip the copies a retry added."""

    def __init__(self) -> None:
        self._newest: OrderedDict[bytes, int] = OrderedDict()

    def first(self, fields: Fields) -> bool:
        """Tell whether this entry is new, rather than a copy of one already read."""
        origin = fields.get(b"origin")
        if origin is None:
            return True
        number = int(fields[b"n"])
        if self._newest.get(origin, -1) >= number:
            return False
        self._newest[origin] = number
        self._newest.move_to_end(origin)
        if len(self._newest) > PUBLISHERS_KEPT:
            self._newest.popitem(last=False)
        return True


class RedisEventBus(EventBus):
    """The in-memory bus's interface, with Redis carrying the events between processes."""

    def __init__(
        self,
        url: str,
        *,
        stream: str,
        window: int,
        outbox_size: int,
        connect_timeout: float,
        timeout: float,
    ) -> None:
        """Prepare the clients; connect to nothing (redis-py connects on first use)."""
        super().__init__(window=window)
        self.stream = stream
        self.window = window
        self._timeout = connect_timeout + timeout
        self._redis = _client(url, connect_timeout, timeout)
        # XREAD blocks for BLOCK_MS on purpose: its socket may wait that much longer.
        self._reader = _client(url, connect_timeout, BLOCK_MS / 1000 + timeout)
        self._pinger = _client(
            url, min(connect_timeout, HEALTH_TIMEOUT_SECONDS), min(timeout, HEALTH_TIMEOUT_SECONDS)
        )
        self._origin = uuid.uuid4().hex.encode()
        self._outbox = Outbox(outbox_size)
        self._stopping = threading.Event()
        self._last = "0-0"
        self._seen = Seen()
        self._copies: OrderedDict[str, None] = OrderedDict()
        self._copies_lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._publisher: threading.Thread | None = None
        self._publisher_lock = threading.Lock()

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
        """Queue the event for the stream; the listener delivers it, here and everywhere."""
        self._outbox.put(event)
        if self._publisher is None:
            with self._publisher_lock:
                if self._publisher is None:
                    self._publisher = threading.Thread(
                        target=self._publish, name="zerg-redis-publisher", daemon=True
                    )
                    self._publisher.start()

    def available(self) -> bool:
        """Tell whether Redis answers a PING within the health timeout."""
        try:
            return bool(self._pinger.ping())
        except redis.RedisError:
            return False

    def since(self, event_id: str) -> list[Event] | None:
        """Return the stream's events after ``event_id``, or None if some were trimmed.

        None too while Redis does not answer: the client then reloads its
        state from the database, which holds how every run ended. Copies are
        left out: those the listener skipped (their original may come before
        ``event_id``), and those whose original the replay holds.
        """
        if not valid_id(event_id) or len(id_key(event_id)) != 2:
            return None
        try:
            oldest = cast(Entries, self._redis.xrange(self.stream, count=1))
            if oldest and id_key(oldest[0][0].decode()) > id_key(event_id):
                # Entries after event_id have been trimmed away.
                return None
            entries = cast(Entries, self._redis.xrange(self.stream, min=f"({event_id}", max="+"))
        except redis.RedisError as exc:
            log.warning("cannot replay events from Redis (%s); the client must reload", exc)
            return None
        seen = Seen()
        with self._copies_lock:
            copies = set(self._copies)
        return [
            Event.from_json(fields[b"event"], raw.decode())
            for raw, fields in entries
            if seen.first(fields) and raw.decode() not in copies
        ]

    def close(self) -> None:
        """Publish what is left if Redis takes it now, then stop the threads and the pools."""
        self._stopping.set()
        self._outbox.wake()
        if self._publisher is not None:
            self._publisher.join(timeout=self._timeout + 1)
        if self._listener is not None:
            self._listener.join(timeout=BLOCK_MS / 1000 + self._timeout + 1)
        for client in (self._redis, self._reader, self._pinger):
            client.close()

    def _publish(self) -> None:
        """Append the outbox to the stream in order, retrying each batch until Redis takes it.

        Once the bus is closing, a failed batch is the last attempt: what is
        left is logged as lost.
        """
        delay, failing = PUBLISH_RETRY_SECONDS, False
        while True:
            batch = self._outbox.peek(BATCH, timeout=RETRY_SECONDS)
            if not batch:
                if self._stopping.is_set():
                    return
                continue
            try:
                self._append(batch)
            except redis.RedisError as exc:
                if self._stopping.is_set():
                    log.error("stopping: %d events Redis did not take are lost", len(self._outbox))
                    return
                if not failing:
                    log.warning(
                        "publishing events to Redis failed (%s); retrying until it answers", exc
                    )
                    failing = True
                self._stopping.wait(delay)
                delay = min(delay * 2, PUBLISH_RETRY_MAX_SECONDS)
                continue
            self._outbox.release(batch)
            if failing:
                log.info("publishing events to Redis works again")
                delay, failing = PUBLISH_RETRY_SECONDS, False
            if dropped := self._outbox.take_dropped():
                log.warning("%d events were dropped while Redis was behind", dropped)

    def _append(self, batch: list[tuple[int, Event]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for number, event in batch:
            fields: dict[FieldT, EncodableT] = {
                "event": event.to_json(),
                "origin": self._origin,
                "n": number,
            }
            pipe.xadd(self.stream, fields, maxlen=self.window, approximate=True)
        pipe.execute()

    def _listen(self) -> None:
        failing = False
        while not self._stopping.is_set():
            try:
                batches = cast(
                    "list[tuple[Any, Entries]] | None",
                    self._reader.xread({self.stream: self._last}, block=BLOCK_MS, count=500),
                )
            except redis.RedisError as exc:
                if not failing:
                    log.warning("reading events from Redis failed (%s); retrying", exc)
                    failing = True
                self._stopping.wait(RETRY_SECONDS)
                continue
            if failing:
                log.info("reading events from Redis works again")
                failing = False
            for _stream, entries in batches or ():
                for raw_id, fields in entries:
                    self._last = raw_id.decode()
                    try:
                        if not self._seen.first(fields):
                            self._skip_copy(self._last)
                            continue
                        event = Event.from_json(fields[b"event"], self._last)
                    except (KeyError, ValueError):
                        log.exception("skipping a malformed event %s", self._last)
                        continue
                    self.dispatch(event)

    def _skip_copy(self, entry_id: str) -> None:
        """Remember a copy the listener skipped, for replays to skip too."""
        with self._copies_lock:
            self._copies[entry_id] = None
            if len(self._copies) > COPIES_KEPT:
                self._copies.popitem(last=False)
