"""The tool loop with approvals: a run parks on a call that needs a yes, resumes once decided."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import wait_for
from tests.openai_standin import OpenAIStandIn
from tests.openai_standin import Reply
from tests.openai_standin import ScriptedCall
from tests.test_runs import get_run
from tests.test_runs import wait_run
from tests.tool_runs import agent_with_tools
from tests.tool_runs import assert_every_call_answered
from tests.tool_runs import calls_of
from tests.tool_runs import messages_of
from tests.tool_runs import run_on
from zerg.runs.pool import get_runner


@pytest.fixture
def client(tool_app: Flask) -> FlaskClient:
    return tool_app.test_client()


def park_a_run(tool_app: Flask, standin: OpenAIStandIn) -> tuple[int, int]:
    """Run an agent whose current_time needs approval until it waits; return thread and run."""
    client = tool_app.test_client()
    standin.script(
        Reply(
            tool_calls=[
                ScriptedCall("current_time", '{"timezone": "UTC"}'),
                ScriptedCall("current_time", '{"timezone": "Asia/Tokyo"}'),
            ]
        )
    )
    agent = agent_with_tools(tool_app, ["current_time"], approval_required=["current_time"])
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    run_id = run_on(client, thread["id"], "Time in UTC and Tokyo?")
    wait_for(lambda: get_run(client, run_id)["status"] == "awaiting_approval", "the run to park")
    return thread["id"], run_id


def decide(
    client: FlaskClient, run_id: int, call: dict[str, Any], verdict: str, **body: Any
) -> None:
    response = client.post(f"/api/runs/{run_id}/tool-calls/{call['id']}/{verdict}", json=body)
    assert response.status_code == 200, response.get_json()


def test_a_call_that_needs_approval_parks_the_run_and_frees_its_worker(
    client: FlaskClient, tool_app: Flask, standin: OpenAIStandIn
) -> None:
    thread_id, run_id = park_a_run(tool_app, standin)

    wait_for(lambda: run_id not in get_runner(tool_app).held(), "the worker to let the run go")
    calls = calls_of(client, run_id)
    assert [c["status"] for c in calls] == ["awaiting_approval"] * 2
    assert all(c["requires_approval"] and c["approval_deadline"] for c in calls)
    stored = messages_of(client, thread_id)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert len(standin.requests) == 1


def test_an_approved_and_a_rejected_call_resume_the_run_without_asking_the_model_again(
    client: FlaskClient, tool_app: Flask, standin: OpenAIStandIn
) -> None:
    thread_id, run_id = park_a_run(tool_app, standin)
    utc, tokyo = calls_of(client, run_id)

    decide(client, run_id, utc, "approve")
    assert get_run(client, run_id)["status"] == "awaiting_approval"
    decide(client, run_id, tokyo, "reject", reason="not Tokyo")

    run = wait_run(client, run_id)
    assert run["status"] == "success", run
    utc, tokyo = calls_of(client, run_id)
    assert utc["status"] == "success" and '"timezone": "UTC"' in utc["result"]
    assert tokyo["status"] == "rejected" and tokyo["decision_reason"] == "not Tokyo"
    # One request to call, one to answer: the round was not asked for again.
    first, second = standin.requests
    told = {m["tool_call_id"]: m["content"] for m in second.messages if m["role"] == "tool"}
    assert told == {
        utc["tool_call_id"]: utc["result"],
        tokyo["tool_call_id"]: "rejected by a person: not Tokyo",
    }
    stored = messages_of(client, thread_id)
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "tool", "assistant"]
    assert_every_call_answered(stored)
    assert stored[0]["processed"] is True


def test_cancelling_a_waiting_run_answers_its_calls(
    client: FlaskClient, tool_app: Flask, standin: OpenAIStandIn
) -> None:
    thread_id, run_id = park_a_run(tool_app, standin)

    client.post(f"/api/runs/{run_id}/cancel")

    assert wait_run(client, run_id)["status"] == "cancelled"
    assert {c["status"] for c in calls_of(client, run_id)} == {"rejected"}
    assert_every_call_answered(messages_of(client, thread_id))
