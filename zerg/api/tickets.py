"""Websocket tickets: how a browser opens ``/api/ws`` without putting the token in its URL."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg import idempotency
from zerg import tickets
from zerg.api import websocket
from zerg.api.io import located
from zerg.api.io import respond
from zerg.api.operations import Reply
from zerg.api.operations import operation
from zerg.auth import request_token
from zerg.db import get_db
from zerg.schemas import WsTicketOut

bp = Blueprint("tickets", __name__, url_prefix="/ws/tickets")


@bp.post("")
@operation(
    "websocket",
    "Get a ticket for one websocket connection",
    Reply(
        201,
        "Created: connect to `/api/ws?ticket=<ticket>` within `expires_in` seconds; "
        "the ticket lets one connection in.",
        WsTicketOut,
    ),
)
def issue_ticket() -> Response:
    """Issue a ticket that lets one websocket connection in, within `expires_in` seconds (201).

    Connect to `/api/ws?ticket=<ticket>`. A ticket works once, on any worker,
    and is worth nothing after that, so a URL that carries one may be logged.
    It is never stored for an Idempotency-Key: ask again for a new one.
    """
    session = get_db(write=True)
    ticket = tickets.issue(session, idempotency.scope_for(request_token()))
    session.commit()
    # What a ticket is for: the websocket URL that redeems it.
    response = located(respond(WsTicketOut, ticket, 201), websocket.ENDPOINT, ticket=ticket.ticket)
    response.headers["Cache-Control"] = "no-store"
    return response
