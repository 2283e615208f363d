"""The honest ceiling of zerg's stack: a minimal Flask app doing the measured routes' work.

Same statements (zerg's own Core statements and tables), same engine settings
(``zerg.db.make_engine``: pragmas, the write lock, ``BEGIN IMMEDIATE``), a
session per request, the same one-pass pydantic serialisation; and nothing
else: no validation of queries, no problem documents, no hooks, no events.
``bench/http_bench.py`` serves it with gunicorn beside zerg, on the same file.
"""

from __future__ import annotations

import os
import threading

from flask import Flask
from flask import Response
from flask import abort
from flask import request
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from zerg.agents import AGENTS_PAGE
from zerg.conversations import INSERT_MESSAGE
from zerg.conversations import LOCK_THREAD
from zerg.conversations import THREAD_EXISTS
from zerg.conversations import THREAD_MESSAGES_PAGE
from zerg.conversations import TOUCH_THREAD
from zerg.db import by_id
from zerg.db import fetch_rows
from zerg.db import make_engine
from zerg.dialects import WRITE_LOCK_OPTION
from zerg.models import Agent
from zerg.models import utcnow
from zerg.schemas import AgentOut
from zerg.schemas import ThreadMessageCreate
from zerg.schemas import ThreadMessageOut
from zerg.schemas import row_adapter
from zerg.schemas import rows_adapter

engine = make_engine(os.environ["DATABASE_URL"])
reader = sessionmaker(engine)
writer = sessionmaker(engine.execution_options(**{WRITE_LOCK_OPTION: threading.Lock()}))
app = Flask(__name__)


def json(body: bytes, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="application/json")


@app.get("/api/health")
def health() -> Response:
    with reader() as session:
        session.execute(text("SELECT 1"))
    return json(b'{"status":"ok"}')


@app.get("/api/agents/<int:agent_id>")
def agent(agent_id: int) -> Response:
    with reader() as session:
        rows = fetch_rows(session, by_id(Agent), {"id": agent_id})
    return json(row_adapter(AgentOut).dump_json(rows[0])) if rows else abort(404)


@app.get("/api/agents")
def agents() -> Response:
    page = {"skip": int(request.args.get("skip", 0)), "limit": int(request.args.get("limit", 100))}
    with reader() as session:
        return json(rows_adapter(AgentOut).dump_json(fetch_rows(session, AGENTS_PAGE, page)))


@app.get("/api/threads/<int:thread_id>/messages")
def messages(thread_id: int) -> Response:
    page = {"thread_id": thread_id, "skip": 0, "limit": int(request.args.get("limit", 100))}
    with reader() as session:
        if not session.execute(THREAD_EXISTS, {"id": thread_id}).scalar():
            abort(404)
        rows = fetch_rows(session, THREAD_MESSAGES_PAGE, page)
    return json(rows_adapter(ThreadMessageOut).dump_json(rows))


@app.post("/api/threads/<int:thread_id>/messages")
def add_message(thread_id: int) -> Response:
    body = ThreadMessageCreate.model_validate_json(request.get_data())
    values = {"thread_id": thread_id, **body.model_dump(), "processed": False, "partial": False}
    with writer() as session, session.begin():
        if session.execute(LOCK_THREAD, {"thread_id": thread_id}).first() is None:
            abort(404)
        values["timestamp"] = now = utcnow()
        session.execute(TOUCH_THREAD, {"thread_id": thread_id, "now": now})
        message_id = session.execute(INSERT_MESSAGE, values).scalar_one()
    return json(row_adapter(ThreadMessageOut).dump_json({"id": message_id, **values}), 201)
