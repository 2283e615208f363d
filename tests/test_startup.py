"""A bad setting stops every entry point with one line on stderr and a non-zero exit.

These run the real commands as subprocesses, as an operator would: the
``flask`` command, gunicorn with ``gunicorn.conf.py`` (which imports
``wsgi.py``), and ``python wsgi.py``'s import path.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tests.conftest import TEST_DATABASE_URL
from tests.conftest import AppFactory
from tests.helpers import free_port
from tests.helpers import local_server
from zerg import db
from zerg import migrate
from zerg import serving
from zerg.errors import StartupError
from zerg.models import Base

ROOT = Path(__file__).resolve().parents[1]
FLASK = [sys.executable, "-m", "flask", "--app", "zerg"]
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]


def run(command: list[str], tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in the checkout with zerg's settings cleared but for ``settings``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"API_TOKEN", "ENVIRONMENT", "EVENT_BACKEND", "WEB_CONCURRENCY"}
    }
    env |= {"DATABASE_URL": f"sqlite:///{tmp_path / 'startup.sqlite'}", "PORT": "0", **settings}
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_line(result: subprocess.CompletedProcess[str], line: str) -> None:
    assert result.returncode != 0
    assert result.stderr.splitlines() == [line], result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("command", "settings", "line"),
    [
        pytest.param(
            ["serve"],
            {"ENVIRONMENT": "production"},
            "zerg: ENVIRONMENT=production requires API_TOKEN",
            id="serve",
        ),
        pytest.param(
            ["db", "init"],
            {"DATABASE_POOL_SIZE": "abc"},
            "zerg: DATABASE_POOL_SIZE must be a whole number, not 'abc'",
            id="db-init",
        ),
        pytest.param(
            ["run"],
            {"OFFLINE_DELAY_SECONDS": "-1"},
            "zerg: OFFLINE_DELAY_SECONDS must be a positive number of seconds, not '-1'",
            id="flask-run",
        ),
    ],
)
def test_a_bad_setting_stops_flask_commands_with_one_line(
    tmp_path: Path, command: list[str], settings: dict[str, str], line: str
) -> None:
    assert_one_line(run([*FLASK, *command], tmp_path, **settings), line)


def test_a_bad_setting_stops_gunicorn_before_any_worker_boots(tmp_path: Path) -> None:
    result = run(GUNICORN, tmp_path, ENVIRONMENT="production")
    assert_one_line(result, "zerg: ENVIRONMENT=production requires API_TOKEN")


def test_a_bad_setting_stops_wsgi_py_for_any_server(tmp_path: Path) -> None:
    result = run([sys.executable, "-c", "import wsgi"], tmp_path, ENVIRONMENT="production")
    assert_one_line(result, "zerg: ENVIRONMENT=production requires API_TOKEN")


MEMORY_REFUSAL = (
    "zerg: EVENT_BACKEND=memory keeps events inside one process, so {n} workers would split "
    "them: set EVENT_BACKEND=redis (and REDIS_URL) or WEB_CONCURRENCY=1"
)


@pytest.mark.parametrize(
    ("settings", "arguments", "workers"),
    [
        pytest.param({}, [], 2, id="default-two-workers"),
        pytest.param({"WEB_CONCURRENCY": "3", "ENVIRONMENT": "development"}, [], 3, id="env"),
        pytest.param({"WEB_CONCURRENCY": "1"}, ["-w", "2"], 2, id="command-line"),
    ],
)
def test_several_gunicorn_workers_refuse_the_in_memory_bus(
    tmp_path: Path, settings: dict[str, str], arguments: list[str], workers: int
) -> None:
    """In every environment: each worker would otherwise hear only its own events."""
    result = run([*GUNICORN, *arguments], tmp_path, EVENT_BACKEND="memory", **settings)
    assert_one_line(result, MEMORY_REFUSAL.format(n=workers))


def test_one_process_may_keep_events_in_memory(make_app: AppFactory) -> None:
    app = make_app(EVENT_BACKEND="memory")
    serving.check_processes(app, 1)
    with pytest.raises(StartupError):
        serving.check_processes(app, 2)
    serving.check_processes(make_app(EVENT_BACKEND="redis"), 4)


ENTRY_POINTS = [
    pytest.param([*FLASK, "db", "upgrade"], id="db-upgrade"),
    pytest.param([*FLASK, "db", "current"], id="db-current"),
    pytest.param([*FLASK, "serve", "--port", "0"], id="serve"),
    pytest.param([*FLASK, "run", "--port", "0"], id="flask-run"),
    pytest.param(GUNICORN, id="gunicorn"),
    pytest.param([sys.executable, "-c", "import wsgi; wsgi.app"], id="wsgi"),
]


def assert_one_line_starting(result: subprocess.CompletedProcess[str], start: str) -> str:
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_a_database_server_that_does_not_answer_is_one_line_everywhere(
    tmp_path: Path, command: list[str]
) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/zerg"
    result = run(command, tmp_path, DATABASE_URL=url, EVENT_BACKEND="redis")
    line = assert_one_line_starting(result, f"zerg: cannot connect to {url} (DATABASE_URL): ")
    assert "Connection refused; is the database server running, at that host and port?" in line


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_an_sqlite_file_in_a_missing_folder_is_one_line_everywhere(
    tmp_path: Path, command: list[str]
) -> None:
    folder = tmp_path / "no" / "such" / "folder"
    result = run(command, tmp_path, DATABASE_URL=f"sqlite:///{folder / 'zerg.sqlite'}")
    assert_one_line(
        result,
        f"zerg: DATABASE_URL names an SQLite file in {folder}, a folder that does not exist: "
        "create it, or name a file in an existing folder",
    )


def server_url(**parts: str) -> str:
    """A URL on the PostgreSQL server the suite uses (or the machine's), skipping without one."""
    base = make_url(TEST_DATABASE_URL or "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    engine = db.make_engine(base.render_as_string(hide_password=False))
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at {base.host}:{base.port} ({exc.orig})")
    finally:
        engine.dispose()
    return base.set(query={}, **parts).render_as_string(hide_password=False)


def test_a_database_that_does_not_exist_says_how_to_create_it(tmp_path: Path) -> None:
    url = server_url(database="zerg_no_such_database")
    result = run([*FLASK, "db", "upgrade"], tmp_path, DATABASE_URL=url)
    line = assert_one_line_starting(result, "zerg: cannot connect to ")
    assert line.endswith("createdb -h 127.0.0.1 -U postgres -O postgres zerg_no_such_database")


def test_a_role_that_does_not_exist_says_how_to_create_it(tmp_path: Path) -> None:
    url = server_url(username="zerg_no_such_role", password="secret")
    result = run([*FLASK, "db", "upgrade"], tmp_path, DATABASE_URL=url)
    line = assert_one_line_starting(result, "zerg: cannot connect to ")
    assert "secret" not in line
    assert line.endswith("createuser -h 127.0.0.1 -U postgres --pwprompt zerg_no_such_role")


def test_a_missing_driver_names_the_extra_to_install(tmp_path: Path) -> None:
    """A Python without psycopg: this environment's packages, minus psycopg's, and no site hooks."""
    packages = tmp_path / "site-packages"
    packages.mkdir()
    for entry in Path(site.getsitepackages()[0]).iterdir():
        if not entry.name.startswith(("psycopg", "__editable__", "zerg")):
            (packages / entry.name).symlink_to(entry)
    result = run(
        [sys.executable, "-S", "-m", "flask", "--app", "zerg", "db", "upgrade"],
        tmp_path,
        DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1/zerg",
        PYTHONPATH=f"{packages}{os.pathsep}{ROOT}",
    )
    assert_one_line(
        result,
        "zerg: DATABASE_URL needs the driver 'psycopg', which is not installed: "
        "pip install -e '.[postgres]' (or the production extra)",
    )


def test_flask_run_upgrades_a_new_development_database_before_serving(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'run.sqlite'}"}
    env.pop("ENVIRONMENT", None)
    with local_server([*FLASK, "run"], cwd=ROOT, env=env) as url:
        # Health answers without tables; the agents did not ("no such table", 500).
        assert requests.get(f"{url}/api/agents", timeout=5).json() == []


def test_flask_run_refuses_a_database_it_may_not_upgrade(tmp_path: Path) -> None:
    database = tmp_path / "behind.sqlite"
    result = run(
        [*FLASK, "run", "--port", "0"],
        tmp_path,
        DATABASE_URL=f"sqlite:///{database}",
        AUTO_CREATE_TABLES="false",
    )
    assert_one_line(
        result,
        f"zerg: sqlite:///{database} is empty, not at head {migrate.head()}: "
        "run `.venv/bin/flask --app zerg db upgrade` first",
    )


def test_a_start_up_that_creates_or_upgrades_the_database_says_so(
    make_bare_app: AppFactory, empty_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_bare_app(empty_database_url, AUTO_CREATE_TABLES=True)
    with caplog.at_level("INFO", logger="zerg.migrate"):
        migrate.prepare(app)
        migrate.prepare(app)
    said = [record.getMessage() for record in caplog.records if record.name == "zerg.migrate"]
    tables = len(Base.metadata.tables)
    assert said == [
        f"Created {tables} tables in {migrate.shown_url(app)} at {migrate.head()} (head)"
    ]
