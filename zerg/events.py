"""Typed events and the app's publish/subscribe bus.

Publishers (HTTP views, the websocket handler, later the runner and the
scheduler) publish *after* their transaction commits, so a rolled-back change
never announces itself. Subscribers register on the app's bus, never on a module
global, so every app in a test run has its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flask import Flask
from flask import current_app

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
    STREAM_START = "stream_start"
    STREAM_CHUNK = "stream_chunk"
    STREAM_END = "stream_end"


STREAM_EVENTS = frozenset({EventType.STREAM_START, EventType.STREAM_CHUNK, EventType.STREAM_END})


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, the topics that care, and its JSON-safe payload."""

    type: EventType
    topics: tuple[str, ...]
    data: dict[str, Any]

    def frame(self) -> dict[str, Any]:
        """Return the websocket frame that announces this event."""
        if self.type is EventType.THREAD_MESSAGE_CREATED:
            thread_id = self.data["thread_id"]
            return {"type": "thread_message", "thread_id": thread_id, "message": self.data}
        if self.type in STREAM_EVENTS:
            return {"type": self.type.value, **self.data}
        return {"type": self.type.value, "data": self.data}


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


def stream_event(kind: EventType, thread_id: int, run_id: int, **fields: Any) -> Event:
    """Announce the start, a chunk or the end of a streamed reply to the thread's watchers."""
    data = {"thread_id": thread_id, "run_id": run_id, **fields}
    return Event(kind, (f"thread:{thread_id}",), data)


Subscriber = Callable[[Event], None]


class EventBus:
    """In-process publish/subscribe: every subscriber sees every event, in order.

    A subscriber that raises is logged and skipped; it never breaks the
    publisher or the subscribers after it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; call the returned function to remove it."""
        with self._lock:
            self._subscribers += (subscriber,)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Hand the event to every subscriber."""
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", subscriber, event.type)


def get_bus(app: Flask | None = None) -> EventBus:
    """Return the current (or given) app's event bus."""
    target = app if app is not None else current_app
    bus: EventBus = target.extensions[EXTENSION_KEY]
    return bus


def publish(event: Event, app: Flask | None = None) -> None:
    """Publish on the current (or given) app's bus; call it after committing."""
    get_bus(app).publish(event)


def init_app(app: Flask) -> None:
    """Give the app its bus."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("zerg.events is already registered on this app")
    app.extensions[EXTENSION_KEY] = EventBus()
