"""What every route accepts: known query parameters only, JSON bodies only."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AppFactory
from tests.conftest import serve
from tests.helpers import assert_problem
from tests.helpers import ws_ticket
from tests.wsclient import WSClient
from zerg.models import Agent
from zerg.models import Thread
from zerg.models import ThreadMessage

UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def http_routes(app: Flask) -> list[tuple[str, str]]:
    """Every (method, path) of the URL map under /api but the websocket, ids filled with 1."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api") or rule.websocket:
            continue
        path = rule.rule.replace("<int:", "<").replace("<", "").replace(">", "")
        path = "/".join("1" if part.endswith("_id") else part for part in path.split("/"))
        found += [
            (method, path) for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        ]
    return found


@pytest.mark.parametrize("environment", ["testing", "development"])
def test_every_route_refuses_an_unknown_query_parameter(
    make_app: AppFactory, rows: Callable[..., int], environment: str
) -> None:
    """Walk the URL map, so that a route added later cannot forget."""
    app = make_app(ENVIRONMENT=environment)
    client = app.test_client()
    client.post("/api/agents", json={"name": "kept", "task_instructions": "t"})
    client.post("/api/threads", json={"agent_id": 1})
    client.post("/api/threads/1/messages", json={"content": "hi"})
    checked = 0
    for method, path in http_routes(app):
        response = client.open(f"{path}?foo=bar", method=method, json={"name": "new"})
        body = assert_problem(response, 422, ["query", "foo"], "extra_forbidden")
        assert len(body["errors"]) == 1, (method, path)
        checked += 1
    assert checked >= 25
    assert (rows(Agent), rows(Thread), rows(ThreadMessage)) == (1, 1, 1)


def test_known_query_parameters_still_work(client: FlaskClient) -> None:
    client.post("/api/agents", json={"name": "a"})
    assert client.get("/api/agents?skip=0&limit=5").status_code == 200
    assert client.get("/api/threads?agent_id=1").status_code == 200
    assert client.get("/api/runs?status=success").status_code == 200


def test_the_ticket_parameter_belongs_to_the_websocket_only(make_app: AppFactory) -> None:
    app = make_app(API_TOKEN="s3cret")
    headers = {"Authorization": "Bearer s3cret"}
    response = app.test_client().get("/api/agents?ticket=t", headers=headers)
    assert_problem(response, 422, ["query", "ticket"], "extra_forbidden")
    with serve(app) as server:
        ticket = ws_ticket(server.url, "s3cret")
        with WSClient(f"{server.ws_url}/api/ws?ticket={ticket}&initial_topics=agents") as ws:
            ws.recv_type("subscribed")
        refused = requests.get(
            f"{server.url}/api/ws?foo=1", headers={**UPGRADE, **headers}, timeout=5
        )
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["loc"] == ["query", "foo"]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ],
)
def test_a_body_not_sent_as_json_is_refused_and_writes_nothing(
    client: FlaskClient, rows: Callable[..., int], content_type: str | None
) -> None:
    agent = client.post("/api/agents", json={"name": "a"}).get_json()
    body = '{"name": "x", "agent_id": 1, "content": "hi"}'
    for method, path in [
        ("POST", "/api/agents"),
        ("PUT", f"/api/agents/{agent['id']}"),
        ("POST", "/api/threads"),
        ("POST", f"/api/agents/{agent['id']}/messages"),
    ]:
        response = client.open(path, method=method, data=body, content_type=content_type)
        assert "application/json" in assert_problem(response, 415)["detail"], (method, path)
    assert rows(Agent) == 1 and rows(Thread) == 0
    assert client.get(f"/api/agents/{agent['id']}").get_json()["name"] == "a"


def test_json_with_a_charset_is_json(client: FlaskClient) -> None:
    response = client.post(
        "/api/agents", data='{"name": "x"}', content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 201
