"""The RFC 9457 problem documents every error response carries."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema


def _without_default(schema: dict[str, Any]) -> None:
    """Drop ``"default": null`` from a field whose schema has no null: absent is not null."""
    schema.pop("default", None)


class ProblemItem(BaseModel):
    """One validation failure: where (``["body", "name"]``), what, and its machine-readable kind."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document: the body of every error response.

    ``errors`` is present on validation failures (422) and ``request_id`` on
    unexpected ones (500); both are left out of the schema's ``null`` branch
    because the server omits them rather than sending ``null``.
    """

    type: str = Field(description='Always "about:blank": the status says what kind of error.')
    title: str = Field(description="The status code's standard phrase.")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What went wrong, for a person to read.")
    errors: list[ProblemItem] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_without_default
    )
    request_id: str | SkipJsonSchema[None] = Field(
        default=None,
        description="On a 500: quote it to find the logged traceback.",
        json_schema_extra=_without_default,
    )


class ValidationProblem(Problem):
    """A 422 problem: ``errors`` lists every failed field."""

    errors: list[ProblemItem]


class ServerProblem(Problem):
    """A 500 problem: no internals, only a request id that the server logged."""

    request_id: str
