"""The ``flask db`` commands."""

from __future__ import annotations

import click
from flask import Flask
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.engine import make_url

from zerg import db

db_cli = AppGroup("db", help="Create or reset zerg's database tables.")


def shown_url() -> str:
    """Return the app's database URL with any password masked."""
    return make_url(current_app.config["DATABASE_URL"]).render_as_string(hide_password=True)


@db_cli.command("init")
def init_command() -> None:
    """Create the tables that are missing; existing data is kept."""
    db.create_tables()
    click.echo(f"Created missing tables in {shown_url()}")


@db_cli.command("reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset_command(yes: bool) -> None:
    """Drop every table and create them again (development only)."""
    environment = current_app.config["ENVIRONMENT"]
    if environment != "development":
        raise click.ClickException(
            f"refusing to reset the database with ENVIRONMENT={environment}; "
            "it is allowed only in development"
        )
    if not yes:
        click.confirm(f"Drop all data in {shown_url()}?", abort=True)
    db.drop_tables()
    db.create_tables()
    click.echo(f"Dropped and recreated all tables in {shown_url()}")


def init_app(app: Flask) -> None:
    """Add the ``db`` group and give ``flask shell`` the session helpers and models."""
    app.cli.add_command(db_cli)

    @app.shell_context_processor
    def shell_context() -> dict[str, object]:
        import sqlalchemy as sa

        from zerg import models

        return {
            "sa": sa,
            "db": db.get_db(),
            "session_scope": db.session_scope,
            **{name: getattr(models, name) for name in models.__all__},
        }
