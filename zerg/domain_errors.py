"""What the domain refuses, said in the domain's words.

Domain functions raise these and know nothing of who asked: no status code,
no body or header location, no frame. Each transport says them in its own
words, in one place: the REST API in ``zerg.api.problems`` (problem+json,
with a status and ``loc``), the websocket in its handler's ``refusal`` (an
``error`` frame naming the frame's fields). This module imports nothing of
zerg's, so storage helpers (``zerg.db.load_row``) may raise them too.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses; ``str()`` says why, in words any client can read."""


class NotFound(DomainError):
    """No ``what`` has the id ``ident``."""

    def __init__(self, what: str, ident: object) -> None:
        super().__init__(f"{what} {ident} not found")
        self.what = what
        self.ident = ident


class Conflict(DomainError):
    """The current state forbids the change (a run already active, a finished run)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidField(DomainError):
    """A field's value is well formed but names nothing usable (a model no provider offers).

    ``kind`` is a stable, machine-readable name for what is wrong with it.
    """

    def __init__(self, field: str, message: str, kind: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.kind = kind


class Unavailable(DomainError):
    """A server zerg asked on the caller's behalf (an MCP server) failed, or did not answer in time.

    ``reason`` is already fit to show: free of secrets.
    """

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


class Busy(DomainError):
    """This process is doing as much of something as it may at once; retry shortly."""


class KeyRefused(DomainError):
    """An idempotency key that cannot be honoured now; nothing ran."""


class KeyInUse(KeyRefused):
    """Another request with the key is still being handled: retry once it has finished."""

    def __init__(self) -> None:
        super().__init__("a request with this key is still being processed")


class KeyReused(KeyRefused):
    """The key was first used for a different request: a new request needs a new key."""

    def __init__(self) -> None:
        super().__init__("the key was first used for a different request")
