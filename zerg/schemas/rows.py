"""Turning ORM objects and database rows into the JSON their response models describe."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic import TypeAdapter
from typing_extensions import TypedDict


def serialize(schema: type[BaseModel], obj: object) -> dict[str, Any]:
    """Return an ORM object as the JSON-safe dict its response schema describes."""
    return schema.model_validate(obj).model_dump(mode="json")


@cache
def _row_type(schema: type[BaseModel]) -> Any:
    """The response model's fields as a TypedDict, which pydantic-core serialises from a dict.

    Rows then go straight to JSON in one pass: no model object is built and
    validated per row only to be dumped again. The rows come from our own
    columns, whose types the response models mirror (``tests/test_schemas.py``
    holds them to it).
    """
    fields = {name: field.annotation for name, field in schema.model_fields.items()}
    return TypedDict(f"{schema.__name__}Row", fields)  # type: ignore[operator]


@cache
def row_adapter(schema: type[BaseModel]) -> TypeAdapter[dict[str, Any]]:
    """Serialise one database row as ``schema`` describes it."""
    return TypeAdapter(_row_type(schema))


@cache
def rows_adapter(schema: type[BaseModel]) -> TypeAdapter[list[dict[str, Any]]]:
    """Serialise a list of database rows as ``schema`` describes them."""
    row: Any = _row_type(schema)
    return TypeAdapter(list[row])  # type: ignore[valid-type]


def dump_row(schema: type[BaseModel], row: dict[str, Any]) -> dict[str, Any]:
    """Return one row as the JSON-safe dict ``schema`` describes (an event's payload)."""
    return row_adapter(schema).dump_python(row, mode="json")
