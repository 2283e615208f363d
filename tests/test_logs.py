"""What an operator can follow: one line per scheduler change, scheduled fire and run.

And the process-wide settings: an access log by default under gunicorn,
``LOG_LEVEL``, and ``LOG_FORMAT=json`` giving one JSON object per line; and
no secret in any line, under gunicorn and ``flask serve``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pytest
import requests
from websockets.exceptions import InvalidStatus

from tests.conftest import AppFactory
from tests.helpers import free_port
from tests.helpers import wait_for
from tests.helpers import ws_ticket
from tests.wsclient import WSClient
from zerg import logs
from zerg import serving
from zerg.runs.pool import get_runner
from zerg.runs.scheduler import run_scheduled_agent

ROOT = Path(__file__).resolve().parents[1]


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_each_run_logs_one_line_as_it_starts_and_one_as_it_ends(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zerg")
    client = make_app(OFFLINE_DELAY_SECONDS=0.001).test_client()
    agent = client.post("/api/agents", json={"name": "logged"}).get_json()
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": "hi"})
    run = client.post(f"/api/threads/{thread['id']}/run").get_json()
    wait_for(lambda: client.get(f"/api/runs/{run['id']}").get_json()["status"] == "success")
    finished = client.get(f"/api/runs/{run['id']}").get_json()
    said = messages(caplog)
    started = f"run {run['id']} started: agent {agent['id']}, trigger api, model offline"
    ended = (
        f"run {run['id']} ended: agent {agent['id']}, trigger api, status success, "
        f"{finished['duration_ms']} ms, {finished['total_tokens']} tokens"
    )
    assert said.count(started) == 1, said
    assert said.count(ended) == 1, said


def test_a_scheduled_fire_logs_its_agent_and_time(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zerg")
    app = make_app(OFFLINE_DELAY_SECONDS=0.001)
    client = app.test_client()
    agent = client.post(
        "/api/agents", json={"name": "cron", "task_instructions": "t", "schedule": "* * * * *"}
    ).get_json()
    tick = datetime.now(UTC).replace(second=0, microsecond=0)
    assert run_scheduled_agent(app, agent["id"], scheduled_for=tick) is True
    fired = [m for m in messages(caplog) if m.startswith("schedule fired:")]
    assert fired == [
        f"schedule fired: agent {agent['id']}, scheduled for {tick.isoformat()}, run 1"
    ]


def test_taking_the_scheduler_logs_the_new_holder(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zerg")
    app = make_app(SCHEDULER_ENABLED=True)
    serving.start(app)
    said = messages(caplog)
    assert f"scheduler holder is now instance {get_runner(app).instance_id}" in said
    assert any(m.startswith("scheduler started with") for m in said)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_gunicorn_logs_access_by_default_and_json_on_request(
    database_url: str, make_app: AppFactory, tmp_path: Path, log_format: str
) -> None:
    make_app()  # the tables
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"API_TOKEN", "ACCESS_LOG"}},
        "ENVIRONMENT": "testing",
        "DATABASE_URL": database_url,
        "AUTO_CREATE_TABLES": "false",
        "EVENT_BACKEND": "memory",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "4",
        "PORT": str(port),
        "LOG_FORMAT": log_format,
        "LOG_LEVEL": "info",
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=output,
        )
    try:

        def healthy() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2).ok
            except requests.RequestException:
                return False

        wait_for(healthy, "gunicorn to answer", timeout=30)
        wait_for(lambda: "GET /api/health" in log.read_text(), "the access line")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    lines = log.read_text().splitlines()
    access = [line for line in lines if "GET /api/health" in line]
    assert access
    if log_format == "json":
        entries = [json.loads(line) for line in lines]  # every line is one object
        assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
        assert any(entry["logger"] == "gunicorn.access" for entry in entries)
        assert any(entry["logger"].startswith("zerg") for entry in entries)
    else:
        assert any(" INFO zerg." in line for line in lines), lines


@pytest.mark.parametrize(("level", "scheduler_level"), [("info", "WARNING"), ("debug", "DEBUG")])
def test_the_libraries_routine_lines_are_quiet_unless_debugging(
    make_app: AppFactory, level: str, scheduler_level: str
) -> None:
    """APScheduler logs every job it runs twice at INFO, httpx every model request with its URL."""
    root = logging.getLogger()
    kept = (root.level, list(root.handlers))
    chatty = [logging.getLogger(name) for name in ("apscheduler.executors", "alembic", "httpx")]
    levels = [logger.level for logger in chatty]
    try:
        logs.configure(make_app(LOG_LEVEL=level))
        for logger in chatty:
            assert logging.getLevelName(logger.getEffectiveLevel()) == scheduler_level
    finally:
        root.setLevel(kept[0])
        root.handlers[:] = kept[1]
        for logger, previous in zip(chatty, levels, strict=True):
            logger.setLevel(previous)


SECRET = "log-secret-token-5f2c9e"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '"GET /api/ws?ticket=abc-_9&initial_topics=agents HTTP/1.1" 101',
            '"GET /api/ws?ticket=[redacted]&initial_topics=agents HTTP/1.1" 101',
        ),
        ("GET /api/ws?a=1&%74oken=s3cret HTTP/1.1", "GET /api/ws?a=1&%74oken=[redacted] HTTP/1.1"),
        ("token=s3cret&x=1", "token=[redacted]&x=1"),
        ('"http://site/?Ticket=s3cret"', '"http://site/?Ticket=[redacted]"'),
        ("url=/api/ws?ticket=s3cret&y=2", "url=/api/ws?ticket=[redacted]&y=2"),
        ("GET /?ticket=a?token=b HTTP/1.1", "GET /?ticket=[redacted] HTTP/1.1"),
        ("Authorization: Bearer s3cret", "Authorization: Bearer [redacted]"),
        (
            "GET /api/agents?tickets=1&x=token HTTP/1.1",
            "GET /api/agents?tickets=1&x=token HTTP/1.1",
        ),
    ],
)
def test_secrets_are_blanked_out_of_a_line(line: str, expected: str) -> None:
    assert logs.redact(line) == expected


@contextmanager
def serving_process(command: list[str], env: dict[str, str], log: Path, url: str) -> Iterator[None]:
    """Run a server until the block ends, its stdout and stderr in ``log``."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
    try:

        def healthy() -> bool:
            try:
                return requests.get(f"{url}/api/health", timeout=2).ok
            except requests.RequestException:
                return False

        wait_for(healthy, "the server to answer", timeout=30)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def connect_every_way(url: str, ws_url: str) -> list[str]:
    """Open the websocket as the UI does, and with a header; try a token in the URL.

    Returns the tickets that went into URLs: one used, one refused unused.
    """
    bearer = {"Authorization": f"Bearer {SECRET}"}
    used = ws_ticket(url, SECRET)
    with WSClient(f"{ws_url}/api/ws?initial_topics=agents&ticket={used}") as ws:
        ws.recv_type("subscribed")
    unused = ws_ticket(url, SECRET)
    with pytest.raises(InvalidStatus):
        WSClient(f"{ws_url}/api/ws?ticket={unused}", origin="https://evil.example")
    with pytest.raises(InvalidStatus):
        WSClient(f"{ws_url}/api/ws?token={SECRET}&initial_topics=agents")
    with WSClient(f"{ws_url}/api/ws", additional_headers=bearer) as ws:
        ws.ping()
    referred = {**bearer, "Referer": f"{url}/?token={SECRET}"}
    assert requests.get(f"{url}/api/agents?token={SECRET}", headers=referred, timeout=5).status_code
    return [used, unused]


def handshakes(log: Path) -> int:
    """Count the websocket handshakes a log has a line for (a socket's once it closed)."""
    return log.read_text().count("GET /api/ws")


def assert_no_secret(log: Path, tickets: list[str]) -> None:
    text = log.read_text()
    assert SECRET not in text
    for ticket in tickets:
        assert ticket not in text
    assert "ticket=[redacted]" in text and "token=[redacted]" in text


def serving_env(database_url: str, **settings: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k not in {"ACCESS_LOG", "TRUSTED_HOSTS"}},
        "DATABASE_URL": database_url,
        "AUTO_CREATE_TABLES": "false",
        "SCHEDULER_ENABLED": "false",
        "EVENT_BACKEND": "memory",
        "API_TOKEN": SECRET,
        "LOG_LEVEL": "info",
        **settings,
    }


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_gunicorn_writes_no_token_and_no_ticket(
    database_url: str, make_app: AppFactory, tmp_path: Path, log_format: str
) -> None:
    make_app()  # the tables
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "gunicorn.log"
    env = serving_env(
        database_url,
        ENVIRONMENT="production",
        WEB_CONCURRENCY="1",
        GUNICORN_THREADS="8",
        PORT=str(port),
        LOG_FORMAT=log_format,
    )
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    with serving_process(command, env, log, url):
        tickets = connect_every_way(url, f"ws://127.0.0.1:{port}")
        # gunicorn writes no access line for a websocket it upgraded (flask-sock
        # ends the request by raising StopIteration); the refused two it does.
        wait_for(lambda: handshakes(log) >= 2, "the refused handshakes' access lines")
    assert_no_secret(log, tickets)


def test_flask_serve_writes_no_token_and_no_ticket_and_answers_for_its_host(
    database_url: str, make_app: AppFactory, tmp_path: Path
) -> None:
    """In development, the host ``--host`` names is trusted besides localhost's."""
    make_app()  # the tables
    port = free_port()
    url, log = f"http://127.0.0.2:{port}", tmp_path / "serve.log"
    env = serving_env(database_url, ENVIRONMENT="development")
    command = [sys.executable, "-m", "flask", "--app", "zerg", "serve"]
    command += ["--host", "127.0.0.2", "--port", str(port)]
    with serving_process(command, env, log, url):
        tickets = connect_every_way(url, f"ws://127.0.0.2:{port}")
        wait_for(lambda: handshakes(log) >= 4, "the handshakes' request lines")
        rebound = requests.get(f"{url}/api/health", headers={"Host": "evil.example"}, timeout=5)
        assert rebound.status_code == 400
    assert_no_secret(log, tickets)
