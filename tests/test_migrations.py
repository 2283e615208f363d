"""Migrations: fresh databases, round trips, the 0.1.0 file, refusals, locks and start-up.

Every test runs on SQLite and, with ``TEST_DATABASE_URL``, on PostgreSQL; the
real ``flask db`` commands are invoked through the app's CLI runner.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import Connection
from sqlalchemy import MetaData
from sqlalchemy import func
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tests.conftest import AppFactory
from zerg import db
from zerg import migrate
from zerg import serving
from zerg.models import HOLDS_THREAD
from zerg.models import Agent
from zerg.models import AgentMessage
from zerg.models import Run
from zerg.models import Thread
from zerg.models import ThreadMessage

# The revision that makes SQLite's ids AUTOINCREMENT, and the one before it.
AUTOINCREMENT, BEFORE_AUTOINCREMENT = "0006", "0005"
RELEASE_DUMP = Path(__file__).parent / "data" / "release-0.1.sql"
RELEASE_ROWS = {
    "agents": 2,
    "agent_messages": 1,
    "agent_threads": 2,
    "thread_messages": 6,
    "runs": 2,
}


def flask_db(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["db", *args])


def one_line_error(result: Result) -> str:
    """Assert the command failed with exactly one line, and return it."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("zerg: ")
    return lines[0]


@pytest.fixture
def empty_app(make_bare_app: AppFactory, empty_database_url: str) -> Flask:
    return make_bare_app(empty_database_url)


def release_database(make_app: AppFactory, database_url: str, tmp_path: Path) -> Flask:
    """Make ``database_url`` (empty) hold what zerg 0.1.0 left: its tables and rows, no version.

    SQLite loads the committed dump itself. PostgreSQL cannot read an SQLite
    dump, so it gets the baseline's tables (equal to 0.1.0's, as the tests
    below check) without the version table, and the dump's rows copied in
    through SQLAlchemy, which converts their types.
    """
    app = make_app(database_url)
    engine = db.get_database(app).engine
    if engine.dialect.name == "sqlite":
        with sqlite3.connect(engine.url.database or "") as connection:
            connection.executescript(RELEASE_DUMP.read_text())
        return app
    dumped = make_app(f"sqlite:///{tmp_path / 'release.sqlite'}")
    with sqlite3.connect(tmp_path / "release.sqlite") as connection:
        connection.executescript(RELEASE_DUMP.read_text())
    migrate.upgrade(app, migrate.BASELINE)
    source, target = MetaData(), MetaData()
    with db.get_database(dumped).engine.connect() as reading, engine.begin() as writing:
        source.reflect(reading)
        writing.execute(text(f"DROP TABLE {migrate.VERSION_TABLE}"))
        target.reflect(writing)
        for table in source.sorted_tables:
            rows = [dict(row._mapping) for row in reading.execute(table.select())]
            for row in rows:
                for key, value in row.items():
                    if isinstance(value, datetime):  # SQLite kept naive UTC
                        row[key] = value.replace(tzinfo=UTC)
            writing.execute(target.tables[table.name].insert(), rows)
    return app


def assert_release_rows_intact(app: Flask) -> None:
    """The rows of release-0.1.sql, read through today's models."""
    with db.session_scope(app, write=False) as session:
        counts = {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (Agent, AgentMessage, Thread, ThreadMessage, Run)
        }
        assert counts == RELEASE_ROWS
        digest, echo = session.scalars(select(Agent).order_by(Agent.id)).all()
        assert (digest.name, digest.schedule, digest.run_on_schedule) == (
            "Morning digest",
            "0 8 * * 1-5",
            True,
        )
        assert digest.config == {"temperature": 0.2, "tags": ["news"]}
        assert digest.next_run_at == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        assert (echo.status, echo.last_error) == ("error", "provider timed out")
        chat = session.get(Thread, 1)
        assert chat is not None
        assert (chat.title, chat.thread_type, chat.agent_state) == (
            "First chat",
            "chat",
            {"step": 2},
        )
        assert chat.updated_at == datetime(2026, 11, 30, 9, 1, tzinfo=UTC)
        messages = session.scalars(select(ThreadMessage).order_by(ThreadMessage.id)).all()
        assert [m.role for m in messages] == [
            "system",
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
        ]
        assert messages[2].tool_calls == [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
        ]
        assert [m.partial for m in messages] == [False, False, False, False, True, False]
        assert [m.processed for m in messages] == [True] * 5 + [False]
        finished, failed = session.scalars(select(Run).order_by(Run.id)).all()
        assert (finished.status, finished.owner, finished.total_tokens) == (
            "success",
            "3f2a9c1d",
            19,
        )
        assert finished.finished_at == datetime(2026, 11, 30, 9, 0, 2, tzinfo=UTC)
        assert (failed.status, failed.scheduled_for) == (
            "failed",
            datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
        )
        # 0002: schedules stay in UTC; the last run's status comes from the
        # latest finished run (the success at 09:00, not the failure at 08:00).
        assert (digest.timezone, digest.last_run_status) == ("UTC", "success")
        assert (echo.timezone, echo.last_run_status) == ("UTC", None)


def test_a_fresh_database_upgrades_to_head_and_check_is_clean(empty_app: Flask) -> None:
    """The test that fails when a model changes without a migration."""
    result = flask_db(empty_app, "upgrade")
    assert result.exit_code == 0, result.output
    assert "Created 9 tables in" in result.output
    assert result.output.strip().endswith(f"at {migrate.head()} (head)")
    check = flask_db(empty_app, "check")
    assert check.exit_code == 0, check.output
    assert f"The models match the migrations (head {migrate.head()})" in check.output


def test_upgrade_downgrade_to_base_and_upgrade_again(empty_app: Flask) -> None:
    assert flask_db(empty_app, "upgrade").exit_code == 0
    with db.session_scope(empty_app) as session:
        session.add(Agent(name="goes with the tables", model="offline"))

    result = flask_db(empty_app, "downgrade", "base")
    assert result.exit_code == 0, result.output
    assert "to base (no tables)" in result.output
    state = migrate.status(empty_app)
    assert (state.current, state.has_tables) == (None, False)

    again = flask_db(empty_app, "upgrade")
    assert again.exit_code == 0, again.output
    assert migrate.status(empty_app).at_head
    assert flask_db(empty_app, "check").exit_code == 0


def test_the_baseline_records_the_tables_it_makes(empty_app: Flask) -> None:
    """What 0.1.0 databases are recognised by is what the baseline creates."""
    migrate.upgrade(empty_app, migrate.BASELINE)
    with db.get_database(empty_app).engine.connect() as connection:
        assert migrate.signature(connection) == (
            migrate.release_tables(),
            sorted(migrate.release_indexes()),
        )


def test_the_release_database_upgrades_with_its_data_intact(
    make_bare_app: AppFactory, empty_database_url: str, tmp_path: Path
) -> None:
    app = release_database(make_bare_app, empty_database_url, tmp_path)
    assert migrate.status(app).current is None

    result = flask_db(app, "upgrade")
    assert result.exit_code == 0, result.output
    assert "Recognised zerg 0.1.0's tables" in result.output
    assert f"stamped them {migrate.BASELINE}" in result.output
    assert migrate.status(app).at_head
    assert flask_db(app, "check").exit_code == 0
    assert_release_rows_intact(app)
    # And the API serves it.
    messages = app.test_client().get("/api/threads/1/messages").get_json()
    assert [m["content"] for m in messages][-1] == "Still there?"


Rows = dict[str, list[dict[str, Any]]]


def every_row(app: Flask) -> Rows:
    """Every row of every zerg table, by id, as the database holds it."""
    tables = MetaData()
    with db.get_database(app).engine.connect() as connection:
        tables.reflect(connection, only=list(RELEASE_ROWS))
        return {
            name: [
                dict(row._mapping)
                for row in connection.execute(table.select().order_by(table.c.id))
            ]
            for name, table in tables.tables.items()
        }


def only_columns_of(now: Rows, before: Rows) -> Rows:
    """``now`` with only the columns ``before`` had: what later revisions added is theirs."""
    return {
        name: [{column: row[column] for column in before[name][0]} for row in rows]
        for name, rows in now.items()
    }


def test_the_autoincrement_revision_keeps_every_row_and_id(
    make_bare_app: AppFactory, empty_database_url: str, tmp_path: Path
) -> None:
    """The revision rebuilds SQLite's tables with AUTOINCREMENT, rows and ids kept, both ways."""
    app = release_database(make_bare_app, empty_database_url, tmp_path)
    migrate.upgrade(app, BEFORE_AUTOINCREMENT)
    before = every_row(app)
    assert {name: len(rows) for name, rows in before.items()} == RELEASE_ROWS

    migrate.upgrade(app, AUTOINCREMENT)

    assert every_row(app) == before
    # The models are head's, so they are checked there; later revisions leave these rows be.
    migrate.upgrade(app)
    assert only_columns_of(every_row(app), before) == before
    assert flask_db(app, "check").exit_code == 0
    engine = db.get_database(app).engine
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            made = dict(connection.execute(text("SELECT name, sql FROM sqlite_master")).all())
            # New ids start above the highest one kept.
            sequence = dict(connection.execute(text("SELECT name, seq FROM sqlite_sequence")).all())
        assert all("AUTOINCREMENT" in made[name] for name in (*RELEASE_ROWS, "idempotency_keys"))
        for name, rows in before.items():
            assert sequence[name] == max(row["id"] for row in rows), name
        assert f"WHERE {HOLDS_THREAD}" in made["uq_runs_running_thread"]
    assert_release_rows_intact(app)

    migrate.downgrade(app, BEFORE_AUTOINCREMENT)

    assert every_row(app) == before
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            made = dict(connection.execute(text("SELECT name, sql FROM sqlite_master")).all())
        assert not any("AUTOINCREMENT" in (made[name] or "") for name in RELEASE_ROWS)


def test_unversioned_tables_that_are_not_the_release_are_refused(
    make_bare_app: AppFactory, empty_database_url: str, tmp_path: Path
) -> None:
    """A database from before the runs' owner column: never guessed at, never touched."""
    app = release_database(make_bare_app, empty_database_url, tmp_path)
    with db.get_database(app).engine.begin() as connection:
        connection.execute(text("DROP INDEX uq_runs_active_thread"))
        connection.execute(text("ALTER TABLE runs DROP COLUMN owner"))

    for command in ("upgrade", "init"):
        line = one_line_error(flask_db(app, command))
        assert "no schema version" in line
        assert "missing column runs.owner" in line
        assert "missing index uq_runs_active_thread" in line
        assert "flask --app zerg db reset" in line
    with db.get_database(app).engine.connect() as connection:
        assert not inspect(connection).has_table(migrate.VERSION_TABLE)
        assert "owner" not in {c["name"] for c in inspect(connection).get_columns("runs")}


def test_reset_recovers_a_database_that_matches_no_revision(
    make_app: AppFactory, make_bare_app: AppFactory, empty_database_url: str, tmp_path: Path
) -> None:
    release = release_database(make_bare_app, empty_database_url, tmp_path)
    with db.get_database(release).engine.begin() as connection:
        connection.execute(text("ALTER TABLE agents ADD COLUMN legacy INTEGER"))
    app = make_app(DATABASE_URL=empty_database_url, ENVIRONMENT="development")
    result = flask_db(app, "reset", "--yes")
    assert result.exit_code == 0, result.output
    assert migrate.status(app).at_head
    assert flask_db(app, "check").exit_code == 0


def test_check_fails_when_the_database_differs_from_the_models(empty_app: Flask) -> None:
    """What a model change without a migration looks like, from the other side.

    (On a database of its own: the run's shared PostgreSQL schema must stay as
    the migrations made it.)
    """
    migrate.upgrade(empty_app)
    with db.get_database(empty_app).engine.begin() as connection:
        connection.execute(text("ALTER TABLE agents ADD COLUMN nickname VARCHAR(20)"))
    line = one_line_error(flask_db(empty_app, "check"))
    assert "the models differ from the migrations" in line
    assert "nickname" in line
    assert "flask --app zerg db revision -m" in line


def test_check_refuses_a_database_behind_head(empty_app: Flask) -> None:
    line = one_line_error(flask_db(empty_app, "check"))
    assert "is not at head" in line
    assert "flask --app zerg db upgrade" in line


def test_downgrade_refuses_an_unversioned_database(empty_app: Flask) -> None:
    line = one_line_error(flask_db(empty_app, "downgrade", "base"))
    assert "no schema version to downgrade from" in line


def test_upgrade_to_an_unknown_revision_is_refused(empty_app: Flask) -> None:
    line = one_line_error(flask_db(empty_app, "upgrade", "9999"))
    assert "9999" in line
    assert migrate.status(empty_app).current is None


def test_current_says_where_the_database_stands(
    make_bare_app: AppFactory, empty_database_url: str, tmp_path: Path
) -> None:
    empty = flask_db(make_bare_app(empty_database_url), "current")
    assert empty.output.startswith("none: no tables yet")
    release = release_database(make_bare_app, empty_database_url, tmp_path)
    assert "tables without a schema version" in flask_db(release, "current").output
    migrate.upgrade(release)
    assert flask_db(release, "current").output == f"{migrate.head()} (head)\n"


def test_history_lists_the_revisions(runner: Any) -> None:
    result = runner.invoke(args=["db", "history"])
    assert result.exit_code == 0, result.output
    assert f"<base> -> {migrate.BASELINE}" in result.output
    assert "Baseline" in result.output


def test_revision_writes_the_next_numbered_script(app: Flask, tmp_path: Path) -> None:
    """On a database at head and unchanged models the script is empty, but numbered and linked.

    The command writes into the package; this writes into ``tmp_path``, so that
    the package stays as committed for test runs going on beside this one.
    """
    number = f"{len(list(migrate.scripts().walk_revisions())) + 1:04d}"
    path = Path(migrate.revision(app, "nothing yet", folder=tmp_path))
    assert path == tmp_path / f"{number}_nothing_yet.py"
    source = path.read_text()
    assert f'revision = "{number}"' in source
    assert f'down_revision = "{migrate.head()}"' in source
    # Written lint-clean (ruff is installed with the test extra).
    assert "import sqlalchemy" not in source
    assert "def upgrade() -> None:\n    # ### commands auto generated by Alembic" in source


def test_revision_refuses_a_database_behind_head(empty_app: Flask) -> None:
    line = one_line_error(flask_db(empty_app, "revision", "-m", "too early"))
    assert "is not at head" in line or "not up to date" in line


def test_concurrent_upgrades_migrate_once_and_both_end_at_head(
    make_bare_app: AppFactory, empty_database_url: str
) -> None:
    """Two apps (two engines, as two processes would have) upgrade one empty database at once."""
    apps = [make_bare_app(empty_database_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    steps: list[migrate.Step] = []
    errors: list[BaseException] = []

    def upgrade(app: Flask) -> None:
        barrier.wait()
        try:
            steps.append(migrate.upgrade(app))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(step.before or "" for step in steps) == ["", migrate.head()]
    assert [step.changed for step in steps].count(True) == 1
    assert all(migrate.status(app).at_head for app in apps)


def test_two_flask_db_upgrade_processes_migrate_once(empty_database_url: str) -> None:
    """The real command, twice at once in two processes, on one empty database."""
    env = {
        **os.environ,
        "ENVIRONMENT": "testing",
        "DATABASE_URL": empty_database_url,
        "AUTO_CREATE_TABLES": "false",
    }
    command = [sys.executable, "-m", "flask", "--app", "zerg", "db", "upgrade"]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=60)[0].decode() for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    said = sorted("Created 9 tables in" in output for output in outputs)
    assert said == [False, True], outputs
    assert any(f"is already up to date at {migrate.head()} (head)" in output for output in outputs)


def test_a_second_migration_waits_for_the_lock(
    make_bare_app: AppFactory, empty_database_url: str
) -> None:
    holder, waiter = (make_bare_app(empty_database_url) for _ in range(2))
    steps: list[migrate.Step] = []
    second = threading.Thread(target=lambda: steps.append(migrate.upgrade(waiter)))
    with migrate.migrating(holder):
        second.start()
        second.join(timeout=0.5)
        assert second.is_alive(), "the second upgrade did not wait for the lock"
        assert steps == []
    second.join(timeout=30)
    assert [step.after for step in steps] == [migrate.head()]


def test_sqlite_migrations_check_foreign_keys_and_restore_them(empty_app: Flask) -> None:
    """Foreign keys are off while migrating (so batch copies cannot cascade), checked at the end."""
    engine = db.get_database(empty_app).engine
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's foreign key switch")
    migrate.upgrade(empty_app)
    with pytest.raises(migrate.SchemaError, match="pointing at a missing agent_threads row"):
        with migrate.migrating(empty_app) as connection:
            connection.execute(
                text(
                    "INSERT INTO thread_messages (thread_id, role, content, processed, partial,"
                    " timestamp) VALUES (999, 'user', 'orphan', 0, 0, '2026-01-01')"
                )
            )
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.execute(text("SELECT count(*) FROM thread_messages")).scalar() == 0


def test_a_server_behind_head_refuses_to_start(empty_app: Flask) -> None:
    with pytest.raises(
        migrate.SchemaError, match="is empty, not at head .*flask --app zerg db upgrade"
    ):
        serving.start(empty_app)
    # `serve` is a plain click command: the flask command pushes its app context.
    with empty_app.app_context():
        line = one_line_error(empty_app.test_cli_runner().invoke(args=["serve", "--port", "1"]))
    assert "run `.venv/bin/flask --app zerg db upgrade` first" in line


def test_a_server_on_an_unversioned_release_database_refuses_to_start(
    make_bare_app: AppFactory, empty_database_url: str, tmp_path: Path
) -> None:
    app = release_database(make_bare_app, empty_database_url, tmp_path)
    with pytest.raises(migrate.SchemaError, match="has zerg tables but no schema version"):
        serving.start(app)


def test_a_development_server_upgrades_at_start_up(
    make_app: AppFactory, make_bare_app: AppFactory, empty_database_url: str, tmp_path: Path
) -> None:
    """AUTO_CREATE_TABLES (the default for a development SQLite) migrates an older file too."""
    release_database(make_bare_app, empty_database_url, tmp_path)
    app = make_app(
        DATABASE_URL=empty_database_url, ENVIRONMENT="development", AUTO_CREATE_TABLES=True
    )
    serving.start(app)
    assert migrate.status(app).at_head
    assert_release_rows_intact(app)


def runs_shape(app: Flask) -> tuple[bool, set[str], set[str]]:
    """Whether runs.thread_id is nullable, the runs' index names, idempotency_keys' columns."""
    with db.get_database(app).engine.connect() as connection:
        found = inspect(connection)
        nullable = {c["name"]: c["nullable"] for c in found.get_columns("runs")}["thread_id"]
        indexes = {index["name"] or "" for index in found.get_indexes("runs")}
        columns = {c["name"] for c in found.get_columns("idempotency_keys")}
    return bool(nullable), indexes, columns


def insert_agent_and_thread(connection: Connection) -> None:
    """Agent 1 with thread 1, written as the schema of 0007 and later takes them."""
    connection.execute(
        text(
            "INSERT INTO agents (name, status, system_instructions,"
            " task_instructions, model, run_on_schedule, timezone,"
            " consecutive_failures, created_at, updated_at) VALUES"
            " ('a', 'idle', '', '', 'offline', false, 'UTC', 0,"
            " '2026-01-01', '2026-01-01')"
        )
    )
    connection.execute(
        text(
            "INSERT INTO agent_threads (agent_id, title, thread_type, active,"
            " memory_strategy, created_at, updated_at) VALUES"
            " (1, 't', 'chat', true, 'buffer', '2026-01-01', '2026-01-01')"
        )
    )


def test_0008_requires_a_thread_for_every_run_and_indexes_the_listing_order(
    empty_app: Flask,
) -> None:
    """Runs without a thread (only a hand-written INSERT makes one) are deleted; the rest kept."""
    migrate.upgrade(empty_app, "0007")
    nullable, indexes, columns = runs_shape(empty_app)
    assert nullable and "ix_runs_created_at" not in indexes and "location" not in columns
    with db.get_database(empty_app).engine.begin() as connection:
        insert_agent_and_thread(connection)
        for thread_id in (1, None, 1):
            connection.execute(
                text(
                    "INSERT INTO runs (agent_id, thread_id, trigger, status, created_at)"
                    " VALUES (1, :thread_id, 'api', 'success', '2026-01-01')"
                ),
                {"thread_id": thread_id},
            )

    migrate.upgrade(empty_app, "0008")

    nullable, indexes, columns = runs_shape(empty_app)
    assert not nullable
    assert "ix_runs_created_at" in indexes
    assert "location" in columns
    with db.get_database(empty_app).engine.connect() as connection:
        kept = connection.execute(text("SELECT id, thread_id FROM runs ORDER BY id")).all()
        assert [tuple(row) for row in kept] == [(1, 1), (3, 1)]
        if connection.dialect.name == "sqlite":
            made = dict(connection.execute(text("SELECT name, sql FROM sqlite_master")).all())
            assert "AUTOINCREMENT" in made["runs"] and "AUTOINCREMENT" in made["idempotency_keys"]
            assert "WHERE status = 'running'" in made["uq_runs_running_thread"]
        with pytest.raises(IntegrityError):
            connection.execute(
                text(
                    "INSERT INTO runs (agent_id, trigger, status, created_at)"
                    " VALUES (1, 'api', 'queued', '2026-01-01')"
                )
            )
    migrate.upgrade(empty_app)
    assert flask_db(empty_app, "check").exit_code == 0

    migrate.downgrade(empty_app, "0007")

    nullable, indexes, columns = runs_shape(empty_app)
    assert nullable and "ix_runs_created_at" not in indexes and "location" not in columns
    with db.get_database(empty_app).engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM runs")).scalar() == 2
    migrate.upgrade(empty_app)
    assert migrate.status(empty_app).at_head


def test_0009_adds_tools_and_waiting_runs_hold_their_thread(empty_app: Flask) -> None:
    """Agents keep their rows with no tools; a waiting run holds its thread; downgrading ends it."""
    migrate.upgrade(empty_app, "0008")
    with db.get_database(empty_app).engine.begin() as connection:
        insert_agent_and_thread(connection)

    migrate.upgrade(empty_app, "0009")

    insert_run = text(
        "INSERT INTO runs (agent_id, thread_id, trigger, status, created_at)"
        " VALUES (1, 1, 'api', :status, '2026-01-01')"
    )
    with db.get_database(empty_app).engine.begin() as connection:
        tools, approval = connection.execute(
            text("SELECT tools, approval_required FROM agents")
        ).one()
        assert (json_value(tools), json_value(approval)) == ([], [])
        connection.execute(insert_run, {"status": "awaiting_approval"})
        connection.execute(
            text(
                "INSERT INTO tool_calls (run_id, tool_call_id, round, position, name,"
                " function, source, arguments, status, truncated, requires_approval,"
                " created_at) VALUES (1, 'call_1', 1, 0, 'current_time', 'current_time',"
                " 'builtin', '{}', 'awaiting_approval', false, true, '2026-01-01')"
            )
        )
    with pytest.raises(IntegrityError), db.get_database(empty_app).engine.begin() as connection:
        connection.execute(insert_run, {"status": "running"})
    assert flask_db(empty_app, "check").exit_code == 0

    migrate.downgrade(empty_app, "0008")

    with db.get_database(empty_app).engine.connect() as connection:
        status, error = connection.execute(text("SELECT status, error FROM runs")).one()
        assert status == "cancelled" and "approval" in error
        tables = set(inspect(connection).get_table_names())
    assert not {"tool_calls", "mcp_servers"} & tables
    migrate.upgrade(empty_app)
    assert migrate.status(empty_app).at_head


def json_value(value: Any) -> Any:
    """A JSON column as read with plain SQL: text on SQLite, parsed on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value
