"""CORS: only listed origins get access, preflights included."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.conftest import AppFactory

ALLOWED = "https://app.example"


@pytest.fixture
def cors_app(make_app: AppFactory) -> Flask:
    return make_app(CORS_ORIGINS=f"{ALLOWED}, https://admin.example", API_TOKEN="t")


def test_a_listed_origin_may_read_responses(cors_app: Flask) -> None:
    response = cors_app.test_client().get("/api/health", headers={"Origin": ALLOWED})
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Origin" in response.headers["Vary"]


def test_an_unlisted_origin_gets_no_access(cors_app: Flask) -> None:
    response = cors_app.test_client().get("/api/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers["Vary"]


def test_preflight_is_answered_without_a_token(cors_app: Flask) -> None:
    response = cors_app.test_client().options(
        "/api/agents",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type, Idempotency-Key",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"]
    assert {"Authorization", "Content-Type", "Idempotency-Key"} <= set(allowed.split(", "))


def test_a_script_may_read_whether_a_response_was_replayed(make_app: AppFactory) -> None:
    client = make_app(CORS_ORIGINS=ALLOWED).test_client()
    headers = {"Origin": ALLOWED, "Idempotency-Key": "cors-1"}
    client.post("/api/agents", json={"name": "a"}, headers=headers)
    replayed = client.post("/api/agents", json={"name": "a"}, headers=headers)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.headers["Access-Control-Expose-Headers"] == "Idempotent-Replayed"


def test_errors_carry_cors_headers_too(cors_app: Flask) -> None:
    response = cors_app.test_client().get("/api/agents", headers={"Origin": ALLOWED})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_a_star_allows_any_origin(make_app: AppFactory) -> None:
    app = make_app(CORS_ORIGINS="*")
    response = app.test_client().get("/api/agents", headers={"Origin": "https://x.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_no_list_means_no_cors_headers(app: Flask) -> None:
    response = app.test_client().get("/api/agents", headers={"Origin": ALLOWED})
    assert "Access-Control-Allow-Origin" not in response.headers
