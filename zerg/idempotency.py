"""Idempotency keys: a request's work is done once, and every retry gets its response.

Following the IETF draft "The Idempotency-Key HTTP Header Field": a client
that may have lost a response (a dropped connection, a timeout) sends the
same request with the same key again and gets the first response back
instead of a second agent, message or run. The transports read the key (the
HTTP header, the websocket frame's ``idempotency_key``) and call :func:`once`
around the work; this module decides, with the database, which request runs.

The record is written in the transaction of the work it describes, so a
crash leaves both or neither, and only a success is kept: a failure rolls
the record back with the work, and a retry runs again. Who goes first is
decided by the database, so that it holds across processes:

- PostgreSQL: the request's transaction takes ``pg_try_advisory_xact_lock``
  on a 64-bit hash of (scope, key) before looking the key up; a repeat that
  finds it taken is refused (:class:`KeyInUse`) until the first commits or
  rolls back.
- SQLite: write transactions begin with ``BEGIN IMMEDIATE`` (``zerg.db``),
  one at a time, so a repeat from another process waits for the first to
  commit and then finds its record.

Within one process, a repeat of a key still in flight is refused at once,
on either database, without touching it. The unique constraint on (scope,
key) stays the last word: if it fires, the repeat is refused the same way.
The refusals are domain errors (``zerg.domain_errors``), which each
transport says in its own words: a status for HTTP, an error frame for the
websocket.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

from flask import Flask
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zerg.db import app_of
from zerg.domain_errors import KeyInUse
from zerg.domain_errors import KeyReused
from zerg.locks import database_lock_key
from zerg.models import IdempotencyKey
from zerg.models import utcnow

EXTENSION_KEY = "zerg.idempotency"
MAX_KEY_LENGTH = 255
# The scope of every key when the server has no API_TOKEN: there is no one else to tell apart.
ANONYMOUS_SCOPE = "anonymous"


@dataclass(frozen=True)
class Claim:
    """A request made with a key: what the key is first used for, and must be again."""

    scope: str
    key: str
    method: str
    path: str
    fingerprint: str


@dataclass(frozen=True)
class Stored:
    """The response kept for a key, replayed as it was sent."""

    status_code: int
    content_type: str
    body: str
    # The Location header of a create, naming what it made; None without one.
    location: str | None = None


class Replayed(Exception):
    """The key's work was done before; ``stored`` is what to answer again."""

    def __init__(self, stored: Stored) -> None:
        super().__init__(stored.status_code)
        self.stored = stored


@dataclass
class InFlight:
    """The keys this process is handling now, so that a repeat is refused without waiting."""

    keys: set[tuple[str, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def scope_for(token: str | None) -> str:
    """Name the scope of a client's keys: the sha256 of its token, never the token itself."""
    if not token:
        return ANONYMOUS_SCOPE
    return hashlib.sha256(token.encode()).hexdigest()


def fingerprint(value: object) -> str:
    """Return the sha256 of raw bytes, or of a JSON value written canonically.

    Canonical (sorted keys, no spaces), so that a client that re-encodes the
    same body differently on a retry is still recognised.
    """
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def claim(session: Session, request: Claim, now: datetime | None = None) -> Stored | None:
    """Look the key up in the request's write transaction: its response, or None to run.

    Raises :class:`KeyInUse` if another transaction holds the key
    (PostgreSQL), :class:`KeyReused` if it was used for another request. An
    expired record is deleted here, in this transaction, as if it were gone.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        lock = database_lock_key(bind.engine, f"idempotency:{request.scope}:{request.key}")
        if not session.scalar(select(func.pg_try_advisory_xact_lock(lock))):
            raise KeyInUse()
    row = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.scope == request.scope, IdempotencyKey.key == request.key
        )
    )
    if row is None:
        return None
    if row.expires_at <= (now or utcnow()):
        session.delete(row)
        session.flush()
        return None
    if (row.method, row.path, row.fingerprint) != (
        request.method,
        request.path,
        request.fingerprint,
    ):
        raise KeyReused()
    return Stored(row.status_code, row.content_type, row.body, row.location)


def remember(session: Session, request: Claim, response: Stored) -> None:
    """Keep a response for its key, for IDEMPOTENCY_TTL_SECONDS, in the work's transaction."""
    now = utcnow()
    ttl = timedelta(seconds=app_of(session).config["IDEMPOTENCY_TTL_SECONDS"])
    session.add(
        IdempotencyKey(
            scope=request.scope,
            key=request.key,
            method=request.method,
            path=request.path,
            fingerprint=request.fingerprint,
            status_code=response.status_code,
            content_type=response.content_type,
            body=response.body,
            location=response.location,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    try:
        session.flush()
    except IntegrityError as exc:
        # Another request with the key committed first, past the locks: it won.
        if "idempotency_keys" not in str(exc.orig):
            raise
        raise KeyInUse() from None


def purge_expired(session: Session, now: datetime | None = None) -> int:
    """Delete the records past their expiry; return how many."""
    result = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at <= (now or utcnow()))
    )
    return int(getattr(result, "rowcount", 0) or 0)


@contextmanager
def in_flight(app: Flask, scope: str, key: str) -> Iterator[None]:
    """Mark a key as being handled by this process; a repeat meanwhile gets :class:`KeyInUse`."""
    state: InFlight = app.extensions[EXTENSION_KEY]
    with state.lock:
        if (scope, key) in state.keys:
            raise KeyInUse()
        state.keys.add((scope, key))
    try:
        yield
    finally:
        with state.lock:
            state.keys.discard((scope, key))


Remember = Callable[[Stored], None]


def _forget(_response: Stored) -> None:
    """Keep nothing: the request carried no key."""


@contextmanager
def once(session: Session, request: Claim | None) -> Iterator[Remember]:
    """Run the block's work once per key; yield the function that keeps its response.

    Without a key (``request`` None) the block simply runs. With one seen
    before, the block does not run: :class:`Replayed` is raised with the
    stored response. Call the yielded function inside the block, before the
    session commits, so that the record shares the work's transaction.
    """
    if request is None:
        yield _forget
        return
    with in_flight(app_of(session), request.scope, request.key):
        stored = claim(session, request)
        if stored is not None:
            raise Replayed(stored)

        def keep(response: Stored) -> None:
            remember(session, request, response)

        yield keep


def init_app(app: Flask) -> None:
    """Keep this process's in-flight keys on the app."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("zerg.idempotency is already registered on this app")
    app.extensions[EXTENSION_KEY] = InFlight()
