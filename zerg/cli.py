"""The ``flask db`` commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
import flask.cli
from alembic.util import CommandError
from flask import Flask
from flask import current_app
from flask.cli import AppGroup
from werkzeug.serving import is_running_from_reloader
from werkzeug.serving import run_simple

from zerg import agents
from zerg import cron
from zerg import db
from zerg import logs
from zerg import migrate
from zerg import origins
from zerg import serving
from zerg.errors import StartupError

db_cli = AppGroup("db", help="Create, migrate or reset zerg's database tables.")


def shown_url() -> str:
    """Return the app's database URL with any password masked."""
    return migrate.shown_url(current_app)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn Alembic's refusals into zerg's one-line start-up error and a non-zero exit.

    zerg's own (:class:`zerg.errors.StartupError`: settings, schema) print
    that way already.
    """
    try:
        yield
    except CommandError as exc:
        raise StartupError(str(exc)) from None


def describe(step: migrate.Step) -> str:
    """Say what an upgrade or downgrade did to the current app's database."""
    return migrate.describe(current_app, step)


@db_cli.command("init")
def init_command() -> None:
    """Create the tables that are missing and upgrade to head; existing data is kept."""
    with one_line_errors():
        step = migrate.upgrade(current_app)
    click.echo(describe(step))


@db_cli.command("reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset_command(yes: bool) -> None:
    """Drop every table and create them again at head (development only)."""
    environment = current_app.config["ENVIRONMENT"]
    if environment != "development":
        raise click.ClickException(
            f"refusing to reset the database with ENVIRONMENT={environment}; "
            "it is allowed only in development"
        )
    if not yes:
        click.confirm(f"Drop all data in {shown_url()}?", abort=True)
    with one_line_errors():
        step = migrate.reset(current_app)
    click.echo(f"Dropped and recreated all tables in {shown_url()} at {step.after} (head)")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def upgrade_command(revision: str) -> None:
    """Upgrade the database to REVISION (default: head).

    A database made by zerg 0.1.0, before migrations, is recognised by its
    tables and adopted at the baseline first; any other unversioned tables
    are refused.
    """
    with one_line_errors():
        step = migrate.upgrade(current_app, revision)
    click.echo(describe(step))


@db_cli.command("downgrade")
@click.argument("revision")
def downgrade_command(revision: str) -> None:
    """Downgrade the database to REVISION (``base`` drops every table and its data)."""
    with one_line_errors():
        step = migrate.downgrade(current_app, revision)
    click.echo(describe(step))


@db_cli.command("current")
def current_command() -> None:
    """Print the database's revision and whether it is at head."""
    state = migrate.status(current_app)
    if state.at_head:
        click.echo(f"{state.current} (head)")
    elif state.current is None and state.has_tables:
        click.echo(
            f"none: tables without a schema version; `{migrate.UPGRADE_HINT}` "
            f"adopts zerg 0.1.0's (head is {state.head})"
        )
    elif state.current is None:
        click.echo(f"none: no tables yet (head is {state.head})")
    else:
        click.echo(f"{state.current} (head is {state.head}: run `{migrate.UPGRADE_HINT}`)")


@db_cli.command("history")
@click.option("-v", "--verbose", is_flag=True, help="Show each revision's full header.")
def history_command(verbose: bool) -> None:
    """List the revisions, newest first."""
    migrate.history(verbose=verbose)


@db_cli.command("revision")
@click.option("-m", "--message", required=True, help="What the change does, in a few words.")
def revision_command(message: str) -> None:
    """Write a new revision from the difference between the models and the database.

    For contributors: the database must be at head (`flask --app zerg db upgrade`).
    Read the script it writes and fix what autogenerate cannot see (renames,
    data, server defaults) before committing it.
    """
    with one_line_errors():
        path = migrate.revision(current_app, message)
    click.echo(f"Wrote {path}: read it, fix it, test it (pytest), then commit it")


@db_cli.command("check")
def check_command() -> None:
    """Exit non-zero if the models differ from the migrations (the database must be at head)."""
    with one_line_errors():
        migrate.check(current_app)
    click.echo(f"The models match the migrations (head {migrate.head()})")


scheduler_cli = AppGroup("scheduler", help="Inspect the cron schedules.")


@scheduler_cli.command("list")
def list_command() -> None:
    """Print every scheduled agent with its schedule and next run time (UTC)."""
    with db.session_scope(write=False) as session:
        scheduled = agents.scheduled_agents(session)
        rows = [(agent.id, agent.name, agent.schedule or "", agent.timezone) for agent in scheduled]
    if not rows:
        click.echo("No agent runs on a schedule.")
        return
    for agent_id, name, schedule, timezone in rows:
        upcoming = cron.next_fire_time(schedule, timezone=timezone).isoformat()
        click.echo(f"agent {agent_id} ({name}): '{schedule}' in {timezone}, next run {upcoming}")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--reload/--no-reload", default=False, help="Restart when code changes.")
def serve_command(host: str, port: int, reload: bool) -> None:
    """Serve the API and websocket with the scheduler and run workers (development server)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    logs.configure(app)
    # With the reloader, the first process only watches files; the child serves.
    if not reload or is_running_from_reloader():
        with one_line_errors():
            serving.start(app)
        origins.trust_served_host(app, host)
    run_simple(host, port, app, threaded=True, use_reloader=reload)


def prepare_for_flask_run(app: Flask) -> None:
    """Under Flask's own ``flask run``, bring the database to head first, as ``serve`` does.

    ``flask run`` builds the app and serves it with no hook of ours in
    between, so this runs while the app is built: a database that is behind
    is upgraded where ``serve`` would upgrade it (SQLite in development), or
    the command stops with one line naming the upgrade, instead of serving
    "no such table" as 500s. Unlike ``serve``, it starts no background work.
    """
    context = click.get_current_context(silent=True)
    if context is not None and context.command is flask.cli.run_command:
        with one_line_errors():
            migrate.prepare(app)


def init_app(app: Flask) -> None:
    """Add the ``db`` and ``scheduler`` groups and ``serve``; fill ``flask shell``."""
    prepare_for_flask_run(app)
    app.cli.add_command(db_cli)
    app.cli.add_command(scheduler_cli)
    app.cli.add_command(serve_command)

    @app.shell_context_processor
    def shell_context() -> dict[str, object]:
        import sqlalchemy as sa

        from zerg import models

        return {
            "sa": sa,
            "db": db.get_db(write=True),
            "session_scope": db.session_scope,
            **{name: getattr(models, name) for name in models.__all__},
        }
