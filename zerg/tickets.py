"""Websocket tickets: a short-lived, single-use secret in the URL instead of the token.

Browsers cannot set headers on a websocket handshake, and whatever sits in a
URL ends up in access logs, proxies' included. So a client holding the token
asks for a ticket with an authenticated ``POST /api/ws/tickets`` and connects
with ``?ticket=``. A ticket is 256 random bits; only its sha256 is stored,
with the scope of the token it was issued under and an expiry
``TICKET_TTL_SECONDS`` away. Redeeming is one conditional ``DELETE`` whose
row count decides: the first handshake that presents a ticket gets in, and
any other, on any process, finds no row (the database serialises the two
deletes). The row is the ticket's whole validity, so no signing key is needed,
and a ticket seen in a log line afterwards opens nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from zerg.models import WsTicket
from zerg.models import utcnow

TICKET_TTL_SECONDS = 30
TICKET_BYTES = 32


@dataclass(frozen=True)
class Ticket:
    """A ticket as its client gets it: the secret, once, and how long it is good for."""

    ticket: str
    expires_in: int


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(session: Session, scope: str, now: datetime | None = None) -> Ticket:
    """Store a new ticket of ``scope`` and return its secret; expired ones are deleted first."""
    now = now or utcnow()
    session.execute(delete(WsTicket).where(WsTicket.expires_at <= now))
    secret = secrets.token_urlsafe(TICKET_BYTES)
    expires_at = now + timedelta(seconds=TICKET_TTL_SECONDS)
    session.add(WsTicket(digest=_digest(secret), scope=scope, expires_at=expires_at))
    session.flush()
    return Ticket(secret, TICKET_TTL_SECONDS)


def redeem(session: Session, secret: str, scope: str, now: datetime | None = None) -> bool:
    """Use a ticket up: True if it was issued for ``scope``, is unexpired and was not used."""
    result = session.execute(
        delete(WsTicket).where(
            WsTicket.digest == _digest(secret),
            WsTicket.scope == scope,
            WsTicket.expires_at > (now or utcnow()),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1
