"""Alembic's environment: run the migrations on the connection zerg hands over.

``zerg.migrate`` opens that connection from the app's own engine, takes the
migration lock on it and passes it in ``config.attributes``; nothing here
builds an engine or reads a URL. Offline (``--sql``) mode is not offered.
"""

from __future__ import annotations

from typing import Any
from typing import Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import JSON
from sqlalchemy.types import TypeDecorator

from zerg.models import Base


def render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write the models' own column types as the plain types they store.

    A migration must not import ``zerg.models``: the models move on, the
    script must keep meaning what it meant the day it was written. (Alembic's
    own rendering of the JSON/JSONB variant names ``Text`` without importing it.)
    """
    if kind != "type":
        return False
    if isinstance(item, TypeDecorator):
        return f"sa.{item.impl!r}"
    if isinstance(item, JSON) and "postgresql" in getattr(item, "_variant_mapping", {}):
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return 'sa.JSON().with_variant(postgresql.JSONB(), "postgresql")'
    return False


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through `flask db`, which hands Alembic the app's connection"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
    compare_server_default=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
