"""Reading requests and writing responses, the same way in every view."""

from __future__ import annotations

import json
from functools import cache
from typing import Any
from typing import TypeVar

from flask import Response
from flask import current_app
from flask import request
from pydantic import BaseModel
from pydantic import TypeAdapter
from pydantic import ValidationError
from sqlalchemy import Select
from sqlalchemy.orm import Session

from zerg.errors import APIError
from zerg.errors import NotFound
from zerg.errors import unprocessable
from zerg.errors import validation_errors
from zerg.models import Base
from zerg.schemas import ID_MAX
from zerg.schemas import Page
from zerg.statements import Connection
from zerg.statements import Statement

RequestT = TypeVar("RequestT", bound=BaseModel)
RowT = TypeVar("RowT", bound=Base)

JSON_MIMETYPE = "application/json"


def parse_body(schema: type[RequestT]) -> RequestT:
    """Validate the JSON body against ``schema``: 400 if it is not JSON, 422 if it is wrong.

    Reading the body enforces MAX_CONTENT_LENGTH (413) before anything is parsed.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise APIError(400, "The request body must be a JSON object.")
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise APIError(400, "The request body is not valid JSON.") from None
        raise unprocessable(validation_errors(exc, "body")) from None


def parse_query(schema: type[RequestT]) -> RequestT:
    """Validate the query string against ``schema`` (422 on failure)."""
    try:
        return schema.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise unprocessable(validation_errors(exc, "query")) from None


def page_params(page: Page) -> dict[str, int]:
    """Return a page's skip and limit, capping limit at MAX_PAGE_SIZE."""
    return {"skip": page.skip, "limit": min(page.limit, current_app.config["MAX_PAGE_SIZE"])}


def paginate(statement: Select[Any], page: Page) -> Select[Any]:
    """Apply a page's skip and (capped) limit to an ORM statement."""
    params = page_params(page)
    return statement.offset(params["skip"]).limit(params["limit"])


def get_or_404(
    session: Session, model: type[RowT], ident: int, what: str, *, lock: bool = False
) -> RowT:
    """Load a row by primary key (``lock``: FOR UPDATE) or raise a 404 problem.

    Ids past the id columns' range name nothing; they are answered here, since
    PostgreSQL would reject them as out of range rather than find no row.
    """
    row = session.get(model, ident, with_for_update=lock) if ident <= ID_MAX else None
    if row is None:
        raise NotFound(what, ident)
    return row


def read_or_404(
    connection: Connection, statement: Statement, ident: int, what: str
) -> dict[str, Any]:
    """Read one row by primary key through ``statement`` (a :func:`row_by_id`) or raise a 404."""
    row = statement.first(connection, id=ident) if ident <= ID_MAX else None
    if row is None:
        raise NotFound(what, ident)
    return row


@cache
def _list_adapter(schema: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[schema])  # type: ignore[valid-type]


def dump(schema: type[BaseModel], row: object) -> bytes:
    """Serialise one row (an ORM object or a dict) to JSON through its response schema."""
    return schema.model_validate(row).model_dump_json().encode()


def respond(schema: type[BaseModel], row: object, status: int = 200) -> Response:
    """Serialise one row through its response schema."""
    return Response(dump(schema, row), status=status, mimetype=JSON_MIMETYPE)


def dump_payload(payload: dict[str, Any]) -> bytes:
    """Serialise a payload that was also published as an event (compact, as pydantic's)."""
    return json.dumps(payload, separators=(",", ":")).encode()


def respond_json(payload: dict[str, Any], status: int = 200) -> Response:
    """Send an already serialised payload (one that was also published as an event)."""
    return Response(dump_payload(payload), status=status, mimetype=JSON_MIMETYPE)


def respond_list(schema: type[BaseModel], rows: list[Any]) -> Response:
    """Serialise a list of rows through one response schema."""
    adapter = _list_adapter(schema)
    body = adapter.dump_json(adapter.validate_python(rows, from_attributes=True))
    return Response(body, mimetype=JSON_MIMETYPE)


def no_content() -> Response:
    """Return an empty 204 response."""
    return Response(status=204)
