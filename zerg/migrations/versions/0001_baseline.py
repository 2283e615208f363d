"""Baseline: the tables of zerg 0.1.0, the last release made by create_all.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

A database made by 0.1.0 has these tables and no version table;
``zerg.migrate`` recognises it by ``RELEASE_TABLES`` and ``RELEASE_INDEXES``
(a test checks they describe what ``upgrade`` below makes), stamps it here
and upgrades it from here. Never edit this revision: databases depend on it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RELEASE_TABLES = {
    "agent_messages": ["agent_id", "content", "id", "role", "timestamp"],
    "agent_threads": [
        "active",
        "agent_id",
        "agent_state",
        "created_at",
        "id",
        "memory_strategy",
        "thread_type",
        "title",
        "updated_at",
    ],
    "agents": [
        "config",
        "created_at",
        "id",
        "last_error",
        "last_run_at",
        "model",
        "name",
        "next_run_at",
        "run_on_schedule",
        "schedule",
        "status",
        "system_instructions",
        "task_instructions",
        "updated_at",
    ],
    "runs": [
        "agent_id",
        "completion_tokens",
        "created_at",
        "duration_ms",
        "error",
        "finished_at",
        "id",
        "owner",
        "prompt_tokens",
        "scheduled_for",
        "started_at",
        "status",
        "thread_id",
        "total_tokens",
        "trigger",
    ],
    "thread_messages": [
        "content",
        "id",
        "name",
        "partial",
        "processed",
        "role",
        "thread_id",
        "timestamp",
        "tool_call_id",
        "tool_calls",
    ],
}
RELEASE_INDEXES = [
    "ix_agent_messages_agent_id",
    "ix_agent_threads_agent_id",
    "ix_runs_agent_id",
    "ix_runs_status",
    "ix_runs_thread_id",
    "ix_thread_messages_thread_id",
    "uq_runs_active_thread",
]

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ACTIVE_RUN = sa.text("status IN ('queued', 'running')")


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("system_instructions", sa.Text(), nullable=False),
        sa.Column("task_instructions", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("schedule", sa.String(length=100), nullable=True),
        sa.Column("run_on_schedule", sa.Boolean(), nullable=False),
        sa.Column("config", JSON, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
    )
    op.create_table(
        "agent_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_messages_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_messages")),
    )
    op.create_index(op.f("ix_agent_messages_agent_id"), "agent_messages", ["agent_id"])
    op.create_table(
        "agent_threads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("thread_type", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("agent_state", JSON, nullable=True),
        sa.Column("memory_strategy", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_threads_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_threads")),
    )
    op.create_index(op.f("ix_agent_threads_agent_id"), "agent_threads", ["agent_id"])
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.Integer(), nullable=True),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_runs_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["agent_threads.id"],
            name=op.f("fk_runs_thread_id_agent_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint(
            "agent_id", "scheduled_for", name=op.f("uq_runs_agent_id_scheduled_for")
        ),
    )
    op.create_index(op.f("ix_runs_agent_id"), "runs", ["agent_id"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index(op.f("ix_runs_thread_id"), "runs", ["thread_id"])
    op.create_index(
        "uq_runs_active_thread",
        "runs",
        ["thread_id"],
        unique=True,
        sqlite_where=ACTIVE_RUN,
        postgresql_where=ACTIVE_RUN,
    )
    op.create_table(
        "thread_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("tool_calls", JSON, nullable=True),
        sa.Column("tool_call_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("processed", sa.Boolean(), nullable=False),
        sa.Column("partial", sa.Boolean(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["agent_threads.id"],
            name=op.f("fk_thread_messages_thread_id_agent_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_thread_messages")),
    )
    op.create_index(op.f("ix_thread_messages_thread_id"), "thread_messages", ["thread_id"])


def downgrade() -> None:
    # Dropping a table drops its indexes.
    for table in ("thread_messages", "runs", "agent_threads", "agent_messages", "agents"):
        op.drop_table(table)
