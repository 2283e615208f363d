"""The ``Idempotency-Key`` header on the POSTs that create something.

:func:`idempotent` wraps a view: it reads and checks the header, and either
answers with the response stored for the key (``Idempotent-Replayed: true``)
or lets the view run, which then commits through ``zerg.api.io.commit`` and
so keeps its response with the key in the same transaction. What the
database does, and why, is in ``zerg.idempotency``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import ParamSpec

from flask import Response
from flask import g
from flask import request

from zerg import idempotency
from zerg.auth import request_token
from zerg.db import get_db
from zerg.errors import APIError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Where a view's claim waits, on flask.g, for the commit that keeps its response.
KEEP = "idempotency_keep"
# The attribute that marks a wrapped view, so that the OpenAPI document follows the code.
MARK = "takes_idempotency_key"

# Printable ASCII, no space at either end (HTTP would trim it away).
KEY_PATTERN = re.compile(r"[!-~]([ -~]*[!-~])?")

P = ParamSpec("P")


def header_key() -> str | None:
    """Return the request's key, None without one; 400 if it is empty, too long or not ASCII.

    The value is the key as sent: the draft's quoted form (``"abc"``) and a
    bare one (``abc``, as most clients send it) are two keys, each of which
    a client retrying sends again byte for byte.
    """
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if len(key) > idempotency.MAX_KEY_LENGTH or not KEY_PATTERN.fullmatch(key):
        raise APIError(
            400,
            f"The {HEADER} header must be 1 to {idempotency.MAX_KEY_LENGTH} printable "
            "ASCII characters, not starting or ending with a space.",
        )
    return key


def body_fingerprint() -> str:
    """Fingerprint the body: its JSON written canonically, or its bytes if it is not JSON."""
    raw = request.get_data(cache=True)
    try:
        return idempotency.fingerprint(json.loads(raw))
    except (ValueError, RecursionError):
        return idempotency.fingerprint(raw)


def replay(stored: idempotency.Stored) -> Response:
    """Answer again what the key's first request was answered."""
    response = Response(stored.body, status=stored.status_code, content_type=stored.content_type)
    if stored.location is not None:
        response.headers["Location"] = stored.location
    response.headers[REPLAYED_HEADER] = "true"
    return response


def idempotent(view: Callable[P, Response]) -> Callable[P, Response]:
    """Let the view run once per key; answer every repeat with the first response."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        key = header_key()
        if key is None:
            return view(*args, **kwargs)
        claim = idempotency.Claim(
            scope=idempotency.scope_for(request_token()),
            key=key,
            method=request.method,
            path=request.path,
            fingerprint=body_fingerprint(),
        )
        try:
            with idempotency.once(get_db(write=True), claim) as keep:
                setattr(g, KEEP, keep)
                return view(*args, **kwargs)
        except idempotency.Replayed as replayed:
            return replay(replayed.stored)

    setattr(wrapper, MARK, True)
    return wrapper


def takes_key(view: Callable[..., object] | None) -> bool:
    """Tell whether a view honours the Idempotency-Key header."""
    return bool(getattr(view, MARK, False))


def keep_response(response: Response) -> None:
    """Keep a successful response with the request's key, if it has one (before the commit)."""
    keep: idempotency.Remember | None = g.pop(KEEP, None)
    if keep is None or not 200 <= response.status_code < 300:
        return
    keep(
        idempotency.Stored(
            status_code=response.status_code,
            content_type=response.content_type or "",
            body=response.get_data(as_text=True),
            location=response.headers.get("Location"),
        )
    )
