"""The tool loop: a run calls its agent's tools, runs them, streams them, and answers."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import AppFactory
from tests.conftest import serve
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
from tests.wsclient import WSClient
from zerg import db
from zerg.models import Agent

TOOL_FRAMES = (
    "tool_call_started",
    "tool_call_arguments_delta",
    "tool_call_completed",
    "tool_call_failed",
)


@pytest.fixture
def client(tool_app: Flask) -> FlaskClient:
    return tool_app.test_client()


def test_a_run_calls_a_builtin_tool_and_answers_with_its_result(
    client: FlaskClient, tool_app: Flask, standin: OpenAIStandIn
) -> None:
    standin.script(Reply(tool_calls=[ScriptedCall("current_time", '{"timezone": "UTC"}')]))
    thread_id, run_id = start(tool_app, ["current_time"])

    run = wait_run(client, run_id)

    assert run["status"] == "success", run
    (call,) = calls_of(client, run_id)
    assert call["run_id"] == run_id and call["tool_call_id"] == "call_standin_0"
    assert (call["round"], call["position"]) == (1, 0)
    assert (call["name"], call["function"], call["source"]) == (
        "current_time",
        "current_time",
        "builtin",
    )
    assert call["arguments"] == '{"timezone": "UTC"}'
    assert call["status"] == "success" and call["error"] is None and not call["truncated"]
    assert '"timezone": "UTC"' in call["result"]
    assert call["duration_ms"] is not None and call["finished_at"] is not None
    assert call["requires_approval"] is False

    user, asked, result, answer = messages_of(client, thread_id)
    assert user["role"] == "user" and user["processed"] is True and user["run_id"] is None
    assert asked["role"] == "assistant" and asked["run_id"] == run_id
    assert asked["tool_calls"] == [
        {
            "id": "call_standin_0",
            "type": "function",
            "function": {"name": "current_time", "arguments": '{"timezone": "UTC"}'},
        }
    ]
    assert result["role"] == "tool" and result["run_id"] == run_id
    assert (result["tool_call_id"], result["name"]) == ("call_standin_0", "current_time")
    assert result["content"] == call["result"]
    assert answer["role"] == "assistant" and answer["run_id"] == run_id
    assert call["result"] in answer["content"] and not answer["partial"]

    first, second = standin.requests
    assert [tool["function"]["name"] for tool in first.body["tools"]] == ["current_time"]
    assert second.messages[-2:] == [
        {"role": "assistant", "content": None, "tool_calls": asked["tool_calls"]},
        {
            "role": "tool",
            "tool_call_id": "call_standin_0",
            "name": "current_time",
            "content": call["result"],
        },
    ]


def test_the_calls_of_one_reply_run_side_by_side(
    client: FlaskClient, tool_app: Flask, standin: OpenAIStandIn, holding: HoldingServer
) -> None:
    # /pair answers only once both requests are in: one after the other, neither would.
    pair = f'{{"url": "{holding.url("/pair")}"}}'
    standin.script(
        Reply(tool_calls=[ScriptedCall("http_get", pair), ScriptedCall("http_get", pair)])
    )
    thread_id, run_id = start(tool_app, ["http_get"])

    assert wait_run(client, run_id)["status"] == "success"
    calls = calls_of(client, run_id)
    assert [(c["position"], c["status"]) for c in calls] == [(0, "success"), (1, "success")]
    assert all("answer of /pair" in c["result"] for c in calls)
    stored = messages_of(client, thread_id)
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "tool", "assistant"]
    assert_every_call_answered(stored)
    # The model saw the results in the order of its calls.
    results = [m for m in standin.requests[1].messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in results] == ["call_standin_0", "call_standin_1"]


def test_failing_timing_out_and_unknown_tools_are_errors_the_model_reads(
    make_app: AppFactory,
    standin_config: dict[str, Any],
    standin: OpenAIStandIn,
    holding: HoldingServer,
) -> None:
    app = make_app(**standin_config, TOOL_TIMEOUT_SECONDS=0.5, TOOL_HTTP_ALLOWED_HOSTS=holding.host)
    client = app.test_client()
    standin.script(
        Reply(
            tool_calls=[
                ScriptedCall("current_time", '{"timezone": "Mars/Olympus_Mons"}'),
                ScriptedCall("http_get", f'{{"url": "{holding.url("/dribble")}"}}'),
                ScriptedCall("launch_rockets", "{}"),
                ScriptedCall("current_time", '{"timezone": '),
            ]
        )
    )
    thread_id, run_id = start(app, ["current_time", "http_get"])

    run = wait_run(client, run_id)

    assert run["status"] == "success" and run["error"] is None
    bad_zone, stalled, unknown, broken = calls_of(client, run_id)
    assert bad_zone["status"] == "error" and "Mars/Olympus_Mons" in bad_zone["error"]
    assert stalled["status"] == "timeout" and "timed out" in stalled["error"]
    assert unknown["status"] == "error" and "unknown tool 'launch_rockets'" in unknown["error"]
    assert (unknown["name"], unknown["source"]) == ("launch_rockets", "builtin")
    assert broken["status"] == "error" and "not valid JSON" in broken["error"]
    assert all(c["result"] is None for c in (bad_zone, stalled, unknown, broken))
    stored = messages_of(client, thread_id)
    assert_every_call_answered(stored)
    results = [m for m in standin.requests[1].messages if m["role"] == "tool"]
    told = {m["tool_call_id"]: m["content"] for m in results}
    assert told == {c["tool_call_id"]: c["error"] for c in (bad_zone, stalled, unknown, broken)}
    assert stored[-1]["role"] == "assistant" and stored[-1]["run_id"] == run_id


def test_a_run_that_keeps_calling_tools_fails_at_the_round_limit(
    make_app: AppFactory, standin_config: dict[str, Any], standin: OpenAIStandIn
) -> None:
    app = make_app(**standin_config, RUN_MAX_TOOL_ROUNDS=2)
    client = app.test_client()
    again = Reply(tool_calls=[ScriptedCall("current_time", "{}")])
    standin.script(again, again, again)
    thread_id, run_id = start(app, ["current_time"])

    run = wait_run(client, run_id)

    assert run["status"] == "failed"
    assert "RUN_MAX_TOOL_ROUNDS=2" in run["error"] and "more than 2 rounds" in run["error"]
    assert len(standin.requests) == 3
    calls = calls_of(client, run_id)
    assert [(c["round"], c["status"]) for c in calls] == [(1, "success"), (2, "success")]
    assert calls[0]["tool_call_id"] != calls[1]["tool_call_id"]
    stored = messages_of(client, thread_id)
    # The third reply's calls were never stored: the history stays whole.
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant", "tool"]
    assert_every_call_answered(stored)
    assert stored[0]["processed"] is False  # a failed run leaves its question for a retry
    agent = client.get(f"/api/agents/{run['agent_id']}").get_json()
    assert agent["status"] == "error" and "RUN_MAX_TOOL_ROUNDS" in agent["last_error"]


def test_tool_frames_stream_in_order_and_replay_from_last_event_id(
    tool_app: Flask, standin: OpenAIStandIn
) -> None:
    arguments = '{"timezone": "Europe/Paris"}'
    standin.script(Reply(tool_calls=[ScriptedCall("current_time", arguments, fragment=5)]))
    agent = agent_with_tools(tool_app, ["current_time"])
    client = tool_app.test_client()
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    topic = f"thread:{thread['id']}"
    with serve(tool_app) as server:
        with WSClient(f"{server.ws_url}/api/ws?initial_topics={topic}") as ws:
            ws.recv_type("thread_history")
            run_id = run_on(client, thread["id"], "Time in Paris?")
            frames = []
            while not frames or frames[-1]["type"] != "stream_end":
                frame = ws.recv(timeout=10)
                if frame["type"] != "run_updated":
                    frames.append(frame)

        kinds = [f["type"] for f in frames]
        collapsed = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
        assert collapsed == [
            "thread_message",  # the question
            "stream_start",
            "tool_call_started",
            "tool_call_arguments_delta",
            "thread_message",  # the assistant's call, then its result
            "tool_call_completed",
            "stream_chunk",
            "thread_message",  # the answer
            "stream_end",
        ]
        stored = [f["message"]["role"] for f in frames if f["type"] == "thread_message"]
        assert stored == ["user", "assistant", "tool", "assistant"]
        tool_frames = [f for f in frames if f["type"] in TOOL_FRAMES]
        assert all(f["run_id"] == run_id and f["thread_id"] == thread["id"] for f in tool_frames)
        assert {f["tool_call_id"] for f in tool_frames} == {"call_standin_0"}
        started = tool_frames[0]
        assert (started["name"], started["function"]) == ("current_time", "current_time")
        assert (started["round"], started["position"]) == (1, 0)
        pieces = [f["arguments"] for f in tool_frames if f["type"] == "tool_call_arguments_delta"]
        assert "".join(pieces) == arguments
        completed = tool_frames[-1]
        (call,) = calls_of(client, run_id)
        assert completed["call_id"] == call["id"] and completed["status"] == "success"
        assert completed["result"] == call["result"] and completed["truncated"] is False
        assert completed["duration_ms"] == call["duration_ms"]

        # A client that saw up to stream_start gets the rest again, in order.
        since = frames[kinds.index("stream_start")]["event_id"]
        query = f"?initial_topics={topic}&last_event_id={since}"
        with WSClient(f"{server.ws_url}/api/ws{query}") as ws:
            ws.recv_type("thread_history")
            replayed = []
            while not replayed or replayed[-1]["type"] != "stream_end":
                frame = ws.recv(timeout=10)
                if frame["type"] != "run_updated":
                    replayed.append(frame)
    after = frames[kinds.index("stream_start") + 1 :]
    assert [f["event_id"] for f in replayed] == [f["event_id"] for f in after]
    assert replayed == after


def test_the_tool_calls_of_an_unknown_run_are_404(client: FlaskClient) -> None:
    response = client.get("/api/runs/999/tool-calls")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_a_run_without_tool_calls_lists_none(client: FlaskClient, tool_app: Flask) -> None:
    _thread_id, run_id = start(tool_app, [])
    assert wait_run(client, run_id)["status"] == "success"
    assert calls_of(client, run_id) == []


def test_an_agent_s_temperature_and_max_tokens_reach_the_model(
    client: FlaskClient, tool_app: Flask, standin: OpenAIStandIn
) -> None:
    agent = agent_with_tools(tool_app, [])
    with db.session_scope(tool_app) as session:
        stored = session.scalars(select(Agent).where(Agent.id == agent["id"])).one()
        stored.temperature, stored.max_tokens = 0.25, 64
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    run_id = run_on(client, thread["id"], "Hello")
    assert wait_run(client, run_id)["status"] == "success"
    (request,) = standin.requests
    assert (request.body["temperature"], request.body["max_tokens"]) == (0.25, 64)
    assert "tools" not in request.body


def offline_run(client: FlaskClient, agent_id: int, content: str) -> tuple[int, int]:
    thread = client.post("/api/threads", json={"agent_id": agent_id}).get_json()
    return thread["id"], run_on(client, thread["id"], content)


def test_the_offline_model_calls_a_tool_and_reports_its_result(make_app: AppFactory) -> None:
    client = make_app(OFFLINE_DELAY_SECONDS=0.001).test_client()
    agent = client.post("/api/agents", json={"name": "clock", "tools": ["current_time"]})
    thread_id, run_id = offline_run(
        client, agent.get_json()["id"], '/tool current_time {"timezone": "Europe/Paris"}'
    )

    assert wait_run(client, run_id)["status"] == "success"
    (call,) = calls_of(client, run_id)
    assert call["status"] == "success" and "Europe/Paris" in call["result"]
    stored = messages_of(client, thread_id)
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[-1]["content"].startswith("The tool current_time answered:")


def test_an_mcp_server_s_tools_run_in_the_loop_and_time_out_as_timeouts(
    make_app: AppFactory, mcp_url: str
) -> None:
    timeouts = {"TOOL_TIMEOUT_SECONDS": 0.5, "MCP_CALL_TIMEOUT_SECONDS": 1}
    app = make_app(OFFLINE_DELAY_SECONDS=0.001, **timeouts)
    client = app.test_client()
    body = {"name": "web", "transport": "streamable_http", "url": mcp_url}
    server = client.post("/api/mcp-servers", json=body).get_json()
    assert client.get(f"/api/mcp-servers/{server['id']}/tools").status_code == 200
    tools = ["mcp:web/add", "mcp:web/slow"]
    agent = client.post("/api/agents", json={"name": "adder", "tools": tools}).get_json()

    _thread, added = offline_run(client, agent["id"], '/tool mcp:web/add {"a": 2, "b": 3}')
    _thread, stalled = offline_run(client, agent["id"], "/tool mcp:web/slow {}")

    assert wait_run(client, added)["status"] == "success"
    (call,) = calls_of(client, added)
    assert (call["name"], call["function"], call["source"]) == (
        "mcp:web/add",
        "mcp__web__add",
        "mcp:web",
    )
    assert call["status"] == "success" and "5" in call["result"]
    assert wait_run(client, stalled)["status"] == "success"
    (call,) = calls_of(client, stalled)
    assert call["status"] == "timeout" and "timed out" in call["error"]
