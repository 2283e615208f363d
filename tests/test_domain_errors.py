"""Domain errors name what went wrong; each transport says it in its own words.

The REST API answers problem+json with a status and ``loc``
(``zerg.api.problems``); the websocket answers an ``error`` frame naming the
frame's fields (``zerg.api.websocket.refusal``). The domain itself
carries no status, no body or header location.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import zerg
from tests.conftest import LiveServer
from tests.wsclient import WSClient
from zerg.api.problems import as_api_error
from zerg.api.websocket import refusal
from zerg.domain_errors import Conflict
from zerg.domain_errors import DomainError
from zerg.domain_errors import InvalidField
from zerg.domain_errors import KeyInUse
from zerg.domain_errors import KeyReused
from zerg.domain_errors import NotFound
from zerg.domain_errors import Unavailable

PACKAGE_DIR = Path(zerg.__file__).parent
PROBLEM = "application/problem+json"

# Each domain error, made afresh for every request that raises it.
ERRORS: dict[str, Callable[[], DomainError]] = {
    "not-found": lambda: NotFound("Agent", 7),
    "conflict": lambda: Conflict("Run 3 has already finished (success)."),
    "invalid-field": lambda: InvalidField("model", "no provider offers it", "unknown_model"),
    "key-in-use": KeyInUse,
    "key-reused": KeyReused,
    "unavailable": lambda: Unavailable("MCP server 'web': could not list tools: refused"),
    "timed-out": lambda: Unavailable("MCP server 'web': timed out", timed_out=True),
}
KEY = "Idempotency-Key"


@pytest.fixture
def raising_app(app: Flask) -> Flask:
    """The test app with one view that raises the domain error its path names."""

    def refuse(case: str) -> str:
        raise ERRORS[case]()

    app.add_url_rule("/raise/<case>", "raise_domain_error", refuse, methods=["GET", "POST"])
    return app


@pytest.mark.parametrize(
    ("case", "status", "detail", "errors"),
    [
        ("not-found", 404, "Agent 7 not found", None),
        ("conflict", 409, "Run 3 has already finished (success).", None),
        ("unavailable", 502, "MCP server 'web': could not list tools: refused", None),
        ("timed-out", 504, "MCP server 'web': timed out", None),
        (
            "invalid-field",
            422,
            "The request failed validation.",
            [{"loc": ["body", "model"], "msg": "no provider offers it", "type": "unknown_model"}],
        ),
        (
            "key-in-use",
            409,
            f"A request with this {KEY} is still being processed; "
            "retry once it has finished to get its response.",
            None,
        ),
        (
            "key-reused",
            422,
            f"This {KEY} was used for a different request (another path or body); "
            "use a new key for a new request.",
            [
                {
                    "loc": ["header", KEY],
                    "msg": "the key was first used with another path or body",
                    "type": "idempotency_key_reused",
                }
            ],
        ),
    ],
)
def test_rest_answers_each_domain_error_as_a_problem(
    raising_app: Flask, case: str, status: int, detail: str, errors: list[Any] | None
) -> None:
    response = raising_app.test_client().post(f"/raise/{case}")
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body.pop("title")
    expected = {"type": "about:blank", "status": status, "detail": detail}
    assert body == (expected if errors is None else {**expected, "errors": errors})


class Unheard(DomainError):
    """A kind of domain error no transport has been taught."""


def test_rest_answers_an_unmapped_domain_error_as_a_bug_not_a_guess(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse() -> str:
        raise Unheard("something new")

    app.add_url_rule("/raise/unheard", "raise_unheard", refuse)
    response = app.test_client().get("/raise/unheard")
    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    request_id = response.get_json()["request_id"]
    assert "something new" not in response.get_data(as_text=True)
    assert any(request_id in record.getMessage() and record.exc_info for record in caplog.records)
    assert as_api_error(Unheard("something new")) is None


@pytest.mark.parametrize(
    ("case", "about", "error", "details"),
    [
        ("not-found", {"topic": "agent:7"}, "Agent 7 not found", {"topic": "agent:7"}),
        ("not-found", {}, "Agent 7 not found", None),
        ("conflict", {"thread_id": 3}, "Run 3 has already finished (success).", {"thread_id": 3}),
        ("invalid-field", {}, "model: no provider offers it", None),
        (
            "key-in-use",
            {"idempotency_key": "k"},
            "A request with this idempotency_key is still being processed; "
            "retry once it has finished to get its response.",
            {"idempotency_key": "k", "status": 409},
        ),
        (
            "key-reused",
            {"idempotency_key": "k"},
            "This idempotency_key was used for a different request (other fields); "
            "use a new key for a new request.",
            {"idempotency_key": "k", "status": 422},
        ),
    ],
)
def test_the_websocket_says_each_domain_error_as_an_error_frame(
    case: str, about: dict[str, Any], error: str, details: dict[str, Any] | None
) -> None:
    refused = refusal(ERRORS[case](), **about)
    assert (refused.error, refused.details) == (error, details)


def test_a_refused_frame_key_names_the_frame_field_not_the_header(
    live_server: LiveServer, app: Flask
) -> None:
    client = app.test_client()
    agent = client.post("/api/agents", json={"name": "a"}).get_json()
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    with WSClient(f"{live_server.ws_url}/api/ws") as ws:
        frame = {"type": "send_message", "thread_id": thread["id"], "idempotency_key": "k"}
        ws.send({**frame, "content": "one", "message_id": 1})
        ws.recv_until(lambda reply: reply.get("message_id") == 1)
        ws.send({**frame, "content": "two", "message_id": 2})
        refused = ws.recv_until(lambda reply: reply.get("message_id") == 2)
    assert refused["type"] == "error"
    assert "idempotency_key" in refused["error"] and KEY not in refused["error"]
    assert refused["details"] == {"idempotency_key": "k", "status": 422}


def test_a_missing_thread_under_the_websocket_names_the_frame_field(
    live_server: LiveServer,
) -> None:
    with WSClient(f"{live_server.ws_url}/api/ws") as ws:
        ws.send({"type": "send_message", "thread_id": 999, "content": "x", "message_id": "m"})
        refused = ws.recv_type("error")
        ws.send({"type": "subscribe", "topics": ["agent:998"], "message_id": "s"})
        unsubscribed = ws.recv_type("error")
    assert refused == {
        "type": "error",
        "message_id": "m",
        "error": "Thread 999 not found",
        "details": {"thread_id": 999},
    }
    assert unsubscribed == {
        "type": "error",
        "message_id": "s",
        "error": "Agent 998 not found",
        "details": {"topic": "agent:998"},
    }


DOMAIN = [
    PACKAGE_DIR / "agents.py",
    PACKAGE_DIR / "agent_tools.py",
    PACKAGE_DIR / "mcp_servers.py",
    PACKAGE_DIR / "conversations.py",
    PACKAGE_DIR / "idempotency.py",
    PACKAGE_DIR / "tickets.py",
    PACKAGE_DIR / "domain_errors.py",
    *sorted((PACKAGE_DIR / "runs").rglob("*.py")),
]
# What shapes an answer for HTTP: werkzeug's status errors, http.HTTPStatus (and zerg.errors).
HTTP_SHAPES = ("werkzeug", "http")


def imported_modules(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", DOMAIN, ids=lambda path: str(path.relative_to(PACKAGE_DIR)))
def test_the_domain_carries_no_http_shapes(path: Path) -> None:
    """Domain errors name what went wrong: no status, no body or header location."""
    tree = ast.parse(path.read_text())
    for name in imported_modules(tree):
        assert name.split(".")[0] not in HTTP_SHAPES, f"{path.name} imports {name}"
        assert not name.startswith("zerg.errors"), f"{path.name} imports {name}"
    constants = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
    assert not constants & {"loc", "Idempotency-Key"}, f"{path.name} shapes an HTTP error"


def test_domain_errors_import_nothing_of_zerg() -> None:
    """Every layer may raise them (``zerg.db.load_row`` does): they must sit below all."""
    tree = ast.parse((PACKAGE_DIR / "domain_errors.py").read_text())
    assert imported_modules(tree) == ["__future__"]
