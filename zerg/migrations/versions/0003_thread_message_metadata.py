"""add thread_messages.metadata

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:32:32.052602

The client's own data about a message (the websocket's ``send_message``
``metadata``, or ``metadata`` in a REST body), stored as sent and returned
with the message. Nullable, so existing rows need nothing: they have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("thread_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "metadata", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("thread_messages", schema=None) as batch_op:
        batch_op.drop_column("metadata")
