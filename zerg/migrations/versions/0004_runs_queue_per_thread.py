"""runs: a queue per thread, one running run; runs.stop_requested

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:20:14.970744

``multitask_strategy=enqueue`` lets a thread hold several queued runs that
start one after the other, so the unique index that allowed one active
(queued or running) run per thread now allows one *running* run per thread.
``stop_requested`` records that a running run was asked to stop, and how
("cancel", "interrupt", "rollback"); existing rows have none.

Downgrading cannot keep a queue the old index forbids: runs waiting behind a
thread's first active run are cancelled first, saying why.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ACTIVE_RUN = sa.text("status IN ('queued', 'running')")
RUNNING_RUN = sa.text("status = 'running'")


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stop_requested", sa.String(length=16), nullable=True))
        batch_op.drop_index("uq_runs_active_thread")
        batch_op.create_index(
            "uq_runs_running_thread",
            ["thread_id"],
            unique=True,
            sqlite_where=RUNNING_RUN,
            postgresql_where=RUNNING_RUN,
        )


def downgrade() -> None:
    # Keep each thread's earliest active run (a running one first), cancel the rest.
    op.execute(
        """
        UPDATE runs
        SET status = 'cancelled',
            error = 'cancelled by a schema downgrade: one active run per thread',
            finished_at = CURRENT_TIMESTAMP
        WHERE status = 'queued'
          AND thread_id IS NOT NULL
          AND EXISTS (
            SELECT 1 FROM runs AS other
            WHERE other.thread_id = runs.thread_id
              AND other.status IN ('queued', 'running')
              AND (other.status = 'running' OR other.id < runs.id)
          )
        """
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("uq_runs_running_thread")
        batch_op.create_index(
            "uq_runs_active_thread",
            ["thread_id"],
            unique=True,
            sqlite_where=ACTIVE_RUN,
            postgresql_where=ACTIVE_RUN,
        )
        batch_op.drop_column("stop_requested")
