"""Agents and their messages."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy.orm import Session

from zerg import cron
from zerg import events
from zerg.api.io import get_or_404
from zerg.api.io import no_content
from zerg.api.io import page_params
from zerg.api.io import parse_body
from zerg.api.io import parse_query
from zerg.api.io import read_or_404
from zerg.api.io import respond
from zerg.api.io import respond_json
from zerg.api.io import respond_list
from zerg.db import get_db
from zerg.errors import unprocessable
from zerg.events import EventType
from zerg.llm import get_providers
from zerg.models import Agent
from zerg.models import AgentMessage
from zerg.runner import get_runner
from zerg.runner import queue_agent_run
from zerg.schemas import AgentCreate
from zerg.schemas import AgentMessageCreate
from zerg.schemas import AgentMessageOut
from zerg.schemas import AgentOut
from zerg.schemas import AgentUpdate
from zerg.schemas import Page
from zerg.schemas import RunOut
from zerg.schemas import ThreadMessageOut
from zerg.schemas import ThreadOut
from zerg.schemas import serialize
from zerg.statements import page_of
from zerg.statements import reading
from zerg.statements import row_by_id

bp = Blueprint("agents", __name__, url_prefix="/agents")

AGENT = row_by_id(Agent.__table__)
AGENTS_PAGE = page_of(select(Agent.__table__).order_by(Agent.created_at, Agent.id))
AGENT_MESSAGES_PAGE = page_of(
    select(AgentMessage.__table__)
    .where(AgentMessage.agent_id == bindparam("agent_id"))
    .order_by(AgentMessage.timestamp, AgentMessage.id)
)


def _check_model(model: str) -> None:
    if get_providers().provider_for(model) is None:
        raise unprocessable(
            [
                {
                    "loc": ["body", "model"],
                    "msg": f"no configured provider offers model {model!r} (see GET /api/models)",
                    "type": "unknown_model",
                }
            ]
        )


def _refresh_next_run(agent: Agent) -> None:
    """Keep next_run_at in step with the schedule and the run_on_schedule switch."""
    if agent.schedule and agent.run_on_schedule:
        agent.next_run_at = cron.next_fire_time(agent.schedule)
    else:
        agent.next_run_at = None


def load_agent(session: Session, agent_id: int) -> Agent:
    """Load an agent or raise a 404 problem."""
    return get_or_404(session, Agent, agent_id, "Agent")


@bp.get("")
def list_agents() -> Response:
    """List agents in creation order."""
    params = page_params(parse_query(Page))
    with reading() as connection:
        return respond_list(AgentOut, AGENTS_PAGE.all(connection, **params))


@bp.post("")
def create_agent() -> Response:
    """Create an agent."""
    body = parse_body(AgentCreate)
    model = body.model or get_providers().default_model()
    _check_model(model)
    run_on_schedule = body.run_on_schedule
    if run_on_schedule is None:
        run_on_schedule = body.schedule is not None
    agent = Agent(
        name=body.name,
        system_instructions=body.system_instructions,
        task_instructions=body.task_instructions,
        model=model,
        schedule=body.schedule,
        run_on_schedule=run_on_schedule,
        config=body.config,
    )
    _refresh_next_run(agent)
    session = get_db()
    session.add(agent)
    session.commit()
    payload = serialize(AgentOut, agent)
    events.publish(events.agent_event(EventType.AGENT_CREATED, payload))
    return respond_json(payload, 201)


@bp.get("/<int:agent_id>")
def get_agent(agent_id: int) -> Response:
    """Return one agent."""
    with reading() as connection:
        return respond(AgentOut, read_or_404(connection, AGENT, agent_id, "Agent"))


@bp.route("/<int:agent_id>", methods=["PUT", "PATCH"])
def update_agent(agent_id: int) -> Response:
    """Change the fields sent and leave the others as they are."""
    body = parse_body(AgentUpdate)
    session = get_db()
    agent = load_agent(session, agent_id)
    changes = body.changes()
    if "model" in changes:
        _check_model(changes["model"])
    for field, value in changes.items():
        setattr(agent, field, value)
    _refresh_next_run(agent)
    session.commit()
    payload = serialize(AgentOut, agent)
    events.publish(events.agent_event(EventType.AGENT_UPDATED, payload))
    return respond_json(payload)


@bp.delete("/<int:agent_id>")
def delete_agent(agent_id: int) -> Response:
    """Delete an agent with its threads, messages and runs."""
    session = get_db()
    agent = load_agent(session, agent_id)
    threads = [serialize(ThreadOut, thread) for thread in agent.threads]
    session.delete(agent)
    session.commit()
    # The database cascades to the threads; their watchers hear of it too.
    for thread in threads:
        events.publish(events.thread_event(EventType.THREAD_DELETED, thread))
    events.publish(
        events.agent_event(EventType.AGENT_DELETED, {"id": agent.id, "name": agent.name})
    )
    return no_content()


@bp.post("/<int:agent_id>/run")
def run_agent(agent_id: int) -> Response:
    """Run the agent's task instructions in a new thread of its own (202)."""
    session = get_db()
    runner = get_runner()
    agent = load_agent(session, agent_id)
    thread, message, run = queue_agent_run(session, agent, "manual", runner.instance_id)
    session.commit()
    events.publish(events.thread_event(EventType.THREAD_CREATED, serialize(ThreadOut, thread)))
    events.publish(events.thread_message_created(serialize(ThreadMessageOut, message)))
    payload = serialize(RunOut, run)
    events.publish(events.run_updated(payload))
    runner.submit(run.id)
    return respond_json(payload, 202)


@bp.get("/<int:agent_id>/messages")
def list_agent_messages(agent_id: int) -> Response:
    """List an agent's messages, oldest first."""
    params = page_params(parse_query(Page))
    with reading() as connection:
        read_or_404(connection, AGENT, agent_id, "Agent")
        rows = AGENT_MESSAGES_PAGE.all(connection, agent_id=agent_id, **params)
    return respond_list(AgentMessageOut, rows)


@bp.post("/<int:agent_id>/messages")
def create_agent_message(agent_id: int) -> Response:
    """Add a message to an agent."""
    body = parse_body(AgentMessageCreate)
    session = get_db()
    load_agent(session, agent_id)
    message = AgentMessage(agent_id=agent_id, role=body.role, content=body.content)
    session.add(message)
    session.commit()
    return respond(AgentMessageOut, message, 201)
