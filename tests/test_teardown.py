"""After any mix of requests, every pooled connection is back in the pool."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from zerg import db


def test_a_burst_of_requests_leaves_no_connection_checked_out(
    app: Flask, client: FlaskClient
) -> None:
    agent = client.post("/api/agents", json={"name": "burst"}).get_json()
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    statuses: list[int] = []
    for index in range(20):
        statuses += [
            client.get(f"/api/agents/{agent['id']}").status_code,
            client.get("/api/agents/9999").status_code,
            client.post(
                "/api/agents", data="{not json", content_type="application/json"
            ).status_code,
            client.post("/api/agents", json={"name": ""}).status_code,
            client.post(
                f"/api/threads/{thread['id']}/messages", json={"content": f"m{index}"}
            ).status_code,
            client.put(f"/api/agents/{agent['id']}", json={"model": "nope"}).status_code,
            client.get("/api/threads?limit=-1").status_code,
            client.get("/api/health").status_code,
        ]
    assert set(statuses) == {200, 201, 400, 404, 422}
    assert db.get_database(app).engine.pool.checkedout() == 0
