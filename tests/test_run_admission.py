"""Requests that queue runs wait in line while RUN_DATABASE_TURNS runs are beginning."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask

from tests.conftest import AppFactory
from tests.conftest import serve
from tests.helpers import assert_problem
from tests.test_runs import FAST
from tests.test_runs import new_thread
from tests.test_runs import wait_run
from tests.wsclient import WSClient
from zerg import db
from zerg.domain_errors import Busy
from zerg.models import Run
from zerg.models import ThreadMessage
from zerg.runs.pool import Runner
from zerg.runs.pool import get_runner


@pytest.fixture
def one_start(make_app: AppFactory) -> Flask:
    """An app that begins one run at a time and lets a request wait 0.3 s for its turn."""
    return make_app(RUN_DATABASE_TURNS=1, DATABASE_POOL_TIMEOUT=0.3, **FAST)


@contextmanager
def place_taken(runner: Runner) -> Iterator[None]:
    """Hold one place in line from another thread, as a request being admitted does."""
    admitted, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with runner.admission():
            admitted.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert admitted.wait(5)
    try:
        yield
    finally:
        leave.set()
        holder.join(5)


def test_places_are_given_first_come_first_served(make_app: AppFactory) -> None:
    runner = get_runner(make_app(RUN_DATABASE_TURNS=1, DATABASE_POOL_TIMEOUT=10))
    order: list[int] = []
    lined_up = threading.Semaphore(0)

    def request(number: int) -> None:
        lined_up.release()
        with runner.admission():
            order.append(number)

    with place_taken(runner):
        waiting = []
        for number in range(5):
            waiting.append(threading.Thread(target=request, args=(number,)))
            waiting[-1].start()
            lined_up.acquire()
            # Each is in line before the next comes.
            time.sleep(0.05)
        assert order == []
    for thread in waiting:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_wait_past_the_timeout_is_busy_and_leaves_the_line(one_start: Flask) -> None:
    runner = get_runner(one_start)
    with place_taken(runner), pytest.raises(Busy), runner.admission():
        pass
    with runner.admission():  # the place came back, and nobody stale is in line
        pass


def test_a_run_request_refused_as_busy_gets_503_and_writes_nothing(one_start: Flask) -> None:
    client = one_start.test_client()
    thread = new_thread(client)
    with place_taken(get_runner(one_start)):
        response = client.post(f"/api/threads/{thread['id']}/run")
        refused_agent = client.post(f"/api/agents/{thread['agent_id']}/run")
        refused_message = client.post(
            f"/api/threads/{thread['id']}/messages", json={"content": "more", "run": {}}
        )
        # A message that asks for no run does not wait for a place.
        plain = client.post(f"/api/threads/{thread['id']}/messages", json={"content": "plain"})
    for refused in (response, refused_agent, refused_message):
        body = assert_problem(refused, 503)
        assert refused.headers["Retry-After"] == "1"
        assert "starting as many runs" in body["detail"]
    assert plain.status_code == 201
    with db.session_scope(one_start, write=False) as session:
        assert session.query(Run).count() == 0
        contents = [m.content for m in session.query(ThreadMessage).order_by(ThreadMessage.id)]
    assert contents == ["Hello, agent", "plain"]
    # Once the place is free the same request goes through.
    accepted = client.post(f"/api/threads/{thread['id']}/run")
    assert accepted.status_code == 202
    assert wait_run(client, accepted.get_json()["id"])["status"] == "success"


def test_a_websocket_send_refused_as_busy_says_so(one_start: Flask) -> None:
    thread = new_thread(one_start.test_client(), message=None)
    with (
        serve(one_start) as server,
        WSClient(f"{server.ws_url}/api/ws") as ws,
        place_taken(get_runner(one_start)),
    ):
        frame = {"type": "send_message", "thread_id": thread["id"], "content": "hi"}
        ws.send({**frame, "message_id": "m1"})
        error = ws.recv_type("error")
    assert error["message_id"] == "m1"
    assert error["details"] == {"thread_id": thread["id"], "status": 503, "retry_after": 1}
    with db.session_scope(one_start, write=False) as session:
        assert session.query(ThreadMessage).count() == 0


def test_runs_waiting_for_a_worker_do_not_hold_requests_up(make_app: AppFactory) -> None:
    """With every worker busy, runs queue as before: only runs that can begin take places."""
    app = make_app(
        RUN_WORKERS=1, RUN_DATABASE_TURNS=1, DATABASE_POOL_TIMEOUT=0.3, OFFLINE_DELAY_SECONDS=0.03
    )
    client = app.test_client()
    threads = [new_thread(client, f"question {n}") for n in range(3)]
    answers = [client.post(f"/api/threads/{thread['id']}/run") for thread in threads]
    assert [answer.status_code for answer in answers] == [202] * 3
    for answer in answers:
        assert wait_run(client, answer.get_json()["id"], timeout=30)["status"] == "success"
