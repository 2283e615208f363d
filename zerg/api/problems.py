"""How the REST API says a domain error: the one mapping from ``zerg.domain_errors`` to HTTP.

The domain names what went wrong; this module chooses the status, the
problem+json ``detail`` and, where a client must fix one part of its request,
the ``errors`` item whose ``loc`` points at it (``["body", field]``,
``["header", "Idempotency-Key"]``). The websocket says the same errors in
its own words (``zerg.api.websocket.refusal``).
"""

from __future__ import annotations

from flask import Flask
from flask import Response

from zerg.api.idempotency import HEADER
from zerg.domain_errors import Busy
from zerg.domain_errors import Conflict
from zerg.domain_errors import DomainError
from zerg.domain_errors import InvalidField
from zerg.domain_errors import KeyInUse
from zerg.domain_errors import KeyReused
from zerg.domain_errors import NotFound
from zerg.domain_errors import Unavailable
from zerg.errors import APIError
from zerg.errors import api_problem
from zerg.errors import unexpected_error
from zerg.errors import unprocessable

# What a 503 for a busy process tells clients to wait: a burst passes in seconds.
BUSY_RETRY_AFTER_SECONDS = 1


def as_api_error(exc: DomainError) -> APIError | None:
    """Say a domain error as REST does: its status, detail and, where it has one, its ``loc``.

    None for a kind of domain error that no branch names yet.
    """
    if isinstance(exc, KeyInUse):
        return APIError(
            409,
            f"A request with this {HEADER} is still being processed; "
            "retry once it has finished to get its response.",
        )
    if isinstance(exc, KeyReused):
        return APIError(
            422,
            f"This {HEADER} was used for a different request (another path or body); "
            "use a new key for a new request.",
            errors=[
                {
                    "loc": ["header", HEADER],
                    "msg": "the key was first used with another path or body",
                    "type": "idempotency_key_reused",
                }
            ],
        )
    if isinstance(exc, InvalidField):
        return unprocessable([{"loc": ["body", exc.field], "msg": exc.message, "type": exc.kind}])
    if isinstance(exc, NotFound):
        return APIError(404, str(exc))
    if isinstance(exc, Conflict):
        return APIError(409, str(exc))
    if isinstance(exc, Unavailable):
        return APIError(504 if exc.timed_out else 502, exc.reason)
    if isinstance(exc, Busy):
        return APIError(503, f"{exc}.", headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})
    return None


def domain_problem(exc: DomainError) -> Response:
    """Answer a domain error a view let through as problem+json.

    One that this module does not map is a bug (a new kind nobody mapped):
    it is logged and answered 500 with a request id, like any other, rather
    than with a guessed status.
    """
    answer = as_api_error(exc)
    if answer is None:
        return unexpected_error(exc)
    return api_problem(answer)


def init_app(app: Flask) -> None:
    """Answer every domain error a view lets through as this module says."""
    app.register_error_handler(DomainError, domain_problem)
