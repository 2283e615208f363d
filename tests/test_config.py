"""Configuration: sources, parsing, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from zerg import config
from zerg import create_app
from zerg.config import ConfigError


def build(**config: object) -> Flask:
    """Build an app that never connects (no table creation), just to read its config."""
    return create_app({"ENVIRONMENT": "testing", "AUTO_CREATE_TABLES": False, **config})


def test_defaults_use_sqlite_in_the_instance_folder() -> None:
    app = build()
    expected = Path(app.instance_path) / "zerg.sqlite"
    assert app.config["DATABASE_URL"] == f"sqlite:///{expected}"
    assert app.config["LLM_PROVIDER"] == ("offline",)
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_scheduler_is_off_in_testing_and_on_elsewhere_by_default(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert build(DATABASE_URL=url).config["SCHEDULER_ENABLED"] is False
    development = create_app(
        {"ENVIRONMENT": "development", "DATABASE_URL": url, "AUTO_CREATE_TABLES": False}
    )
    assert development.config["SCHEDULER_ENABLED"] is True


def test_relative_sqlite_paths_resolve_in_the_instance_folder() -> None:
    app = build(DATABASE_URL="sqlite:///relative.sqlite")
    expected = Path(app.instance_path) / "relative.sqlite"
    assert app.config["DATABASE_URL"] == f"sqlite:///{expected}"


def test_environment_variables_are_read_and_parsed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "2048")
    monkeypatch.setenv("AUTO_CREATE_TABLES", "no")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.sqlite'}")
    app = create_app({"ENVIRONMENT": "testing"})
    assert app.config["MAX_CONTENT_LENGTH"] == 2048
    assert app.config["AUTO_CREATE_TABLES"] is False
    assert not (tmp_path / "env.sqlite").exists()


def test_the_callers_mapping_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "2048")
    assert build(MAX_CONTENT_LENGTH=4096).config["MAX_CONTENT_LENGTH"] == 4096


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"ENVIRONMENT": "prod"}, "ENVIRONMENT must be one of development, testing, production"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a database URL"),
        ({"DATABASE_URL": "sqlite://"}, "DATABASE_URL must name an SQLite file"),
        ({"DATABASE_URL": "sqlite:///:memory:"}, "DATABASE_URL must name an SQLite file"),
        ({"AUTO_CREATE_TABLES": "maybe"}, "AUTO_CREATE_TABLES must be true or false"),
        ({"MAX_CONTENT_LENGTH": "lots"}, "MAX_CONTENT_LENGTH must be a whole number"),
        ({"MAX_CONTENT_LENGTH": 0}, "MAX_CONTENT_LENGTH must be a whole number of at least 1"),
        ({"LLM_PROVIDER": "magic"}, "LLM_PROVIDER must list one or more of offline, openai"),
        ({"LLM_PROVIDER": "openai"}, "LLM_PROVIDER=openai needs OPENAI_API_KEY"),
        ({"ENVIRONMENT": "production"}, "ENVIRONMENT=production requires API_TOKEN"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of debug, info, warning, error"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of text, json"),
        (
            {"REDIS_SOCKET_TIMEOUT_SECONDS": 0},
            "REDIS_SOCKET_TIMEOUT_SECONDS must be a positive number of seconds",
        ),
        ({"EVENT_OUTBOX_SIZE": "many"}, "EVENT_OUTBOX_SIZE must be a whole number"),
        (
            {"ENVIRONMENT": "production", "API_TOKEN": "t", "AUTO_CREATE_TABLES": True},
            "AUTO_CREATE_TABLES=true is refused in production",
        ),
    ],
)
def test_invalid_values_stop_start_up_with_one_line(
    config: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        build(**config)
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_production_starts_with_a_token(tmp_path: Path) -> None:
    app = create_app(
        {
            "ENVIRONMENT": "production",
            "API_TOKEN": "s3cret",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite'}",
            "AUTO_CREATE_TABLES": False,
        }
    )
    assert app.config["ENVIRONMENT"] == "production"


@pytest.mark.parametrize(
    ("environment", "url", "upgrades"),
    [
        ("development", "sqlite:///zerg.sqlite", True),
        ("development", "postgresql+psycopg://zerg@db.example/zerg", False),
        ("testing", "sqlite:///zerg.sqlite", False),
        ("production", "sqlite:///zerg.sqlite", False),
    ],
)
def test_only_a_development_sqlite_upgrades_at_start_up_by_default(
    environment: str, url: str, upgrades: bool
) -> None:
    """create_app connects to nothing, so these need no database."""
    app = create_app({"ENVIRONMENT": environment, "API_TOKEN": "t", "DATABASE_URL": url})
    assert app.config["AUTO_CREATE_TABLES"] is upgrades


def test_each_database_gets_an_event_stream_of_its_own(tmp_path: Path) -> None:
    """Two deployments on one Redis must not hear each other; one deployment's processes agree."""

    def stream(**config: str) -> str:
        app = create_app({"ENVIRONMENT": "testing", **config})
        name: str = app.config["EVENT_STREAM"]
        return name

    first = stream(DATABASE_URL=f"sqlite:///{tmp_path / 'one.sqlite'}")
    second = stream(DATABASE_URL=f"sqlite:///{tmp_path / 'two.sqlite'}")
    assert first.startswith("zerg:events:") and second.startswith("zerg:events:")
    assert first != second
    assert first == stream(DATABASE_URL=f"sqlite:///{tmp_path / 'one.sqlite'}")
    with_password = "postgresql+psycopg://zerg:{}@db.example/zerg"
    assert stream(DATABASE_URL=with_password.format("old")) == stream(
        DATABASE_URL=with_password.format("new")
    )
    assert "old" not in stream(DATABASE_URL=with_password.format("old"))
    assert stream(DATABASE_URL=f"sqlite:///{tmp_path / 'one.sqlite'}", EVENT_STREAM="mine") == (
        "mine"
    )


def test_every_setting_is_in_the_readme() -> None:
    """A setting nobody can find is a setting nobody can use: the README's table names each."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert [
        key for key in config.PARSERS if f"| `{key}`" not in readme and f", `{key}`" not in readme
    ] == []
