"""No message left unanswered: whatever ends a busy thread's run, its follow-up answers what came.

A message sent over the websocket while its thread is busy (with the default
``reject``) is stored with ``run_id: null``. Once the run ends, however it ends
and whoever started it, a follow-up run answers the messages that arrived
after that run began. The messages the run itself was answering never call
for one, so a provider that keeps failing is not retried forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import STANDIN_MODEL
from tests.conftest import AppFactory
from tests.conftest import LiveServer
from tests.conftest import serve
from tests.helpers import orphan_run
from tests.helpers import reap_dead_owners
from tests.helpers import wait_for
from tests.openai_standin import OpenAIStandIn
from tests.openai_standin import Reply
from tests.test_runs import SLOW
from tests.test_runs import messages
from tests.test_runs import new_thread
from tests.test_runs import wait_run
from tests.test_runs import wait_status
from tests.wsclient import WSClient
from zerg import db
from zerg.runs import lifecycle
from zerg.runs.scheduler import run_scheduled_agent


def send(ws: WSClient, thread_id: int, content: str) -> int | None:
    """Send a message over the websocket with the default strategy; return the run answering it."""
    ws.send({"type": "send_message", "thread_id": thread_id, "content": content})
    run_id: int | None = ws.recv_type("message_sent")["run_id"]
    return run_id


def runs_of(client: FlaskClient, thread_id: int) -> list[dict[str, Any]]:
    """The thread's runs, oldest first."""
    runs: list[dict[str, Any]] = client.get(f"/api/runs?thread_id={thread_id}").get_json()
    return list(reversed(runs))


def settled(client: FlaskClient, thread_id: int, count: int) -> list[dict[str, Any]]:
    """Wait until the thread has ``count`` runs, all ended; return them, oldest first.

    A run's follow-up is queued in the transaction that ends it, so once the
    last run has ended, no further one is on its way.
    """

    def done() -> bool:
        runs = runs_of(client, thread_id)
        return len(runs) >= count and all(r["status"] not in ("queued", "running") for r in runs)

    wait_for(done, f"{count} runs to end", timeout=20)
    return runs_of(client, thread_id)


@pytest.fixture
def live_slow(make_app: AppFactory) -> Iterator[LiveServer]:
    with serve(make_app(**SLOW)) as server:
        yield server


def test_a_message_sent_while_a_run_is_cancelled_is_answered(live_slow: LiveServer) -> None:
    client = live_slow.app.test_client()
    thread = new_thread(client, message=None)
    with WSClient(f"{live_slow.ws_url}/api/ws") as ws:
        first = send(ws, thread["id"], "first")
        assert first is not None
        wait_status(client, first, "running")
        assert send(ws, thread["id"], "second") is None

    assert client.post(f"/api/runs/{first}/cancel").status_code == 202

    cancelled, follow_up = settled(client, thread["id"], 2)
    assert (cancelled["id"], cancelled["status"]) == (first, "cancelled")
    assert (follow_up["status"], follow_up["trigger"]) == ("success", "websocket")
    stored = messages(client, thread["id"])
    assert all(m["processed"] for m in stored)
    assert "second" in stored[-1]["content"] and stored[-1]["partial"] is False


@pytest.fixture
def model_app(make_app: AppFactory, standin_config: dict[str, Any]) -> Flask:
    return make_app(**standin_config)


def start_failing_run(app: Flask, server: LiveServer) -> tuple[dict[str, Any], int]:
    """A thread whose first run streams slowly and then fails; a message comes meanwhile."""
    client = app.test_client()
    agent = client.post("/api/agents", json={"name": "flaky", "model": STANDIN_MODEL}).get_json()
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    with WSClient(f"{server.ws_url}/api/ws") as ws:
        first = send(ws, thread["id"], "first")
        assert first is not None
        wait_status(client, first, "running")
        assert send(ws, thread["id"], "second") is None
    return thread, first


SLOW_FAILURE = Reply(pieces=["Once ", "upon ", "a ", "time"], delay=0.3, fail_after=3)


def test_a_message_sent_while_a_run_fails_is_answered(
    model_app: Flask, standin: OpenAIStandIn
) -> None:
    standin.script(SLOW_FAILURE, Reply(pieces=["Both ", "answered."]))
    with serve(model_app) as server:
        thread, first = start_failing_run(model_app, server)
    client = model_app.test_client()

    failed, follow_up = settled(client, thread["id"], 2)

    assert (failed["id"], failed["status"]) == (first, "failed")
    assert follow_up["status"] == "success"
    stored = messages(client, thread["id"])
    assert [(m["role"], m["processed"]) for m in stored] == [
        ("user", True),
        ("user", True),
        ("assistant", True),
    ]
    # The follow-up answered both: the failed run's question and the new one.
    assert [m["content"] for m in standin.requests[-1].messages] == ["first", "second"]


def test_a_provider_that_keeps_failing_gets_one_follow_up_not_a_loop(
    model_app: Flask, standin: OpenAIStandIn
) -> None:
    standin.script(SLOW_FAILURE, Reply(status=500, message="still down"))
    with serve(model_app) as server:
        thread, first = start_failing_run(model_app, server)
    client = model_app.test_client()

    runs = settled(client, thread["id"], 2)

    assert [r["status"] for r in runs] == ["failed", "failed"]
    assert len(standin.requests) == 2
    # Both wait, unanswered, for a client to retry.
    assert [m["processed"] for m in messages(client, thread["id"])] == [False, False]
    assert client.post(f"/api/threads/{thread['id']}/run").status_code == 202


@pytest.mark.parametrize("trigger", ["manual", "schedule"])
def test_a_message_sent_into_a_task_run_s_thread_is_answered(
    make_app: AppFactory, trigger: str
) -> None:
    """Task runs answer their task; a person who writes into their thread still gets a reply."""
    app = make_app(**SLOW)
    client = app.test_client()
    agent = client.post(
        "/api/agents",
        json={"name": "digest", "task_instructions": "Summarise.", "schedule": "0 8 * * *"},
    ).get_json()
    if trigger == "manual":
        task_run = client.post(f"/api/agents/{agent['id']}/run").get_json()
    else:
        tick = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
        assert run_scheduled_agent(app, agent["id"], tick)
        [task_run] = client.get(f"/api/runs?agent_id={agent['id']}").get_json()
    thread_id = task_run["thread_id"]
    wait_status(client, task_run["id"], "running")
    with serve(app) as server, WSClient(f"{server.ws_url}/api/ws") as ws:
        assert send(ws, thread_id, "and what about tomorrow?") is None

        task, follow_up = settled(client, thread_id, 2)

    assert (task["trigger"], task["status"]) == (trigger, "success")
    assert (follow_up["trigger"], follow_up["status"]) == ("api", "success")
    stored = messages(client, thread_id)
    assert all(m["processed"] for m in stored)
    assert "tomorrow" in stored[-1]["content"]
    assert wait_run(client, follow_up["id"])["status"] == "success"


def test_a_message_left_to_a_run_whose_process_died_is_answered(make_app: AppFactory) -> None:
    """The reaper ends the dead process's run, and its own process answers what came since."""
    app = make_app(OFFLINE_DELAY_SECONDS=0.005)
    client = app.test_client()
    thread = new_thread(client, "first")
    run_id = orphan_run(app, thread)
    with db.session_scope(app) as session:
        assert lifecycle.begin_run(session, run_id) is not None
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": "second"})
    assert reap_dead_owners(app) == 1

    reaped, follow_up = settled(client, thread["id"], 2)

    assert (reaped["id"], reaped["status"]) == (run_id, "interrupted")
    assert (follow_up["status"], follow_up["trigger"]) == ("success", "api")
    stored = messages(client, thread["id"])
    assert [m["role"] for m in stored] == ["user", "user", "assistant"]
    assert all(m["processed"] for m in stored)
