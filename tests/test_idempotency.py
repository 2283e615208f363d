"""Idempotency keys: retries get the first response, and the database decides who was first.

Every test runs on SQLite and, with ``TEST_DATABASE_URL``, on PostgreSQL.
Clients are the test client, a real HTTP client against a live server (also
one that hangs up before the answer), and a real websocket client.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from tests.conftest import AppFactory
from tests.conftest import LiveServer
from tests.conftest import app_config
from tests.conftest import migrate_to_head
from tests.conftest import serve
from tests.helpers import Rows
from tests.helpers import assert_problem
from tests.helpers import wait_for
from tests.wsclient import WSClient
from zerg import agents
from zerg import create_app
from zerg import db
from zerg import idempotency
from zerg import serving
from zerg.config import ConfigError
from zerg.domain_errors import KeyInUse
from zerg.models import Agent
from zerg.models import AgentMessage
from zerg.models import IdempotencyKey
from zerg.models import McpServer
from zerg.models import Run
from zerg.models import Thread
from zerg.models import ThreadMessage
from zerg.realtime import events
from zerg.realtime.events import Event
from zerg.runs.scheduler import LOCK
from zerg.runs.scheduler import PURGER
from zerg.runs.scheduler import get_scheduler
from zerg.runs.scheduler import purge_idempotency_keys
from zerg.schemas import AgentCreate

FAST = {"OFFLINE_DELAY_SECONDS": 0.001, "STREAM_COALESCE_SECONDS": 0.001}
REPLAYED = "Idempotent-Replayed"
JSON = {"Content-Type": "application/json"}


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    """The test app, with runs that finish at once (``client``, ``rows``, ... use it)."""
    return make_app(**FAST)


@pytest.fixture
def published(app: Flask) -> Iterator[list[Event]]:
    """Every event the app publishes from now on."""
    seen: list[Event] = []
    unsubscribe = events.get_bus(app).subscribe(seen.append)
    yield seen
    unsubscribe()


def records(app: Flask) -> list[IdempotencyKey]:
    with db.session_scope(app, write=False) as session:
        return list(session.scalars(select(IdempotencyKey).order_by(IdempotencyKey.id)))


def set_expiry(session: Session, when: datetime) -> None:
    for record in session.scalars(select(IdempotencyKey)):
        record.expires_at = when
    session.commit()


def assert_same_answer(first: TestResponse, again: TestResponse) -> None:
    assert again.status_code == first.status_code
    assert again.get_data() == first.get_data()
    assert again.content_type == first.content_type
    assert REPLAYED not in first.headers
    assert again.headers[REPLAYED] == "true"


# --- the seven operations -------------------------------------------------------


def new_agent(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/agents", json={"name": "helper", **fields})
    assert response.status_code == 201
    body: dict[str, Any] = response.get_json()
    return body


def new_thread(client: FlaskClient) -> dict[str, Any]:
    agent = new_agent(client)
    response = client.post("/api/threads", json={"agent_id": agent["id"]})
    body: dict[str, Any] = response.get_json()
    return body


def create_agent(client: FlaskClient) -> tuple[str, dict[str, Any] | None]:
    return "/api/agents", {"name": "once"}


def create_thread(client: FlaskClient) -> tuple[str, dict[str, Any] | None]:
    return "/api/threads", {"agent_id": new_agent(client)["id"]}


def thread_message(client: FlaskClient) -> tuple[str, dict[str, Any] | None]:
    return f"/api/threads/{new_thread(client)['id']}/messages", {"content": "hi"}


def agent_message(client: FlaskClient) -> tuple[str, dict[str, Any] | None]:
    return f"/api/agents/{new_agent(client)['id']}/messages", {"content": "hi"}


def thread_run(client: FlaskClient) -> tuple[str, dict[str, Any] | None]:
    thread = new_thread(client)
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": "hi"})
    return f"/api/threads/{thread['id']}/run", None


def mcp_server(client: FlaskClient) -> tuple[str, dict[str, Any] | None]:
    return "/api/mcp-servers", {
        "name": "once",
        "transport": "streamable_http",
        "url": "http://x.test",
    }


def agent_run(client: FlaskClient) -> tuple[str, dict[str, Any] | None]:
    return f"/api/agents/{new_agent(client, task_instructions='Go.')['id']}/run", None


# Each operation that takes a key: what prepares a request to it, and the rows it makes.
Setup = Callable[[FlaskClient], tuple[str, dict[str, Any] | None]]
OPERATIONS: dict[str, tuple[Setup, type[Any]]] = {
    "create agent": (create_agent, Agent),
    "create thread": (create_thread, Thread),
    "thread message": (thread_message, ThreadMessage),
    "agent message": (agent_message, AgentMessage),
    "thread run": (thread_run, Run),
    "agent run": (agent_run, Run),
    "mcp server": (mcp_server, McpServer),
}


def wait_finished(client: FlaskClient, run_id: int) -> None:
    def finished() -> bool:
        return client.get(f"/api/runs/{run_id}").get_json()["status"] == "success"

    wait_for(finished, f"run {run_id} to finish")


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_retry_gets_the_first_response_and_changes_nothing(
    operation: str, app: Flask, client: FlaskClient, rows: Rows, published: list[Event]
) -> None:
    setup, model = OPERATIONS[operation]
    path, body = setup(client)
    first = client.post(path, json=body, headers=key("k-1"))
    assert first.status_code in (201, 202), first.get_json()
    if model is Run:
        # Its events keep coming until it has finished.
        wait_finished(client, first.get_json()["id"])
    count, announced = rows(model), len(published)

    again = client.post(path, json=body, headers=key("k-1"))

    assert_same_answer(first, again)
    assert rows(model) == count
    assert len(published) == announced
    assert rows(IdempotencyKey) == 1
    # No second run was handed to the workers either.
    assert rows(Run) == (1 if model is Run else 0)


def test_the_record_keeps_what_was_answered(app: Flask, client: FlaskClient) -> None:
    first = client.post("/api/agents", json={"name": "kept"}, headers=key("k-1"))
    (record,) = records(app)
    assert (record.scope, record.key) == (idempotency.ANONYMOUS_SCOPE, "k-1")
    assert (record.method, record.path) == ("POST", "/api/agents")
    assert record.fingerprint == idempotency.fingerprint({"name": "kept"})
    assert (record.status_code, record.content_type) == (201, "application/json")
    assert record.body == first.get_data(as_text=True)
    assert record.expires_at - record.created_at == timedelta(seconds=86400)


def test_the_same_json_written_differently_is_the_same_request(client: FlaskClient) -> None:
    first = client.post(
        "/api/agents",
        data='{"name": "a", "model": "offline"}',
        content_type="application/json",
        headers=key("k-1"),
    )
    again = client.post(
        "/api/agents",
        data='{ "model":"offline",\n "name":"a" }',
        content_type="application/json",
        headers=key("k-1"),
    )
    assert_same_answer(first, again)


def test_without_a_key_nothing_is_kept(client: FlaskClient, rows: Rows) -> None:
    new_agent(client)
    new_agent(client)
    assert (rows(Agent), rows(IdempotencyKey)) == (2, 0)


def test_different_keys_are_different_requests(client: FlaskClient, rows: Rows) -> None:
    for name in ("k-1", "k-2"):
        response = client.post("/api/agents", json={"name": "a"}, headers=key(name))
        assert response.status_code == 201 and REPLAYED not in response.headers
    assert (rows(Agent), rows(IdempotencyKey)) == (2, 2)


# --- refusals ----------------------------------------------------------------------


def test_the_same_key_with_another_body_is_refused(client: FlaskClient, rows: Rows) -> None:
    client.post("/api/agents", json={"name": "a"}, headers=key("k-1"))
    response = client.post("/api/agents", json={"name": "b"}, headers=key("k-1"))
    body = assert_problem(response, 422, ["header", "Idempotency-Key"], "idempotency_key_reused")
    assert "different request" in body["detail"]
    assert rows(Agent) == 1


def test_the_same_key_on_another_path_is_refused(client: FlaskClient, rows: Rows) -> None:
    agent = client.post("/api/agents", json={"name": "a"}, headers=key("k-1")).get_json()
    response = client.post(
        f"/api/agents/{agent['id']}/messages", json={"name": "a"}, headers=key("k-1")
    )
    assert_problem(response, 422, ["header", "Idempotency-Key"], "idempotency_key_reused")
    assert rows(AgentMessage) == 0


@pytest.mark.parametrize(
    "value",
    ["", "x" * 256, " leading", "trailing ", "caf\u00e9", "tab\there"],
    ids=["empty", "256 characters", "leading space", "trailing space", "not ASCII", "tab"],
)
def test_a_bad_key_is_refused_before_anything_runs(
    value: str, client: FlaskClient, rows: Rows
) -> None:
    response = client.post(
        "/api/agents",
        data=json.dumps({"name": "a"}).encode(),
        content_type="application/json",
        headers={"Idempotency-Key": value.encode("utf-8").decode("latin-1")},
    )
    assert "Idempotency-Key" in assert_problem(response, 400)["detail"]
    assert (rows(Agent), rows(IdempotencyKey)) == (0, 0)


def test_a_key_of_255_characters_is_accepted(client: FlaskClient) -> None:
    first = client.post("/api/agents", json={"name": "a"}, headers=key("k" * 255))
    again = client.post("/api/agents", json={"name": "a"}, headers=key("k" * 255))
    assert_same_answer(first, again)


def test_a_quoted_key_is_taken_as_sent(app: Flask, client: FlaskClient) -> None:
    """The draft's quoted form and the bare one are two keys, each replayed on its own."""
    first = client.post("/api/agents", json={"name": "a"}, headers=key('"k-1"'))
    assert_same_answer(first, client.post("/api/agents", json={"name": "a"}, headers=key('"k-1"')))
    bare = client.post("/api/agents", json={"name": "a"}, headers=key("k-1"))
    assert bare.status_code == 201 and REPLAYED not in bare.headers
    assert sorted(record.key for record in records(app)) == ['"k-1"', "k-1"]


def test_a_failed_request_keeps_nothing_so_its_retry_runs(client: FlaskClient, rows: Rows) -> None:
    """An error rolls back the work and the record with it."""
    thread = new_thread(client)
    path = f"/api/threads/{thread['id']}/run"
    refused = client.post(path, headers=key("run-1"))
    assert_problem(refused, 409)
    assert rows(IdempotencyKey) == 0
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": "now answer"})

    retried = client.post(path, headers=key("run-1"))

    assert retried.status_code == 202 and REPLAYED not in retried.headers
    assert (rows(Run), rows(IdempotencyKey)) == (1, 1)


def test_an_invalid_body_keeps_nothing(client: FlaskClient, rows: Rows) -> None:
    refused = client.post("/api/agents", json={"name": ""}, headers=key("k-1"))
    assert_problem(refused, 422, ["body", "name"], "string_too_short")
    response = client.post("/api/agents", json={"name": "fixed"}, headers=key("k-1"))
    assert response.status_code == 201 and REPLAYED not in response.headers
    assert rows(Agent) == 1


def test_a_repeat_while_the_first_is_in_flight_is_refused(
    app: Flask, client: FlaskClient, rows: Rows
) -> None:
    """In one process, a key being handled is refused at once, on either database."""
    with idempotency.in_flight(app, idempotency.ANONYMOUS_SCOPE, "k-1"):
        response = client.post("/api/agents", json={"name": "a"}, headers=key("k-1"))
    assert "still being processed" in assert_problem(response, 409)["detail"]
    assert rows(Agent) == 0
    # Once it is done, the key is free again.
    assert client.post("/api/agents", json={"name": "a"}, headers=key("k-1")).status_code == 201


def test_another_process_holding_the_key_decides_what_a_repeat_gets(
    make_app: AppFactory, rows: Rows
) -> None:
    """Two apps (two engines, as two processes would have) on one database.

    While the first holds the key in its transaction, PostgreSQL refuses the
    repeat (409: the advisory lock is taken); SQLite makes it wait for the
    first's commit (BEGIN IMMEDIATE), and then it gets the first's response.
    """
    first, second = make_app(**FAST), make_app(**FAST)
    claim = idempotency.Claim(
        scope=idempotency.ANONYMOUS_SCOPE,
        key="k-1",
        method="POST",
        path="/api/agents",
        fingerprint=idempotency.fingerprint({"name": "a"}),
    )
    answers: list[TestResponse] = []

    def repeat() -> None:
        client = second.test_client()
        answers.append(client.post("/api/agents", json={"name": "a"}, headers=key("k-1")))

    postgresql = db.get_database(first).engine.dialect.name == "postgresql"
    with db.session_scope(first) as session:
        assert idempotency.claim(session, claim) is None
        agent = agents.create_agent(session, AgentCreate(name="a"))
        stored = idempotency.Stored(201, "application/json", json.dumps({"id": agent.id}))
        idempotency.remember(session, claim, stored)
        repeating = threading.Thread(target=repeat)
        repeating.start()
        if postgresql:
            repeating.join(timeout=30)
            assert_problem(answers[0], 409)
    repeating.join(timeout=60)

    (answer,) = answers
    if not postgresql:
        assert answer.get_json() == {"id": agent.id}
        assert answer.headers[REPLAYED] == "true"
    assert (rows(Agent), rows(IdempotencyKey)) == (1, 1)


def test_a_key_held_in_another_database_on_the_server_is_not_in_use(
    make_app: AppFactory, new_schema: Callable[[], str]
) -> None:
    """Advisory locks span the server: the key's lock is namespaced by the database.

    Two deployments (here two schemas) on one PostgreSQL server may see the
    same key at once; neither is refused because the other holds it.
    """
    first = make_app(**FAST)
    if db.get_database(first).engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL): advisory locks are its own")
    elsewhere_url = new_schema()
    migrate_to_head(elsewhere_url)
    elsewhere = create_app(app_config(elsewhere_url))
    claim = idempotency.Claim(idempotency.ANONYMOUS_SCOPE, "k-1", "POST", "/api/agents", "f")
    try:
        with db.session_scope(first) as session:
            assert idempotency.claim(session, claim) is None
            with db.session_scope(elsewhere) as other:
                assert idempotency.claim(other, claim) is None
    finally:
        db.get_database(elsewhere).engine.dispose()


def test_the_unique_constraint_refuses_a_second_record_for_a_key(app: Flask) -> None:
    """The last word when two first requests got past the locks: the later gets 409."""
    claim = idempotency.Claim(idempotency.ANONYMOUS_SCOPE, "k-1", "POST", "/api/agents", "f")
    stored = idempotency.Stored(201, "application/json", "{}")
    with pytest.raises(KeyInUse), db.session_scope(app) as session:
        idempotency.remember(session, claim, stored)
        idempotency.remember(session, claim, stored)
    assert records(app) == []


# --- over real HTTP ---------------------------------------------------------------


def test_a_retry_after_a_dropped_response_gets_the_first_answer(
    live_server: LiveServer, rows: Rows
) -> None:
    """The client hangs up before reading: the work was done, and the retry says what it was."""
    body = json.dumps({"name": "dropped"}).encode()
    request = (
        b"POST /api/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nIdempotency-Key: drop-1\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    address = ("127.0.0.1", live_server.server.server_port)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
    # The connection is gone before any answer was read; the server carried on.
    wait_for(lambda: rows(IdempotencyKey) == 1, "the first request to commit")

    retry = requests.post(
        f"{live_server.url}/api/agents", data=body, headers={**key("drop-1"), **JSON}, timeout=10
    )

    assert retry.status_code == 201
    assert retry.headers[REPLAYED] == "true"
    assert retry.json()["name"] == "dropped"
    assert rows(Agent) == 1


def test_concurrent_duplicates_create_exactly_one_row(live_server: LiveServer, rows: Rows) -> None:
    """Sixteen clients send one request at once: one runs, the rest get a replay or 409."""
    clients = 16
    start = threading.Barrier(clients)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def send() -> None:
        with requests.Session() as http:
            start.wait(timeout=30)
            response = http.post(
                f"{live_server.url}/api/agents",
                json={"name": "raced"},
                headers=key("race-1"),
                timeout=60,
            )
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=send) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)

    assert len(answers) == clients
    assert {response.status_code for response in answers} <= {201, 409}
    created = [r for r in answers if r.status_code == 201 and REPLAYED not in r.headers]
    replayed = [r for r in answers if r.status_code == 201 and REPLAYED in r.headers]
    assert len(created) == 1
    assert all(r.content == created[0].content for r in replayed)
    for refused in (r for r in answers if r.status_code == 409):
        assert refused.headers["Content-Type"] == "application/problem+json"
    assert (rows(Agent), rows(IdempotencyKey)) == (1, 1)


# --- expiry and purge ---------------------------------------------------------------


def test_the_ttl_is_a_setting(make_app: AppFactory) -> None:
    app = make_app(IDEMPOTENCY_TTL_SECONDS="60")
    app.test_client().post("/api/agents", json={"name": "a"}, headers=key("k-1"))
    (record,) = records(app)
    assert record.expires_at - record.created_at == timedelta(seconds=60)


@pytest.mark.parametrize("value", ["a day", "0", "-5", "1.5"])
def test_a_bad_ttl_stops_the_app(value: str, database_url: str) -> None:
    with pytest.raises(ConfigError, match="IDEMPOTENCY_TTL_SECONDS must be a whole number"):
        create_app({"DATABASE_URL": database_url, "IDEMPOTENCY_TTL_SECONDS": value})


def test_an_expired_key_is_as_good_as_new(
    app: Flask, client: FlaskClient, db_session: Session, rows: Rows
) -> None:
    first = client.post("/api/agents", json={"name": "a"}, headers=key("k-1")).get_json()
    set_expiry(db_session, datetime.now(UTC) - timedelta(seconds=1))

    again = client.post("/api/agents", json={"name": "b"}, headers=key("k-1"))

    assert again.status_code == 201 and REPLAYED not in again.headers
    assert again.get_json()["id"] != first["id"]
    assert rows(Agent) == 2
    (record,) = records(app)
    assert record.fingerprint == idempotency.fingerprint({"name": "b"})
    assert record.expires_at > datetime.now(UTC)


def test_the_purge_deletes_only_expired_keys(
    app: Flask, client: FlaskClient, db_session: Session
) -> None:
    client.post("/api/agents", json={"name": "a"}, headers=key("old"))
    set_expiry(db_session, datetime.now(UTC) - timedelta(seconds=1))
    client.post("/api/agents", json={"name": "b"}, headers=key("new"))

    assert purge_idempotency_keys(app) == 1

    assert [record.key for record in records(app)] == ["new"]
    assert purge_idempotency_keys(app) == 0


def test_only_the_scheduler_lock_holder_runs_the_purge(make_app: AppFactory) -> None:
    holder = make_app(**FAST, SCHEDULER_ENABLED=True)
    other = make_app(**FAST, SCHEDULER_ENABLED=True)
    serving.start(holder)
    serving.start(other)
    assert get_scheduler(holder).scheduler.get_job(PURGER) is not None
    assert get_scheduler(other).scheduler.get_job(PURGER) is None


def test_a_purge_that_fires_after_the_lock_was_lost_deletes_nothing(
    make_app: AppFactory, db_session: Session
) -> None:
    holder = make_app(**FAST, SCHEDULER_ENABLED=True)
    holder.test_client().post("/api/agents", json={"name": "a"}, headers=key("old"))
    set_expiry(db_session, datetime.now(UTC) - timedelta(seconds=1))
    serving.start(holder)
    locks = get_scheduler(holder).locks
    assert locks is not None
    locks.release(LOCK)

    assert purge_idempotency_keys(holder) == 0
    assert [record.key for record in records(holder)] == ["old"]


# --- scopes ------------------------------------------------------------------------


def test_keys_are_scoped_to_the_token_and_the_token_is_not_stored(
    make_app: AppFactory, rows: Rows
) -> None:
    """A server whose token changed does not hand the old token's responses to the new one."""
    responses = []
    for token in ("token-one", "token-two"):
        client = make_app(**FAST, API_TOKEN=token).test_client()
        headers = {**key("k-1"), "Authorization": f"Bearer {token}"}
        first = client.post("/api/agents", json={"name": "a"}, headers=headers)
        again = client.post("/api/agents", json={"name": "a"}, headers=headers)
        assert_same_answer(first, again)
        responses.append(first.get_json())
    assert responses[0]["id"] != responses[1]["id"]
    assert rows(Agent) == 2
    with db.session_scope(make_app(), write=False) as session:
        stored = session.scalars(select(IdempotencyKey.scope).order_by(IdempotencyKey.id)).all()
    assert stored == [
        hashlib.sha256(token.encode()).hexdigest() for token in ("token-one", "token-two")
    ]


# --- the websocket -------------------------------------------------------------------


def send_message(ws: WSClient, message_id: str, **fields: Any) -> dict[str, Any]:
    ws.send({"type": "send_message", "message_id": message_id, **fields})
    return ws.recv_until(lambda frame: frame.get("message_id") == message_id)


def test_a_resent_frame_gets_the_first_message_sent_and_stores_nothing(
    live_server: LiveServer, app: Flask, rows: Rows
) -> None:
    client = app.test_client()
    thread = new_thread(client)
    frame = {"thread_id": thread["id"], "content": "hello", "idempotency_key": "ws-1"}
    with WSClient(f"{live_server.ws_url}/api/ws") as ws:
        first = send_message(ws, "m-1", **frame)
        again = send_message(ws, "m-2", **frame)
    assert first["type"] == "message_sent" and "replayed" not in first
    assert first["run_id"] is not None
    assert again == {**first, "message_id": "m-2", "replayed": True}
    wait_finished(client, first["run_id"])
    messages = client.get(f"/api/threads/{thread['id']}/messages").get_json()
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert rows(Run) == 1
    (record,) = records(app)
    assert (record.method, record.path) == ("WS", "ws:send_message")


def test_a_frame_reusing_a_key_for_other_content_is_refused(
    live_server: LiveServer, app: Flask, rows: Rows
) -> None:
    thread = new_thread(app.test_client())
    with WSClient(f"{live_server.ws_url}/api/ws") as ws:
        send_message(ws, "m-1", thread_id=thread["id"], content="one", idempotency_key="ws-1")
        refused = send_message(
            ws, "m-2", thread_id=thread["id"], content="two", idempotency_key="ws-1"
        )
        ws.ping()
    assert refused["type"] == "error"
    assert refused["details"] == {"idempotency_key": "ws-1", "status": 422}
    assert rows(ThreadMessage) == 1


def test_a_frame_whose_key_is_in_flight_is_refused(
    live_server: LiveServer, app: Flask, rows: Rows
) -> None:
    thread = new_thread(app.test_client())
    with (
        WSClient(f"{live_server.ws_url}/api/ws") as ws,
        idempotency.in_flight(app, idempotency.ANONYMOUS_SCOPE, "ws-1"),
    ):
        refused = send_message(
            ws, "m-1", thread_id=thread["id"], content="x", idempotency_key="ws-1"
        )
    assert refused["type"] == "error"
    assert refused["details"] == {"idempotency_key": "ws-1", "status": 409}
    assert rows(ThreadMessage) == 0


@pytest.mark.parametrize("value", ["", "x" * 256, 7])
def test_a_frame_with_a_bad_key_is_refused(
    value: Any, live_server: LiveServer, app: Flask, rows: Rows
) -> None:
    thread = new_thread(app.test_client())
    with WSClient(f"{live_server.ws_url}/api/ws") as ws:
        refused = send_message(
            ws, "m-1", thread_id=thread["id"], content="x", idempotency_key=value
        )
    assert refused["type"] == "error"
    assert refused["error"] == "invalid send_message message"
    assert refused["details"]["errors"][0]["loc"] == ["idempotency_key"]
    assert rows(ThreadMessage) == 0


def test_a_websocket_key_is_scoped_to_the_connections_token(make_app: AppFactory) -> None:
    app = make_app(**FAST, API_TOKEN="ws-token")
    auth = {"Authorization": "Bearer ws-token"}
    client = app.test_client()
    agent = client.post("/api/agents", json={"name": "a"}, headers=auth).get_json()
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}, headers=auth).get_json()
    with serve(app) as server, WSClient(f"{server.ws_url}/api/ws", additional_headers=auth) as ws:
        sent = send_message(ws, "m-1", thread_id=thread["id"], content="x", idempotency_key="k")
    assert sent["type"] == "message_sent"
    (record,) = records(app)
    assert record.scope == hashlib.sha256(b"ws-token").hexdigest()
