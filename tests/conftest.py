"""Fixtures: every app is ``create_app(test_config)`` on a database of its own.

Tables come from the migrations, never from ``create_all``, so a model changed
without a migration fails the suite. SQLite tests get a copy, under
``tmp_path``, of one file migrated to head once per run. When
``TEST_DATABASE_URL`` names a PostgreSQL database, every test uses one schema
migrated once per run, and the tables are emptied after each test, so tests
stay independent without rebuilding the schema each time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import ExitStack
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server

from tests.helpers import free_port
from tests.helpers import port_open
from tests.helpers import wait_for
from tests.openai_standin import OpenAIStandIn
from tests.tool_runs import HoldingServer
from zerg import create_app
from zerg import db
from zerg import migrate
from zerg import serving
from zerg.models import Base
from zerg.providers.openai import OpenAIProvider

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

AppFactory = Callable[..., Flask]

# The browser tests' fixtures (chromium, browser) live beside their helpers.
pytest_plugins = ("tests.browser",)


def pytest_report_header() -> str:
    return f"zerg test database: {TEST_DATABASE_URL or 'SQLite file per test'}"


def app_config(database_url: str, **overrides: Any) -> dict[str, Any]:
    """Return the configuration of a test app on ``database_url``."""
    return {
        "ENVIRONMENT": "testing",
        "DATABASE_URL": database_url,
        "AUTO_CREATE_TABLES": False,
        "SCHEDULER_ENABLED": False,
        "API_TOKEN": None,
        **overrides,
    }


def migrate_to_head(database_url: str) -> None:
    """Upgrade a database to head through an app of its own, then let it go."""
    app = create_app(app_config(database_url))
    try:
        migrate.upgrade(app)
    finally:
        db.get_database(app).engine.dispose()


@contextmanager
def postgresql_schema() -> Iterator[str]:
    """Lend a URL of ``TEST_DATABASE_URL`` whose ``search_path`` is a new, empty schema."""
    assert TEST_DATABASE_URL
    schema = f"zerg_test_{uuid.uuid4().hex[:12]}"
    admin = db.make_engine(TEST_DATABASE_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(TEST_DATABASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def shared_database_url() -> Iterator[str | None]:
    """Give this test run a PostgreSQL schema of its own at head, if a database is configured.

    A schema per run (dropped at the end) keeps two runs on one database, such
    as a developer's and CI's, from emptying each other's tables.
    """
    if not TEST_DATABASE_URL:
        yield None
        return
    with postgresql_schema() as url:
        migrate_to_head(url)
        yield url


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated to head once per run, for tests to copy.

    Per test, migrating an empty file costs ~16 ms, ``create_all`` (what the
    fixtures did before migrations) ~5 ms and a copy of this file ~0.3 ms:
    over ~800 tests, migrations per test would add ~13 s, a copy saves ~4 s.
    """
    path = tmp_path_factory.mktemp("template") / "zerg-head.sqlite"
    migrate_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(shared_database_url: str | None, migrated_sqlite: Path, tmp_path: Path) -> str:
    """The test's database, at head: a copy of the migrated SQLite file, or the run's schema."""
    if shared_database_url:
        return shared_database_url
    path = tmp_path / "zerg-test.sqlite"
    shutil.copyfile(migrated_sqlite, path)
    return f"sqlite:///{path}"


@pytest.fixture
def make_bare_app() -> Iterator[AppFactory]:
    """Build apps that never serve, on a URL in any state; teardown only disposes engines.

    ``make_app``'s teardown stops the app's background work, which reads the runs
    table: a database left empty, or refused by a migration, has none.
    """
    apps: list[Flask] = []

    def factory(database_url: str, **overrides: Any) -> Flask:
        app = create_app(app_config(database_url, **overrides))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        db.get_database(app).engine.dispose()


@pytest.fixture(scope="session")
def new_schema() -> Iterator[Callable[[], str]]:
    """Make empty PostgreSQL schemas on demand, all dropped when the run ends.

    Dropped at the end, not after each test: a test's apps (and their
    teardowns, which read the tables) may outlive its own fixture.
    """
    schemas = ExitStack()
    with schemas:
        yield lambda: schemas.enter_context(postgresql_schema())


@pytest.fixture
def empty_database_url(tmp_path: Path, new_schema: Callable[[], str]) -> str:
    """A database with no tables at all: a new SQLite file, or a new PostgreSQL schema."""
    if not TEST_DATABASE_URL:
        return f"sqlite:///{tmp_path / 'empty.sqlite'}"
    return new_schema()


def _empty_tables(app: Flask) -> None:
    """Bring the run's shared schema back to head if a test moved it, and empty it.

    Reading the version is one query; an upgrade that finds nothing to do
    costs ~50 ms of Alembic, after every test of the PostgreSQL run.
    """
    engine = db.get_database(app).engine
    with engine.connect() as connection:
        try:
            version = connection.execute(
                text(f"SELECT version_num FROM {migrate.VERSION_TABLE}")
            ).scalar()
        except ProgrammingError:  # a test removed the version table too
            version = None
    if version != _head():
        migrate.upgrade(app)
    names = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@cache
def _head() -> str:
    return migrate.head()


@pytest.fixture
def make_app(database_url: str) -> Iterator[AppFactory]:
    """Build apps on the test database; pass config overrides as keyword arguments."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        app = create_app(app_config(database_url, **overrides))
        apps.append(app)
        return app

    yield factory
    # Every app stops before any table is emptied: a TRUNCATE while another
    # app's scheduler or runs still write can deadlock with them, and a
    # teardown that fails there leaves that app running into later tests.
    for app in apps:
        serving.stop(app)
    for app in apps:
        if app.config["DATABASE_URL"] == database_url and database_url.startswith("postgresql"):
            _empty_tables(app)
        db.get_database(app).engine.dispose()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def db_session(app: Flask) -> Iterator[Session]:
    """A session of the test app's own, for checking what requests wrote."""
    session = db.get_session_factory(app)()
    try:
        yield session
    finally:
        session.close()


@dataclass
class LiveServer:
    """A real threaded WSGI server serving an app on a free local port."""

    app: Flask
    server: BaseWSGIServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.server.server_port}"


@contextmanager
def serve(app: Flask) -> Iterator[LiveServer]:
    """Serve an app over real HTTP on a free port until the block ends."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="live-server", daemon=True
    )
    thread.start()
    try:
        yield LiveServer(app=app, server=server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    with serve(app) as server:
        yield server


@pytest.fixture
def standin() -> Iterator[OpenAIStandIn]:
    """A local OpenAI-compatible server, scripted per test (see openai_standin.py)."""
    with OpenAIStandIn() as server:
        yield server


STANDIN_MODEL = "standin-small"


@pytest.fixture
def standin_config(standin: OpenAIStandIn) -> dict[str, Any]:
    """Settings for an app whose one provider is the stand-in, offering STANDIN_MODEL."""
    return {
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": standin.base_url,
        "OPENAI_MODELS": STANDIN_MODEL,
        "OPENAI_MAX_RETRIES": 0,
    }


MakeProvider = Callable[..., OpenAIProvider]


@pytest.fixture
def make_provider(standin: OpenAIStandIn) -> Iterator[MakeProvider]:
    """Build providers aimed at the stand-in; every one is closed after the test."""
    providers: list[OpenAIProvider] = []

    def factory(**overrides: Any) -> OpenAIProvider:
        options: dict[str, Any] = {
            "api_key": None,
            "base_url": standin.base_url,
            "models": ("standin-small", "standin-large"),
            "timeout": 5.0,
            "max_retries": 0,
            **overrides,
        }
        provider = OpenAIProvider(**options)
        providers.append(provider)
        return provider

    yield factory
    for provider in providers:
        provider.close()


@pytest.fixture
def rows(app: Flask) -> Callable[[type[Base]], int]:
    """Count a model's rows through a short session, to prove what was (not) written."""

    def count(model: type[Base]) -> int:
        with db.session_scope(app, write=False) as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    return count


MCP_SERVER = Path(__file__).parent / "fixtures" / "mcp_server.py"


@pytest.fixture(scope="session")
def mcp_url() -> Iterator[str]:
    """The test MCP server (tests/fixtures/mcp_server.py) over Streamable HTTP on loopback."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(MCP_SERVER), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_open(port), "the MCP HTTP server to listen", timeout=30)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis's URL; skips, saying why, where Redis does not answer."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL} ({exc}); tests that need it skipped")
    finally:
        client.close()
    yield REDIS_URL


@pytest.fixture
def redis_stream(redis_url: str) -> Iterator[str]:
    """A Redis stream name of this test's own, removed afterwards."""
    name = f"zerg:test:{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(redis_url)
    client.delete(name)
    client.close()


@pytest.fixture
def holding() -> Iterator[HoldingServer]:
    """A local HTTP server that holds its answers back, for slow tools (see tool_runs.py)."""
    with HoldingServer() as server:
        yield server


@pytest.fixture
def tool_app(make_app: AppFactory, standin_config: dict[str, Any], holding: HoldingServer) -> Flask:
    """An app on the stand-in whose built-in http_get may fetch from ``holding``."""
    return make_app(
        **standin_config,
        OPENAI_TIMEOUT_SECONDS=5,
        TOOL_TIMEOUT_SECONDS=5,
        TOOL_HTTP_ALLOWED_HOSTS=holding.host,
    )
