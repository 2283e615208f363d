"""Ids are never reused: a row made after the newest one was deleted gets a new id."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Integer

from tests.conftest import AppFactory
from tests.helpers import create_agent
from tests.helpers import wait_for
from zerg.models import Base


def made(client: FlaskClient, url: str, **body: Any) -> dict[str, Any]:
    response = client.post(url, json=body)
    assert response.status_code in (201, 202), response.get_json()
    created: dict[str, Any] = response.get_json()
    return created


def agent_with_everything(client: FlaskClient, name: str) -> dict[str, int]:
    """An agent with an agent message, a thread, a message in it and a finished run: their ids."""
    agent = create_agent(client, name=name)
    note = made(client, f"/api/agents/{agent['id']}/messages", role="user", content="note")
    thread = made(client, "/api/threads", agent_id=agent["id"])
    message = made(client, f"/api/threads/{thread['id']}/messages", content="hello")
    run = made(client, f"/api/threads/{thread['id']}/run")
    wait_for(
        lambda: client.get(f"/api/runs/{run['id']}").get_json()["status"] == "success",
        "the run to finish",
    )
    return {
        "agent": agent["id"],
        "agent message": note["id"],
        "thread": thread["id"],
        "thread message": message["id"],
        "run": run["id"],
    }


def test_deleting_the_newest_rows_frees_no_id(make_app: AppFactory) -> None:
    """On SQLite without AUTOINCREMENT, each new row here took the deleted one's id."""
    client = make_app(OFFLINE_DELAY_SECONDS=0.001).test_client()
    agent_with_everything(client, "kept")
    doomed = agent_with_everything(client, "doomed")
    assert client.delete(f"/api/agents/{doomed['agent']}").status_code == 204

    again = agent_with_everything(client, "new")

    assert all(again[kind] > doomed[kind] for kind in doomed), (doomed, again)


def test_deleting_the_newest_thread_frees_no_id(client: FlaskClient) -> None:
    agent = create_agent(client)
    made(client, "/api/threads", agent_id=agent["id"])
    newest = made(client, "/api/threads", agent_id=agent["id"])
    message = made(client, f"/api/threads/{newest['id']}/messages", content="gone soon")
    assert client.delete(f"/api/threads/{newest['id']}").status_code == 204

    thread = made(client, "/api/threads", agent_id=agent["id"])
    reply = made(client, f"/api/threads/{thread['id']}/messages", content="new")

    assert thread["id"] > newest["id"] and reply["id"] > message["id"]


def test_every_table_with_an_integer_id_is_autoincrement_on_sqlite() -> None:
    """``flask db check`` does not compare table options: this notices a table without it."""
    integer_ids = [
        table
        for table in Base.metadata.sorted_tables
        if [type(column.type) for column in table.primary_key.columns] == [Integer]
    ]
    assert len(integer_ids) == 8
    for table in integer_ids:
        assert table.dialect_options["sqlite"]["autoincrement"], table.name
