"""Helpers shared by the test modules: HTTP shortcuts, problem checks, waiting."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from zerg import db
from zerg.locks import make_locks
from zerg.models import Base
from zerg.models import Run
from zerg.providers.base import ProviderError
from zerg.providers.base import StreamItem
from zerg.realtime import events
from zerg.runs import lifecycle

Rows = Callable[[type[Base]], int]

PROBLEM_JSON = "application/problem+json"
# One past the largest 64-bit integer: no id column on either database holds it.
BEYOND_BIGINT = 2**63


def create_agent(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    fields.setdefault("name", "Agent")
    response = client.post("/api/agents", json=fields)
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def get_agent(client: FlaskClient, agent_id: int) -> dict[str, Any]:
    response = client.get(f"/api/agents/{agent_id}")
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def http_agent_and_thread(base: str, name: str = "a") -> tuple[dict[str, Any], dict[str, Any]]:
    """Create an agent and a thread of it over real HTTP at ``base``; return both."""
    agent: dict[str, Any] = requests.post(
        f"{base}/api/agents", json={"name": name}, timeout=10
    ).json()
    thread: dict[str, Any] = requests.post(
        f"{base}/api/threads", json={"agent_id": agent["id"]}, timeout=10
    ).json()
    return agent, thread


def ws_ticket(base: str, token: str) -> str:
    """Get a websocket ticket over real HTTP at ``base``, as the web UI does."""
    response = requests.post(
        f"{base}/api/ws/tickets", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 201, response.text
    ticket: str = response.json()["ticket"]
    return ticket


def send(client: FlaskClient, method: str, url: str, body: bytes) -> TestResponse:
    """Send raw bytes as a JSON body (for bodies the test client would not encode)."""
    return client.open(url, method=method, data=body, content_type="application/json")


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def parse_utc(value: str) -> datetime:
    """Check that a response timestamp is UTC with an explicit offset, and parse it."""
    assert value.endswith(("Z", "+00:00")), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def assert_problem(
    response: TestResponse,
    status: int,
    loc: list[Any] | None = None,
    error_type: str | None = None,
) -> dict[str, Any]:
    """Check a problem+json response; for a 422, that one error has ``loc`` and ``error_type``."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body: dict[str, Any] = response.get_json()
    assert body["type"] == "about:blank"
    assert body["title"] == HTTPStatus(status).phrase
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    if status == 422:
        errors = body["errors"]
        assert isinstance(errors, list) and errors
        for error in errors:
            assert set(error) == {"loc", "msg", "type"}
            assert error["loc"][0] in ("body", "query", "header")
            assert isinstance(error["msg"], str) and error["msg"]
        assert {"loc": loc, "type": error_type} in [
            {"loc": error["loc"], "type": error["type"]} for error in errors
        ]
    else:
        assert "errors" not in body
    return body


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now, for a server to take."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Tell whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Clock:
    """A clock that stands still until the test moves it: an app's ``SCHEDULER_CLOCK``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@contextmanager
def local_server(command: list[str], *, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """Run a serving command (``flask … serve``/``run``) on a free port; lend its base URL.

    It is ready once ``/api/health`` answers; one that exits first fails the
    test with what it wrote to stderr. SIGINT stops it, as Ctrl-C would.
    """
    port = free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode() if process.stderr else "")
        try:
            return requests.get(f"{url}/api/health", timeout=1).ok
        except requests.ConnectionError:
            return False

    try:
        wait_for(answers, f"{' '.join(command[-2:])} to answer", timeout=30)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def wait_for(
    condition: Callable[[], bool], what: str = "the condition", timeout: float = 10
) -> None:
    """Poll until ``condition`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class StreamWatch:
    """The pieces each run has streamed since the watch began, as the app's event bus saw them."""

    def __init__(self) -> None:
        self._pieces: Counter[int] = Counter()
        self._changed = threading.Condition()

    def seen(self, event: events.Event) -> None:
        """Count a streamed piece (a bus subscriber: it must not wait, and does not)."""
        if event.type is events.EventType.STREAM_CHUNK:
            with self._changed:
                self._pieces[event.data["run_id"]] += 1
                self._changed.notify_all()

    def wait(self, run_id: int, pieces: int = 2, timeout: float = 10) -> None:
        """Wait until the run has streamed ``pieces`` pieces, failing after ``timeout`` seconds.

        What a test that acts on a run mid-stream waits for (a cancel that must
        leave a partial reply, a newer run that must interrupt one), rather
        than sleeping for about as long as the pieces should take.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: self._pieces[run_id] >= pieces, timeout):
                raise AssertionError(
                    f"run {run_id} streamed {self._pieces[run_id]} of {pieces} pieces"
                    f" in {timeout} s"
                )


@contextmanager
def stream_watch(app: Flask) -> Iterator[StreamWatch]:
    """Watch the runs' streams on ``app``'s event bus for the block's length."""
    watch = StreamWatch()
    unsubscribe = events.get_bus(app).subscribe(watch.seen)
    try:
        yield watch
    finally:
        unsubscribe()


def orphan_run(
    app: Flask, thread: dict[str, Any], owner: str = "presumed-dead", trigger: str = "api"
) -> int:
    """Queue a run owned by a process that is not this app's, so no worker here takes it."""
    with db.session_scope(app) as session:
        run = Run(agent_id=thread["agent_id"], thread_id=thread["id"], trigger=trigger, owner=owner)
        session.add(run)
        session.flush()
        return run.id


def reap_dead_owners(app: Flask) -> int:
    """Interrupt, as the reaper does, the runs whose owner holds no liveness lock; count them."""
    locks = make_locks(db.get_database(app).engine)
    try:
        with db.session_scope(app) as session:
            return lifecycle.mark_interrupted(session, dead=locks)
    finally:
        locks.close()


def collect_until_error(stream: Iterator[StreamItem]) -> tuple[list[StreamItem], ProviderError]:
    """Drain a stream that must fail, keeping what it yielded before failing."""
    items: list[StreamItem] = []
    with pytest.raises(ProviderError) as caught:
        for item in stream:
            items.append(item)
    return items, caught.value
