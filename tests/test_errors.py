"""Every error, Flask's own included, is problem+json; a 500 leaks nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tests.conftest import AppFactory
from zerg import db
from zerg.db import get_db
from zerg.models import Agent

PROBLEM = "application/problem+json"


def assert_problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.mimetype == PROBLEM  # type: ignore[attr-defined]
    body: dict[str, object] = response.get_json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def test_unknown_route_is_a_problem_404(client: FlaskClient) -> None:
    assert_problem(client.get("/api/nothing-here"), 404)


def test_wrong_method_is_a_problem_405_with_allow(client: FlaskClient) -> None:
    response = client.delete("/api/agents")
    assert_problem(response, 405)
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.fixture
def failing_app(app: Flask) -> Flask:
    """The test app with one view that writes, then fails unexpectedly."""

    def explode() -> str:
        session = get_db(write=True)
        session.add(Agent(name="half-written", model="offline"))
        session.flush()
        raise RuntimeError("secret internals: password=hunter2")

    app.add_url_rule("/api/explode", "explode", explode, methods=["POST"])
    return app


def test_unexpected_errors_are_500_without_internals(
    failing_app: Flask, rows: Callable[..., int]
) -> None:
    response = failing_app.test_client().post("/api/explode")
    body = assert_problem(response, 500)
    assert "hunter2" not in response.get_data(as_text=True)
    assert "RuntimeError" not in response.get_data(as_text=True)
    assert isinstance(body["request_id"], str) and len(body["request_id"]) == 32
    assert response.headers["X-Request-ID"] == body["request_id"]
    assert body["request_id"] in str(body["detail"])
    # The teardown rolled the half-done write back and returned the connection.
    assert rows(Agent) == 0


def test_unexpected_errors_are_logged_with_the_request_id(
    failing_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    response = failing_app.test_client().post("/api/explode")
    request_id = response.get_json()["request_id"]
    assert any(request_id in record.getMessage() and record.exc_info for record in caplog.records)


def test_a_request_that_finds_no_free_connection_gets_503_with_retry_after(
    make_app: AppFactory,
) -> None:
    """Thousands of greenlets share the pool: waiting for it is bounded, and answered."""
    app = make_app(DATABASE_POOL_SIZE=1, DATABASE_POOL_TIMEOUT=0.2)
    engine = db.get_database(app).engine
    held = []
    try:
        # Take every connection the pool will give, overflow included.
        with pytest.raises(PoolTimeout):
            while True:
                held.append(engine.connect())
        response = app.test_client().get("/api/agents")
    finally:
        for connection in held:
            connection.close()
    body = assert_problem(response, 503)
    assert "connection" in str(body["detail"])
    assert int(response.headers["Retry-After"]) > 0
    assert app.test_client().get("/api/agents").status_code == 200
