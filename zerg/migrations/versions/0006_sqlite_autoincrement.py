"""every table with an integer id: ids never reused on SQLite (AUTOINCREMENT)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 06:40:00.000000

Without AUTOINCREMENT, SQLite numbers a new row one past the highest id in
use, so once the newest agent (thread, run, message) is deleted the next one
gets its id, and every id kept elsewhere (a bookmark, a websocket
subscription, a client's record) comes to name another row. AUTOINCREMENT is
part of CREATE TABLE, so each table is rebuilt by batch mode's copy, drop and
rename, keeping every row and its id; new ids then start above the highest id
kept (ids freed before this revision above it are not known to anyone).
PostgreSQL's sequences never hand out an id twice: nothing changes there.
Downgrading rebuilds the tables without AUTOINCREMENT, keeping the rows.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = (
    "agents",
    "agent_messages",
    "agent_threads",
    "thread_messages",
    "runs",
    "idempotency_keys",
)


def rebuild(autoincrement: bool) -> None:
    """Recreate every table on SQLite, with or without AUTOINCREMENT."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    rebuild(autoincrement=True)


def downgrade() -> None:
    rebuild(autoincrement=False)
