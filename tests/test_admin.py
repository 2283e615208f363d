"""The reset endpoint exists in development and nowhere else."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import AppFactory
from zerg.models import Agent


def test_development_can_reset_the_database(make_app: AppFactory) -> None:
    app = make_app(ENVIRONMENT="development")
    client = app.test_client()
    agent = client.post("/api/agents", json={"name": "doomed"}).get_json()
    client.post("/api/threads", json={"agent_id": agent["id"]})

    response = client.post("/api/admin/reset-database")

    assert response.status_code == 200
    assert "reset" in response.get_json()["message"].lower()
    assert client.get("/api/agents").get_json() == []
    assert client.get("/api/threads").get_json() == []
    # The schema is back and usable.
    assert client.post("/api/agents", json={"name": "fresh"}).status_code == 201


@pytest.mark.parametrize(
    "overrides",
    [{"ENVIRONMENT": "testing"}, {"ENVIRONMENT": "production", "API_TOKEN": "t0ken"}],
)
def test_the_reset_route_is_absent_outside_development(
    make_app: AppFactory, overrides: dict[str, str], rows: Callable[..., int]
) -> None:
    app = make_app(**overrides)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer t0ken"
    assert client.post("/api/agents", json={"name": "survivor"}).status_code == 201

    response = client.post("/api/admin/reset-database")

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert not any(rule.rule.startswith("/api/admin") for rule in app.url_map.iter_rules())
    assert rows(Agent) == 1
