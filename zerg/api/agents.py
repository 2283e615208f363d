"""Agents and their messages."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg import agents
from zerg.api.admission import starts_runs
from zerg.api.idempotency import idempotent
from zerg.api.io import commit
from zerg.api.io import located
from zerg.api.io import no_content
from zerg.api.io import page_params
from zerg.api.io import parse_body
from zerg.api.io import parse_query
from zerg.api.io import respond
from zerg.api.io import respond_row
from zerg.api.io import respond_rows
from zerg.api.operations import DELETED
from zerg.api.operations import conflict
from zerg.api.operations import created
from zerg.api.operations import ok
from zerg.api.operations import operation
from zerg.api.operations import started
from zerg.db import get_db
from zerg.runs import domain as runs
from zerg.schemas import AgentCreate
from zerg.schemas import AgentMessageCreate
from zerg.schemas import AgentMessageOut
from zerg.schemas import AgentOut
from zerg.schemas import AgentQuery
from zerg.schemas import AgentUpdate
from zerg.schemas import Page
from zerg.schemas import RunOut

bp = Blueprint("agents", __name__, url_prefix="/agents")

AGENT_RUNNING = conflict("A status was sent while one of the agent's runs executes.")


@bp.get("")
@operation(
    "agents", "List agents", ok(AgentOut, "Agents, oldest first.", many=True), query=AgentQuery
)
def list_agents() -> Response:
    """List agents in creation order, optionally only those whose name contains ``q``."""
    query = parse_query(AgentQuery)
    skip, limit = page_params(query)
    return respond_rows(AgentOut, agents.list_agents(get_db(), skip, limit, query.q))


@bp.post("")
@operation("agents", "Create an agent", created(AgentOut), body=AgentCreate)
@idempotent
def create_agent() -> Response:
    """Create an agent."""
    body = parse_body(AgentCreate)
    session = get_db(write=True)
    agent = agents.create_agent(session, body)
    response = respond(AgentOut, agent, 201)
    return commit(located(response, "api.agents.get_agent", agent_id=agent.id))


@bp.get("/<int:agent_id>")
@operation("agents", "Get an agent", ok(AgentOut))
def get_agent(agent_id: int) -> Response:
    """Return one agent."""
    return respond_row(AgentOut, agents.get_agent(get_db(), agent_id))


@bp.route("/<int:agent_id>", methods=["PUT", "PATCH"])
@operation(
    "agents",
    "Update an agent (the fields sent)",
    ok(AgentOut),
    body=AgentUpdate,
    also=(AGENT_RUNNING,),
)
def update_agent(agent_id: int) -> Response:
    """Change the fields sent and leave the others as they are."""
    body = parse_body(AgentUpdate)
    session = get_db(write=True)
    agent = agents.update_agent(session, agent_id, body)
    session.commit()
    return respond(AgentOut, agent)


@bp.delete("/<int:agent_id>")
@operation("agents", "Delete an agent", DELETED)
def delete_agent(agent_id: int) -> Response:
    """Delete an agent with its threads, messages and runs."""
    session = get_db(write=True)
    agents.delete_agent(session, agent_id)
    session.commit()
    return no_content()


@bp.post("/<int:agent_id>/run")
@operation(
    "agents",
    "Run an agent's task instructions",
    started("Accepted: the run, queued in a new thread of the agent's."),
    also=(conflict("The agent has no task instructions to run."),),
)
@starts_runs()
@idempotent
def run_agent(agent_id: int) -> Response:
    """Run the agent's task instructions in a new thread of its own (202)."""
    session = get_db(write=True)
    run = runs.queue_agent_run(session, agent_id, "manual")
    return commit(located(respond(RunOut, run, 202), "api.runs.get_run", run_id=run.id))


@bp.get("/<int:agent_id>/messages")
@operation(
    "agents",
    "List an agent's messages",
    ok(AgentMessageOut, "Messages, oldest first.", many=True),
    query=Page,
)
def list_agent_messages(agent_id: int) -> Response:
    """List an agent's messages, oldest first."""
    skip, limit = page_params(parse_query(Page))
    rows = agents.list_agent_messages(get_db(), agent_id, skip, limit)
    return respond_rows(AgentMessageOut, rows)


@bp.post("/<int:agent_id>/messages")
@operation("agents", "Add a message to an agent", created(AgentMessageOut), body=AgentMessageCreate)
@idempotent
def create_agent_message(agent_id: int) -> Response:
    """Add a message to an agent."""
    body = parse_body(AgentMessageCreate)
    session = get_db(write=True)
    message = agents.add_agent_message(session, agent_id, body)
    response = respond(AgentMessageOut, message, 201)
    return commit(
        located(response, "api.agents.get_agent_message", agent_id=agent_id, message_id=message.id)
    )


@bp.get("/<int:agent_id>/messages/<int:message_id>")
@operation("agents", "Get one of an agent's messages", ok(AgentMessageOut))
def get_agent_message(agent_id: int, message_id: int) -> Response:
    """Return one of an agent's messages."""
    return respond_row(AgentMessageOut, agents.get_agent_message(get_db(), agent_id, message_id))
