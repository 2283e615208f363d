"""runs: an index for listing, thread_id required; idempotency_keys.location

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 14:30:00.000000

Runs are listed newest first (``created_at``, then ``id``), which had no
index: ``ix_runs_created_at`` covers that order exactly, on both databases.

Every run answers a thread, and zerg has always created runs with one, but the
column was nullable. A row without a thread can only come from outside zerg
(a hand-written INSERT): it can never run, be shown with its thread or be
cancelled through a thread, so upgrading deletes such rows rather than
refusing to migrate over history nobody can reach; the agents' own
``last_run_status`` and ``last_run_at`` keep what they said. Then the column
becomes NOT NULL (on SQLite by batch mode's copy, keeping AUTOINCREMENT).

``idempotency_keys.location`` keeps the ``Location`` header of a stored 201
(or 202) so that a replay names the same resource; rows stored before have
none, and their replays carry none, as their first answers did.

Downgrading drops the index and the column and makes ``thread_id`` nullable
again; the deleted orphan runs do not come back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# On SQLite, batch mode rebuilds these tables; they keep AUTOINCREMENT (0006).
KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    op.execute("DELETE FROM runs WHERE thread_id IS NULL")
    with op.batch_alter_table("runs", table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.alter_column("thread_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index("ix_runs_created_at", ["created_at", "id"], unique=False)
    with op.batch_alter_table("idempotency_keys", table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.add_column(sa.Column("location", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column("location")
    with op.batch_alter_table("runs", table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_index("ix_runs_created_at")
        batch_op.alter_column("thread_id", existing_type=sa.Integer(), nullable=True)
