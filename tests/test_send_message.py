"""A message sent with ``run``: stored and answered in one request, once per Idempotency-Key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AppFactory
from tests.conftest import serve
from tests.helpers import assert_problem
from tests.helpers import orphan_run
from tests.test_runs import FAST
from tests.test_runs import messages
from tests.test_runs import new_thread
from tests.test_runs import wait_run
from tests.wsclient import WSClient
from zerg import db
from zerg.models import IdempotencyKey
from zerg.models import Run
from zerg.models import ThreadMessage
from zerg.runs import domain
from zerg.schemas import ThreadMessageCreate

Rows = Callable[..., int]


@pytest.fixture
def fast_app(make_app: AppFactory) -> Flask:
    return make_app(**FAST)


@pytest.fixture
def fast(fast_app: Flask) -> FlaskClient:
    return fast_app.test_client()


def send(client: FlaskClient, thread_id: int, body: Any, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(f"/api/threads/{thread_id}/messages", json=body, headers=headers)


def asked(content: str, strategy: str = "reject") -> dict[str, Any]:
    return {"content": content, "run": {"multitask_strategy": strategy}}


def test_a_message_sent_with_run_is_stored_and_answered(fast: FlaskClient) -> None:
    thread = new_thread(fast, message=None)

    response = send(fast, thread["id"], {"content": "Hello", "run": {}})

    assert response.status_code == 201
    body = response.get_json()
    run = body.pop("run")
    assert (run["thread_id"], run["trigger"], run["status"]) == (thread["id"], "api", "queued")
    assert wait_run(fast, run["id"])["status"] == "success"
    stored = messages(fast, thread["id"])
    assert [(m["role"], m["processed"]) for m in stored] == [("user", True), ("assistant", True)]
    assert {**body, "processed": True} == stored[0]


def test_without_run_the_answer_is_the_message_and_nothing_runs(
    fast: FlaskClient, rows: Rows
) -> None:
    thread = new_thread(fast, message=None)
    response = send(fast, thread["id"], {"content": "Just noting"})
    assert response.status_code == 201
    assert "run" not in response.get_json()
    assert rows(Run) == 0


def test_a_retry_with_the_key_gets_the_same_message_and_run(fast: FlaskClient, rows: Rows) -> None:
    thread = new_thread(fast, message=None)
    first = send(fast, thread["id"], asked("Once"), key="send-1")
    again = send(fast, thread["id"], asked("Once"), key="send-1")

    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert "Idempotent-Replayed" not in first.headers
    wait_run(fast, first.get_json()["run"]["id"])
    assert [m["content"] for m in messages(fast, thread["id"]) if m["role"] == "user"] == ["Once"]
    assert (rows(Run), rows(IdempotencyKey)) == (1, 1)

    other = send(fast, thread["id"], asked("Once", "enqueue"), key="send-1")
    assert_problem(other, 422, ["header", "Idempotency-Key"], "idempotency_key_reused")
    assert rows(Run) == 1


@pytest.mark.parametrize(
    ("body", "loc", "error_type"),
    [
        (asked("x", "later"), ["body", "run", "multitask_strategy"], "literal_error"),
        (
            {"content": "x", "run": {"strategy": "enqueue"}},
            ["body", "run", "strategy"],
            "extra_forbidden",
        ),
        ({"content": "x", "run": "now"}, ["body", "run"], "model_type"),
        ({"run": {}}, ["body", "content"], "missing"),
        ({**asked("x"), "role": "assistant"}, ["body", "run"], "run_needs_user_message"),
    ],
)
def test_a_bad_send_is_refused_and_writes_nothing(
    fast: FlaskClient, rows: Rows, body: Any, loc: list[str], error_type: str
) -> None:
    thread = new_thread(fast, message=None)
    assert_problem(send(fast, thread["id"], body, key="bad"), 422, loc, error_type)
    assert (rows(ThreadMessage), rows(Run), rows(IdempotencyKey)) == (0, 0, 0)


def test_a_send_to_a_missing_thread_is_404_and_writes_nothing(
    fast: FlaskClient, rows: Rows
) -> None:
    assert_problem(send(fast, 999, asked("anyone?")), 404)
    assert (rows(ThreadMessage), rows(Run)) == (0, 0)


def test_only_a_user_message_is_sent_to_be_answered(fast: FlaskClient, fast_app: Flask) -> None:
    """A transport that let another role through would be a bug: the domain says so."""
    thread = new_thread(fast, message=None)
    reply = ThreadMessageCreate(role="assistant", content="I answer myself")
    with db.session_scope(fast_app) as session, pytest.raises(ValueError, match="user message"):
        domain.send_message(session, thread["id"], reply, "api")
    assert messages(fast, thread["id"]) == []


@pytest.fixture
def busy(fast_app: Flask, fast: FlaskClient) -> tuple[dict[str, Any], int]:
    """A thread whose active run belongs to another process, so it stays active here."""
    thread = new_thread(fast, message="first")
    return thread, orphan_run(fast_app, thread)


def test_reject_on_a_busy_thread_keeps_the_message_for_the_active_run(
    fast: FlaskClient, rows: Rows, busy: tuple[dict[str, Any], int]
) -> None:
    thread, _ = busy
    response = send(fast, thread["id"], asked("second"))
    assert response.status_code == 201
    assert response.get_json()["run"] is None
    assert rows(Run) == 1
    stored = messages(fast, thread["id"])
    assert [(m["content"], m["processed"]) for m in stored] == [("first", False), ("second", False)]


def test_enqueue_on_a_busy_thread_queues_the_run_behind_the_active_one(
    fast: FlaskClient, busy: tuple[dict[str, Any], int]
) -> None:
    thread, active = busy
    run = send(fast, thread["id"], asked("second", "enqueue")).get_json()["run"]
    assert run["status"] == "queued"
    assert fast.get(f"/api/runs/{active}").get_json()["status"] == "queued"


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
def test_a_sent_message_s_run_takes_the_active_one_s_place(
    fast: FlaskClient, busy: tuple[dict[str, Any], int], strategy: str
) -> None:
    thread, active = busy
    run = send(fast, thread["id"], asked("second", strategy)).get_json()["run"]

    stopped = fast.get(f"/api/runs/{active}").get_json()
    assert (stopped["status"], stopped["stop_requested"]) == ("cancelled", strategy)
    assert wait_run(fast, run["id"])["status"] == "success"
    stored = messages(fast, thread["id"])
    assert [m["role"] for m in stored] == ["user", "user", "assistant"]
    assert all(m["processed"] for m in stored if m["role"] == "user")


def test_the_websocket_sends_through_the_same_function(
    fast_app: Flask, busy: tuple[dict[str, Any], int]
) -> None:
    """A frame with enqueue on a busy thread gets the waiting run, as REST does."""
    thread, active = busy
    with serve(fast_app) as server, WSClient(f"{server.ws_url}/api/ws") as ws:
        frame = {"type": "send_message", "thread_id": thread["id"], "content": "second"}
        ws.send({**frame, "multitask_strategy": "enqueue", "message_id": "m1"})
        sent = ws.recv_type("message_sent")
    client = fast_app.test_client()
    run = client.get(f"/api/runs/{sent['run_id']}").get_json()
    assert (run["status"], run["trigger"]) == ("queued", "websocket")
    assert sent["message"]["content"] == "second" and sent["message_id"] == "m1"
    # Its turn comes when the active run ends.
    client.post(f"/api/runs/{active}/cancel")
    assert wait_run(client, run["id"])["status"] == "success"
