"""Bearer-token protection of the API when API_TOKEN is set.

A websocket handshake may show the token as a header too (any client but a
browser can), or present a ticket: browsers cannot set headers on a
handshake, and a token in a URL would land in every access log on its way,
so ``?token=`` is refused however right it is (see ``zerg.tickets``).
"""

from __future__ import annotations

import hmac

from flask import Flask
from flask import current_app
from flask import request

from zerg import idempotency
from zerg import tickets
from zerg.db import session_scope
from zerg.errors import APIError

# Only health is open, so that load balancers can probe it. The OpenAPI
# document (/api/openapi.json) and the docs page (/api/docs) are not secret,
# but they stay behind the token like everything else: one rule with one
# exception is easier to check (tests/test_auth.py walks every route) than a
# list, and a server that wants a token is not one to advertise its surface.
OPEN_PATHS = frozenset({"/api/health"})
TICKETS_PATH = "/api/ws/tickets"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="zerg"'}


def bearer_token(header: str) -> str:
    """Return the token of an ``Authorization: Bearer <token>`` header ("" if none)."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token else ""


def token_matches(given: str, expected: str) -> bool:
    """Compare tokens in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


def request_token() -> str | None:
    """Return the token this request was let in with (None when the app requires none).

    That is the configured one whatever the request showed: its header, or a
    ticket issued under it.
    """
    token: str | None = current_app.config["API_TOKEN"]
    return token or None


def refuse(detail: str) -> APIError:
    """Return the 401 for a request that did not show the token (or a ticket)."""
    return APIError(401, detail, headers=CHALLENGE)


def check_handshake(expected: str) -> None:
    """Let a websocket handshake in by its ticket, using the ticket up; refuse it otherwise."""
    if "token" in request.args:
        raise refuse(
            "A token in a URL is refused: URLs are written to access logs. Send "
            "Authorization: Bearer <token> on the handshake, or connect with "
            f"?ticket=<ticket> from POST {TICKETS_PATH}."
        )
    ticket = request.args.get("ticket", "")
    if not ticket:
        raise refuse(
            "A websocket needs the API token: send Authorization: Bearer <token> on the "
            f"handshake, or connect with ?ticket=<ticket> from POST {TICKETS_PATH}."
        )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with session_scope(app) as session:
        redeemed = tickets.redeem(session, ticket, idempotency.scope_for(expected))
    if not redeemed:
        raise refuse(
            "The ticket is unknown, expired or used already: each lets one connection in, "
            f"within {tickets.TICKET_TTL_SECONDS} s. Get a new one from POST {TICKETS_PATH}."
        )


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
        given = bearer_token(request.headers.get("Authorization", ""))
        rule = request.url_rule
        if not given and rule is not None and rule.websocket:
            check_handshake(expected)
            return
        if not token_matches(given, expected):
            raise refuse(
                "A valid API token is required: send Authorization: Bearer <token> "
                f"(a browser's websocket connects with ?ticket= from POST {TICKETS_PATH})."
            )
