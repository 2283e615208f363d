"""The event bus: per app, after commit, and immune to a failing subscriber."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AppFactory
from zerg import db
from zerg.realtime import backend
from zerg.realtime import events
from zerg.realtime.events import Event
from zerg.realtime.events import EventType


def record(app: Flask) -> list[Event]:
    seen: list[Event] = []
    events.get_bus(app).subscribe(seen.append)
    return seen


def test_views_publish_after_commit_and_refusals_publish_nothing(
    app: Flask, client: FlaskClient
) -> None:
    seen = record(app)
    agent = client.post("/api/agents", json={"name": "a"}).get_json()
    client.put(f"/api/agents/{agent['id']}", json={"name": ""})
    client.put(f"/api/agents/{agent['id']}", json={"model": "unknown"})
    client.post("/api/threads", json={"agent_id": 999})
    client.put(f"/api/agents/{agent['id']}", json={"name": "b"})

    assert [e.type for e in seen] == [EventType.AGENT_CREATED, EventType.AGENT_UPDATED]
    assert seen[0].topics == (f"agent:{agent['id']}", "agents")
    assert seen[1].data["name"] == "b"


def test_each_app_has_its_own_bus(make_app: AppFactory) -> None:
    first, second = make_app(), make_app()
    seen = record(first)
    second.test_client().post("/api/agents", json={"name": "elsewhere"})
    assert seen == []
    assert events.get_bus(first) is not events.get_bus(second)


def test_a_failing_subscriber_breaks_neither_publisher_nor_others(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    events.get_bus(app).subscribe(explode)
    seen = record(app)
    with caplog.at_level(logging.ERROR, logger="zerg.realtime.events"):
        response = client.post("/api/agents", json={"name": "survives"})
    assert response.status_code == 201
    assert [e.type for e in seen] == [EventType.AGENT_CREATED]
    assert any("subscriber" in r.getMessage() and r.exc_info for r in caplog.records)


def test_unsubscribe_stops_delivery(app: Flask) -> None:
    seen: list[Event] = []
    unsubscribe = events.get_bus(app).subscribe(seen.append)
    event = Event(EventType.RUN_UPDATED, ("agent:1",), {"id": 1})
    events.publish(event, app)
    unsubscribe()
    events.publish(event, app)
    assert [(e.type, e.data) for e in seen] == [(event.type, event.data)]
    assert seen[0].id is not None


def test_frames_follow_the_protocol() -> None:
    message = {"id": 3, "thread_id": 7, "content": "hi"}
    assert events.thread_message_created(message).frame() == {
        "type": "thread_message",
        "thread_id": 7,
        "message": message,
        "event_id": None,
    }
    chunk = events.stream_event(EventType.STREAM_CHUNK, 7, 9, content="he")
    assert chunk.frame() == {
        "type": "stream_chunk",
        "thread_id": 7,
        "run_id": 9,
        "content": "he",
        "event_id": None,
    }
    assert chunk.topics == ("thread:7",)
    update = events.agent_event(EventType.AGENT_UPDATED, {"id": 1, "name": "x"})
    assert update.frame() == {
        "type": "agent_updated",
        "data": {"id": 1, "name": "x"},
        "event_id": None,
    }
    assert update.topics == ("agent:1",)


def test_init_app_refuses_a_second_bus(app: Flask) -> None:
    with pytest.raises(RuntimeError, match="already registered"):
        backend.init_app(app)


def test_concurrent_publishers_deliver_in_id_order() -> None:
    """Numbering and delivery happen under one lock: no publisher overtakes another."""
    bus = events.EventBus(window=10_000)
    delivered: list[str] = []

    def slow_subscriber(event: Event) -> None:
        # Widen the gap between numbering and delivery, where an overtake would happen.
        time.sleep(0.0005)
        delivered.append(event.id or "")

    bus.subscribe(slow_subscriber)

    def publish_many() -> None:
        for index in range(40):
            bus.publish(events.stream_event(EventType.STREAM_CHUNK, 1, 1, content=str(index)))

    workers = [threading.Thread(target=publish_many) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(delivered) == 240
    assert delivered == sorted(delivered, key=events.id_key)


def test_announced_events_wait_for_the_commit_and_die_with_a_rollback(app: Flask) -> None:
    seen = record(app)
    with db.session_scope(app) as session:
        events.announce(session, events.stream_event(EventType.STREAM_END, 1, 1))
        events.announce(session, events.stream_event(EventType.STREAM_END, 2, 2))
        assert seen == []
    assert [event.data["run_id"] for event in seen] == [1, 2]

    seen.clear()
    with pytest.raises(RuntimeError), db.session_scope(app) as session:
        events.announce(session, events.stream_event(EventType.STREAM_END, 3, 3))
        raise RuntimeError("the unit of work failed")
    session = db.get_session_factory(app)()
    events.announce(session, events.stream_event(EventType.STREAM_END, 4, 4))
    session.close()
    assert seen == []


def test_a_released_savepoint_does_not_publish_before_the_commit(app: Flask) -> None:
    seen = record(app)
    with db.session_scope(app) as session:
        with session.begin_nested():
            events.announce(session, events.stream_event(EventType.STREAM_END, 5, 5))
        assert seen == []
    assert [event.data["run_id"] for event in seen] == [5]
