"""Event ids, reconnecting without loss, and the Redis bus that crosses processes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
import requests
from flask import Flask

from tests.conftest import REDIS_URL
from tests.conftest import AppFactory
from tests.conftest import serve
from tests.helpers import http_agent_and_thread
from tests.helpers import wait_for
from tests.test_gunicorn import free_port
from tests.wsclient import WSClient
from zerg import serving
from zerg.errors import StartupError
from zerg.realtime import events
from zerg.realtime.events import Event
from zerg.realtime.events import EventBus
from zerg.realtime.events import EventType


def event(n: int) -> Event:
    return Event(EventType.RUN_UPDATED, ("agent:1",), {"n": n})


def test_memory_bus_numbers_events_and_replays_what_was_missed() -> None:
    bus = EventBus(window=5)
    seen: list[Event] = []
    bus.subscribe(seen.append)
    for n in range(3):
        bus.publish(event(n))
    first, second, third = (e.id or "" for e in seen)
    assert events.id_key(first) < events.id_key(second) < events.id_key(third)

    replayed = bus.since(first)
    assert replayed is not None
    assert [e.data["n"] for e in replayed] == [1, 2]
    assert bus.since(third) == []


def test_memory_bus_says_when_the_window_no_longer_covers_an_id() -> None:
    bus = EventBus(window=3)
    seen: list[Event] = []
    bus.subscribe(seen.append)
    for n in range(6):
        bus.publish(event(n))
    assert bus.since(seen[0].id or "") is None
    kept = bus.since(seen[2].id or "")
    assert kept is not None and [e.data["n"] for e in kept] == [3, 4, 5]
    # Ids from another process's lifetime, from the future, or malformed.
    assert bus.since("1-1") is None
    assert bus.since(f"{seen[-1].id}0") is None
    assert bus.since("yesterday") is None


def post_messages(base: str, thread_id: int, count: int, start: int = 0) -> list[int]:
    ids = []
    for index in range(start, start + count):
        response = requests.post(
            f"{base}/api/threads/{thread_id}/messages",
            json={"content": f"m{index}"},
            timeout=10,
        )
        ids.append(response.json()["id"])
    return ids


def thread_messages(ws: WSClient, count: int) -> list[dict[str, Any]]:
    return [ws.recv_type("thread_message") for _ in range(count)]


def test_a_reconnecting_client_gets_what_it_missed_once_and_in_order(app: Flask) -> None:
    with serve(app) as server:
        _, thread = http_agent_and_thread(server.url)
        topic = f"thread:{thread['id']}"
        with WSClient(f"{server.ws_url}/api/ws?initial_topics={topic}") as ws:
            ws.recv_type("thread_history")
            post_messages(server.url, thread["id"], 2)
            last_seen = thread_messages(ws, 2)[-1]["event_id"]

        missed = post_messages(server.url, thread["id"], 3, start=2)
        query = f"?initial_topics={topic}&last_event_id={last_seen}"
        with WSClient(f"{server.ws_url}/api/ws{query}") as ws:
            ws.recv_type("thread_history")
            live = post_messages(server.url, thread["id"], 2, start=5)
            frames = thread_messages(ws, 5)
            ws.expect_silence()

    assert [f["message"]["id"] for f in frames] == missed + live
    ids = [events.id_key(f["event_id"]) for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_a_reconnect_past_the_window_is_told_to_reload(make_app: AppFactory) -> None:
    app = make_app(EVENT_REPLAY_WINDOW=2)
    with serve(app) as server:
        _, thread = http_agent_and_thread(server.url)
        topic = f"thread:{thread['id']}"
        with WSClient(f"{server.ws_url}/api/ws?initial_topics={topic}") as ws:
            ws.recv_type("thread_history")
            post_messages(server.url, thread["id"], 1)
            last_seen = thread_messages(ws, 1)[-1]["event_id"]
        post_messages(server.url, thread["id"], 5, start=1)

        query = f"?initial_topics={topic}&last_event_id={last_seen}"
        with WSClient(f"{server.ws_url}/api/ws{query}") as ws:
            ws.recv_type("thread_history")
            error = ws.recv_type("error")
            assert "reload" in error["error"]
            assert error["details"] == {"last_event_id": last_seen}
            # Still usable, and live events flow.
            post_messages(server.url, thread["id"], 1, start=6)
            assert ws.recv_type("thread_message")["message"]["content"] == "m6"


@pytest.mark.parametrize("last_seen", ["abc", "12-x", "1-2-3", "-1"])
def test_a_malformed_last_event_id_is_named_as_such(make_app: AppFactory, last_seen: str) -> None:
    with serve(make_app()) as server:
        _, thread = http_agent_and_thread(server.url)
        topic = f"thread:{thread['id']}"
        query = f"?initial_topics={topic}&last_event_id={last_seen}"
        with WSClient(f"{server.ws_url}/api/ws{query}") as ws:
            ws.recv_type("thread_history")
            error = ws.recv_type("error")
            assert error["error"].startswith("last_event_id is not an event_id this server sent")
            assert error["error"].endswith("reload the state")
            assert error["details"] == {"last_event_id": last_seen}
            post_messages(server.url, thread["id"], 1)
            assert ws.recv_type("thread_message")["message"]["content"] == "m0"


def test_two_workers_share_events_through_redis(make_app: AppFactory, redis_stream: str) -> None:
    config = {
        "EVENT_BACKEND": "redis",
        "REDIS_URL": REDIS_URL,
        "EVENT_STREAM": redis_stream,
        "OFFLINE_DELAY_SECONDS": 0.005,
    }
    worker_a, worker_b = make_app(**config), make_app(**config)
    serving.start(worker_a)
    serving.start(worker_b)
    with serve(worker_a) as a, serve(worker_b) as b:
        agent, thread = http_agent_and_thread(b.url, "shared")
        topics = f"agent:{agent['id']},thread:{thread['id']}"
        with WSClient(f"{a.ws_url}/api/ws?initial_topics={topics}") as ws:
            # The thread's creation may still be on its way to Redis (worker
            # B's publisher thread sends it after the answer) and land first.
            ws.recv_until(lambda f: f["type"] == "agent_state")
            ws.recv_until(lambda f: f["type"] == "thread_history")

            # A write served by worker B reaches a client of worker A.
            requests.put(f"{b.url}/api/agents/{agent['id']}", json={"name": "renamed"}, timeout=10)
            ws.recv_until(lambda f: f["type"] == "agent_updated" and f["data"]["name"] == "renamed")

            # So does a run executing in worker B, chunk by chunk.
            post_messages(b.url, thread["id"], 1)
            ws.recv_until(lambda f: f["type"] == "thread_message")
            requests.post(f"{b.url}/api/threads/{thread['id']}/run", timeout=10)
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1]["type"] != "stream_end":
                frames.append(ws.recv(timeout=10))
        chunks = [f["content"] for f in frames if f["type"] == "stream_chunk"]
        reply = next(f for f in frames if f["type"] == "thread_message")["message"]
        assert len(chunks) >= 2
        assert "".join(chunks) == reply["content"]
        assert frames[-1]["status"] == "success"

        # Either worker can replay from the shared stream, which also holds
        # what followed stream_end (the run's final state, on its way to Redis
        # while the client read stream_end).
        first_id = next(f["event_id"] for f in frames)

        def replay(worker: Flask) -> list[Event]:
            return events.get_bus(worker).since(first_id) or []

        def finished(replayed: list[Event]) -> bool:
            return any(
                e.type is EventType.RUN_UPDATED and e.data["status"] == "success" for e in replayed
            )

        def both_have_it_all() -> bool:
            replay_a, replay_b = replay(worker_a), replay(worker_b)
            return finished(replay_a) and [e.id for e in replay_a] == [e.id for e in replay_b]

        wait_for(both_have_it_all, "both workers to replay the same events, the end included")
        replayed = [e.id for e in replay(worker_a)]
        assert replayed[: len(frames) - 1] == [f["event_id"] for f in frames[1:]]


def test_the_redis_bus_reports_a_trimmed_history(redis_stream: str) -> None:
    from zerg.realtime.redis_bus import RedisEventBus

    bus = RedisEventBus(
        REDIS_URL, stream=redis_stream, window=3, outbox_size=10, connect_timeout=1, timeout=1
    )
    bus.start()
    try:
        client = redis.Redis.from_url(REDIS_URL)
        ids = [
            client.xadd(
                redis_stream, {"event": event(n).to_json()}, maxlen=3, approximate=False
            ).decode()
            for n in range(6)
        ]
        client.close()
        assert bus.since(ids[0]) is None
        kept = bus.since(ids[3])
        assert kept is not None and [e.data["n"] for e in kept] == [4, 5]
        assert bus.since("nonsense") is None
    finally:
        bus.close()


def test_building_an_app_needs_no_redis_and_starts_no_thread(
    make_app: AppFactory, redis_stream: str
) -> None:
    """create_app only builds: `flask db init` works while Redis is down."""
    before = set(threading.enumerate())
    down = make_app(EVENT_BACKEND="redis", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = down.test_cli_runner().invoke(args=["db", "init"])
    assert result.exit_code == 0, result.output
    assert set(threading.enumerate()) == before
    # Serving needs Redis, and says so in one line.
    with pytest.raises(StartupError, match="EVENT_BACKEND=redis, but Redis at REDIS_URL fails"):
        serving.start(down)

    up = make_app(EVENT_BACKEND="redis", REDIS_URL=REDIS_URL, EVENT_STREAM=redis_stream)
    assert set(threading.enumerate()) == before
    serving.start(up)
    assert "zerg-redis-events" in {thread.name for thread in threading.enumerate()}
    serving.stop(up)
    assert "zerg-redis-events" not in {thread.name for thread in threading.enumerate()}
