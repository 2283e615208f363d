"""agent tools: tool_calls, mcp_servers, the agent's tool settings, runs awaiting approval

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 17:10:00.000000

Agents get ``tools`` (built-in names and ``mcp:<server>/<tool>`` entries),
``approval_required`` (those of them a person approves call by call), and
``temperature`` and ``max_tokens`` for their provider. Existing agents get
no tools and the provider's own defaults: they behave as before.

``tool_calls`` keeps every call a model asks for, ``mcp_servers`` the MCP
servers tools come from. ``thread_messages.run_id`` names the run that wrote
a reply or a tool result, so a rolled-back run's messages go together; the
messages stored before have none.

A run waiting for a person's approval holds its thread as a running one does:
``uq_runs_running_thread`` now covers both statuses, and ``runs.status``
widens to 20 characters for ``awaiting_approval``.

Downgrading cancels the runs waiting for approval (the older schema has no
such status), then drops what was added.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
HOLDS_THREAD = sa.text("status IN ('running', 'awaiting_approval')")
RUNNING_RUN = sa.text("status = 'running'")


def upgrade() -> None:
    with op.batch_alter_table("agents", table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.add_column(sa.Column("tools", JSON, server_default="[]", nullable=False))
        batch_op.add_column(
            sa.Column("approval_required", JSON, server_default="[]", nullable=False)
        )
        batch_op.add_column(sa.Column("temperature", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("max_tokens", sa.Integer(), nullable=True))
    with op.batch_alter_table("runs", table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=sa.String(length=16),
            type_=sa.String(length=20),
            existing_nullable=False,
        )
        batch_op.drop_index("uq_runs_running_thread")
        batch_op.create_index(
            "uq_runs_running_thread",
            ["thread_id"],
            unique=True,
            sqlite_where=HOLDS_THREAD,
            postgresql_where=HOLDS_THREAD,
        )
    with op.batch_alter_table("thread_messages", table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_thread_messages_run_id", ["run_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_thread_messages_run_id_runs", "runs", ["run_id"], ["id"], ondelete="SET NULL"
        )
    op.create_table(
        "tool_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tool_call_id", sa.String(length=255), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("function", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requires_approval", sa.Boolean(), nullable=False),
        sa.Column("approval_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_tool_calls_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_tool_calls"),
        sa.UniqueConstraint("run_id", "tool_call_id", name="uq_tool_calls_run_id_tool_call_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tool_calls_run_id", "tool_calls", ["run_id"], unique=False)
    op.create_index("ix_tool_calls_status_deadline", "tool_calls", ["status", "approval_deadline"])
    op.create_table(
        "mcp_servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("transport", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("command", sa.String(length=1024), nullable=True),
        sa.Column("args", JSON, nullable=False),
        sa.Column("env", JSON, nullable=False),
        sa.Column("headers", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("tools", JSON, nullable=True),
        sa.Column("tools_listed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mcp_servers"),
        sa.UniqueConstraint("name", name="uq_mcp_servers_name"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.execute(
        """
        UPDATE runs
        SET status = 'cancelled',
            error = 'cancelled by a schema downgrade: no run may wait for approval',
            finished_at = CURRENT_TIMESTAMP
        WHERE status = 'awaiting_approval'
        """
    )
    op.drop_table("mcp_servers")
    op.drop_index("ix_tool_calls_status_deadline", table_name="tool_calls")
    op.drop_index("ix_tool_calls_run_id", table_name="tool_calls")
    op.drop_table("tool_calls")
    with op.batch_alter_table("thread_messages", table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_constraint("fk_thread_messages_run_id_runs", type_="foreignkey")
        batch_op.drop_index("ix_thread_messages_run_id")
        batch_op.drop_column("run_id")
    with op.batch_alter_table("runs", table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_index("uq_runs_running_thread")
        batch_op.create_index(
            "uq_runs_running_thread",
            ["thread_id"],
            unique=True,
            sqlite_where=RUNNING_RUN,
            postgresql_where=RUNNING_RUN,
        )
        batch_op.alter_column(
            "status",
            existing_type=sa.String(length=20),
            type_=sa.String(length=16),
            existing_nullable=False,
        )
    with op.batch_alter_table("agents", table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column("max_tokens")
        batch_op.drop_column("temperature")
        batch_op.drop_column("approval_required")
        batch_op.drop_column("tools")
