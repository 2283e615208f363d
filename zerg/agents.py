"""Agents and their messages: every change to them, and the reads more than one caller needs.

Like every domain module, these functions do their work in the session they
are handed and leave the commit to the caller, the edge of the unit of work
(a view, a websocket message, a job). What they announce goes out once that
commit succeeds (:func:`zerg.realtime.events.announce`); each event about an
agent is announced from :func:`_announce` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from typing import cast

from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from zerg import agent_tools
from zerg import conversations
from zerg import cron
from zerg.db import LIKE_ESCAPE
from zerg.db import app_of
from zerg.db import fetch_rows
from zerg.db import like_pattern
from zerg.db import load_row
from zerg.db import read_row
from zerg.domain_errors import Conflict
from zerg.domain_errors import InvalidField
from zerg.domain_errors import NotFound
from zerg.models import ID_MAX
from zerg.models import Agent
from zerg.models import AgentMessage
from zerg.models import Run
from zerg.providers import get_providers
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.schemas import AgentCreate
from zerg.schemas import AgentMessageCreate
from zerg.schemas import AgentOut
from zerg.schemas import AgentUpdate
from zerg.schemas import serialize

_agents = cast(Table, Agent.__table__)
_agent_messages = cast(Table, AgentMessage.__table__)

# Built once: SQLAlchemy caches their compiled SQL, and nothing is rebuilt per call.
AGENTS_PAGE = (
    select(_agents)
    .order_by(_agents.c.created_at, _agents.c.id)
    .offset(bindparam("skip"))
    .limit(bindparam("limit"))
)
AGENTS_MATCHING = (
    select(_agents)
    .where(_agents.c.name.ilike(bindparam("pattern"), escape=LIKE_ESCAPE))
    .order_by(_agents.c.created_at, _agents.c.id)
    .offset(bindparam("skip"))
    .limit(bindparam("limit"))
)
SCHEDULED = (
    select(Agent)
    .where(Agent.run_on_schedule.is_(True), Agent.schedule.is_not(None))
    .order_by(Agent.id)
)
AGENT_MESSAGES_PAGE = (
    select(_agent_messages)
    .where(_agent_messages.c.agent_id == bindparam("agent_id"))
    .order_by(_agent_messages.c.timestamp, _agent_messages.c.id)
    .offset(bindparam("skip"))
    .limit(bindparam("limit"))
)


def check_model(session: Session, model: str) -> None:
    """Refuse a model that no configured provider offers (InvalidField ``model``)."""
    if get_providers(app_of(session)).provider_for(model) is None:
        raise InvalidField(
            "model",
            f"no configured provider offers model {model!r} (see GET /api/models)",
            "unknown_model",
        )


def refresh_next_run(agent: Agent) -> None:
    """Keep next_run_at in step with the schedule and the run_on_schedule switch."""
    if agent.schedule and agent.run_on_schedule:
        agent.next_run_at = cron.next_fire_time(agent.schedule, timezone=agent.timezone)
    else:
        agent.next_run_at = None


def scheduled_agents(session: Session) -> Sequence[Agent]:
    """Load every agent that runs on a schedule."""
    return session.scalars(SCHEDULED).all()


def advance_schedule(session: Session, agent: Agent, after: datetime | None = None) -> None:
    """Set ``next_run_at`` to the schedule's first tick after ``after`` (default: now)."""
    agent.next_run_at = None
    if agent.schedule:
        agent.next_run_at = cron.next_fire_time(agent.schedule, after, agent.timezone)
    announce_update(session, agent)


def load_agent(session: Session, agent_id: int, *, lock: bool = False) -> Agent:
    """Load an agent to change it, or raise NotFound."""
    return load_row(session, Agent, agent_id, lock=lock)


def lock_agent(session: Session, agent_id: int, *, shared: bool = False) -> Agent:
    """Load an agent under its row lock, read afresh, or raise NotFound.

    Whatever decides from the agent's status or counts (a client's update, a
    run ending) holds it, so that none of them decides from a value another
    is changing. FOR NO KEY UPDATE, not FOR UPDATE: the latter also waits for
    the key-share locks that inserting the agent's new threads and runs
    takes, and with a scheduled tick being queued at the same moment
    PostgreSQL saw a deadlock.

    ``shared`` takes FOR SHARE instead, for a run that is beginning: it only
    needs the status to stay as it read it until it commits, so the runs of
    one agent begin side by side, while a change or an end of a run waits
    for them (and then counts them). With the exclusive lock, 500 runs of 20
    agents queued at once began one agent-run at a time, and the last
    streamed its first piece seconds late.
    """
    statement = (
        select(Agent)
        .where(Agent.id == agent_id)
        .with_for_update(read=shared, key_share=not shared)
        .execution_options(populate_existing=True)
    )
    agent = session.scalars(statement).one_or_none() if agent_id <= ID_MAX else None
    if agent is None:
        raise NotFound("Agent", agent_id)
    return agent


def get_agent(session: Session, agent_id: int) -> dict[str, Any]:
    """Read one agent's row, or raise NotFound."""
    return read_row(session, Agent, agent_id)


def list_agents(
    session: Session, skip: int, limit: int, q: str | None = None
) -> list[dict[str, Any]]:
    """Read a page of agents in creation order, only those whose name contains ``q`` if given.

    The match ignores case (for ASCII letters only on SQLite).
    """
    if q is None:
        return fetch_rows(session, AGENTS_PAGE, {"skip": skip, "limit": limit})
    params = {"pattern": like_pattern(q), "skip": skip, "limit": limit}
    return fetch_rows(session, AGENTS_MATCHING, params)


def create_agent(session: Session, fields: AgentCreate) -> Agent:
    """Add an agent; with a schedule it runs on it unless told otherwise."""
    model = fields.model or get_providers(app_of(session)).default_model()
    check_model(session, model)
    agent_tools.check_tools(session, fields.tools, fields.approval_required)
    run_on_schedule = fields.run_on_schedule
    if run_on_schedule is None:
        run_on_schedule = fields.schedule is not None
    agent = Agent(
        name=fields.name,
        system_instructions=fields.system_instructions,
        task_instructions=fields.task_instructions,
        model=model,
        schedule=fields.schedule,
        timezone=fields.timezone,
        run_on_schedule=run_on_schedule,
        config=fields.config,
        tools=fields.tools,
        approval_required=fields.approval_required,
        temperature=fields.temperature,
        max_tokens=fields.max_tokens,
    )
    refresh_next_run(agent)
    session.add(agent)
    _announce(session, EventType.AGENT_CREATED, agent)
    return agent


def is_running(session: Session, agent_id: int) -> bool:
    """Tell whether any run of the agent is executing (its status is then ``running``)."""
    running = select(Run.id).where(Run.agent_id == agent_id, Run.status == "running").limit(1)
    return session.scalar(running) is not None


def mark_running(session: Session, agent_id: int) -> None:
    """Set the agent's status to ``running`` if it is not and one of its runs is; announce it.

    A single UPDATE whose condition PostgreSQL checks again on the newest
    row after waiting for a concurrent writer: a status that already reads
    ``running`` is left alone without taking the row's lock.
    """
    running = select(Run.id).where(Run.agent_id == agent_id, Run.status == "running").exists()
    statement = (
        update(Agent)
        .where(Agent.id == agent_id, Agent.status != "running", running)
        .values(status="running")
        .returning(Agent)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    agent = session.scalars(statement).one_or_none()
    if agent is not None:
        announce_update(session, agent)


def update_agent(session: Session, agent_id: int, changes: AgentUpdate) -> Agent:
    """Change the fields sent and leave the others as they are.

    A client may set the status to ``idle`` or ``error``, but not while one of
    the agent's runs executes: its runs decide it then. The check is made
    under the agent's lock, which a run takes to mark the agent running, so a
    run that is starting is either seen or starts after the change. Giving a
    schedule to an agent that had none turns ``run_on_schedule`` on, as
    creating an agent with a schedule does, unless the request says otherwise.
    Tools sent are checked as on creation; ``approval_required`` must stay
    within the tools, whichever of the two is sent (a Conflict when the one
    not sent is what breaks it).
    """
    agent = lock_agent(session, agent_id)
    sent = changes.changes()
    if sent.get("schedule") and not agent.schedule:
        sent.setdefault("run_on_schedule", True)
    if "status" in sent and is_running(session, agent.id):
        raise Conflict(f"Agent {agent.id} is running; its runs set its status until they end.")
    if "model" in sent:
        check_model(session, sent["model"])
    if "tools" in sent or "approval_required" in sent:
        agent_tools.check_tools(
            session,
            sent.get("tools", agent.tools),
            sent.get("approval_required", agent.approval_required),
            entries="tools" in sent,
            stored="tools" not in sent or "approval_required" not in sent,
        )
    if sent.get("run_on_schedule") and not agent.run_on_schedule:
        # Switched back on (perhaps after failures paused it): a fresh count.
        agent.consecutive_failures = 0
    for field, value in sent.items():
        setattr(agent, field, value)
    refresh_next_run(agent)
    announce_update(session, agent)
    return agent


def delete_agent(session: Session, agent_id: int) -> None:
    """Delete an agent with its threads (each announced), messages and runs."""
    agent = load_agent(session, agent_id)
    for thread in agent.threads:
        conversations.announce_deleted(session, thread)
    session.delete(agent)
    _announce(session, EventType.AGENT_DELETED, agent)


def announce_update(session: Session, agent: Agent) -> None:
    """Announce an agent's new state once the session commits (its runs change it too)."""
    _announce(session, EventType.AGENT_UPDATED, agent)


def _announce(session: Session, kind: EventType, agent: Agent) -> None:
    # Flushed first, so that the payload holds the row as it will be committed.
    session.flush()
    if kind is EventType.AGENT_DELETED:
        payload = {"id": agent.id, "name": agent.name}
    else:
        payload = serialize(AgentOut, agent)
    events.announce(session, events.agent_event(kind, payload))


def add_agent_message(session: Session, agent_id: int, fields: AgentMessageCreate) -> AgentMessage:
    """Add a message to an agent's own list."""
    load_agent(session, agent_id)
    message = AgentMessage(agent_id=agent_id, role=fields.role, content=fields.content)
    session.add(message)
    session.flush()
    return message


def get_agent_message(session: Session, agent_id: int, message_id: int) -> dict[str, Any]:
    """Read one message of an agent, or raise NotFound (also if it is another agent's)."""
    row = read_row(session, AgentMessage, message_id)
    if row["agent_id"] != agent_id:
        raise NotFound("AgentMessage", message_id)
    return row


def list_agent_messages(
    session: Session, agent_id: int, skip: int, limit: int
) -> list[dict[str, Any]]:
    """Read a page of an agent's messages, oldest first, or raise NotFound."""
    get_agent(session, agent_id)
    params = {"agent_id": agent_id, "skip": skip, "limit": limit}
    return fetch_rows(session, AGENT_MESSAGES_PAGE, params)
