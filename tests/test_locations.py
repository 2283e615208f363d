"""Location headers: every create names what it made, and a replay names the same thing.

RFC 9110: a 201 identifies the resource it created in ``Location``; a run's
202 names the run to follow. A retry with the same Idempotency-Key gets the
stored response, and so the same header, however long after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import serve
from tests.helpers import assert_problem
from tests.helpers import create_agent
from tests.wsclient import WSClient
from zerg import db
from zerg import idempotency
from zerg.api.idempotency import HEADER
from zerg.api.openapi import get_spec


@dataclass(frozen=True)
class Create:
    """One create route: where to POST (given the agent and thread), what, and where it points."""

    path: Callable[[int, int], str]
    body: Callable[[int], dict[str, Any] | None]
    status: int
    location: Callable[[dict[str, Any]], str]


CREATES = {
    "agent": Create(
        lambda _a, _t: "/api/agents",
        lambda _a: {"name": "New"},
        201,
        lambda b: f"/api/agents/{b['id']}",
    ),
    "agent message": Create(
        lambda a, _t: f"/api/agents/{a}/messages",
        lambda _a: {"role": "user", "content": "note"},
        201,
        lambda b: f"/api/agents/{b['agent_id']}/messages/{b['id']}",
    ),
    "thread": Create(
        lambda a, _t: "/api/threads",
        lambda a: {"agent_id": a, "title": "Another"},
        201,
        lambda b: f"/api/threads/{b['id']}",
    ),
    "thread message": Create(
        lambda _a, t: f"/api/threads/{t}/messages",
        lambda _a: {"role": "user", "content": "hello"},
        201,
        lambda b: f"/api/threads/{b['thread_id']}/messages/{b['id']}",
    ),
    "mcp server": Create(
        lambda _a, _t: "/api/mcp-servers",
        lambda _a: {"name": "tools", "transport": "streamable_http", "url": "http://x.test/mcp"},
        201,
        lambda b: f"/api/mcp-servers/{b['id']}",
    ),
    "agent run": Create(
        lambda a, _t: f"/api/agents/{a}/run", lambda _a: None, 202, lambda b: f"/api/runs/{b['id']}"
    ),
    "thread run": Create(
        lambda _a, t: f"/api/threads/{t}/run",
        lambda _a: None,
        202,
        lambda b: f"/api/runs/{b['id']}",
    ),
}


@pytest.fixture
def agent_and_thread(client: FlaskClient) -> tuple[int, int]:
    """An agent with a task, and a thread of it holding a message that awaits an answer."""
    agent = create_agent(client, task_instructions="Summarise the news.")
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    sent = client.post(
        f"/api/threads/{thread['id']}/messages", json={"role": "user", "content": "hi"}
    )
    assert sent.status_code == 201
    return agent["id"], thread["id"]


def post(client: FlaskClient, create: Create, agent_id: int, thread_id: int, key: str) -> Any:
    return client.post(
        create.path(agent_id, thread_id),
        json=create.body(agent_id),
        headers={HEADER: key},
    )


@pytest.mark.parametrize("name", list(CREATES))
def test_a_create_names_what_it_made_and_a_replay_names_it_again(
    client: FlaskClient, agent_and_thread: tuple[int, int], name: str
) -> None:
    create = CREATES[name]
    first = post(client, create, *agent_and_thread, key=f"key-{name}")

    assert first.status_code == create.status, first.get_json()
    made = first.get_json()
    assert first.headers["Location"] == create.location(made)
    fetched = client.get(first.headers["Location"])
    assert fetched.status_code == 200
    assert fetched.get_json()["id"] == made["id"]

    again = post(client, create, *agent_and_thread, key=f"key-{name}")

    assert again.status_code == create.status
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert again.get_data() == first.get_data()


def test_a_create_without_a_key_names_what_it_made(client: FlaskClient) -> None:
    response = client.post("/api/agents", json={"name": "Keyless"})

    assert response.headers["Location"] == f"/api/agents/{response.get_json()['id']}"


def test_a_response_stored_before_locations_were_kept_is_replayed_without_one(
    app: Flask, client: FlaskClient
) -> None:
    """Records from before migration 0008 have no location; their replays add none."""
    claim = idempotency.Claim(
        scope=idempotency.ANONYMOUS_SCOPE,
        key="old",
        method="POST",
        path="/api/agents",
        fingerprint=idempotency.fingerprint({"name": "Old"}),
    )
    with db.session_scope(app) as session:
        idempotency.remember(
            session, claim, idempotency.Stored(201, "application/json", '{"id": 7}')
        )

    replayed = client.post("/api/agents", json={"name": "Old"}, headers={HEADER: "old"})

    assert replayed.status_code == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert "Location" not in replayed.headers


def test_a_ticket_names_the_websocket_url_that_redeems_it(app: Flask) -> None:
    with serve(app) as server:
        response = app.test_client().post("/api/ws/tickets")
        assert response.status_code == 201
        location = response.headers["Location"]
        assert location == f"/api/ws?ticket={response.get_json()['ticket']}"
        with WSClient(f"{server.ws_url}{location}") as ws:
            ws.ping()


@pytest.mark.parametrize("kind", ["agents", "threads"])
def test_a_message_is_found_only_under_its_own_agent_or_thread(
    client: FlaskClient, agent_and_thread: tuple[int, int], kind: str
) -> None:
    agent_id, thread_id = agent_and_thread
    owner = agent_id if kind == "agents" else thread_id
    made = client.post(f"/api/{kind}/{owner}/messages", json={"role": "user", "content": "x"})
    other = create_agent(client)["id"]
    if kind == "threads":
        other = client.post("/api/threads", json={"agent_id": other}).get_json()["id"]
    message_id = made.get_json()["id"]

    assert client.get(f"/api/{kind}/{owner}/messages/{message_id}").status_code == 200
    assert_problem(client.get(f"/api/{kind}/{other}/messages/{message_id}"), 404)
    assert_problem(client.get(f"/api/{kind}/{owner}/messages/{message_id + 100}"), 404)


def test_the_document_lists_location_for_every_create(app: Flask) -> None:
    """Every POST answering 201 or a run's 202 documents Location; no other answer does."""
    documented = {
        (method.upper(), path, status)
        for path, item in get_spec(app)[0]["paths"].items()
        for method, operation in item.items()
        for status, answer in operation["responses"].items()
        if "Location" in answer.get("headers", {})
    }
    assert documented == {
        ("POST", "/api/agents", "201"),
        ("POST", "/api/agents/{agent_id}/messages", "201"),
        ("POST", "/api/agents/{agent_id}/run", "202"),
        ("POST", "/api/mcp-servers", "201"),
        ("POST", "/api/threads", "201"),
        ("POST", "/api/threads/{thread_id}/messages", "201"),
        ("POST", "/api/threads/{thread_id}/run", "202"),
        ("POST", "/api/ws/tickets", "201"),
    }
