"""A bad setting stops every entry point with one line on stderr and a non-zero exit.

These run the real commands as subprocesses, as an operator would: the
``flask`` command, gunicorn with ``gunicorn.conf.py`` (which imports
``wsgi.py``), and ``python wsgi.py``'s import path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import AppFactory
from zerg import serving
from zerg.errors import StartupError

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
