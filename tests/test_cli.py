"""The real ``flask db`` commands, run on the test app's database."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy.engine import make_url

from tests.conftest import AppFactory
from zerg import db
from zerg import migrate
from zerg.cli import shown_url
from zerg.models import Agent


def add_agent(app: Flask) -> None:
    with db.session_scope(app) as session:
        session.add(Agent(name="precious", model="offline"))


def test_init_keeps_data_and_says_the_database_is_at_head(
    app: Flask, runner: FlaskCliRunner, rows: Callable[..., int]
) -> None:
    add_agent(app)
    result = runner.invoke(args=["db", "init"])
    assert result.exit_code == 0, result.output
    assert f"is already up to date at {migrate.head()} (head)" in result.output
    assert rows(Agent) == 1


def test_init_creates_tables_on_an_empty_database(
    make_app: AppFactory, empty_database_url: str
) -> None:
    app = make_app(DATABASE_URL=empty_database_url)
    result = app.test_cli_runner().invoke(args=["db", "init"])
    assert result.exit_code == 0, result.output
    assert f"Created 9 tables in {shown_url_of(app)} at {migrate.head()} (head)" in result.output
    add_agent(app)
    assert migrate.status(app).at_head


def shown_url_of(app: Flask) -> str:
    return make_url(app.config["DATABASE_URL"]).render_as_string(hide_password=True)


@pytest.fixture
def dev_app(make_app: AppFactory) -> Flask:
    return make_app(ENVIRONMENT="development")


def test_reset_with_yes_empties_the_tables_and_ends_at_head(
    dev_app: Flask, rows: Callable[..., int]
) -> None:
    add_agent(dev_app)
    result = dev_app.test_cli_runner().invoke(args=["db", "reset", "--yes"])
    assert result.exit_code == 0, result.output
    assert "Dropped and recreated all tables in" in result.output
    assert f"at {migrate.head()} (head)" in result.output
    assert rows(Agent) == 0
    assert migrate.status(dev_app).at_head


def test_reset_asks_first_and_declining_keeps_the_data(
    dev_app: Flask, rows: Callable[..., int]
) -> None:
    add_agent(dev_app)
    result = dev_app.test_cli_runner().invoke(args=["db", "reset"], input="n\n")
    assert result.exit_code == 1
    assert "Drop all data in" in result.output
    assert "Aborted" in result.output
    assert rows(Agent) == 1


def test_reset_asks_first_and_accepting_resets(dev_app: Flask, rows: Callable[..., int]) -> None:
    add_agent(dev_app)
    result = dev_app.test_cli_runner().invoke(args=["db", "reset"], input="y\n")
    assert result.exit_code == 0, result.output
    assert rows(Agent) == 0


@pytest.mark.parametrize("environment", ["testing", "production"])
def test_reset_refuses_outside_development(
    make_app: AppFactory, rows: Callable[..., int], environment: str
) -> None:
    app = make_app(ENVIRONMENT=environment, API_TOKEN="t")
    add_agent(app)
    result = app.test_cli_runner().invoke(args=["db", "reset", "--yes"])
    assert result.exit_code != 0
    assert f"ENVIRONMENT={environment}" in result.output
    assert rows(Agent) == 1


def test_database_urls_are_shown_without_their_password() -> None:
    # shown_url only reads the configuration, so no server is needed here.
    app = Flask("secret")
    app.config["DATABASE_URL"] = "postgresql+psycopg://zerg:hunter2@db.example:5432/zerg"
    with app.app_context():
        assert shown_url() == "postgresql+psycopg://zerg:***@db.example:5432/zerg"


def test_init_output_masks_a_real_password(make_app: AppFactory, database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("needs a database server URL (TEST_DATABASE_URL) to carry a password")
    # The machine's PostgreSQL trusts local connections, so any password connects.
    app = make_app(DATABASE_URL=url.set(password="hunter2").render_as_string(hide_password=False))
    result = app.test_cli_runner().invoke(args=["db", "init"])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert "***" in result.output


def test_db_help_lists_the_commands(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["db", "--help"])
    assert result.exit_code == 0
    for name in (
        "init",
        "reset",
        "upgrade",
        "downgrade",
        "current",
        "history",
        "revision",
        "check",
    ):
        assert name in result.output
