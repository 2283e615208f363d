"""A database that does not answer gets 503 with Retry-After on every route, not a 500.

Health said 503 while the routes that write said 500 ("quote this request
id"), as if a bug had been hit. A database away is no bug: the client should
retry. Both databases are covered in every run: an SQLite file whose folder
went away, and a PostgreSQL URL on a closed port (no server is needed to be
refused). Errors that are the statement's own stay 500.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import SQLAlchemyError

from tests.conftest import TEST_DATABASE_URL
from tests.conftest import AppFactory
from tests.helpers import assert_problem
from tests.helpers import free_port
from zerg import db
from zerg.errors import RETRY_AFTER_SECONDS
from zerg.errors import database_unavailable

# A valid body for every route that needs one, so that each request reaches the database.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/agents"): {"name": "a"},
    ("PUT", "/api/agents/1"): {"name": "b"},
    ("PATCH", "/api/agents/1"): {"name": "b"},
    ("POST", "/api/agents/1/messages"): {"content": "x"},
    ("POST", "/api/threads"): {"agent_id": 1},
    ("PUT", "/api/threads/1"): {"title": "t"},
    ("PATCH", "/api/threads/1"): {"title": "t"},
    ("POST", "/api/threads/1/messages"): {"content": "x"},
    ("POST", "/api/mcp-servers"): {"name": "m", "transport": "streamable_http", "url": "http://x"},
    ("PATCH", "/api/mcp-servers/1"): {"enabled": False},
}
QUERIES = {"/api/schedules/preview": "?cron=0+9+*+*+*"}
# The routes that never touch the database, so answer as usual.
WITHOUT_DATABASE = {
    "/api/models",
    "/api/openapi.json",
    "/api/docs",
    "/api/schedules/preview",
    "/api/admin/stats",
    "/",
    "/agents/1",
    "/threads/1",
    "/runs",
    "/runs/1",
    "/mcp-servers",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def away_app(
    request: pytest.FixtureRequest, make_bare_app: AppFactory, tmp_path: Path
) -> AppFactory:
    """Build apps whose database does not answer.

    SQLite: the folder of its file is removed once the app is built (a volume
    gone; zerg refuses to start on a missing folder). PostgreSQL: a closed port.
    """

    def build(**overrides: Any) -> Flask:
        if request.param == "postgresql":
            url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/zerg"
            return make_bare_app(url, **overrides)
        volume = tmp_path / "volume"
        volume.mkdir()
        app = make_bare_app(f"sqlite:///{volume / 'zerg.sqlite'}", **overrides)
        shutil.rmtree(volume)
        return app

    return build


def routes(app: Flask) -> list[tuple[str, str]]:
    """Every (method, path) the app serves over plain HTTP, ids filled with 1."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.websocket or rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        path = rule.rule.replace("<int:", "<").replace("<", "").replace(">", "")
        path = "/".join("1" if part.endswith("_id") else part for part in path.split("/"))
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, path))
    return found


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)


def test_every_route_answers_503_with_retry_after(
    away_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = away_app(ENVIRONMENT="development", DATABASE_POOL_SIZE=1)
    client = app.test_client()
    checked = 0
    for method, path in routes(app):
        body = BODIES.get((method, path))
        response = client.open(path + QUERIES.get(path, ""), method=method, json=body)
        if path in WITHOUT_DATABASE:
            assert response.status_code < 400, (method, path, response.status_code)
            continue
        assert_unavailable(response)
        if path == "/api/health":
            assert response.get_json()["database"] == "unavailable"
        else:
            problem = assert_problem(response, 503)
            assert "request_id" not in problem and "retry" in problem["detail"]
        checked += 1
    assert checked >= 20
    warnings = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert warnings and not any(r.exc_info for r in caplog.records)


def test_errors_of_the_statement_itself_stay_500(
    make_bare_app: AppFactory, empty_database_url: str
) -> None:
    """No tables: the database answers, and what it says is a bug to quote, not a wait."""
    response = make_bare_app(empty_database_url).test_client().get("/api/agents")
    assert assert_problem(response, 500)["request_id"]


def raised(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except (SQLAlchemyError, sqlite3.Error) as exc:
        return exc
    raise AssertionError("nothing was raised")


def test_sqlite_locked_past_the_busy_timeout_is_an_outage(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:

        def write() -> None:
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t VALUES (1)"))

        locked = raised(write)
        assert "database is locked" in str(locked)
        assert database_unavailable(locked)
        # And zerg's own wait for the process's write turn, which says the same.
        assert database_unavailable(sqlite3.OperationalError("database is locked (by us)"))
        missing = raised(lambda: engine.connect().execute(text("SELECT * FROM nowhere")))
        assert not database_unavailable(missing)
    finally:
        holder.close()
        engine.dispose()


def test_a_pool_with_no_free_connection_in_time_is_an_outage(tmp_path: Path) -> None:
    engine = db.make_engine(
        f"sqlite:///{tmp_path / 'pool.sqlite'}", pool_size=1, max_overflow=0, pool_timeout=0.05
    )
    try:
        with engine.connect():
            assert database_unavailable(raised(engine.connect))
    finally:
        engine.dispose()


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs PostgreSQL (TEST_DATABASE_URL)")
def test_a_postgresql_connection_terminated_by_the_server_is_an_outage(
    make_app: AppFactory,
) -> None:
    """pg_terminate_backend, as a restart or a failover does, under a connection in use."""
    assert TEST_DATABASE_URL
    engine = create_engine(TEST_DATABASE_URL, pool_pre_ping=False)
    admin = db.get_database(make_app()).engine
    try:
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
            with admin.begin() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            terminated = raised(lambda: connection.execute(text("SELECT 1")))
        assert isinstance(terminated, DBAPIError)
        assert database_unavailable(terminated)
    finally:
        engine.dispose()


def test_requests_at_once_each_get_their_503(away_app: AppFactory) -> None:
    """Several at once too: each gets its 503, none a 500, none hangs."""
    app = away_app()
    statuses: list[int] = []

    def create() -> None:
        response = app.test_client().post("/api/agents", json={"name": "a"})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [503] * 4
