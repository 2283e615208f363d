"""With API_TOKEN set, every /api route but health needs the bearer token."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from tests.conftest import AppFactory
from zerg.models import Agent

TOKEN = "correct-horse-battery-staple"


@pytest.fixture
def secured(make_app: AppFactory) -> Flask:
    return make_app(API_TOKEN=TOKEN)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/agents"),
        ("POST", "/api/agents"),
        ("GET", "/api/agents/1"),
        ("PUT", "/api/agents/1"),
        ("DELETE", "/api/agents/1"),
        ("GET", "/api/threads"),
        ("POST", "/api/threads/1/messages"),
        ("GET", "/api/models"),
    ],
)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer ", f"Bearer {TOKEN}x"]
)
def test_missing_or_wrong_tokens_are_refused(
    secured: Flask,
    rows: Callable[..., int],
    method: str,
    path: str,
    authorization: str | None,
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = secured.test_client().open(
        path, method=method, headers=headers, json={"name": "intruder"}
    )
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert rows(Agent) == 0


def test_the_right_token_is_accepted(secured: Flask) -> None:
    client = secured.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    created = client.post("/api/agents", json={"name": "friend"}, headers=headers)
    assert created.status_code == 201
    assert client.get("/api/agents", headers=headers).status_code == 200


def test_health_stays_open(secured: Flask) -> None:
    assert secured.test_client().get("/api/health").status_code == 200


def test_no_token_configured_means_an_open_api(app: Flask) -> None:
    assert app.test_client().get("/api/agents").status_code == 200


def test_every_api_route_but_health_is_protected(secured: Flask) -> None:
    """Walk the URL map, so a route added later cannot be left open by mistake."""
    client = secured.test_client()
    checked = 0
    for rule in secured.url_map.iter_rules():
        if not rule.rule.startswith("/api") or rule.rule == "/api/health":
            continue
        path = rule.rule.replace("<int:", "<").replace("<", "").replace(">", "")
        path = "/".join("1" if part.endswith("_id") else part for part in path.split("/"))
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method)
            assert response.status_code == 401, (method, path)
            checked += 1
    assert checked >= 20


def test_the_401_names_how_a_websocket_gets_in(secured: Flask) -> None:
    detail = secured.test_client().get("/api/agents").get_json()["detail"]
    assert "Authorization: Bearer" in detail and "?ticket=" in detail
    assert "?token=" not in detail
