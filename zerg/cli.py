"""The ``flask db`` commands."""

from __future__ import annotations

import click
from flask import Flask
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.engine import make_url
from werkzeug.serving import is_running_from_reloader
from werkzeug.serving import run_simple

from zerg import agents
from zerg import db
from zerg import serving
from zerg.runs import cron

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


scheduler_cli = AppGroup("scheduler", help="Inspect the cron schedules.")


@scheduler_cli.command("list")
def list_command() -> None:
    """Print every scheduled agent with its schedule and next run time (UTC)."""
    with db.session_scope(write=False) as session:
        scheduled = agents.scheduled_agents(session)
        rows = [(agent.id, agent.name, agent.schedule or "") for agent in scheduled]
    if not rows:
        click.echo("No agent runs on a schedule.")
        return
    for agent_id, name, schedule in rows:
        upcoming = cron.next_fire_time(schedule)
        when = upcoming.isoformat() if upcoming else "never"
        click.echo(f"agent {agent_id} ({name}): '{schedule}' next run {when}")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--reload/--no-reload", default=False, help="Restart when code changes.")
def serve_command(host: str, port: int, reload: bool) -> None:
    """Serve the API and websocket with the scheduler and run workers (development server)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # With the reloader, the first process only watches files; the child serves.
    if not reload or is_running_from_reloader():
        serving.start(app)
    run_simple(host, port, app, threaded=True, use_reloader=reload)


def init_app(app: Flask) -> None:
    """Add the ``db`` and ``scheduler`` groups and ``serve``; fill ``flask shell``."""
    app.cli.add_command(db_cli)
    app.cli.add_command(scheduler_cli)
    app.cli.add_command(serve_command)

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
