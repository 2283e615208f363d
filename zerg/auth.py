"""Bearer-token protection of the API when API_TOKEN is set."""

from __future__ import annotations

import hmac

from flask import Flask
from flask import current_app
from flask import request

from zerg.errors import APIError

# Only health is open, so that load balancers can probe it. The OpenAPI
# document (/api/openapi.json) and the docs page (/api/docs) are not secret,
# but they stay behind the token like everything else: one rule with one
# exception is easier to check (tests/test_auth.py walks every route) than a
# list, and a server that wants a token is not one to advertise its surface.
OPEN_PATHS = frozenset({"/api/health"})


def bearer_token(header: str) -> str:
    """Return the token of an ``Authorization: Bearer <token>`` header ("" if none)."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token else ""


def token_matches(given: str, expected: str) -> bool:
    """Compare tokens in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _token_from_request() -> str:
    token = bearer_token(request.headers.get("Authorization", ""))
    if token:
        return token
    # Browsers cannot set headers on a websocket handshake.
    return request.args.get("token", "") if request.path == "/api/ws" else ""


def request_token() -> str | None:
    """Return the token this request was let in with (None when the app requires none)."""
    if not current_app.config["API_TOKEN"]:
        return None
    return _token_from_request() or None


def init_app(app: Flask) -> None:
    """Require ``Authorization: Bearer <API_TOKEN>`` on every /api route but health."""
    expected = app.config["API_TOKEN"]
    if not expected:
        return

    @app.before_request
    def require_token() -> None:
        path = request.path.rstrip("/")
        if not path.startswith("/api") or path in OPEN_PATHS or request.method == "OPTIONS":
            return
        given = _token_from_request()
        if not token_matches(given, expected):
            raise APIError(
                401,
                "A valid API token is required: send Authorization: Bearer <token> "
                "(a websocket passes it as ?token=<token>).",
                headers={"WWW-Authenticate": 'Bearer realm="zerg"'},
            )
