"""A Redis outage never fails a run nor stalls a writer, and watchers still learn how runs end.

Each test starts a redis-server of its own (``CLIENT PAUSE`` and stopping it
would disturb every other test sharing the machine's Redis), serves an app
with ``EVENT_BACKEND=redis`` over real HTTP, and watches it through the real
websocket client. Without redis-server installed they are skipped, saying why.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from tests.conftest import AppFactory
from tests.conftest import serve
from tests.helpers import http_agent_and_thread
from tests.helpers import wait_for
from tests.test_gunicorn import free_port
from tests.wsclient import WSClient
from zerg import serving
from zerg.realtime.events import Event
from zerg.realtime.events import EventType
from zerg.realtime.events import stream_event
from zerg.realtime.outbox import Outbox
from zerg.realtime.redis_bus import RedisEventBus

# Far longer than the writes made during a pause take. Redis 7.0 holds even
# CLIENT UNPAUSE during a pause of ALL clients, so a pause runs its course.
PAUSE_MS = 6000
REQUEST_TIMEOUT = 10


class OwnRedis:
    """A redis-server on a free port that a test may pause, stop and start again."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, f"redis-server on port {self.port} to answer")

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def command(self, *args: Any) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            client.execute_command(*args)
        finally:
            client.close()

    def pause(self) -> None:
        """Hold every client's commands for PAUSE_MS, as a Redis that hangs would."""
        self.command("CLIENT", "PAUSE", PAUSE_MS, "ALL")

    def wait_resumed(self) -> None:
        wait_for(self.answers, "the pause to end", timeout=PAUSE_MS / 1000 + 10)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed: the Redis outage tests need one of their own")
    server = OwnRedis(binary)
    server.start()
    yield server
    server.stop()


def bus_config(server: OwnRedis, **overrides: Any) -> dict[str, Any]:
    config = {
        "EVENT_BACKEND": "redis",
        "REDIS_URL": server.url,
        "REDIS_CONNECT_TIMEOUT_SECONDS": 0.5,
        "REDIS_SOCKET_TIMEOUT_SECONDS": 0.5,
        "OFFLINE_DELAY_SECONDS": 0.005,
    }
    return config | overrides


def post(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = requests.post(url, json=body, timeout=REQUEST_TIMEOUT)
    assert response.status_code in (201, 202), response.text
    answer: dict[str, Any] = response.json()
    return answer


def health(base: str) -> dict[str, Any]:
    response = requests.get(f"{base}/api/health", timeout=REQUEST_TIMEOUT)
    # The bus is not the process: only the database fails the health check.
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def run_status(base: str, run_id: int) -> str:
    run = requests.get(f"{base}/api/runs/{run_id}", timeout=REQUEST_TIMEOUT).json()
    status: str = run["status"]
    return status


def wait_ended(base: str, run_id: int) -> str:
    wait_for(lambda: run_status(base, run_id) not in ("queued", "running"), f"run {run_id} to end")
    return run_status(base, run_id)


def last_message(base: str, thread_id: int) -> dict[str, Any]:
    thread_messages = requests.get(
        f"{base}/api/threads/{thread_id}/messages", timeout=REQUEST_TIMEOUT
    ).json()
    message: dict[str, Any] = thread_messages[-1]
    return message


def stream_of(ws: WSClient, run_id: int) -> list[dict[str, Any]]:
    """Read frames until the run's stream_end; return the run's stream frames in order."""
    frames: list[dict[str, Any]] = []
    while True:
        frame = ws.recv(timeout=15)
        if frame.get("run_id") == run_id:
            frames.append(frame)
            if frame["type"] == "stream_end":
                return frames


def test_writers_go_on_while_redis_hangs(own_redis: OwnRedis, make_app: AppFactory) -> None:
    """Concurrent POSTs are answered while Redis holds every command; their events follow."""
    app = make_app(**bus_config(own_redis))
    serving.start(app)
    with serve(app) as server:
        _, thread = http_agent_and_thread(server.url)
        url = f"{server.url}/api/threads/{thread['id']}/messages"
        with WSClient(f"{server.ws_url}/api/ws?initial_topics=thread:{thread['id']}") as ws:
            ws.recv_type("thread_history")
            own_redis.pause()
            posted: dict[int, list[int]] = {}
            failures: list[BaseException] = []

            def writer(index: int) -> None:
                try:
                    posted[index] = [
                        post(url, {"content": f"w{index} m{n}"})["id"] for n in range(3)
                    ]
                except BaseException as exc:
                    failures.append(exc)

            try:
                writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
                for thread_ in writers:
                    thread_.start()
                for thread_ in writers:
                    thread_.join()
                # Redis still holds every command now that the writes are all
                # answered: none of them waited for it.
                assert not own_redis.answers()
                during = health(server.url)
            finally:
                own_redis.wait_resumed()

            assert failures == []
            assert during["events"] == "unavailable"
            assert during["database"] == "ok"
            # Once Redis answers again, every write reaches the watcher, once,
            # and each writer's in the order it made them.
            # (The thread's creation, published before the watcher subscribed,
            # may come first: this process's listener may not have read it yet.)
            seen = [
                ws.recv_until(lambda frame: frame["type"] == "thread_message")["message"]["id"]
                for _ in range(12)
            ]
            ws.expect_silence()
        assert sorted(seen) == sorted(i for ids in posted.values() for i in ids)
        for ids in posted.values():
            assert [i for i in seen if i in ids] == ids
        wait_for(lambda: health(server.url)["events"] == "ok", "health to see Redis again")


def test_a_run_outlives_a_redis_outage_and_watchers_learn_how_it_ended(
    own_redis: OwnRedis, make_app: AppFactory
) -> None:
    """Redis stops mid-stream; that run and one started during the outage end success."""
    app = make_app(**bus_config(own_redis, OFFLINE_DELAY_SECONDS=0.05))
    serving.start(app)
    with serve(app) as server:
        agent, thread = http_agent_and_thread(server.url)
        base = f"{server.url}/api/threads/{thread['id']}"
        topics = f"agent:{agent['id']},thread:{thread['id']}"
        with WSClient(f"{server.ws_url}/api/ws?initial_topics={topics}") as ws:
            ws.recv_type("agent_state")
            ws.recv_type("thread_history")
            post(f"{base}/messages", {"content": "first"})
            first = post(f"{base}/run")["id"]
            started = ws.recv_until(lambda f: f["type"] == "stream_chunk" and f["run_id"] == first)

            own_redis.stop()

            assert wait_ended(server.url, first) == "success"
            first_reply = last_message(server.url, thread["id"])
            assert first_reply["role"] == "assistant" and first_reply["partial"] is False
            assert first_reply["content"].endswith("You said: first")
            assert health(server.url) == {
                "status": "degraded",
                "database": "ok",
                "events": "unavailable",
                "instance": health(server.url)["instance"],
            }
            # A run started while Redis is down runs all the same.
            post(f"{base}/messages", {"content": "second"})
            second = post(f"{base}/run")["id"]
            assert wait_ended(server.url, second) == "success"
            second_reply = last_message(server.url, thread["id"])
            assert second_reply["content"].endswith("You said: second")
            # A client resuming meanwhile is told to reload rather than left hanging.
            query = f"initial_topics=thread:{thread['id']}&last_event_id={started['event_id']}"
            with WSClient(f"{server.ws_url}/api/ws?{query}") as resuming:
                resuming.recv_type("thread_history")
                assert "reload" in resuming.recv_type("error")["error"]
                resuming.ping()

            own_redis.start()

            # The watcher that stayed connected hears both ends, and the second
            # run's whole stream, once the bus is back.
            rest_of_first = stream_of(ws, first)
            assert rest_of_first[-1]["status"] == "success"
            frames = stream_of(ws, second)
            assert frames[0]["type"] == "stream_start"
            chunks = "".join(f["content"] for f in frames if f["type"] == "stream_chunk")
            assert chunks == second_reply["content"]
            assert frames[-1]["status"] == "success"
            # The listener recovered on its own: live events flow again.
            requests.put(
                f"{server.url}/api/agents/{agent['id']}",
                json={"name": "after"},
                timeout=REQUEST_TIMEOUT,
            )
            ws.recv_until(lambda f: f["type"] == "agent_updated" and f["data"]["name"] == "after")
        wait_for(lambda: health(server.url)["events"] == "ok", "health to see Redis again")


def test_a_watcher_that_reconnects_after_redis_hung_replays_the_end(
    own_redis: OwnRedis, make_app: AppFactory
) -> None:
    """A run ends while Redis hangs; a client that left meanwhile replays its end."""
    app = make_app(**bus_config(own_redis))
    serving.start(app)
    with serve(app) as server:
        _, thread = http_agent_and_thread(server.url)
        base = f"{server.url}/api/threads/{thread['id']}"
        watch = f"{server.ws_url}/api/ws?initial_topics=thread:{thread['id']}"
        with WSClient(watch) as staying, WSClient(watch) as leaving:
            staying.recv_type("thread_history")
            leaving.recv_type("thread_history")
            post(f"{base}/messages", {"content": "before"})
            last_seen = leaving.recv_type("thread_message")["event_id"]
            staying.recv_type("thread_message")
            leaving.close()

            own_redis.pause()
            try:
                run_id = post(f"{base}/run")["id"]
                assert wait_ended(server.url, run_id) == "success"
                # It ended while Redis still held every command.
                assert not own_redis.answers()
                assert health(server.url)["events"] == "unavailable"
            finally:
                own_redis.wait_resumed()
            # Once the client that stayed has the end, the stream holds it.
            live = stream_of(staying, run_id)

        with WSClient(f"{watch}&last_event_id={last_seen}") as back:
            back.recv_type("thread_history")
            replayed = stream_of(back, run_id)
        assert [f["event_id"] for f in replayed] == [f["event_id"] for f in live]
        assert replayed[-1]["status"] == "success"


def test_a_cancel_made_while_redis_is_down_reaches_the_run_once_it_is_back(
    own_redis: OwnRedis, make_app: AppFactory
) -> None:
    app = make_app(**bus_config(own_redis, OFFLINE_DELAY_SECONDS=0.5))
    serving.start(app)
    with serve(app) as server:
        _, thread = http_agent_and_thread(server.url)
        base = f"{server.url}/api/threads/{thread['id']}"
        post(f"{base}/messages", {"content": "take your time"})
        run_id = post(f"{base}/run")["id"]
        wait_for(lambda: run_status(server.url, run_id) == "running", "the run to start")
        own_redis.stop()

        response = requests.post(f"{server.url}/api/runs/{run_id}/cancel", timeout=10)
        assert response.status_code == 202, response.text
        # The cancel waits in the outbox with the run's owner, this process.
        assert run_status(server.url, run_id) == "running"
        own_redis.start()

        assert wait_ended(server.url, run_id) == "cancelled"
        reply = last_message(server.url, thread["id"])
        assert reply["role"] == "assistant" and reply["partial"] is True


def ends(frame: dict[str, Any], run_id: int) -> bool:
    """Tell whether a frame announces the run's final state."""
    data = frame.get("data") or {}
    return frame["type"] == "run_updated" and data["id"] == run_id and data["status"] == "success"


def test_a_full_outbox_drops_chunks_never_a_run_s_end(
    own_redis: OwnRedis, make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """With room for 4 events, a run streamed while Redis is down keeps its end, not its chunks."""
    app = make_app(**bus_config(own_redis, EVENT_OUTBOX_SIZE=4, STREAM_COALESCE_SECONDS=0.001))
    serving.start(app)
    with serve(app) as server:
        _, thread = http_agent_and_thread(server.url)
        base = f"{server.url}/api/threads/{thread['id']}"
        post(f"{base}/messages", {"content": "a long enough question for many chunks"})
        with WSClient(f"{server.ws_url}/api/ws?initial_topics=thread:{thread['id']}") as ws:
            ws.recv_type("thread_history")
            own_redis.stop()
            with caplog.at_level(logging.WARNING, logger="zerg.realtime"):
                run_id = post(f"{base}/run")["id"]
                assert wait_ended(server.url, run_id) == "success"
                own_redis.start()
                frames = [ws.recv(timeout=15)]
                while not ends(frames[-1], run_id):
                    frames.append(ws.recv(timeout=15))
                wait_for(lambda: "were dropped while Redis was behind" in caplog.text, "the count")
        stored = last_message(server.url, thread["id"])
    # The end and the final state come through, and so does the reply.
    [end] = [f for f in frames if f["type"] == "stream_end"]
    assert end["status"] == "success"
    assert frames[-1]["data"]["status"] == "success"
    [reply] = [f["message"] for f in frames if f["type"] == "thread_message"]
    assert reply == stored
    assert "dropping stream chunks first" in caplog.text


def ended(run_id: int, status: str = "success") -> Event:
    return Event(EventType.RUN_UPDATED, (), {"id": run_id, "status": status})


def test_the_outbox_keeps_order_and_gives_way_by_worth() -> None:
    outbox = Outbox(limit=3)
    start = stream_event(EventType.STREAM_START, 1, 1)
    chunks = [stream_event(EventType.STREAM_CHUNK, 1, 1, content=str(n)) for n in range(3)]
    end = stream_event(EventType.STREAM_END, 1, 1, status="success")
    update = Event(EventType.AGENT_UPDATED, (), {"id": 1})
    running = ended(1, "running")

    outbox.put(start)
    outbox.put(chunks[0])
    outbox.put(chunks[1])
    outbox.put(chunks[2])  # full: a chunk makes no room, it is dropped
    outbox.put(running)  # pushes out the oldest chunk
    outbox.put(update)  # and the next
    outbox.put(end)  # no chunk left: pushes out the oldest update that ends no run
    outbox.put(ended(1))  # only ends left (and the update): the update goes
    outbox.put(Event(EventType.RUN_CANCEL_REQUESTED, (), {"run_id": 2, "owner": None}))
    outbox.put(update)  # nothing left that it may push out: dropped

    kept = outbox.peek(10, timeout=0)
    assert [event for _, event in kept] == [end, ended(1), kept[2][1]]
    assert kept[2][1].type is EventType.RUN_CANCEL_REQUESTED
    assert outbox.take_dropped() == 7
    assert outbox.take_dropped() == 0
    # Delivered events leave; a batch that was not delivered is offered again.
    outbox.release(kept[:1])
    assert [event for _, event in outbox.peek(10, timeout=0)] == [ended(1), kept[2][1]]


def test_a_copy_added_by_a_retried_publish_is_delivered_once(
    redis_url: str, redis_stream: str
) -> None:
    """A publish that timed out may have landed: its retry's copy is skipped, live and on replay."""
    app_bus = RedisEventBus(
        redis_url, stream=redis_stream, window=100, outbox_size=10, connect_timeout=1, timeout=1
    )
    app_bus.start()
    seen: list[Event] = []
    app_bus.subscribe(seen.append)
    try:
        app_bus.publish(ended(1))
        wait_for(lambda: len(seen) == 1, "the event to come back through Redis")
        client = redis.Redis.from_url(redis_url)
        [(_, fields)] = client.xrange(redis_stream)
        client.xadd(redis_stream, fields)  # what a retry of the same batch writes
        client.close()
        app_bus.publish(ended(2))
        wait_for(lambda: len(seen) == 2, "the next event")
        assert [e.data["id"] for e in seen] == [1, 2]
        replayed = app_bus.since(seen[0].id or "")
        assert replayed is not None and [e.data["id"] for e in replayed] == [2]
    finally:
        app_bus.close()
