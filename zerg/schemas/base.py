"""The ground every request and response shape stands on.

Requests are strict and closed (``Request``): a field of the wrong type or one
the API does not know is refused rather than coerced or ignored, and no text a
supported database cannot store gets in (``Storable``). PUT/PATCH bodies
change only the fields sent (``Partial``); query strings are converted from
text (``QueryRequest``). The shared field types (ids, names, text) live here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated
from typing import Any
from typing import ClassVar
from typing import cast

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import GetCoreSchemaHandler
from pydantic import StringConstraints
from pydantic import field_validator
from pydantic.json_schema import JsonDict
from pydantic_core import core_schema

from zerg.models import ID_MAX

MAX_TEXT = 100_000


def whole_float(value: Any) -> Any:
    """Take ``5.0`` as ``5``: JSON Schema calls it an integer, so the API does too."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# The bounds before the validator: the other way round pydantic's JSON Schema
# says "ge"/"le" instead of "minimum"/"maximum".
Id = Annotated[int, Field(ge=1, le=ID_MAX), BeforeValidator(whole_float)]

# The whitespace strip_whitespace removes (Unicode White_Space: pydantic-core
# strips in Rust) as a JSON Schema (ECMA) character class; tests/test_schemas.py
# holds it to what pydantic does.
STRIPPED_WHITESPACE = (
    "\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
# A name is stripped and then must not be empty: the document says "something
# besides whitespace" (and, like all request text, no NUL).
NAME_PATTERN = f"^[^\\u0000]*[^\\u0000{STRIPPED_WHITESPACE}][^\\u0000]*$"
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    Field(json_schema_extra={"pattern": NAME_PATTERN}),
]
LongText = Annotated[str, Field(max_length=MAX_TEXT)]


class DocumentMark:
    """Marks a field whose documented values depend on the app's configuration.

    The mark sets ``key`` in the field's core schema metadata, which the
    document's schema generator (``zerg.api.openapi_schemas``) reads.
    """

    key: ClassVar[str]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        # A core schema is a TypedDict union; each member's metadata is a plain dict.
        fields = cast(dict[str, Any], schema)
        fields["metadata"] = {**fields.get("metadata", {}), self.key: True}
        return schema


def _storable_problem(value: Any) -> str | None:
    """Say why a parsed JSON value cannot be stored everywhere, or return None.

    PostgreSQL refuses NUL characters in text and JSON, and JSON itself has no
    NaN or Infinity (pydantic's parser accepts them); SQLite would take both,
    so a client's data would work on one database and fail on the other.
    """
    if isinstance(value, str):
        return "text may not contain NUL characters" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite (no NaN or Infinity)"
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
        return next(filter(None, map(_storable_problem, items)), None)
    if isinstance(value, list):
        return next(filter(None, map(_storable_problem, value)), None)
    return None


# Text without NUL, as a JSON Schema pattern: what Storable lets through.
NO_NUL = "^[^\\u0000]*$"


class Storable(BaseModel):
    """Refuses values that some supported database cannot store."""

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_unstorable(cls, value: Any) -> Any:
        problem = _storable_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class Request(Storable):
    """Base of every request body and query: strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _partial_json_schema(schema: JsonDict, model: type[BaseModel]) -> None:
    """Say in a PUT/PATCH body's schema what ``Partial`` checks in code.

    An absent field means "unchanged", so no field has a default; and a field
    in ``NOT_NULL`` refuses ``null``, so its ``null`` branch goes.
    """
    not_null: frozenset[str] = getattr(model, "NOT_NULL", frozenset())
    properties = schema.get("properties")
    assert isinstance(properties, dict)
    for name, field in properties.items():
        assert isinstance(field, dict)
        field.pop("default", None)
        branches = field.get("anyOf")
        if name in not_null and isinstance(branches, list):
            rest = [branch for branch in branches if branch != {"type": "null"}]
            del field["anyOf"]
            if len(rest) == 1:
                assert isinstance(rest[0], dict)
                field.update(rest[0])
            else:
                field["anyOf"] = rest


def partial_with(extra: JsonDict) -> Callable[[JsonDict, type[BaseModel]], None]:
    """A ``Partial`` subclass's schema hook: what ``Partial`` says, and ``extra`` besides."""

    def hook(schema: JsonDict, model: type[BaseModel]) -> None:
        _partial_json_schema(schema, model)
        schema.update(extra)

    return hook


class Partial(Request):
    """Base of PUT/PATCH bodies: absent fields stay as they are.

    ``null`` is accepted only for nullable columns; subclasses list the rest in
    ``NOT_NULL`` so that ``{"name": null}`` is refused instead of stored.
    """

    model_config = ConfigDict(json_schema_extra=_partial_json_schema)

    NOT_NULL: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_null(cls, value: Any, info: Any) -> Any:
        if value is None and info.field_name in cls.NOT_NULL:
            raise ValueError("may not be null")
        return value

    def changes(self) -> dict[str, Any]:
        """Return only the fields the client sent."""
        return self.model_dump(exclude_unset=True)


class QueryRequest(BaseModel):
    """Base of query-string models: values arrive as text and are converted."""

    model_config = ConfigDict(extra="forbid")


class Page(QueryRequest):
    skip: int = Field(default=0, ge=0, le=ID_MAX)
    limit: int = Field(default=100, ge=1)


# A search term: any text a name or an error could contain (NUL cannot be stored).
SearchText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=NO_NUL,
        description="Keep only items containing this text, ignoring case.",
    ),
]


class Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)
