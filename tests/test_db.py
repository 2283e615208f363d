"""The database layer: factories, per-connection settings, sessions and teardown."""

from __future__ import annotations

import ast
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Connection
from sqlalchemy import create_engine
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import TEST_DATABASE_URL
from tests.conftest import AppFactory
from zerg import create_app
from zerg import db
from zerg import dialects
from zerg.models import Agent


def test_app_keeps_one_engine_and_sessionmaker(app: Flask) -> None:
    state = db.get_database(app)
    assert db.get_session_factory(app) is state.sessionmaker
    assert state.sessionmaker.kw["bind"] is state.engine
    assert state.sessionmaker.kw["expire_on_commit"] is False


def test_each_app_has_its_own_engine(make_app: AppFactory) -> None:
    first, second = make_app(), make_app()
    assert db.get_database(first).engine is not db.get_database(second).engine


def test_init_app_refuses_a_second_registration(app: Flask) -> None:
    with pytest.raises(RuntimeError, match="already registered"):
        db.init_app(app)


def test_get_database_without_init_app_says_so() -> None:
    with pytest.raises(RuntimeError, match="init_app"):
        db.get_database(Flask("bare"))


def test_sqlite_connections_get_the_pragmas(app: Flask) -> None:
    engine = db.get_database(app).engine
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite-only settings")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        # NORMAL is 1.
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1


def test_sqlite_write_sessions_take_turns_on_the_write_lock(app: Flask) -> None:
    """Held from the first statement of a write transaction until it ends, however it ends."""
    database = db.get_database(app)
    lock = database.write_lock
    if lock is None:
        pytest.skip("SQLite-only lock")

    reader = database.session(write=False)
    reader.execute(select(Agent)).all()
    assert not lock.locked()  # reads never take it
    reader.close()

    committed = database.session(write=True)
    committed.add(Agent(name="a", model="offline"))
    committed.flush()
    assert lock.locked()
    committed.commit()
    assert not lock.locked()
    committed.close()

    for end in ("rollback", "close"):
        session = database.session(write=True)
        session.execute(select(Agent)).all()
        assert lock.locked()
        getattr(session, end)()
        assert not lock.locked()
        session.close()

    with pytest.raises(RuntimeError), db.session_scope(app) as session:
        session.add(Agent(name="b", model="offline"))
        session.flush()
        raise RuntimeError("mid-transaction")
    assert not lock.locked()
    assert database.engine.pool.checkedout() == 0


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs PostgreSQL (TEST_DATABASE_URL)")
@pytest.mark.parametrize("idle_seconds", [0.0, 3600.0], ids=["idle", "just-used"])
def test_a_pooled_connection_is_pinged_only_after_sitting_idle(idle_seconds: float) -> None:
    """A dead connection that sat idle is replaced unseen; one used a moment ago is trusted.

    The server cuts the pooled connection (as a restart does). Pinged, it is
    replaced and the next query works; trusted (used within the window), the
    query that finds it dead fails once, and the pool opens fresh ones after.
    """
    assert TEST_DATABASE_URL
    engine = create_engine(TEST_DATABASE_URL, pool_size=1, max_overflow=0)
    dialects.check_idle_connections(engine, idle_seconds=idle_seconds)
    admin = db.make_engine(TEST_DATABASE_URL)
    try:
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        with admin.begin() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        if idle_seconds:
            with pytest.raises(DBAPIError), engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs PostgreSQL (TEST_DATABASE_URL)")
def test_postgresql_reads_send_no_transaction_around_their_statements(app: Flask) -> None:
    """A read session runs in autocommit (no BEGIN, no ROLLBACK); a write session does not."""
    database = db.get_database(app)

    def autocommit(connection: Connection) -> bool:
        return bool(connection.connection.driver_connection.autocommit)  # type: ignore[union-attr]

    with db.session_scope(app, write=False) as reading:
        assert autocommit(reading.connection())
    with db.session_scope(app) as writing:
        assert not autocommit(writing.connection())
    # The pool gives the connection back as it found it.
    with database.engine.connect() as connection:
        assert not autocommit(connection)


def test_session_scope_commits_on_success(app: Flask, rows: Callable[..., int]) -> None:
    with db.session_scope(app) as session:
        session.add(Agent(name="kept", model="offline"))
    assert rows(Agent) == 1


def test_session_scope_rolls_back_on_error(app: Flask, rows: Callable[..., int]) -> None:
    with pytest.raises(LookupError), db.session_scope(app) as session:
        session.add(Agent(name="dropped", model="offline"))
        session.flush()
        raise LookupError("boom")
    assert rows(Agent) == 0
    assert db.get_database(app).engine.pool.checkedout() == 0


def test_session_scope_uses_the_current_app_by_default(app: Flask) -> None:
    with app.app_context(), db.session_scope() as session:
        assert session.get_bind() is db.get_database(app).writer


def test_get_db_is_cached_per_app_context_and_closed_on_teardown(app: Flask) -> None:
    with app.app_context():
        session = db.get_db()
        assert db.get_db() is session
        session.execute(text("SELECT 1"))
        assert db.get_database(app).engine.pool.checkedout() == 1
    assert db.get_database(app).engine.pool.checkedout() == 0


def test_teardown_rolls_back_uncommitted_work(app: Flask, rows: Callable[..., int]) -> None:
    with app.app_context():
        db.get_db(write=True).add(Agent(name="never committed", model="offline"))
        db.get_db().flush()
    assert rows(Agent) == 0
    assert db.get_database(app).engine.pool.checkedout() == 0


@pytest.fixture
def session_app(app: Flask) -> Flask:
    """The test app with views that report which session they were given, whatever their method.

    ``/session/read`` asks for a read session, ``/session/write`` for a write
    one, which it uses to add an agent and commit.
    """

    def read() -> dict[str, bool]:
        session = db.get_db()
        session.execute(text("SELECT 1"))
        return {"writer": session.get_bind() is db.get_database().writer}

    def write() -> dict[str, bool]:
        session = db.get_db(write=True)
        session.add(Agent(name="written", model="offline"))
        session.commit()
        return {"writer": session.get_bind() is db.get_database().writer}

    app.add_url_rule("/session/read", "read_session", read, methods=["GET", "POST"])
    app.add_url_rule("/session/write", "write_session", write, methods=["GET", "POST"])
    return app


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_view_not_the_method_chooses_the_session(
    session_app: Flask, method: str, rows: Callable[..., int]
) -> None:
    client = session_app.test_client()
    assert client.open("/session/write", method=method).get_json() == {"writer": True}
    assert client.open("/session/read", method=method).get_json() == {"writer": False}
    assert rows(Agent) == 1
    assert db.get_database(session_app).engine.pool.checkedout() == 0


def test_a_write_session_serves_later_readers_in_its_context(app: Flask) -> None:
    with app.app_context():
        session = db.get_db(write=True)
        assert db.get_db() is session
        assert session.get_bind() is db.get_database(app).writer


def test_asking_to_write_after_reading_is_refused(app: Flask) -> None:
    with app.app_context():
        db.get_db().execute(text("SELECT 1"))
        with pytest.raises(RuntimeError, match=r"get_db\(write=True\) first"):
            db.get_db(write=True)
    assert db.get_database(app).engine.pool.checkedout() == 0


def test_a_read_session_refuses_to_write(app: Flask, rows: Callable[..., int]) -> None:
    """A caller that asked for the wrong session learns it at its first flush."""
    with pytest.raises(RuntimeError, match="read session cannot write"):
        with db.session_scope(app, write=False) as session:
            session.add(Agent(name="misdirected", model="offline"))
            session.flush()
    assert rows(Agent) == 0


def test_db_module_knows_nothing_of_requests() -> None:
    imported = {
        f"{node.module}.{alias.name}"
        for node in ast.walk(ast.parse(Path(db.__file__).read_text()))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert not imported & {"flask.request", "flask.has_request_context"}


def test_objects_stay_readable_after_commit(app: Flask) -> None:
    with db.session_scope(app) as session:
        agent = Agent(name="readable", model="offline")
        session.add(agent)
    assert agent.name == "readable"
    assert agent.id is not None


def test_timestamps_round_trip_as_aware_utc(app: Flask) -> None:
    eastern = timezone(timedelta(hours=-5))
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=eastern)
    with db.session_scope(app) as session:
        session.add(Agent(name="t", model="offline", last_run_at=moment))
    with db.session_scope(app, write=False) as session:
        stored = session.scalars(select(Agent)).one().last_run_at
    assert stored == moment
    assert stored is not None and stored.utcoffset() == timedelta(0)
    assert stored.tzinfo is UTC


def test_naive_datetimes_are_refused(app: Flask) -> None:
    with pytest.raises(Exception, match="naive"), db.session_scope(app) as session:
        session.add(Agent(name="t", model="offline", last_run_at=datetime(2026, 1, 1)))
        session.flush()


def test_ping_reports_an_unreachable_database(make_app: AppFactory) -> None:
    app = make_app()
    with db.session_scope(app, write=False) as session:
        assert db.ping(session) is True
    unreachable = create_app(
        {
            "ENVIRONMENT": "testing",
            "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "DATABASE_POOL_SIZE": 1,
        }
    )
    try:
        with db.session_scope(unreachable, write=False) as session:
            assert db.ping(session) is False
        response = unreachable.test_client().get("/api/health")
        assert response.status_code == 503
        assert response.get_json()["database"] == "unavailable"
    finally:
        db.get_database(unreachable).engine.dispose()
