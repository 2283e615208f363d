"""Alembic's environment: run the migrations on the connection zerg hands over.

``zerg.migrate`` opens that connection from the app's own engine, takes the
migration lock on it and passes it in ``config.attributes``; nothing here
builds an engine or reads a URL. Offline (``--sql``) mode is not offered.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.types import TypeDecorator

from zerg.models import Base


def render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | bool:
    """Write a column type of the models' own as the plain type it stores.

    A migration must not import ``zerg.models``: the models move on, the
    script must keep meaning what it meant the day it was written.
    """
    if kind == "type" and isinstance(item, TypeDecorator):
        return f"sa.{item.impl!r}"
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
