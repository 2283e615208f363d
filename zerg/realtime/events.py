"""Typed events and the app's publish/subscribe bus: its interface, kept in memory.

Domain functions :func:`announce` an event on the session that made the
change, and it is published once that session commits, so a rolled-back
change never announces itself. Only the streamed pieces of a reply, which
change nothing in the database, are published directly. Subscribers register
on the app's bus, never on a module global, so every app in a test run has its
own. Publishing never raises and never waits for I/O: a commit or a run's
stream does not depend on the bus being up (see ``zerg.realtime.outbox``).
Which bus an app gets, this one or Redis's, ``zerg.realtime.backend`` decides.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace
from enum import StrEnum
from functools import partial
from typing import Any

from flask import Flask
from flask import current_app
from sqlalchemy.orm import Session

from zerg.db import after_commit
from zerg.db import app_of

EXTENSION_KEY = "zerg.events"

log = logging.getLogger(__name__)


class EventType(StrEnum):
    AGENT_CREATED = "agent_created"
    AGENT_UPDATED = "agent_updated"
    AGENT_DELETED = "agent_deleted"
    THREAD_CREATED = "thread_created"
    THREAD_UPDATED = "thread_updated"
    THREAD_DELETED = "thread_deleted"
    THREAD_MESSAGE_CREATED = "thread_message_created"
    RUN_UPDATED = "run_updated"
    RUN_CANCEL_REQUESTED = "run_cancel_requested"
    STREAM_START = "stream_start"
    STREAM_CHUNK = "stream_chunk"
    STREAM_END = "stream_end"
    TOOL_CALL_STARTED = "tool_call_started"
    TOOL_CALL_ARGUMENTS_DELTA = "tool_call_arguments_delta"
    TOOL_CALL_APPROVAL_REQUIRED = "tool_call_approval_required"
    TOOL_CALL_COMPLETED = "tool_call_completed"
    TOOL_CALL_FAILED = "tool_call_failed"


STREAM_EVENTS = frozenset({EventType.STREAM_START, EventType.STREAM_CHUNK, EventType.STREAM_END})
# A run's tool calls, streamed on its thread's topic as flat frames like its pieces.
TOOL_CALL_EVENTS = frozenset(
    {
        EventType.TOOL_CALL_STARTED,
        EventType.TOOL_CALL_ARGUMENTS_DELTA,
        EventType.TOOL_CALL_APPROVAL_REQUIRED,
        EventType.TOOL_CALL_COMPLETED,
        EventType.TOOL_CALL_FAILED,
    }
)
# A run in one of these has not ended; every other status is final.
ACTIVE_RUN_STATUSES = frozenset({"queued", "running", "awaiting_approval"})


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, the topics that care, and its JSON-safe payload."""

    type: EventType
    topics: tuple[str, ...]
    data: dict[str, Any]
    # Set by the bus on publishing; clients quote it to resume after a reconnect.
    id: str | None = None

    def frame(self) -> dict[str, Any]:
        """Return the websocket frame that announces this event."""
        if self.type is EventType.THREAD_MESSAGE_CREATED:
            thread_id = self.data["thread_id"]
            frame = {"type": "thread_message", "thread_id": thread_id, "message": self.data}
        elif self.type in STREAM_EVENTS or self.type in TOOL_CALL_EVENTS:
            frame = {"type": self.type.value, **self.data}
        else:
            frame = {"type": self.type.value, "data": self.data}
        frame["event_id"] = self.id
        return frame

    @property
    def ends_run(self) -> bool:
        """Tell whether watchers or a run's owner would wait forever without this event.

        A stream's end, a run's final state, and a request to stop a run: a
        bus may drop other events under pressure, never these.
        """
        if self.type is EventType.RUN_UPDATED:
            return self.data.get("status") not in ACTIVE_RUN_STATUSES
        return self.type in (EventType.STREAM_END, EventType.RUN_CANCEL_REQUESTED)

    def to_json(self) -> str:
        """Serialise for a bus that crosses processes."""
        return json.dumps({"type": self.type.value, "topics": self.topics, "data": self.data})

    @classmethod
    def from_json(cls, text: str | bytes, event_id: str) -> Event:
        raw = json.loads(text)
        return cls(EventType(raw["type"]), tuple(raw["topics"]), raw["data"], event_id)


def agent_event(kind: EventType, agent: dict[str, Any]) -> Event:
    """Announce an agent change to its watchers, and creations and deletions to ``agents``."""
    topics: tuple[str, ...] = (f"agent:{agent['id']}",)
    if kind in (EventType.AGENT_CREATED, EventType.AGENT_DELETED):
        topics += ("agents",)
    return Event(kind, topics, agent)


def thread_event(kind: EventType, thread: dict[str, Any]) -> Event:
    """Announce a thread change to its watchers and to its agent's."""
    return Event(kind, (f"thread:{thread['id']}", f"agent:{thread['agent_id']}"), thread)


def thread_message_created(message: dict[str, Any]) -> Event:
    """Announce a new message, whoever wrote it, to the thread's watchers."""
    return Event(EventType.THREAD_MESSAGE_CREATED, (f"thread:{message['thread_id']}",), message)


def run_updated(run: dict[str, Any]) -> Event:
    """Announce a run's new state to its agent's and its thread's watchers."""
    topics: tuple[str, ...] = (f"agent:{run['agent_id']}",)
    if run["thread_id"] is not None:
        topics += (f"thread:{run['thread_id']}",)
    return Event(EventType.RUN_UPDATED, topics, run)


def run_cancel_requested(run_id: int, owner: str | None) -> Event:
    """Ask the process executing a run (its ``owner``) to stop it; no client watches this."""
    return Event(EventType.RUN_CANCEL_REQUESTED, (), {"run_id": run_id, "owner": owner})


def stream_event(kind: EventType, thread_id: int, run_id: int, **fields: Any) -> Event:
    """Announce a piece of a reply (its start, a chunk, a tool call, its end) to the thread."""
    data = {"thread_id": thread_id, "run_id": run_id, **fields}
    return Event(kind, (f"thread:{thread_id}",), data)


Subscriber = Callable[[Event], None]


def id_key(event_id: str) -> tuple[int, ...]:
    """Order event ids: ``"12"`` (in-memory) and ``"1700000000000-3"`` (Redis) alike."""
    return tuple(int(part) for part in event_id.split("-"))


def valid_id(event_id: str) -> bool:
    parts = event_id.split("-")
    return 1 <= len(parts) <= 2 and all(part.isdigit() for part in parts)


class EventBus:
    """In-process publish/subscribe: every subscriber sees every event, in id order.

    Each event gets an increasing id and the newest ``window`` events are kept,
    so a websocket client that reconnects can ask for what it missed. A
    subscriber that raises is logged and skipped; it never breaks the
    publisher or the subscribers after it. Delivery is synchronous, since it
    does no I/O: subscribers are called with the publishing lock held, and
    for announced events inside the publisher's commit (on SQLite, inside its
    write turn), so they must not publish, must not wait, and must hand
    anything that writes to the database to a thread of its own.
    """

    def __init__(self, window: int = 1000) -> None:
        self._lock = threading.Lock()
        # Held from numbering an event to the end of its delivery, so that two
        # publishers cannot hand their events to subscribers out of id order.
        self._publishing = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()
        self._recent: deque[Event] = deque(maxlen=window)
        # Ids are "<start ms>-<n>", so an id from before a restart is never
        # mistaken for one of this process's.
        self._epoch = time.time_ns() // 1_000_000
        self._next = 1

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; call the returned function to remove it."""
        with self._lock:
            self._subscribers += (subscriber,)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Number the event, remember it, and hand it to every subscriber."""
        with self._publishing:
            with self._lock:
                event = replace(event, id=f"{self._epoch}-{self._next}")
                self._next += 1
                self._recent.append(event)
            self.dispatch(event)

    def available(self) -> bool:
        """Tell whether events reach their subscribers now (in memory: always)."""
        return True

    def dispatch(self, event: Event) -> None:
        """Hand an already numbered event to the local subscribers."""
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", subscriber, event.type)

    def since(self, event_id: str) -> list[Event] | None:
        """Return the events after ``event_id``, or None if they are no longer all kept."""
        if not valid_id(event_id):
            return None
        key = id_key(event_id)
        with self._lock:
            recent = list(self._recent)
            issued = self._next - 1
        if len(key) != 2 or key[0] != self._epoch or key[1] > issued:
            return None
        oldest = id_key(recent[0].id or "")[1] if recent else issued + 1
        if key[1] < oldest - 1:
            return None
        return [event for event in recent if id_key(event.id or "")[1] > key[1]]

    def start(self) -> None:
        """Begin receiving events published by other processes (none, in memory)."""

    def close(self) -> None:
        """Release what the bus holds (nothing, in memory)."""


def get_bus(app: Flask | None = None) -> EventBus:
    """Return the current (or given) app's event bus."""
    target = app if app is not None else current_app
    bus: EventBus = target.extensions[EXTENSION_KEY]
    return bus


def publish(event: Event, app: Flask | None = None) -> None:
    """Publish on the current (or given) app's bus now: for what no commit stands behind."""
    get_bus(app).publish(event)


def announce(session: Session, event: Event) -> None:
    """Publish ``event`` on the session's app's bus once the session commits."""
    after_commit(session, partial(get_bus(app_of(session)).publish, event))
