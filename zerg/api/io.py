"""Reading requests and writing responses, the same way in every view."""

from __future__ import annotations

import json
from typing import Any
from typing import TypeVar
from urllib.parse import urlsplit

from flask import Response
from flask import current_app
from flask import request
from flask import url_for
from pydantic import BaseModel
from pydantic import ValidationError

from zerg.api import websocket
from zerg.api.idempotency import keep_response
from zerg.api.operations import query_of
from zerg.db import get_db
from zerg.errors import APIError
from zerg.errors import unprocessable
from zerg.errors import validation_errors
from zerg.schemas import Page
from zerg.schemas import row_adapter
from zerg.schemas import rows_adapter

RequestT = TypeVar("RequestT", bound=BaseModel)

JSON_MIMETYPE = "application/json"


def parse_body(schema: type[RequestT]) -> RequestT:
    """Validate the JSON body against ``schema``: 400 if it is not JSON, 422 if it is wrong.

    Reading the body enforces MAX_CONTENT_LENGTH (413) before anything is parsed.
    A body declared as anything but ``application/json`` is refused (415) even
    if it parses: a form or ``text/plain`` POST is what any web page can make a
    browser send cross-origin without a preflight.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise APIError(400, "The request body must be a JSON object.")
    if request.mimetype != JSON_MIMETYPE:
        raise APIError(
            415,
            f"The request body must be sent as Content-Type: {JSON_MIMETYPE}, "
            f"not {request.mimetype or 'none'}.",
        )
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise APIError(400, "The request body is not valid JSON.") from None
        raise unprocessable(validation_errors(exc, "body")) from None


def parse_optional_body(schema: type[RequestT]) -> RequestT:
    """Validate a body the client may leave out: no body means the schema's defaults."""
    if not request.get_data(cache=True).strip():
        return schema()
    return parse_body(schema)


def parse_query(schema: type[RequestT]) -> RequestT:
    """Validate the query string against ``schema`` (422 on failure)."""
    try:
        return schema.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise unprocessable(validation_errors(exc, "query")) from None


def refuse_unknown_query() -> None:
    """Refuse (422) a query parameter the route does not take; run before every /api view.

    A view takes the fields of its ``@operation`` query model (and the
    websocket handshake its own few). Views with a query model refuse extras
    themselves; this covers every route, item routes and POSTs included, so
    one added later cannot forget.
    """
    if request.url_rule is None or request.method == "OPTIONS":
        return
    if request.endpoint == websocket.ENDPOINT:
        accepted = websocket.QUERY_PARAMETERS
    else:
        accepted = query_of(current_app.view_functions.get(request.endpoint or ""))
    unknown = sorted(set(request.args) - accepted)
    if unknown:
        raise unprocessable(
            {
                "loc": ["query", name],
                "msg": "Extra inputs are not permitted",
                "type": "extra_forbidden",
            }
            for name in unknown
        )


def page_params(page: Page) -> tuple[int, int]:
    """Return a page's skip and limit, capping limit at MAX_PAGE_SIZE."""
    return page.skip, min(page.limit, current_app.config["MAX_PAGE_SIZE"])


def respond(schema: type[BaseModel], obj: object, status: int = 200) -> Response:
    """Serialise one ORM object (or model) through its response schema."""
    body = schema.model_validate(obj).model_dump_json().encode()
    return Response(body, status=status, mimetype=JSON_MIMETYPE)


def respond_row(schema: type[BaseModel], row: dict[str, Any]) -> Response:
    """Serialise one database row as ``schema`` describes it."""
    return Response(row_adapter(schema).dump_json(row), mimetype=JSON_MIMETYPE)


def respond_rows(schema: type[BaseModel], rows: list[dict[str, Any]]) -> Response:
    """Serialise database rows as the JSON array ``schema`` describes."""
    return Response(rows_adapter(schema).dump_json(rows), mimetype=JSON_MIMETYPE)


def respond_json(payload: dict[str, Any], status: int = 200) -> Response:
    """Send an already serialised payload (one that was also announced as an event)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(body, status=status, mimetype=JSON_MIMETYPE)


def located(response: Response, endpoint: str, **values: Any) -> Response:
    """Name the resource a create made, in the response's ``Location`` header, and return it.

    A path, not an absolute URL: it resolves against the request's own URL
    (RFC 9110), so it holds behind any proxy. Set before :func:`commit`, so
    that a replay for the request's Idempotency-Key names the same resource.
    """
    # Werkzeug builds a websocket route's URL absolute (ws://), whatever is asked.
    url = urlsplit(url_for(endpoint, **values))
    response.headers["Location"] = url._replace(scheme="", netloc="").geturl()
    return response


def commit(response: Response) -> Response:
    """Commit the request's work together with the response built from it, and return that.

    Built before the commit (the work is flushed, so it reads the same), the
    response can be kept with the request's Idempotency-Key in the work's own
    transaction: a retry gets exactly this, and a crash loses both or neither.
    """
    keep_response(response)
    get_db(write=True).commit()
    return response


def no_content() -> Response:
    """Return an empty 204 response."""
    return Response(status=204)
