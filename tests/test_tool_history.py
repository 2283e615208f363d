"""The history a run with tools leaves: valid for providers after every end, sent back whole."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AppFactory
from tests.helpers import orphan_run
from tests.helpers import reap_dead_owners
from tests.openai_standin import OpenAIStandIn
from tests.openai_standin import Reply
from tests.openai_standin import ScriptedCall
from tests.test_runs import wait_run
from tests.tool_runs import HoldingServer
from tests.tool_runs import agent_with_tools
from tests.tool_runs import assert_every_call_answered
from tests.tool_runs import calls_of
from tests.tool_runs import messages_of
from tests.tool_runs import run_on
from tests.tool_runs import start
from zerg import conversations
from zerg import db
from zerg import serving
from zerg.conversations import chat_history
from zerg.models import Run
from zerg.models import ThreadMessage
from zerg.models import ToolCall
from zerg.models import utcnow
from zerg.runs.pool import get_runner
from zerg.schemas import ThreadMessageCreate


@pytest.fixture
def client(tool_app: Flask) -> FlaskClient:
    return tool_app.test_client()


def test_the_next_turn_sends_the_stored_calls_and_results_back(
    client: FlaskClient, tool_app: Flask, standin: OpenAIStandIn
) -> None:
    standin.script(Reply(tool_calls=[ScriptedCall("current_time", '{"timezone": "UTC"}')]))
    thread_id, first = start(tool_app, ["current_time"])
    assert wait_run(client, first)["status"] == "success"

    second = run_on(client, thread_id, "Thanks. And now?")
    assert wait_run(client, second)["status"] == "success"

    stored = messages_of(client, thread_id)
    request = standin.requests[-1]
    assert request.messages[0] == {"role": "system", "content": "Use tools."}
    assert [m["role"] for m in request.messages[1:]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    asked, result = request.messages[2:4]
    assert asked["tool_calls"] == stored[1]["tool_calls"] and asked["content"] is None
    assert result == {
        "role": "tool",
        "tool_call_id": stored[2]["tool_call_id"],
        "name": "current_time",
        "content": stored[2]["content"],
    }


def test_a_context_window_never_starts_with_a_result_whose_call_it_cut(
    make_app: AppFactory, standin_config: dict[str, Any], standin: OpenAIStandIn
) -> None:
    app = make_app(**standin_config, RUN_CONTEXT_MESSAGES=3)
    client = app.test_client()
    standin.script(Reply(tool_calls=[ScriptedCall("current_time", "{}")]))
    thread_id, first = start(app, ["current_time"])
    assert wait_run(client, first)["status"] == "success"

    # Stored: user, assistant(calls), tool, assistant, user: the newest 3 cut the call off.
    second = run_on(client, thread_id, "And now?")
    assert wait_run(client, second)["status"] == "success"

    roles = [m["role"] for m in standin.requests[-1].messages]
    assert roles == ["system", "assistant", "user"]


def test_a_cancel_during_a_slow_call_answers_it_cancelled(
    client: FlaskClient, tool_app: Flask, standin: OpenAIStandIn, holding: HoldingServer
) -> None:
    standin.script(
        Reply(tool_calls=[ScriptedCall("http_get", f'{{"url": "{holding.url("/hold")}"}}')])
    )
    thread_id, run_id = start(tool_app, ["http_get"])
    holding.wait_arrived()

    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 202
    run = wait_run(client, run_id)

    assert run["status"] == "cancelled"
    (call,) = calls_of(client, run_id)
    assert call["status"] == "cancelled" and call["result"] is None
    stored = messages_of(client, thread_id)
    assert [m["role"] for m in stored] == ["user", "assistant", "tool"]
    assert stored[-1]["content"].startswith("cancelled")
    assert_every_call_answered(stored)
    assert len(standin.requests) == 1

    # The next run sends that history, and the model takes it.
    holding.release.set()
    standin.script(Reply(pieces=["Sorry, ", "it was slow."]))
    again = run_on(client, thread_id, "Never mind.")
    assert wait_run(client, again)["status"] == "success"
    roles = [m["role"] for m in standin.requests[-1].messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]


def test_a_rollback_removes_what_the_run_wrote_and_keeps_its_calls_cancelled(
    client: FlaskClient, tool_app: Flask, standin: OpenAIStandIn, holding: HoldingServer
) -> None:
    standin.script(
        Reply(tool_calls=[ScriptedCall("http_get", f'{{"url": "{holding.url("/hold")}"}}')])
    )
    thread_id, first = start(tool_app, ["http_get"], content="Fetch it.")
    holding.wait_arrived()

    standin.script(Reply(pieces=["Done ", "differently."]))
    newer = run_on(client, thread_id, "No, stop.", multitask_strategy="rollback")
    assert wait_run(client, first)["status"] == "cancelled"
    assert wait_run(client, newer)["status"] == "success"

    (call,) = calls_of(client, first)
    assert call["status"] == "cancelled"
    stored = messages_of(client, thread_id)
    assert all(m["run_id"] != first for m in stored)
    assert [m["role"] for m in stored] == ["user", "user", "assistant"]
    assert stored[-1]["run_id"] == newer
    roles = [m["role"] for m in standin.requests[-1].messages]
    assert roles == ["system", "user", "user"]


def test_a_shutdown_during_a_call_interrupts_the_run_and_answers_the_call(
    make_app: AppFactory,
    standin_config: dict[str, Any],
    standin: OpenAIStandIn,
    holding: HoldingServer,
) -> None:
    app = make_app(**standin_config, TOOL_HTTP_ALLOWED_HOSTS=holding.host)
    client = app.test_client()
    standin.script(
        Reply(tool_calls=[ScriptedCall("http_get", f'{{"url": "{holding.url("/hold")}"}}')])
    )
    thread_id, run_id = start(app, ["http_get"])
    holding.wait_arrived()

    serving.stop(app)

    run = wait_run(client, run_id)
    assert run["status"] == "interrupted"
    (call,) = calls_of(client, run_id)
    assert call["status"] == "cancelled"
    assert_every_call_answered(messages_of(client, thread_id))


def test_a_resumed_run_runs_its_approved_calls_and_tells_the_model_of_rejected_ones(
    client: FlaskClient, tool_app: Flask, standin: OpenAIStandIn
) -> None:
    agent = agent_with_tools(tool_app, ["current_time"])
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": "Time, twice?"})
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "current_time", "arguments": "{}"}},
        {"id": "c2", "type": "function", "function": {"name": "current_time", "arguments": "{}"}},
    ]
    runner = get_runner(tool_app)
    # What a run parked for approval and then decided leaves: queued again, begun before.
    with db.session_scope(tool_app) as session:
        run = Run(
            agent_id=agent["id"],
            thread_id=thread["id"],
            trigger="api",
            status="queued",
            owner=runner.instance_id,
            started_at=utcnow(),
        )
        session.add(run)
        session.flush()
        session.add(
            ThreadMessage(
                thread_id=thread["id"],
                role="assistant",
                content="",
                tool_calls=calls,
                processed=True,
                run_id=run.id,
            )
        )
        common = {"run_id": run.id, "round": 1, "name": "current_time"}
        common |= {"function": "current_time", "source": "builtin", "arguments": "{}"}
        common |= {"requires_approval": True, "decided_at": utcnow()}
        session.add_all(
            [
                ToolCall(
                    tool_call_id="c1", position=0, status="pending", decided_by="ann", **common
                ),
                ToolCall(
                    tool_call_id="c2",
                    position=1,
                    status="rejected",
                    decided_by="bob",
                    decision_reason="not now",
                    **common,
                ),
            ]
        )
        run_id = run.id
    runner.submit(run_id)

    assert wait_run(client, run_id)["status"] == "success"

    approved, rejected = calls_of(client, run_id)
    assert approved["status"] == "success" and approved["result"]
    assert rejected["status"] == "rejected"
    (request,) = standin.requests
    assert [m["role"] for m in request.messages] == ["system", "user", "assistant", "tool", "tool"]
    told = {m["tool_call_id"]: m["content"] for m in request.messages if m["role"] == "tool"}
    assert told == {"c1": approved["result"], "c2": "rejected by a person: not now"}
    stored = messages_of(client, thread["id"])
    assert_every_call_answered(stored)
    assert stored[0]["processed"] is True and stored[-1]["role"] == "assistant"


def row(role: str, content: str = "", run_id: int | None = 1, **fields: Any) -> dict[str, Any]:
    """A stored message as context_messages reads it."""
    empty = {"tool_calls": None, "tool_call_id": None, "name": None}
    return {"role": role, "content": content, "run_id": run_id, **empty, **fields}


def call(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}


def test_a_history_keeps_each_result_right_after_its_call_in_call_order() -> None:
    rows = [
        row("user", "q", run_id=None),
        row("assistant", tool_calls=[call("a"), call("b")]),
        row("user", "meanwhile", run_id=None),
        row("tool", "B", tool_call_id="b", name="f"),
        row("tool", "A", tool_call_id="a", name="f"),
        row("assistant", "done"),
    ]
    history = chat_history(rows)
    assert [(m["role"], m.get("tool_call_id")) for m in history] == [
        ("user", None),
        ("assistant", None),
        ("tool", "a"),
        ("tool", "b"),
        ("user", None),
        ("assistant", None),
    ]
    assert history[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [call("a"), call("b")],
    }
    assert history[3] == {"role": "tool", "tool_call_id": "b", "name": "f", "content": "B"}


def test_a_history_leaves_out_results_without_their_call_and_calls_without_results() -> None:
    cut = [row("tool", "A", tool_call_id="a", name="f"), row("assistant", "so")]
    assert chat_history(cut) == [{"role": "assistant", "content": "so"}]
    unanswered = [
        row("user", "q", run_id=None),
        row("assistant", "let me see", tool_calls=[call("a"), call("b")]),
        row("tool", "A", tool_call_id="a", name="f"),
    ]
    assert chat_history(unanswered) == [{"role": "user", "content": "q"}]
    # Unless the caller is about to add the missing results (a resumed run).
    resumed = chat_history(unanswered, open_calls={"b"})
    assert [m["role"] for m in resumed] == ["user", "assistant", "tool"]
    assert resumed[1]["content"] == "let me see"


def test_a_history_matches_calls_and_results_within_their_run() -> None:
    rows = [
        row("assistant", tool_calls=[call("call_0")], run_id=1),
        row("tool", "first", tool_call_id="call_0", name="f", run_id=1),
        row("assistant", tool_calls=[call("call_0")], run_id=2),
        row("tool", "second", tool_call_id="call_0", name="f", run_id=2),
    ]
    contents = [m["content"] for m in chat_history(rows)]
    assert contents == [None, "first", None, "second"]


def test_the_calls_of_a_run_whose_process_died_are_answered_cancelled(
    client: FlaskClient, tool_app: Flask
) -> None:
    agent = agent_with_tools(tool_app, ["current_time"])
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": "Time?"})
    run_id = orphan_run(tool_app, thread)
    call = {"id": "c1", "type": "function", "function": {"name": "current_time", "arguments": "{}"}}
    # A process that died mid-call: its run running, the call running, no result.
    with db.session_scope(tool_app) as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.status, run.started_at = "running", utcnow()
        conversations.add_message(
            session,
            thread["id"],
            ThreadMessageCreate(role="assistant", content="", tool_calls=[call]),
            processed=True,
            run_id=run_id,
        )
        session.add(
            ToolCall(
                run_id=run_id,
                tool_call_id="c1",
                round=1,
                position=0,
                name="current_time",
                function="current_time",
                source="builtin",
                status="running",
            )
        )

    assert reap_dead_owners(tool_app) == 1

    assert client.get(f"/api/runs/{run_id}").get_json()["status"] == "interrupted"
    (stored,) = calls_of(client, run_id)
    assert stored["status"] == "cancelled" and "stopped before it finished" in stored["error"]
    history = messages_of(client, thread["id"])
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[-1]["run_id"] == run_id and history[-1]["content"].startswith("cancelled")
    assert_every_call_answered(history)
