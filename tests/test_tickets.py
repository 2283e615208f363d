"""Websocket auth without a token in the URL: a ticket from an authenticated POST, or a header.

A token in a URL is written to every access log it passes, so ``?token=`` is
refused however right it is. A browser (which cannot set headers on a
handshake) asks ``POST /api/ws/tickets`` for a ticket and connects with
``?ticket=``; a ticket lets one connection in, within 30 seconds, once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from flask import Flask
from websockets.exceptions import InvalidStatus

from tests.conftest import AppFactory
from tests.conftest import LiveServer
from tests.conftest import serve
from tests.helpers import assert_problem
from tests.helpers import ws_ticket
from tests.wsclient import WSClient
from zerg import db
from zerg import idempotency
from zerg import tickets
from zerg.models import WsTicket
from zerg.models import utcnow

TOKEN = "ws-ticket-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def secured(make_app: AppFactory) -> Flask:
    return make_app(API_TOKEN=TOKEN)


@pytest.fixture
def server(secured: Flask) -> Iterator[LiveServer]:
    with serve(secured) as live:
        yield live


def refused_handshake(url: str, **options: object) -> dict[str, object]:
    """Connect expecting a 401 before the upgrade; return its problem body."""
    with pytest.raises(InvalidStatus) as refused:
        WSClient(url, **options)
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body: dict[str, object] = json.loads(response.body)
    return body


def test_a_ticket_is_issued_to_the_token_and_stored_only_as_a_digest(
    secured: Flask, rows: Callable[..., int]
) -> None:
    client = secured.test_client()
    assert_problem(client.post("/api/ws/tickets"), 401)
    assert rows(WsTicket) == 0

    response = client.post("/api/ws/tickets", headers=BEARER)

    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["expires_in"] == tickets.TICKET_TTL_SECONDS == 30
    assert len(body["ticket"]) >= 43
    with db.session_scope(secured, write=False) as session:
        (stored,) = session.query(WsTicket).all()
        assert stored.digest == hashlib.sha256(body["ticket"].encode()).hexdigest()
        assert stored.scope == idempotency.scope_for(TOKEN)


def test_a_ticket_lets_one_connection_in_once(server: LiveServer, rows: Callable[..., int]) -> None:
    ticket = ws_ticket(server.url, TOKEN)
    url = f"{server.ws_url}/api/ws?initial_topics=agents&ticket={ticket}"
    with WSClient(url) as ws:
        ws.recv_type("subscribed")
        ws.ping()
    assert rows(WsTicket) == 0

    body = refused_handshake(url)

    assert "used already" in str(body["detail"]) and "POST /api/ws/tickets" in str(body["detail"])


def test_a_connection_let_in_by_ticket_has_its_token_s_scope(
    server: LiveServer, secured: Flask
) -> None:
    """Idempotency keys sent over it are the token's, as if the header had been sent."""
    client = secured.test_client()
    agent = client.post("/api/agents", json={"name": "a"}, headers=BEARER).get_json()
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}, headers=BEARER)
    ticket = ws_ticket(server.url, TOKEN)
    with WSClient(f"{server.ws_url}/api/ws?ticket={ticket}") as ws:
        frame = {"type": "send_message", "thread_id": thread.get_json()["id"], "content": "x"}
        ws.send({**frame, "idempotency_key": "k"})
        assert ws.recv_until(lambda f: f["type"] == "message_sent")["run_id"]
    with db.session_scope(secured, write=False) as session:
        scopes = {row.scope for row in session.query(idempotency.IdempotencyKey).all()}
    assert scopes == {idempotency.scope_for(TOKEN)}


@pytest.mark.parametrize(
    ("scope", "age"),
    [
        pytest.param(idempotency.scope_for(TOKEN), timedelta(seconds=31), id="expired"),
        pytest.param(idempotency.scope_for("the-old-token"), timedelta(0), id="another-token"),
    ],
)
def test_an_expired_ticket_or_one_of_another_token_is_refused(
    server: LiveServer, secured: Flask, scope: str, age: timedelta
) -> None:
    with db.session_scope(secured) as session:
        ticket = tickets.issue(session, scope, now=utcnow() - age).ticket

    refused_handshake(f"{server.ws_url}/api/ws?ticket={ticket}")


@pytest.mark.parametrize("ticket", ["", "made-up", "x" * 2000])
def test_a_made_up_ticket_is_refused(server: LiveServer, ticket: str) -> None:
    refused_handshake(f"{server.ws_url}/api/ws?ticket={ticket}")


def test_a_token_in_the_url_is_refused_even_when_right(server: LiveServer) -> None:
    body = refused_handshake(f"{server.ws_url}/api/ws?token={TOKEN}")
    assert "A token in a URL is refused" in str(body["detail"])
    assert "?ticket=" in str(body["detail"])


def test_the_token_in_a_header_opens_the_websocket(server: LiveServer) -> None:
    """What any client but a browser can do: nothing secret in the URL, nothing to fetch first."""
    with WSClient(f"{server.ws_url}/api/ws", additional_headers=BEARER) as ws:
        ws.ping()
    refused_handshake(f"{server.ws_url}/api/ws", additional_headers={"Authorization": "Bearer no"})


def test_a_cross_site_handshake_does_not_use_up_the_ticket(
    server: LiveServer, rows: Callable[..., int]
) -> None:
    ticket = ws_ticket(server.url, TOKEN)
    with pytest.raises(InvalidStatus) as refused:
        WSClient(f"{server.ws_url}/api/ws?ticket={ticket}", origin="https://evil.example")
    assert refused.value.response.status_code == 403
    assert rows(WsTicket) == 1
    with WSClient(f"{server.ws_url}/api/ws?ticket={ticket}", origin=server.url) as ws:
        ws.ping()


def test_issuing_deletes_the_expired_tickets(secured: Flask, rows: Callable[..., int]) -> None:
    with db.session_scope(secured) as session:
        tickets.issue(session, "s", now=utcnow() - timedelta(seconds=5))
        tickets.issue(session, "s", now=utcnow() - timedelta(minutes=5))
    assert rows(WsTicket) == 2

    secured.test_client().post("/api/ws/tickets", headers=BEARER)

    assert rows(WsTicket) == 2  # the new one and the one still good


def test_without_a_token_configured_no_credential_is_needed(live_server: LiveServer) -> None:
    assert requests.post(f"{live_server.url}/api/ws/tickets", timeout=10).status_code == 201
    with WSClient(f"{live_server.ws_url}/api/ws") as ws:
        ws.ping()
    with WSClient(f"{live_server.ws_url}/api/ws?ticket=anything") as ws:
        ws.ping()
