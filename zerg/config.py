"""Configuration: defaults, instance file, environment, then the caller's mapping.

Every key is parsed and checked once, at start-up, so that a typo in the
environment stops the app with one readable line instead of failing later in
the middle of a request.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from zerg.errors import StartupError

ENVIRONMENTS = ("development", "testing", "production")
LLM_PROVIDERS = ("offline", "openai")
EVENT_BACKENDS = ("memory", "redis")
# After downtime: skip the ticks missed (logging them), or run the latest once.
SCHEDULE_CATCH_UP = ("none", "latest")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
# How messages name zerg's command: as the README runs it, from the checkout's venv.
COMMAND = ".venv/bin/flask --app zerg"
# The hosts a development server always answers for (TRUSTED_HOSTS adds to them).
DEVELOPMENT_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(StartupError):
    """A configuration value is missing, malformed or unsafe."""


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{key} must be true or false, not {value!r}")


def _as_int(key: str, value: Any, minimum: int = 1) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a whole number, not {value!r}") from None
    if isinstance(value, bool) or number < minimum:
        raise ConfigError(f"{key} must be a whole number of at least {minimum}, not {value!r}")
    return number


def _as_seconds(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number of seconds, not {value!r}") from None
    if isinstance(value, bool) or not number > 0:
        raise ConfigError(f"{key} must be a positive number of seconds, not {value!r}")
    return number


def _as_list(key: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(text for item in items if (text := str(item).strip()))


def _hosts(key: str, value: Any) -> tuple[str, ...]:
    return () if value is None else _as_list(key, value)


def _providers(key: str, value: Any) -> tuple[str, ...]:
    names = _as_list(key, value)
    unknown = [name for name in names if name not in LLM_PROVIDERS]
    if unknown or not names:
        raise ConfigError(
            f"{key} must list one or more of {', '.join(LLM_PROVIDERS)}, not {value!r}"
        )
    return tuple(dict.fromkeys(names))


def _as_optional_str(key: str, value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _one_of(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def parse(key: str, value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, not {value!r}")
        return text

    return parse


# key -> parser; the same names are read from the environment.
PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "ENVIRONMENT": _one_of(ENVIRONMENTS),
    "DATABASE_URL": _as_optional_str,
    "DATABASE_POOL_SIZE": _as_int,
    "DATABASE_POOL_TIMEOUT": _as_seconds,
    "AUTO_CREATE_TABLES": _as_bool,
    "API_TOKEN": _as_optional_str,
    "SCHEDULER_ENABLED": _as_bool,
    "LLM_PROVIDER": _providers,
    "OFFLINE_DELAY_SECONDS": _as_seconds,
    "OPENAI_API_KEY": _as_optional_str,
    "OPENAI_BASE_URL": _as_optional_str,
    "OPENAI_MODELS": _as_list,
    "OPENAI_TIMEOUT_SECONDS": _as_seconds,
    "OPENAI_MAX_RETRIES": lambda key, value: _as_int(key, value, minimum=0),
    "RUN_WORKERS": _as_int,
    "RUN_DATABASE_TURNS": _as_int,
    "RUN_CONTEXT_MESSAGES": _as_int,
    "RUN_MAX_TOOL_ROUNDS": _as_int,
    "TOOL_TIMEOUT_SECONDS": _as_seconds,
    "TOOL_RESULT_MAX_CHARS": _as_int,
    "TOOL_HTTP_ALLOWED_HOSTS": _as_list,
    "TOOL_HTTP_MAX_BYTES": _as_int,
    "TOOL_APPROVAL_TIMEOUT_SECONDS": _as_seconds,
    "TOOL_APPROVAL_CHECK_SECONDS": _as_seconds,
    "MCP_ALLOW_STDIO": _as_bool,
    "MCP_CONNECT_TIMEOUT_SECONDS": _as_seconds,
    "MCP_LIST_TIMEOUT_SECONDS": _as_seconds,
    "MCP_CALL_TIMEOUT_SECONDS": _as_seconds,
    "STREAM_COALESCE_SECONDS": _as_seconds,
    "SCHEDULER_MISFIRE_GRACE_SECONDS": _as_int,
    "SCHEDULER_LOCK_POLL_SECONDS": _as_seconds,
    "RUN_REAP_SECONDS": _as_seconds,
    "SCHEDULE_MAX_FAILURES": _as_int,
    "SCHEDULE_CATCH_UP": _one_of(SCHEDULE_CATCH_UP),
    "MAX_CONTENT_LENGTH": _as_int,
    "MAX_PAGE_SIZE": _as_int,
    "EVENT_BACKEND": _one_of(EVENT_BACKENDS),
    "EVENT_REPLAY_WINDOW": _as_int,
    "EVENT_STREAM": _as_optional_str,
    "REDIS_URL": _as_optional_str,
    "REDIS_CONNECT_TIMEOUT_SECONDS": _as_seconds,
    "REDIS_SOCKET_TIMEOUT_SECONDS": _as_seconds,
    "EVENT_OUTBOX_SIZE": _as_int,
    "CORS_ORIGINS": _as_list,
    "TRUSTED_HOSTS": _hosts,
    "WS_PING_INTERVAL": _as_seconds,
    "WS_MAX_MESSAGE_SIZE": _as_int,
    "WS_SEND_QUEUE_SIZE": _as_int,
    "WS_DROP_GRACE_SECONDS": _as_seconds,
    "WS_MAX_CONNECTIONS": _as_int,
    "LOG_LEVEL": _one_of(LOG_LEVELS),
    "LOG_FORMAT": _one_of(LOG_FORMATS),
    "IDEMPOTENCY_TTL_SECONDS": _as_int,
}

DEFAULTS: dict[str, Any] = {
    "ENVIRONMENT": "development",
    "DATABASE_URL": None,
    "DATABASE_POOL_SIZE": 20,
    "DATABASE_POOL_TIMEOUT": 5,
    "API_TOKEN": None,
    "LLM_PROVIDER": "offline",
    "OFFLINE_DELAY_SECONDS": 0.02,
    "OPENAI_API_KEY": None,
    "OPENAI_BASE_URL": None,
    "OPENAI_MODELS": "gpt-4o-mini,gpt-4o",
    "OPENAI_TIMEOUT_SECONDS": 60,
    "OPENAI_MAX_RETRIES": 2,
    # Runs executing at once per process: under gevent each waits on its model
    # as a greenlet holding no connection, so hundreds cost little.
    "RUN_WORKERS": 500,
    "RUN_DATABASE_TURNS": 4,
    "RUN_CONTEXT_MESSAGES": 50,
    # Model replies with tool calls one run may make before it ends failed.
    "RUN_MAX_TOOL_ROUNDS": 10,
    # Every tool call's deadline; past it the model reads a timeout error.
    "TOOL_TIMEOUT_SECONDS": 30,
    # A tool result longer than this is cut, and marked truncated.
    "TOOL_RESULT_MAX_CHARS": 20_000,
    # Hosts (host or host:port) the built-in http_get may fetch; none by default.
    "TOOL_HTTP_ALLOWED_HOSTS": "",
    "TOOL_HTTP_MAX_BYTES": 200_000,
    # A call nobody approves or rejects within this is rejected (an hour).
    "TOOL_APPROVAL_TIMEOUT_SECONDS": 3600,
    # How often the scheduler's holder looks for calls whose approval is overdue.
    "TOOL_APPROVAL_CHECK_SECONDS": 15,
    # A stdio MCP server runs a command on this machine: off unless asked for.
    "MCP_ALLOW_STDIO": False,
    "MCP_CONNECT_TIMEOUT_SECONDS": 10,
    "MCP_LIST_TIMEOUT_SECONDS": 10,
    "MCP_CALL_TIMEOUT_SECONDS": 30,
    "STREAM_COALESCE_SECONDS": 0.03,
    "SCHEDULER_MISFIRE_GRACE_SECONDS": 30,
    "SCHEDULER_LOCK_POLL_SECONDS": 5,
    # How often the scheduler's holder interrupts the runs of processes that died.
    "RUN_REAP_SECONDS": 30,
    "SCHEDULE_MAX_FAILURES": 3,
    "SCHEDULE_CATCH_UP": "none",
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "MAX_PAGE_SIZE": 500,
    "EVENT_BACKEND": "memory",
    "EVENT_REPLAY_WINDOW": 10_000,
    # None: a name of the database's own (see event_stream).
    "EVENT_STREAM": None,
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    # A Redis that hangs costs the publisher thread, a replay or a health
    # check this long, never a writer (they hand events to the outbox).
    "REDIS_CONNECT_TIMEOUT_SECONDS": 2,
    "REDIS_SOCKET_TIMEOUT_SECONDS": 2,
    # Events held for Redis while it is unreachable (a run's end always is).
    "EVENT_OUTBOX_SIZE": 10_000,
    "CORS_ORIGINS": "",
    "WS_PING_INTERVAL": 25,
    "WS_MAX_MESSAGE_SIZE": 256 * 1024,
    "WS_SEND_QUEUE_SIZE": 1024,
    "WS_DROP_GRACE_SECONDS": 5,
    # Websockets one process holds; past it a handshake gets 503 before the upgrade.
    "WS_MAX_CONNECTIONS": 10_000,
    "LOG_LEVEL": "info",
    "LOG_FORMAT": "text",
    # How long a response stays replayable for its Idempotency-Key (a day).
    "IDEMPOTENCY_TTL_SECONDS": 86400,
}


def load(app: Flask, overrides: Mapping[str, Any] | None = None) -> None:
    """Fill ``app.config`` from every source, later sources winning, then validate."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_pyfile("config.py", silent=True)
    for key in PARSERS:
        if key in os.environ:
            app.config[key] = os.environ[key]
    if overrides:
        app.config.from_mapping(overrides)
    for key, parse in PARSERS.items():
        if key in app.config:
            app.config[key] = parse(key, app.config[key])
    # The scheduler runs by default except in tests, where job threads would
    # outlive the app under test.
    if "SCHEDULER_ENABLED" not in app.config:
        app.config["SCHEDULER_ENABLED"] = app.config["ENVIRONMENT"] != "testing"
    app.config["DATABASE_URL"] = database_url(app)
    if app.config["EVENT_STREAM"] is None:
        app.config["EVENT_STREAM"] = event_stream(app.config["DATABASE_URL"])
    # The embedded SQLite of a development checkout upgrades itself when the
    # server starts; anything else is upgraded by `flask db upgrade` first.
    if "AUTO_CREATE_TABLES" not in app.config:
        is_sqlite = make_url(app.config["DATABASE_URL"]).get_backend_name() == "sqlite"
        app.config["AUTO_CREATE_TABLES"] = is_sqlite and app.config["ENVIRONMENT"] == "development"
    app.config["AUTO_CREATE_TABLES"] = _as_bool(
        "AUTO_CREATE_TABLES", app.config["AUTO_CREATE_TABLES"]
    )
    app.config["TRUSTED_HOSTS"] = trusted_hosts(app.config)
    # flask-sock hands these to every simple-websocket server it creates.
    # WS_PING_INTERVAL is not among them: the hub pings (zerg.realtime.keepalive).
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": app.config["WS_MAX_MESSAGE_SIZE"]}
    check_safety(app.config)


def database_url(app: Flask) -> str:
    """Return the configured URL, resolving relative SQLite paths in the instance folder."""
    raw = app.config["DATABASE_URL"]
    if raw is None:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{Path(app.instance_path) / 'zerg.sqlite'}"
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a database URL: {raw!r}") from None
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise ConfigError(
                "DATABASE_URL must name an SQLite file: in-memory SQLite gives every "
                "connection its own empty database"
            )
        path = Path(url.database)
        if not path.is_absolute():
            Path(app.instance_path).mkdir(parents=True, exist_ok=True)
            url = url.set(database=str(Path(app.instance_path) / path))
        elif not path.parent.is_dir():
            # SQLite would only say "unable to open database file", at first use.
            raise ConfigError(
                f"DATABASE_URL names an SQLite file in {path.parent}, a folder that does not "
                "exist: create it, or name a file in an existing folder"
            )
    return url.render_as_string(hide_password=False)


def event_stream(url: str) -> str:
    """Name the Redis stream of the deployment on the database at ``url``.

    Two deployments sharing one Redis would otherwise share one stream and
    hear each other's events; processes of one deployment share its database,
    so they agree on the name. The password is left out: it is the same
    database whatever the password, and the name is no place for a secret.
    """
    place = make_url(url).render_as_string(hide_password=True)
    return f"zerg:events:{hashlib.sha256(place.encode()).hexdigest()[:16]}"


def trusted_hosts(config: Mapping[str, Any]) -> list[str] | None:
    """Return the hosts Flask answers for (None: any), against DNS rebinding.

    A page whose name an attacker re-points at 127.0.0.1 is same-origin with
    itself, so only the Host header gives it away. Development answers for
    its own names and those listed; elsewhere the list is the whole of it,
    and empty means unchecked. ``*`` turns the check off anywhere.
    """
    hosts = config["TRUSTED_HOSTS"]
    if "*" in hosts:
        return None
    if config["ENVIRONMENT"] == "development":
        return list(dict.fromkeys((*DEVELOPMENT_HOSTS, *hosts)))
    return list(hosts) or None


def check_safety(config: Mapping[str, Any]) -> None:
    """Refuse a production configuration that would leave the API open, or a useless one."""
    if config["ENVIRONMENT"] == "production" and not config["API_TOKEN"]:
        raise ConfigError("ENVIRONMENT=production requires API_TOKEN")
    if config["ENVIRONMENT"] == "production" and config["AUTO_CREATE_TABLES"]:
        raise ConfigError(
            "AUTO_CREATE_TABLES=true is refused in production, which never migrates at "
            f"start-up: run `{COMMAND} db upgrade` before starting the server"
        )
    if "openai" in config["LLM_PROVIDER"]:
        if not (config["OPENAI_API_KEY"] or config["OPENAI_BASE_URL"]):
            raise ConfigError(
                "LLM_PROVIDER=openai needs OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL "
                "(a local OpenAI-compatible server)"
            )
        if not config["OPENAI_MODELS"]:
            raise ConfigError("LLM_PROVIDER=openai needs OPENAI_MODELS to name at least one model")
