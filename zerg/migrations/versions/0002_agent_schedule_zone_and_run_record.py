"""agents: a schedule's time zone, the last run's status, scheduled failures in a row

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 09:39:07.153712

Existing agents keep their schedules in UTC, and take the status of their
latest finished run, so that nothing reads as "never ran" that did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False)
        )
        batch_op.add_column(sa.Column("last_run_status", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False)
        )
    op.execute(
        "UPDATE agents SET last_run_status = ("
        " SELECT runs.status FROM runs"
        " WHERE runs.agent_id = agents.id AND runs.status NOT IN ('queued', 'running')"
        " ORDER BY runs.finished_at DESC, runs.id DESC LIMIT 1)"
    )


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("consecutive_failures")
        batch_op.drop_column("last_run_status")
        batch_op.drop_column("timezone")
