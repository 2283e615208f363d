"""Rows serialised in one pass say exactly what the response models say."""

from __future__ import annotations

import re
import sys
import types
import typing
from datetime import datetime
from typing import Annotated
from typing import Any
from typing import cast

import pytest
from flask import Flask
from pydantic import BaseModel
from pydantic import StringConstraints
from pydantic import TypeAdapter
from pydantic import ValidationError
from sqlalchemy import JSON
from sqlalchemy import Table
from sqlalchemy import select

from tests.helpers import create_agent
from zerg import db
from zerg import schemas
from zerg.models import Agent
from zerg.models import AgentMessage
from zerg.models import Base
from zerg.models import Run
from zerg.models import Thread
from zerg.models import ThreadMessage
from zerg.schemas import AgentMessageOut
from zerg.schemas import AgentOut
from zerg.schemas import RunOut
from zerg.schemas import ThreadMessageOut
from zerg.schemas import ThreadOut
from zerg.schemas import dump_row
from zerg.schemas import rows_adapter

PAIRS: list[tuple[type[BaseModel], type[Base]]] = [
    (AgentOut, Agent),
    (AgentMessageOut, AgentMessage),
    (ThreadOut, Thread),
    (ThreadMessageOut, ThreadMessage),
    (RunOut, Run),
]


def _python_types(annotation: Any) -> tuple[set[type], bool]:
    """Split ``int | None`` into ({int}, True); generic aliases count as their origin."""
    arguments = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = {typing.get_origin(a) or a for a in arguments if a is not type(None)}
        return kinds, type(None) in arguments
    return {typing.get_origin(annotation) or annotation}, False


@pytest.mark.parametrize(("schema", "model"), PAIRS, ids=lambda p: getattr(p, "__name__", ""))
def test_response_models_mirror_their_columns(schema: type[BaseModel], model: type[Base]) -> None:
    columns = cast(Table, model.__table__).c
    for name, field in schema.model_fields.items():
        column = columns[name]
        kinds, nullable = _python_types(field.annotation)
        assert nullable == column.nullable, f"{schema.__name__}.{name}: nullability differs"
        stored = getattr(column.type, "impl", column.type)
        # A JSON column holds an object or an array, as its model says.
        allowed = {dict, list} if isinstance(stored, JSON) else {stored.python_type}
        assert kinds <= allowed and len(kinds) == 1, f"{schema.__name__}.{name}: type differs"


def test_rows_serialise_as_the_models_do(app: Flask) -> None:
    """The same database rows, through the one-pass adapter and through the models."""
    client = app.test_client()
    agent = create_agent(client, config={"nested": {"list": [1, 2.5, "x", None]}})
    client.put(f"/api/agents/{agent['id']}", json={"schedule": "*/5 * * * *"})
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    client.post(f"/api/agents/{agent['id']}/messages", json={"content": "note"})
    client.post(
        f"/api/threads/{thread['id']}/messages",
        json={"role": "assistant", "content": "calling", "tool_calls": [{"id": "t1"}]},
    )
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": "ünïcode ✓"})
    with db.session_scope(app) as session:
        session.add(Run(agent_id=agent["id"], thread_id=thread["id"], trigger="api"))
    with db.session_scope(app, write=False) as session:
        for schema, model in PAIRS:
            rows = db.fetch_rows(session, select(cast(Table, model.__table__)))
            assert rows, model.__name__
            objects = session.scalars(select(model)).all()
            through_models = TypeAdapter(list[schema]).dump_json(  # type: ignore[valid-type]
                TypeAdapter(list[schema]).validate_python(objects, from_attributes=True)  # type: ignore[valid-type]
            )
            assert rows_adapter(schema).dump_json(rows) == through_models
            first = schema.model_validate(objects[0]).model_dump(mode="json")
            assert dump_row(schema, rows[0]) == first
            assert all(
                isinstance(first[name], str)
                for name, value in rows[0].items()
                if isinstance(value, datetime) and name in first
            )


def test_the_documented_whitespace_is_what_pydantic_strips() -> None:
    """A name of whitespace only is refused after stripping; the document must say the same."""
    documented = re.compile(f"[{schemas.STRIPPED_WHITESPACE}]")
    stripped = TypeAdapter(Annotated[str, StringConstraints(strip_whitespace=True)])
    # Every code point but the surrogates, which no JSON text decodes to.
    every = [chr(n) for n in range(sys.maxunicode + 1) if not 0xD800 <= n <= 0xDFFF]
    wrong = [c for c in every if bool(documented.fullmatch(c)) != (not stripped.validate_python(c))]
    assert wrong == []
    for name in ("\u2028", " \u3000\t", "\x00a"):
        assert not re.fullmatch(schemas.NAME_PATTERN, name)
        with pytest.raises(ValidationError):
            schemas.AgentCreate.model_validate({"name": name})
    assert re.fullmatch(schemas.NAME_PATTERN, " a\u3000\x1c")
