"""What each view says about itself in the OpenAPI document: the ``@operation`` decorator.

A view carries its summary, tag, request models and replies on the function
itself, so a route and its description are written (and reviewed) together.
``zerg.api.openapi`` walks ``app.url_map`` and reads them from the view
functions; a route whose view has no ``@operation`` makes the document fail
to build, so none can be left out. The query model doubles as the list of
query parameters the route accepts (``zerg.api.io.refuse_unknown_query``).

The generic errors are derived rather than listed, so they cannot be
forgotten: 404 for a path with an id, 400/413/415 for a JSON body, 422
everywhere (an unknown query parameter), 401 when a token is configured,
403 for the unsafe methods (a cross-site request), 503 for the views that
use the database, 500 everywhere. ``also`` lists the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import TypeVar

from pydantic import BaseModel

from zerg.schemas import Problem
from zerg.schemas import RunOut

ViewT = TypeVar("ViewT", bound=Callable[..., Any])

JSON = "application/json"
HTML = "text/html"
# The attributes set on a view function (functools.wraps carries them to a wrapper).
OPERATION_ATTRIBUTE = "zerg_operation"
QUERY_ATTRIBUTE = "zerg_query_parameters"


@dataclass(frozen=True)
class Reply:
    """One documented answer of an operation (not its generic errors, which are derived)."""

    status: int
    description: str
    model: type[BaseModel] | None = None  # None: no body (204) or a non-model body
    many: bool = False  # a JSON array of ``model``
    problem: bool = False  # an application/problem+json body
    media_type: str = JSON


@dataclass(frozen=True)
class Operation:
    """A view's part of the document; one per view, whatever methods it serves."""

    tag: str
    summary: str
    reply: Reply
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    also: tuple[Reply, ...] = ()
    database: bool = True  # False: answers without the database (so never 503)


def operation(
    tag: str,
    summary: str,
    reply: Reply,
    *,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    also: tuple[Reply, ...] = (),
    database: bool = True,
) -> Callable[[ViewT], ViewT]:
    """Describe the view below for the OpenAPI document (its docstring is the description)."""
    described = Operation(tag, summary, reply, query, body, body_required, also, database)

    def mark(view: ViewT) -> ViewT:
        setattr(view, OPERATION_ATTRIBUTE, described)
        if query is not None:
            takes_query(*query.model_fields)(view)
        return view

    return mark


def takes_query(*names: str) -> Callable[[ViewT], ViewT]:
    """Let the view below accept these query parameters; every other one is refused (422)."""

    def mark(view: ViewT) -> ViewT:
        setattr(view, QUERY_ATTRIBUTE, frozenset(names))
        return view

    return mark


def operation_of(view: Callable[..., Any] | None) -> Operation | None:
    """Return the view's ``@operation``, if it has one."""
    return getattr(view, OPERATION_ATTRIBUTE, None)


def query_of(view: Callable[..., Any] | None) -> frozenset[str]:
    """Return the query parameters the view accepts (none unless it says so)."""
    names: frozenset[str] = getattr(view, QUERY_ATTRIBUTE, frozenset())
    return names


def ok(model: type[BaseModel], description: str = "OK", *, many: bool = False) -> Reply:
    """Describe a 200 with ``model`` (or an array of it)."""
    return Reply(200, description, model, many)


def created(model: type[BaseModel]) -> Reply:
    """Describe a 201 with the new resource."""
    return Reply(201, "Created: the new resource.", model)


def started(description: str) -> Reply:
    """Describe a 202 with the run that was queued."""
    return Reply(202, description, RunOut)


def conflict(description: str) -> Reply:
    """Describe a 409: the resource's state forbids the request."""
    return Reply(409, description, Problem, problem=True)


def missing(description: str) -> Reply:
    """Describe a 404 for an id named in the body (a path id's 404 is derived)."""
    return Reply(404, description, Problem, problem=True)


DELETED = Reply(204, "Deleted; no body.")
