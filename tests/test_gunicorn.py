"""zerg under gunicorn with two worker processes, Redis events and one database.

These start the real server from ``gunicorn.conf.py`` as a subprocess, with
its default (gevent) workers, on the
test database (PostgreSQL when TEST_DATABASE_URL is set, else an SQLite
file), and need Redis for events between the workers; without Redis they
skip, saying so.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.engine import make_url
from websockets.exceptions import InvalidStatus
from wsproto import ConnectionType
from wsproto import WSConnection
from wsproto.events import Request
from wsproto.events import TextMessage

from tests.conftest import AppFactory
from tests.helpers import create_agent
from tests.helpers import free_port
from tests.helpers import wait_for
from tests.wsclient import WSClient
from zerg import db
from zerg.models import Agent
from zerg.models import Run

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/ws"

    def workers(self) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        return [int(pid) for pid in found]

    def session_on(self, instance: str | None = None, avoid: str | None = None) -> requests.Session:
        """A keep-alive HTTP session held by a worker (a given one, or any but one)."""
        for _ in range(200):
            http = requests.Session()
            served_by = http.get(f"{self.url}/api/health", timeout=5).json()["instance"]
            if (instance is None or served_by == instance) and served_by != avoid:
                return http
            http.close()
        raise AssertionError("could not reach the wanted worker")


@pytest.fixture
def start_gunicorn(
    make_app: AppFactory, database_url: str, redis_url: str, tmp_path: Path
) -> Iterator[Callable[..., Gunicorn]]:
    """Start gunicorn on the test database; the fixture's app has made the tables."""
    make_app()
    started: list[Gunicorn] = []
    stream = f"zerg:test:{uuid.uuid4().hex}"

    def start(**settings: str) -> Gunicorn:
        port = free_port()
        log = tmp_path / f"gunicorn-{port}.log"
        env = {
            **{key: value for key, value in os.environ.items() if key != "API_TOKEN"},
            "ENVIRONMENT": "testing",
            "DATABASE_URL": database_url,
            "AUTO_CREATE_TABLES": "false",
            "EVENT_BACKEND": "redis",
            "REDIS_URL": redis_url,
            "EVENT_STREAM": stream,
            "SCHEDULER_ENABLED": "true",
            "SCHEDULER_LOCK_POLL_SECONDS": "0.5",
            "OFFLINE_DELAY_SECONDS": "0.01",
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "32",
            "GRACEFUL_TIMEOUT": "10",
            "PORT": str(port),
            **settings,
        }
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
        with log.open("wb") as output:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
        server = Gunicorn(process, port, log)
        started.append(server)

        def healthy() -> bool:
            try:
                return requests.get(f"{server.url}/api/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, "gunicorn to answer", timeout=30)
        count = int(env["WEB_CONCURRENCY"])
        wait_for(lambda: len(server.workers()) == count, f"{count} worker(s)", timeout=30)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            # A quick shutdown: a graceful one waits out GRACEFUL_TIMEOUT for
            # the idle keep-alive connections a test leaves, and the tests of
            # SIGTERM send it themselves.
            server.process.send_signal(signal.SIGINT)
            try:
                server.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
    client = redis.Redis.from_url(redis_url)
    client.delete(stream)
    client.close()


def instance_of(ws: WSClient) -> str:
    ws.send({"type": "ping", "message_id": "who"})
    return str(ws.recv_type("pong")["instance"])


@contextmanager
def clients_on_both_workers(server: Gunicorn, topics: list[str]) -> Iterator[dict[str, WSClient]]:
    """Open websocket clients until each worker holds one; subscribe and yield them.

    A client that lands on a worker already held is closed at once: kept open,
    such clients could take every thread of a worker that started first while
    the other one still boots, and the next handshake would wait for nothing.
    """
    by_worker: dict[str, WSClient] = {}
    try:
        for _ in range(100):
            ws = WSClient(server.ws_url)
            instance = instance_of(ws)
            if instance in by_worker:
                ws.close()
                time.sleep(0.05)
            else:
                by_worker[instance] = ws
            if len(by_worker) == 2:
                break
        assert len(by_worker) == 2, "websockets never reached both workers"
        for ws in by_worker.values():
            ws.send({"type": "subscribe", "topics": topics})
        yield by_worker
    finally:
        for ws in by_worker.values():
            ws.close()


def scheduled_ticks(app: Flask, agent_id: int) -> list[datetime]:
    with db.session_scope(app, write=False) as session:
        runs = session.scalars(
            select(Run).where(Run.agent_id == agent_id, Run.trigger == "schedule").order_by(Run.id)
        ).all()
        return [run.scheduled_for for run in runs if run.scheduled_for is not None]


def test_two_workers_share_events_runs_and_one_scheduler(
    start_gunicorn: Callable[..., Gunicorn], make_app: AppFactory
) -> None:
    # An every-minute agent whose last scheduler was waiting for a tick two
    # minutes ago: the worker that takes the scheduler runs the latest tick
    # as it starts (a minute's grace and more keeps one in reach), and the
    # other worker never schedules at all.
    app = make_app()
    ticker = create_agent(
        app.test_client(), name="ticker", schedule="* * * * *", task_instructions="Tick."
    )
    with db.session_scope(app) as session:
        row = session.get(Agent, ticker["id"])
        assert row is not None
        row.next_run_at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    server = start_gunicorn(SCHEDULER_MISFIRE_GRACE_SECONDS="90")
    # The holder logs that its scheduler started once it has run the missed tick.
    wait_for(lambda: "scheduler started with" in server.log.read_text(), "the scheduler")
    assert scheduled_ticks(app, ticker["id"]) != []
    log = server.log.read_text()
    assert log.count("scheduler started with") == 1, log
    assert log.count(f"agent {ticker['id']}: running its tick of") == 1, log
    assert "skipping the duplicate" not in log

    http = server.session_on()
    api = f"{server.url}/api"
    agent = http.post(f"{api}/agents", json={"name": "chat"}, timeout=10).json()
    thread = http.post(f"{api}/threads", json={"agent_id": agent["id"]}, timeout=10).json()
    topics = [f"agent:{agent['id']}", f"thread:{thread['id']}"]

    with clients_on_both_workers(server, topics) as clients:
        for ws in clients.values():
            ws.recv_type("agent_state")
            ws.recv_type("thread_history")
        for instance, ws in clients.items():
            # Writes served by the *other* worker reach this client.
            other = server.session_on(avoid=instance)
            name = f"from-{instance}"
            other.put(f"{api}/agents/{agent['id']}", json={"name": name}, timeout=10)
            ws.recv_until(lambda f, n=name: f["type"] == "agent_updated" and f["data"]["name"] == n)

            # And so does a run the other worker executes, chunk by chunk.
            other.post(
                f"{api}/threads/{thread['id']}/messages", json={"content": instance}, timeout=10
            )
            run = other.post(f"{api}/threads/{thread['id']}/run", timeout=10).json()
            other.close()
            run_id = run["id"]
            ws.recv_until(lambda f, r=run_id: f["type"] == "stream_start" and f["run_id"] == r)
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1]["type"] != "stream_end":
                frames.append(ws.recv(timeout=15))
            chunks = [f["content"] for f in frames if f["type"] == "stream_chunk"]
            reply = [f for f in frames if f["type"] == "thread_message"][-1]["message"]
            assert len(chunks) >= 2 and "".join(chunks) == reply["content"]
            assert instance in reply["content"]

    # Still one scheduler, and each tick ran once (a minute may have passed).
    assert server.log.read_text().count("scheduler started with") == 1
    ticks = scheduled_ticks(app, ticker["id"])
    assert len(ticks) == len(set(ticks))


def connection_count(engine: Any, application_name: str) -> int:
    with engine.connect() as connection:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
        return int(connection.execute(query, {"name": application_name}).scalar() or 0)


def test_a_killed_worker_s_run_is_interrupted_and_leaks_no_connection(
    start_gunicorn: Callable[..., Gunicorn], database_url: str, make_app: AppFactory
) -> None:
    url = make_url(database_url)
    on_postgres = url.get_backend_name() == "postgresql"
    application_name = f"zerg-test-{uuid.uuid4().hex[:8]}"
    if on_postgres:
        url = url.update_query_dict({"application_name": application_name})
    server = start_gunicorn(
        DATABASE_URL=url.render_as_string(hide_password=False), OFFLINE_DELAY_SECONDS="0.3"
    )
    app = make_app()
    engine = db.get_database(app).engine
    http = server.session_on()
    api = f"{server.url}/api"
    agent = http.post(f"{api}/agents", json={"name": "doomed"}, timeout=10).json()
    thread = http.post(f"{api}/threads", json={"agent_id": agent["id"]}, timeout=10).json()
    http.post(f"{api}/threads/{thread['id']}/messages", json={"content": "long"}, timeout=10)
    run = http.post(f"{api}/threads/{thread['id']}/run", timeout=10).json()
    http.close()
    wait_for(
        lambda: requests.get(f"{api}/runs/{run['id']}", timeout=5).json()["status"] == "running",
        "the run to start",
        timeout=30,
    )

    doomed = server.workers()
    for pid in doomed:
        os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: len(set(server.workers()) - set(doomed)) == 2,
        "gunicorn to replace the workers",
        timeout=30,
    )

    def interrupted() -> bool:
        # The new workers answer once they have booted, which a busy machine slows.
        try:
            response = requests.get(f"{api}/runs/{run['id']}", timeout=5)
        except requests.RequestException:
            return False
        return bool(response.json()["status"] == "interrupted")

    wait_for(interrupted, "the run to be marked interrupted", timeout=30)
    assert requests.get(f"{api}/agents/{agent['id']}", timeout=5).json()["status"] == "idle"

    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    if on_postgres:
        wait_for(
            lambda: connection_count(engine, application_name) == 0,
            "connections to close",
            timeout=30,
        )


def test_sigterm_tells_websocket_clients_to_reconnect(
    start_gunicorn: Callable[..., Gunicorn],
) -> None:
    server = start_gunicorn()
    clients = [WSClient(f"{server.ws_url}?initial_topics=agents") for _ in range(100)]
    for ws in clients:
        ws.recv_type("subscribed")
    server.process.send_signal(signal.SIGTERM)
    # Within the grace period (GRACEFUL_TIMEOUT=10), each worker's clients.
    assert [ws.wait_closed(timeout=10) for ws in clients] == [1012] * len(clients)
    assert server.process.wait(timeout=30) == 0
    assert "Traceback" not in server.log.read_text()


def test_a_full_worker_refuses_handshakes_and_keeps_answering_http(
    start_gunicorn: Callable[..., Gunicorn],
) -> None:
    """Past WS_MAX_CONNECTIONS the handshake is refused; HTTP has connections of its own."""
    server = start_gunicorn(WEB_CONCURRENCY="1", WS_MAX_CONNECTIONS="3")
    clients = [WSClient(server.ws_url) for _ in range(3)]
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    refused = requests.get(server.ws_url.replace("ws:", "http:"), headers=upgrade, timeout=10)
    assert refused.status_code == 503
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert "Retry-After" in refused.headers
    assert requests.get(f"{server.url}/api/agents", timeout=10).status_code == 200
    for ws in clients:
        ws.ping()
        ws.close()


def test_one_worker_streams_fifty_runs_at_once(
    start_gunicorn: Callable[..., Gunicorn], make_app: AppFactory
) -> None:
    """A run waiting on its model is a greenlet holding no connection: they all run together."""
    server = start_gunicorn(WEB_CONCURRENCY="1", OFFLINE_DELAY_SECONDS="1")
    api = f"{server.url}/api"
    http = requests.Session()
    agent = http.post(f"{api}/agents", json={"name": "busy"}, timeout=10).json()
    for n in range(50):
        thread = http.post(f"{api}/threads", json={"agent_id": agent["id"]}, timeout=10).json()
        http.post(f"{api}/threads/{thread['id']}/messages", json={"content": f"{n}"}, timeout=10)
        assert http.post(f"{api}/threads/{thread['id']}/run", timeout=10).status_code == 202
    http.close()
    app = make_app()

    def running() -> int:
        with db.session_scope(app, write=False) as session:
            query = select(func.count()).select_from(Run).where(Run.status == "running")
            return int(session.scalar(query) or 0)

    wait_for(lambda: running() == 50, "fifty runs streaming at once", timeout=60)
    assert requests.get(f"{api}/health", timeout=10).status_code == 200


@contextmanager
def row_locked(
    server: Gunicorn, database_url: str, make_app: AppFactory, agent_id: int
) -> Iterator[Callable[[], bool]]:
    """Hold the lock a write to the agent needs, from outside the server, until the block ends.

    Yields a check that a write is waiting for it. PostgreSQL: the agent's row,
    and the server's backend blocked by ours. SQLite: the database's write
    lock, and the worker's line saying it waits (LOG_LEVEL=debug).
    """
    if make_url(database_url).get_backend_name() == "postgresql":
        engine = db.get_database(make_app()).engine
        with engine.connect() as holder, holder.begin():
            holder.execute(
                text("SELECT id FROM agents WHERE id = :id FOR UPDATE"), {"id": agent_id}
            )
            pid = holder.execute(text("SELECT pg_backend_pid()")).scalar()
            blocked = text(
                "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
            )

            def waiting() -> bool:
                with engine.connect() as probe:
                    return bool(probe.execute(blocked, {"pid": pid}).scalar())

            yield waiting
        return
    holder = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield lambda: "waiting for it" in server.log.read_text()
    finally:
        holder.close()


def test_a_write_waiting_on_a_lock_leaves_the_worker_answering(
    start_gunicorn: Callable[..., Gunicorn], database_url: str, make_app: AppFactory
) -> None:
    """gevent: a greenlet waiting on the database must not hold the worker's one thread.

    Another connection holds the lock a PUT needs while other requests and
    websocket pings on the same (only) worker are answered; then it lets go.
    """
    server = start_gunicorn(WEB_CONCURRENCY="1", LOG_LEVEL="debug")
    api = f"{server.url}/api"
    agent = requests.post(f"{api}/agents", json={"name": "locked"}, timeout=10).json()
    ws = WSClient(f"{server.ws_url}?initial_topics=agents")
    ws.recv_type("subscribed")
    put: dict[str, requests.Response] = {}

    def rename() -> None:
        put["response"] = requests.put(
            f"{api}/agents/{agent['id']}", json={"name": "renamed"}, timeout=60
        )

    writer = threading.Thread(target=rename)
    with row_locked(server, database_url, make_app, agent["id"]) as waiting:
        writer.start()
        wait_for(waiting, "the PUT to wait for the lock", timeout=20)
        for attempt in range(3):
            ws.ping(f"during-{attempt}")
            assert requests.get(f"{api}/health", timeout=10).status_code == 200
            assert (
                requests.get(f"{api}/agents/{agent['id']}", timeout=10).json()["name"] == "locked"
            )
        assert "response" not in put, "the lock was let go too early for this test to mean anything"
    writer.join(timeout=30)
    assert put["response"].status_code == 200, put["response"].text
    assert put["response"].json()["name"] == "renamed"
    ws.close()


def thread_on_one_worker(server: Gunicorn) -> tuple[requests.Session, str, dict[str, Any]]:
    """Make a thread with one message through a session held by one worker; name the worker."""
    api = f"{server.url}/api"
    owner = server.session_on()
    instance = owner.get(f"{api}/health", timeout=5).json()["instance"]
    agent = owner.post(f"{api}/agents", json={"name": "long-winded"}, timeout=10).json()
    thread = owner.post(f"{api}/threads", json={"agent_id": agent["id"]}, timeout=10).json()
    owner.post(f"{api}/threads/{thread['id']}/messages", json={"content": "go"}, timeout=10)
    return owner, instance, thread


def test_a_run_is_cancelled_through_the_other_worker(
    start_gunicorn: Callable[..., Gunicorn],
) -> None:
    """The run executes in the worker that queued it; the cancel reaches the other one."""
    server = start_gunicorn(OFFLINE_DELAY_SECONDS="0.2")
    api = f"{server.url}/api"
    owner, instance, thread = thread_on_one_worker(server)
    # A watcher on either worker (the stream crosses through Redis) sees the pieces.
    with WSClient(f"{server.ws_url}?initial_topics=thread:{thread['id']}") as watcher:
        watcher.recv_until(lambda frame: frame["type"] == "thread_history")
        run = owner.post(f"{api}/threads/{thread['id']}/run", timeout=10).json()
        owner.close()
        # A few pieces, so that there is a partial reply to keep.
        for _ in range(2):
            watcher.recv_until(lambda frame: frame["type"] == "stream_chunk")

    def status() -> str:
        return str(requests.get(f"{api}/runs/{run['id']}", timeout=5).json()["status"])

    other = server.session_on(avoid=instance)

    response = other.post(f"{api}/runs/{run['id']}/cancel", timeout=10)

    other.close()
    assert response.status_code == 202, response.text
    wait_for(lambda: status() == "cancelled", "the run to end cancelled", timeout=30)
    reply = requests.get(f"{api}/threads/{thread['id']}/messages", timeout=5).json()[-1]
    assert reply["role"] == "assistant" and reply["partial"] is True


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
def test_a_run_asked_for_on_the_other_worker_takes_the_running_one_s_place(
    start_gunicorn: Callable[..., Gunicorn], make_app: AppFactory, strategy: str
) -> None:
    """The stop crosses processes; the worker that ends the old run starts the new one.

    A watcher on the other worker sees the old run's stream end before the new
    one's starts, through Redis.
    """
    server = start_gunicorn(OFFLINE_DELAY_SECONDS="0.08")
    api = f"{server.url}/api"
    owner, instance, thread = thread_on_one_worker(server)
    with clients_on_both_workers(server, [f"thread:{thread['id']}"]) as watchers:
        [watcher] = [ws for name, ws in watchers.items() if name != instance]
        watcher.recv_type("thread_history")
        old = owner.post(f"{api}/threads/{thread['id']}/run", timeout=10).json()["id"]
        owner.close()
        watcher.recv_until(lambda frame: frame["type"] == "stream_chunk")
        watcher.send(
            {
                "type": "send_message",
                "thread_id": thread["id"],
                "content": "two",
                "multitask_strategy": strategy,
            }
        )
        frames: list[dict[str, Any]] = []
        while True:
            frames.append(watcher.recv(timeout=30))
            if frames[-1]["type"] == "stream_end" and frames[-1]["run_id"] != old:
                break

    sent = next(frame for frame in frames if frame["type"] == "message_sent")
    new = sent["run_id"]
    streams = [
        (f["type"], f["run_id"]) for f in frames if f["type"] in ("stream_start", "stream_end")
    ]
    assert streams[-3:] == [("stream_end", old), ("stream_start", new), ("stream_end", new)]
    ends = {f["run_id"]: f for f in frames if f["type"] == "stream_end"}
    assert ends[old]["status"] == "cancelled"
    assert ends[old]["discarded"] is (strategy == "rollback")
    assert ends[new]["status"] == "success"
    with db.session_scope(make_app()) as session:
        assert session.get(Run, new).owner == instance
        assert session.get(Run, old).stop_requested == strategy
    stored = requests.get(f"{api}/threads/{thread['id']}/messages", timeout=5).json()
    roles = [(m["role"], m["partial"]) for m in stored]
    kept = [("assistant", True)] if strategy == "interrupt" else []
    assert roles == [("user", False), ("user", False), *kept, ("assistant", False)]
    assert "Traceback" not in server.log.read_text()


def test_a_ticket_from_one_worker_opens_a_websocket_on_the_other_once(
    start_gunicorn: Callable[..., Gunicorn],
) -> None:
    """Tickets live in the database: the handshake may reach any worker, and works once."""
    token = "gunicorn-ticket-token"
    server = start_gunicorn(API_TOKEN=token)
    bearer = {"Authorization": f"Bearer {token}"}
    for _ in range(100):
        issuer = server.session_on()
        issued_by = issuer.get(f"{server.url}/api/health", timeout=5).json()["instance"]
        ticket = issuer.post(f"{server.url}/api/ws/tickets", headers=bearer, timeout=5).json()
        issuer.close()
        ws = WSClient(f"{server.ws_url}?ticket={ticket['ticket']}")
        served_by = instance_of(ws)
        ws.close()
        if served_by != issued_by:
            break
    assert served_by != issued_by, "the handshakes never reached the other worker"
    for _ in range(6):
        with pytest.raises(InvalidStatus) as refused:
            WSClient(f"{server.ws_url}?ticket={ticket['ticket']}")
        assert refused.value.response.status_code == 401


def test_large_frames_reach_a_client_that_paused_reading_whole_and_in_order(
    start_gunicorn: Callable[..., Gunicorn],
) -> None:
    """gevent's ``send`` may write part of a frame; every frame must still arrive whole.

    The client reads nothing until the server has written frames much larger
    than the socket buffers between them, then reads them all.
    """
    server = start_gunicorn(WEB_CONCURRENCY="1")
    http = requests.Session()
    agent = http.post(f"{server.url}/api/agents", json={"name": "big"}, timeout=10).json()
    thread = http.post(f"{server.url}/api/threads", json={"agent_id": agent["id"]}, timeout=10)
    thread = thread.json()
    sock = socket.create_connection(("127.0.0.1", server.port))
    # Small enough that the frames cannot all wait in the buffers between.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    protocol = WSConnection(ConnectionType.CLIENT)
    target = f"/api/ws?initial_topics=thread:{thread['id']}"
    sock.sendall(protocol.send(Request(host="127.0.0.1", target=target)))
    contents = [f"{index} " + chr(ord("a") + index % 26) * 95_000 for index in range(60)]
    for content in contents:
        answer = http.post(
            f"{server.url}/api/threads/{thread['id']}/messages",
            json={"content": content},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text

    received: list[dict[str, Any]] = []
    parts: list[str] = []
    sock.settimeout(5)
    deadline = time.monotonic() + 60
    while len([f for f in received if f["type"] == "thread_message"]) < len(contents):
        assert time.monotonic() < deadline, f"{len(received)} frames whole, then nothing"
        protocol.receive_data(sock.recv(1 << 20))
        for event in protocol.events():
            if isinstance(event, TextMessage):
                parts.append(event.data)
                if event.message_finished:
                    received.append(json.loads("".join(parts)))
                    parts.clear()
    sock.close()
    messages = [
        frame["message"]["content"] for frame in received if frame["type"] == "thread_message"
    ]
    assert messages == contents
