"""Runs against a real OpenAI-compatible server (the local stand-in), failures included."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import STANDIN_MODEL
from tests.conftest import AppFactory
from tests.helpers import stream_watch
from tests.helpers import wait_for
from tests.openai_standin import OpenAIStandIn
from tests.openai_standin import Reply
from tests.test_runs import wait_run
from zerg.realtime import events
from zerg.realtime.events import STREAM_EVENTS
from zerg.realtime.events import Event
from zerg.realtime.events import EventType

MODEL = STANDIN_MODEL


@pytest.fixture
def model_app(make_app: AppFactory, standin_config: dict[str, Any]) -> Flask:
    return make_app(**standin_config, OPENAI_TIMEOUT_SECONDS=2)


@pytest.fixture
def client(model_app: Flask) -> FlaskClient:
    return model_app.test_client()


def start(client: FlaskClient, content: str = "Tell me a story") -> tuple[dict[str, Any], int]:
    agent = client.post(
        "/api/agents",
        json={"name": "storyteller", "model": MODEL, "system_instructions": "You tell stories."},
    ).get_json()
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": content})
    response = client.post(f"/api/threads/{thread['id']}/run")
    assert response.status_code == 202, response.get_json()
    return thread, response.get_json()["id"]


def thread_messages(client: FlaskClient, thread_id: int) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = client.get(f"/api/threads/{thread_id}/messages").get_json()
    return result


def test_a_run_streams_from_the_model_and_stores_its_reply(
    client: FlaskClient, standin: OpenAIStandIn
) -> None:
    standin.script(Reply(pieces=["Once ", "upon ", "a time."]))
    thread, run_id = start(client)

    run = wait_run(client, run_id)

    assert run["status"] == "success"
    assert run["prompt_tokens"] is not None and run["completion_tokens"] == 3
    assert thread_messages(client, thread["id"])[-1]["content"] == "Once upon a time."
    (request,) = standin.requests
    assert request.model == MODEL
    assert request.messages == [
        {"role": "system", "content": "You tell stories."},
        {"role": "user", "content": "Tell me a story"},
    ]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(status=500, message="the GPU caught fire"), "returned 500: the GPU caught fire"),
        (Reply(status=429, message="slow down"), "returned 429"),
        (Reply(pieces=["Once ", "upon ", "a ", "time"], fail_after=2), "broke off the reply"),
        (Reply(pieces=["Once ", "upon"], fail_after=1, failure="truncate"), "before finishing"),
        (Reply(pieces=["Once"], wait=3), "timed out after 2 s"),
    ],
    ids=["500", "429", "mid-stream", "truncated", "timeout"],
)
def test_a_failing_model_fails_the_run_and_loses_nothing(
    client: FlaskClient, standin: OpenAIStandIn, reply: Reply, error: str
) -> None:
    standin.script(reply)
    thread, run_id = start(client)

    run = wait_run(client, run_id)

    assert run["status"] == "failed"
    assert error in run["error"]
    agent = client.get(f"/api/agents/{thread['agent_id']}").get_json()
    assert agent["status"] == "error"
    assert error in agent["last_error"]
    assert agent["last_run_status"] == "failed"
    # The user's message stays, unanswered, ready for another run.
    (message,) = thread_messages(client, thread["id"])
    assert message["role"] == "user" and message["processed"] is False

    standin.script(Reply(pieces=["Better ", "now."]))
    retry = client.post(f"/api/threads/{thread['id']}/run")
    assert retry.status_code == 202
    assert wait_run(client, retry.get_json()["id"])["status"] == "success"
    assert thread_messages(client, thread["id"])[-1]["content"] == "Better now."
    agent = client.get(f"/api/agents/{thread['agent_id']}").get_json()
    assert agent["status"] == "idle" and agent["last_error"] is None
    assert agent["last_run_status"] == "success"


def test_rate_limits_are_retried_when_configured(
    make_app: AppFactory, standin: OpenAIStandIn
) -> None:
    app = make_app(
        LLM_PROVIDER="openai",
        OPENAI_BASE_URL=standin.base_url,
        OPENAI_MODELS=MODEL,
        OPENAI_MAX_RETRIES=2,
    )
    client = app.test_client()
    standin.script(
        Reply(status=429, retry_after=0.05),
        Reply(status=429, retry_after=0.05),
        Reply(pieces=["Third ", "time lucky."]),
    )
    thread, run_id = start(client)

    assert wait_run(client, run_id)["status"] == "success"
    assert len(standin.requests) == 3
    assert thread_messages(client, thread["id"])[-1]["content"] == "Third time lucky."


def test_cancel_hangs_up_on_the_model_and_keeps_the_partial_reply(
    client: FlaskClient, standin: OpenAIStandIn
) -> None:
    standin.script(Reply(pieces=[f"word{i} " for i in range(50)], delay=0.1))
    with stream_watch(client.application) as watch:
        thread, run_id = start(client)
        (request,) = standin.wait_for_requests(1)
        watch.wait(run_id)

    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 202

    run = wait_run(client, run_id)
    assert run["status"] == "cancelled"
    reply = thread_messages(client, thread["id"])[-1]
    assert reply["partial"] is True
    assert reply["content"].startswith("word0 word1")
    assert "word49" not in reply["content"]
    assert request.disconnected.wait(5)


HUGE = 2**64


@pytest.mark.parametrize(
    "reply",
    [
        # A chunk no client expects: the provider fails with no ProviderError.
        pytest.param(
            Reply(pieces=["Once ", "upon"], fail_after=1, failure="malformed"), id="stream"
        ),
        # Token counts no integer column holds: storing the outcome fails.
        pytest.param(
            Reply(
                pieces=["Once ", "upon"],
                usage={"prompt_tokens": HUGE, "completion_tokens": 2, "total_tokens": HUGE},
            ),
            id="finish",
        ),
    ],
)
def test_an_unexpected_failure_ends_the_stream_with_its_error(
    model_app: Flask, client: FlaskClient, standin: OpenAIStandIn, reply: Reply
) -> None:
    seen: list[Event] = []
    events.get_bus(model_app).subscribe(seen.append)
    standin.script(reply)
    thread, run_id = start(client)

    run = wait_run(client, run_id)

    assert run["status"] == "failed"
    assert run["error"]
    wait_for(lambda: any(e.type is EventType.STREAM_END for e in seen), "the watchers' stream_end")
    of_run = [e for e in seen if e.data.get("run_id", e.data.get("id")) == run_id]
    streamed = [e.type for e in of_run if e.type in STREAM_EVENTS]
    assert streamed[0] is EventType.STREAM_START and streamed[-1] is EventType.STREAM_END
    end = of_run[[e.type for e in of_run].index(EventType.STREAM_END)]
    assert (end.data["status"], end.data["error"]) == ("failed", run["error"])
    updates = [e.data["status"] for e in of_run if e.type is EventType.RUN_UPDATED]
    assert updates[-1] == "failed"
    agent = client.get(f"/api/agents/{thread['agent_id']}").get_json()
    assert (agent["status"], agent["last_error"]) == ("error", run["error"])
    assert [m["role"] for m in thread_messages(client, thread["id"])] == ["user"]
