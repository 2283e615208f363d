"""What another site's page can make a browser send is refused, and writes nothing.

A form (or a ``fetch`` in ``no-cors`` mode) on any web page can POST to the
server without a preflight; so can it open a websocket. Both are refused when
they come from an origin that is not the server's own and not listed in
``CORS_ORIGINS``. Clients that send no ``Origin`` (curl, SDKs) are not
browsers on someone else's page, and keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask
from websockets.exceptions import InvalidStatus

from tests.conftest import AppFactory
from tests.conftest import LiveServer
from tests.conftest import serve
from tests.helpers import assert_problem
from tests.helpers import create_agent
from tests.wsclient import WSClient
from zerg.models import Agent
from zerg.models import AgentMessage
from zerg.models import Run
from zerg.models import Thread
from zerg.models import ThreadMessage

EVIL = "https://evil.example"
LISTED = "https://app.example"
# The test client's requests are http://localhost.
OWN = "http://localhost"
FORM = {"data": "confirm=yes", "content_type": "application/x-www-form-urlencoded"}
CROSS_SITE = [
    pytest.param({"Origin": EVIL}, id="foreign-origin"),
    pytest.param({"Origin": "null"}, id="null-origin"),
    pytest.param({"Origin": "http://localhost:8080"}, id="other-port"),
    pytest.param({"Origin": "https://localhost"}, id="other-scheme"),
    pytest.param({"Sec-Fetch-Site": "cross-site"}, id="fetch-metadata"),
    pytest.param({"Origin": OWN, "Sec-Fetch-Site": "cross-site"}, id="own-origin-but-cross-site"),
]
MODELS = (Agent, AgentMessage, Thread, ThreadMessage, Run)


@pytest.fixture
def dev_app(make_app: AppFactory) -> Flask:
    return make_app(ENVIRONMENT="development", CORS_ORIGINS=LISTED)


def counts(rows: Callable[..., int]) -> list[int]:
    return [rows(model) for model in MODELS]


def assert_refused(response: Any) -> None:
    detail = assert_problem(response, 403)["detail"]
    assert detail.startswith("Cross-site request refused") and "CORS_ORIGINS" in detail


@pytest.mark.parametrize("headers", CROSS_SITE)
@pytest.mark.parametrize("body", [FORM, {}], ids=["form", "no-body"])
def test_a_cross_site_post_cannot_reset_the_database(
    dev_app: Flask, rows: Callable[..., int], headers: dict[str, str], body: dict[str, str]
) -> None:
    client = dev_app.test_client()
    create_agent(client, name="kept")

    response = client.post("/api/admin/reset-database", headers=headers, **body)

    assert_refused(response)
    assert rows(Agent) == 1


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_a_cross_site_post_cannot_start_a_run(
    dev_app: Flask, rows: Callable[..., int], headers: dict[str, str]
) -> None:
    client = dev_app.test_client()
    agent = create_agent(client, task_instructions="Spend money.")

    for body in (FORM, {}):
        assert_refused(client.post(f"/api/agents/{agent['id']}/run", headers=headers, **body))

    assert (rows(Run), rows(Thread)) == (0, 0)


def test_every_unsafe_route_refuses_a_foreign_origin_and_writes_nothing(
    dev_app: Flask, rows: Callable[..., int]
) -> None:
    """Walk the URL map, so that a route added later is covered too."""
    client = dev_app.test_client()
    agent = create_agent(client, task_instructions="t")
    client.post("/api/threads", json={"agent_id": agent["id"]})
    client.post("/api/threads/1/messages", json={"content": "hi"})
    before = counts(rows)
    checked = 0
    for rule in dev_app.url_map.iter_rules():
        path = rule.rule.replace("<int:", "<").replace("<", "").replace(">", "")
        path = "/".join("1" if part.endswith("_id") else part for part in path.split("/"))
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}):
            response = client.open(path, method=method, headers={"Origin": EVIL}, json={})
            assert response.status_code == 403, (method, path)
            checked += 1
    assert checked >= 12
    assert counts(rows) == before


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-origin"),
        pytest.param({"Origin": OWN}, id="own-origin"),
        pytest.param({"Origin": OWN, "Sec-Fetch-Site": "same-origin"}, id="same-origin"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, id="fetch-metadata-only"),
        pytest.param({"Sec-Fetch-Site": "none"}, id="typed-by-the-user"),
        pytest.param({"Origin": LISTED, "Sec-Fetch-Site": "cross-site"}, id="listed-origin"),
        pytest.param({"Origin": "HTTP://LOCALHOST:80"}, id="own-origin-spelled-otherwise"),
    ],
)
def test_same_origin_listed_and_non_browser_clients_pass(
    dev_app: Flask, headers: dict[str, str]
) -> None:
    client = dev_app.test_client()
    response = client.post("/api/agents", json={"name": "welcome"}, headers=headers)
    assert response.status_code == 201, response.get_json()
    agent_id = response.get_json()["id"]
    assert client.patch(f"/api/agents/{agent_id}", json={}, headers=headers).status_code == 200
    assert client.delete(f"/api/agents/{agent_id}", headers=headers).status_code == 204


def test_reads_from_any_origin_are_answered(dev_app: Flask) -> None:
    """A page elsewhere may send a GET, but without CORS its script cannot read the answer."""
    response = dev_app.test_client().get("/api/agents", headers={"Origin": EVIL})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_star_lets_any_real_origin_in_but_not_null(make_app: AppFactory) -> None:
    client = make_app(CORS_ORIGINS="*").test_client()
    created = client.post("/api/agents", json={"name": "a"}, headers={"Origin": EVIL})
    assert created.status_code == 201
    assert_refused(client.post("/api/agents", json={"name": "b"}, headers={"Origin": "null"}))


def test_the_refusal_comes_before_the_token_check(make_app: AppFactory) -> None:
    """The token is the wrong question for a page on another site: it is refused for what it is."""
    client = make_app(API_TOKEN="s3cret").test_client()
    assert_refused(client.post("/api/agents", headers={"Origin": EVIL}, **FORM))


def test_a_real_browser_style_post_over_http(
    live_server: LiveServer, rows: Callable[..., int]
) -> None:
    own = live_server.url
    form = {"headers": {"Origin": EVIL}, "data": {"confirm": "yes"}, "timeout": 10}
    refused = requests.post(f"{own}/api/agents", **form)
    assert refused.status_code == 403
    assert refused.headers["Content-Type"] == "application/problem+json"
    created = requests.post(
        f"{own}/api/agents", json={"name": "mine"}, headers={"Origin": own}, timeout=10
    )
    assert created.status_code == 201
    assert rows(Agent) == 1


# --- the websocket handshake ------------------------------------------------


@pytest.fixture
def ws_server(make_app: AppFactory) -> Any:
    with serve(make_app(CORS_ORIGINS=LISTED)) as server:
        yield server


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:1"])
def test_a_handshake_from_another_site_is_refused_before_the_upgrade(
    ws_server: LiveServer, origin: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        WSClient(f"{ws_server.ws_url}/api/ws?initial_topics=agents", origin=origin)
    response = refused.value.response
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"
    assert b"CORS_ORIGINS" in response.body


def test_a_cross_site_handshake_by_fetch_metadata_is_refused(ws_server: LiveServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        WSClient(f"{ws_server.ws_url}/api/ws", additional_headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", ["own", LISTED, None])
def test_a_handshake_from_the_own_or_a_listed_origin_or_none_connects(
    ws_server: LiveServer, origin: str | None
) -> None:
    sent = ws_server.url if origin == "own" else origin
    with WSClient(f"{ws_server.ws_url}/api/ws", origin=sent) as ws:
        ws.ping()


# --- DNS rebinding: the hosts a development server answers for ----------------


def test_development_refuses_a_foreign_host(dev_app: Flask, rows: Callable[..., int]) -> None:
    """A page on attacker.example whose name now resolves to 127.0.0.1 is same-origin to itself."""
    client = dev_app.test_client()
    create_agent(client)
    rebound = {"Host": "attacker.example:5000", "Origin": "http://attacker.example:5000"}

    body = assert_problem(client.get("/api/agents", headers=rebound), 400)
    assert "TRUSTED_HOSTS" in body["detail"]
    assert_problem(client.post("/api/admin/reset-database", headers=rebound), 400)
    assert_problem(client.get("/", headers=rebound), 400)
    assert rows(Agent) == 1


@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "127.0.0.1:5000", "127.0.0.1"])
def test_development_answers_for_its_own_hosts(dev_app: Flask, host: str) -> None:
    assert dev_app.test_client().get("/api/agents", headers={"Host": host}).status_code == 200


def test_development_serves_over_real_http_and_refuses_a_rebound_name(
    make_app: AppFactory,
) -> None:
    with serve(make_app(ENVIRONMENT="development")) as server:
        assert requests.get(f"{server.url}/api/agents", timeout=10).status_code == 200
        with WSClient(f"{server.ws_url}/api/ws", origin=server.url) as ws:
            ws.ping()
        rebound = requests.get(
            f"{server.url}/api/agents", headers={"Host": "attacker.example"}, timeout=10
        )
        assert rebound.status_code == 400


@pytest.mark.parametrize(
    ("overrides", "host", "status"),
    [
        ({}, "anything.example", 200),
        ({"TRUSTED_HOSTS": "zerg.example"}, "zerg.example", 200),
        ({"TRUSTED_HOSTS": "zerg.example"}, "localhost", 400),
        ({"TRUSTED_HOSTS": ".zerg.example"}, "eu.zerg.example", 200),
        ({"ENVIRONMENT": "development", "TRUSTED_HOSTS": "box.lan"}, "box.lan", 200),
        ({"ENVIRONMENT": "development", "TRUSTED_HOSTS": "box.lan"}, "localhost", 200),
        ({"ENVIRONMENT": "development", "TRUSTED_HOSTS": "*"}, "anything.example", 200),
    ],
)
def test_trusted_hosts_adds_to_development_and_is_the_list_elsewhere(
    make_app: AppFactory, overrides: dict[str, str], host: str, status: int
) -> None:
    response = make_app(**overrides).test_client().get("/api/agents", headers={"Host": host})
    assert response.status_code == status
