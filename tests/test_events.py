"""The event bus: per app, after commit, and immune to a failing subscriber."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AppFactory
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
        events.init_app(app)
