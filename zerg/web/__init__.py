"""The browser UI: a few pages at ``/`` that talk to the same REST API and websocket as any client.

The pages carry no data. Each is a shell that its script fills from ``/api``
with the token the browser was given, so the pages need no auth of their own
(``zerg.auth`` guards ``/api`` only) and no endpoint exists for the UI alone.
Templates and static files live in this package, so an installed zerg serves
them with nothing fetched from anywhere else.
"""

from __future__ import annotations

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import make_response
from flask import render_template
from flask import request
from werkzeug.exceptions import NotFound

from zerg.errors import http_problem

# The pages load their own scripts, styles and websocket only; anything else
# (a CDN, an injected script) is refused by the browser.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

bp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    # Not /static: Flask gives the app itself that path.
    static_url_path="/assets",
)


@bp.after_request
def secure_page(response: Response) -> Response:
    """Give a page the UI's strict policy (the API docs page, served under /api, too)."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


@bp.get("/")
def agents() -> str:
    """Show the agents dashboard."""
    return render_template("web/agents.html", page="agents", script="agents.js")


@bp.get("/agents/<int:agent_id>")
def agent(agent_id: int) -> str:
    """Show one agent: its threads, messages and runs."""
    return render_template("web/agent.html", page="agent", script="agent.js", ident=agent_id)


@bp.get("/threads/<int:thread_id>")
def thread(thread_id: int) -> str:
    """Show one thread as a chat."""
    return render_template("web/thread.html", page="thread", script="thread.js", ident=thread_id)


@bp.get("/runs")
def runs() -> str:
    """Show every run, newest first."""
    return render_template("web/runs.html", page="runs", script="runs.js")


@bp.get("/runs/<int:run_id>")
def run(run_id: int) -> str:
    """Show one run: its status, tokens, the messages it wrote and its tool calls."""
    return render_template("web/run.html", page="run", script="run.js", ident=run_id)


@bp.get("/mcp-servers")
def mcp_servers() -> str:
    """Show the MCP servers, with a form to add and edit them."""
    return render_template("web/mcp_servers.html", page="mcp-servers", script="mcp_servers.js")


def page_not_found(exc: NotFound) -> Response:
    """Show a browser a page with a way back; the API and other clients keep problem+json."""
    accept = request.accept_mimetypes
    wants_page = accept.best_match(["application/json", "text/html"]) == "text/html"
    if request.path.startswith("/api/") or request.path == "/api" or not wants_page:
        return http_problem(exc)
    page = render_template("web/not_found.html", page="not-found", path=request.path)
    return secure_page(make_response(page, 404))


def init_app(app: Flask) -> None:
    """Serve the UI's pages and static files from this package, and its 404 page."""
    if bp.name in app.blueprints:
        raise RuntimeError("zerg.web is already registered on this app")
    app.register_blueprint(bp)
    app.register_error_handler(NotFound, page_not_found)
