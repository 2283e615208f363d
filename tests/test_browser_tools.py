"""Agent tools in a real browser: calls in the chat, approvals, the tool picker, MCP servers.

The offline model calls a tool when a message says ``/tool <entry> <JSON>``,
so these run with no network; headless Chromium as in test_browser.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from selenium.webdriver.support.ui import Select

from tests.browser import Browser
from tests.browser import api
from tests.conftest import AppFactory
from tests.conftest import LiveServer
from tests.conftest import serve
from zerg.realtime import events
from zerg.realtime.events import EventType

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser-tools")]

ASK_THE_TIME = '/tool current_time {"timezone": "UTC"}'
CARD = "#messages li.tool-call"


def _agent_and_thread(server: LiveServer, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    agent = api(server, "POST", "/agents", {"name": "Clock", "tools": ["current_time"], **fields})
    thread = api(server, "POST", "/threads", {"agent_id": agent["id"], "title": "What time"})
    return agent, thread


def _text(browser: Browser, selector: str) -> str:
    """All the text of an element, also inside a folded <details>."""
    found = browser.all(selector)
    return str(found[0].get_attribute("textContent")) if found else ""


def _only_run(server: LiveServer, thread_id: int) -> dict[str, Any]:
    [run] = api(server, "GET", f"/runs?thread_id={thread_id}")
    return dict(run)


def test_a_tool_call_is_shown_as_it_happens_and_after_a_reload(
    make_app: AppFactory, browser: Browser
) -> None:
    with serve(make_app(OFFLINE_DELAY_SECONDS=0.05)) as server:
        browser.base = server.url
        _, thread = _agent_and_thread(server)
        browser.open(f"/threads/{thread['id']}", "thread")
        browser.compose(ASK_THE_TIME)

        browser.wait_for(lambda: browser.all(CARD), "the call's card")
        browser.screenshot("tool-call-started")
        browser.wait_for(lambda: browser.all(f"{CARD}[data-status=success]"), "the call to succeed")
        browser.wait_for(
            lambda: browser.all("#messages li[data-role=assistant][data-id]"), "the answer"
        )
        browser.screenshot("tool-call-answered")
        run = _only_run(server, thread["id"])
        [call] = api(server, "GET", f"/runs/{run['id']}/tool-calls")
        assert call["status"] == "success" and call["name"] == "current_time"

        def shown() -> dict[str, str]:
            return {
                "name": _text(browser, f"{CARD} .tool-name"),
                "status": _text(browser, f"{CARD} summary .badge"),
                "arguments": _text(browser, f"{CARD} .tool-arguments"),
                "result": _text(browser, f"{CARD} .tool-result"),
                "duration": _text(browser, f"{CARD} .tool-duration"),
            }

        live = shown()
        assert live["name"] == "current_time" and live["status"] == "success"
        assert json.loads(live["arguments"]) == {"timezone": "UTC"}
        assert live["result"] == call["result"]
        assert live["duration"].strip()
        assert len(browser.all(CARD)) == 1
        # The result folds away; the summary line stays.
        browser.css(f"{CARD} summary").click()
        assert not browser.css(f"{CARD} .tool-result").is_displayed()

        browser.open(f"/threads/{thread['id']}", "thread-reloaded")
        browser.wait_for(lambda: browser.all(f"{CARD}[data-status=success]"), "the stored call")
        assert shown() == live
        assert len(browser.all(CARD)) == 1
        # No bubble for the tool's message: its result is in the card.
        assert browser.all("#messages li[data-role=tool]") == []

        # The chat links to the run's page, which shows the call with its timings.
        browser.css(f"#messages li[data-role=assistant] a[href='/runs/{run['id']}']").click()
        browser.wait_live()
        browser.wait_for(lambda: browser.all("#tool-calls li.tool-call"), "the run's calls")
        browser.screenshot("run-page")
        assert "success" in browser.text("#run-facts")
        assert _text(browser, "#tool-calls .tool-result") == call["result"]
        assert "Started" in _text(browser, "#tool-calls .tool-timing")
        roles = [li.get_attribute("data-role") for li in browser.all("#run-messages li")]
        assert roles == ["assistant", "tool", "assistant"]
        run = api(server, "GET", f"/runs/{run['id']}")
        if run["total_tokens"] is not None:
            assert str(run["total_tokens"]) in browser.text("#run-facts")


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_waiting_call_is_decided_in_the_chat(
    live_server: LiveServer, browser: Browser, decision: str
) -> None:
    browser.base = live_server.url
    _, thread = _agent_and_thread(live_server, approval_required=["current_time"])
    browser.open(f"/threads/{thread['id']}", "thread")
    browser.compose(ASK_THE_TIME)
    waiting = f"{CARD}[data-status=awaiting_approval]"
    browser.wait_for(lambda: browser.all(f"{waiting} button[data-decision]"), "the buttons")
    browser.wait_for(lambda: "approval" in browser.text("#run-state"), "the run to wait")
    browser.screenshot("tool-call-waiting")
    assert _only_run(live_server, thread["id"])["status"] == "awaiting_approval"
    # A page opened while the call waits offers the same decision.
    browser.open(f"/threads/{thread['id']}", "thread-reopened")
    browser.wait_for(lambda: browser.all(f"{waiting} button[data-decision]"), "the buttons")
    assert len(browser.all(CARD)) == 1
    assert "approval" in browser.text("#run-state")

    browser.type_into(f"{waiting} input[name=reason]", "checked by a person")
    browser.css(f"{waiting} button[data-decision={decision}]").click()
    final = "success" if decision == "approve" else "rejected"
    browser.wait_for(lambda: browser.all(f"{CARD}[data-status={final}]"), f"the call {final}")
    browser.wait_for(
        lambda: browser.all("#messages li[data-role=assistant][data-id]"), "the answer"
    )
    browser.screenshot(f"tool-call-{final}")
    assert browser.all(f"{CARD} button[data-decision]") == []
    run = _only_run(live_server, thread["id"])
    [call] = api(live_server, "GET", f"/runs/{run['id']}/tool-calls")
    assert call["status"] == final
    assert call["decision_reason"] == "checked by a person"
    assert "checked by a person" in _text(browser, f"{CARD} .tool-decision")
    browser.wait_for(lambda: "ended" in browser.text("#run-state"), "the run's end")
    assert api(live_server, "GET", f"/runs/{run['id']}")["status"] == "success"
    # A rejected call shows why once, as its error; a reload shows the same.
    assert bool(browser.all(f"{CARD} .tool-result")) == (decision == "approve")
    decided = _text(browser, f"{CARD} .tool-decision")
    browser.open(f"/threads/{thread['id']}", "thread-reloaded")
    browser.wait_for(lambda: browser.all(f"{CARD}[data-status={final}]"), "the stored call")
    assert _text(browser, f"{CARD} .tool-decision") == decided
    assert bool(browser.all(f"{CARD} .tool-result")) == (decision == "approve")


def test_the_agent_form_gives_tools_and_settings(live_server: LiveServer, browser: Browser) -> None:
    browser.base = live_server.url
    browser.open("/", "agents")
    offered = {tool["entry"] for tool in api(live_server, "GET", "/tools")}
    browser.wait_for(lambda: browser.all("#tool-groups input[name=tools]"), "the tools")
    shown = {box.get_attribute("value") for box in browser.all("#tool-groups input[name=tools]")}
    assert shown == offered and "current_time" in shown
    ask = "#tool-groups input[name=approval_required][value=current_time]"
    assert not browser.css(ask).is_enabled()

    browser.type_into("#field-name", "Timekeeper")
    browser.css("#tool-groups input[name=tools][value=current_time]").click()
    browser.css(ask).click()
    browser.type_into("#field-temperature", "3")
    browser.css("#form-submit").click()
    message = browser.wait_for(lambda: browser.text("#error-temperature"), "the server's error")
    browser.screenshot("agent-form-bad-temperature")
    assert browser.css("#field-temperature").get_attribute("aria-invalid") == "true"
    assert message and api(live_server, "GET", "/agents") == []

    browser.type_into("#field-temperature", "0.5")
    browser.type_into("#field-max_tokens", "200")
    browser.css("#form-submit").click()
    browser.wait_for(lambda: "Timekeeper" in browser.text("#agents"), "the new row")
    [agent] = api(live_server, "GET", "/agents")
    assert agent["tools"] == ["current_time"]
    assert agent["approval_required"] == ["current_time"]
    assert agent["temperature"] == 0.5 and agent["max_tokens"] == 200

    # Editing shows the choice, and a box unticked is saved as such.
    browser.css(f"#agents tr[data-agent-id='{agent['id']}'] button.secondary").click()
    assert browser.css("#tool-groups input[name=tools][value=current_time]").is_selected()
    assert browser.css(ask).is_selected()
    assert browser.css("#field-temperature").get_attribute("value") == "0.5"
    browser.css(ask).click()
    browser.css("#form-submit").click()
    browser.wait_for(
        lambda: api(live_server, "GET", f"/agents/{agent['id']}")["approval_required"] == [],
        "the change to be saved",
    )
    assert api(live_server, "GET", f"/agents/{agent['id']}")["tools"] == ["current_time"]
    browser.open(f"/agents/{agent['id']}", "agent")
    assert "current_time" in browser.text("#agent-facts")
    assert "asks before" not in browser.text("#agent-facts")


def test_an_mcp_server_is_added_with_a_secret_that_is_never_shown(
    live_server: LiveServer, browser: Browser
) -> None:
    secret = "Bearer s3cret-never-shown"
    browser.base = live_server.url
    browser.open("/", "agents")
    browser.css("header nav a[href='/mcp-servers']").click()
    browser.wait_live()
    assert browser.css("#servers-empty").is_displayed()

    browser.type_into("#field-name", "docs")
    # A stdio server runs a command here: refused unless the settings allow it.
    Select(browser.css("#field-transport")).select_by_value("stdio")
    browser.type_into("#field-command", "uvx")
    browser.css("#form-submit").click()
    refused = browser.wait_for(lambda: browser.text("#error-transport"), "the refusal")
    browser.screenshot("mcp-server-stdio-refused")
    assert "MCP_ALLOW_STDIO" in refused
    assert api(live_server, "GET", "/mcp-servers") == []
    Select(browser.css("#field-transport")).select_by_value("streamable_http")
    # Nothing listens on the discard port: listing its tools must fail, and say so.
    browser.type_into("#field-url", "http://127.0.0.1:9/mcp")
    browser.css("#headers-add").click()
    browser.type_into("#headers-rows input[name=headers]", "Authorization")
    browser.type_into("#headers-rows input[name=headers-value]", secret)
    assert browser.css("#headers-rows input[name=headers-value]").get_attribute("type") == (
        "password"
    )
    browser.css("#form-submit").click()
    browser.wait_for(lambda: "docs" in browser.text("#servers"), "the new row")
    browser.screenshot("mcp-server-added")
    [server] = api(live_server, "GET", "/mcp-servers")
    assert server["header_names"] == ["Authorization"]
    assert secret not in json.dumps(server)
    assert "Authorization" in browser.text(f"#servers tr[data-server-id='{server['id']}']")

    # Editing names the stored header but never fills in its value.
    browser.css(f"#servers tr[data-server-id='{server['id']}'] button.secondary").click()
    assert "Authorization" in browser.text("#headers-stored")
    assert browser.all("#headers-rows input") == []
    assert secret not in browser.driver.page_source
    browser.css("#field-enabled").click()
    browser.css("#form-submit").click()
    browser.wait_for(
        lambda: not api(live_server, "GET", f"/mcp-servers/{server['id']}")["enabled"],
        "the server to be disabled",
    )
    # A save that left the secret alone kept it.
    assert api(live_server, "GET", f"/mcp-servers/{server['id']}")["header_names"] == [
        "Authorization"
    ]

    browser.css(
        f"#servers tr[data-server-id='{server['id']}'] button[aria-label='Tools: docs']"
    ).click()
    browser.css("#tools-refresh").click()
    error = browser.wait_for(lambda: browser.text("#tools-error"), "the listing's error")
    browser.screenshot("mcp-server-unreachable")
    assert "could not be listed" in error
    answer = requests.get(
        f"{live_server.url}/api/mcp-servers/{server['id']}/tools",
        params={"refresh": "true"},
        timeout=30,
    )
    assert answer.status_code in (502, 504)
    assert answer.json()["detail"] in error
    assert secret not in browser.driver.page_source


def test_the_tool_pages_are_readable_at_360_pixels(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    agent, thread = _agent_and_thread(live_server, approval_required=["current_time"])
    api(
        live_server,
        "POST",
        "/mcp-servers",
        {
            "name": "docs",
            "transport": "streamable_http",
            "url": "http://127.0.0.1:9/mcp",
            "headers": {"Authorization": "x"},
        },
    )
    browser.driver.set_window_size(360, 800)
    browser.open(f"/threads/{thread['id']}", "narrow-thread")
    browser.compose(ASK_THE_TIME)
    browser.wait_for(lambda: browser.all(f"{CARD} button[data-decision]"), "the buttons")
    browser.screenshot("narrow-thread-waiting")
    browser.assert_readable("the chat with a waiting call")
    run = _only_run(live_server, thread["id"])
    browser.open(f"/runs/{run['id']}", "narrow-run")
    browser.wait_for(lambda: browser.all("#tool-calls li.tool-call"), "the run's call")
    browser.assert_readable("a run's page")
    browser.open("/mcp-servers", "narrow-mcp-servers")
    browser.css("button[aria-label='Edit: docs']").click()
    browser.css("#headers-add").click()
    browser.assert_readable("the MCP servers page")
    browser.open(f"/?edit={agent['id']}", "narrow-agent-form")
    browser.wait_for(lambda: browser.all("#tool-groups input[name=tools]"), "the tools")
    browser.assert_readable("the agent form")


def test_an_mcp_servers_tools_are_listed_offered_and_called(
    make_app: AppFactory, browser: Browser, mcp_url: str
) -> None:
    with serve(make_app(OFFLINE_DELAY_SECONDS=0.01)) as server:
        browser.base = server.url
        mcp = api(
            server,
            "POST",
            "/mcp-servers",
            {"name": "tiny", "transport": "streamable_http", "url": mcp_url},
        )
        browser.open("/mcp-servers", "mcp-servers")
        browser.css("button[aria-label='Tools: tiny']").click()
        browser.wait_for(lambda: browser.all("#tools-list li"), "the server's tools")
        browser.screenshot("mcp-server-tools")
        listed = [li.get_attribute("data-entry") for li in browser.all("#tools-list li")]
        assert "mcp:tiny/add" in listed
        assert "Not yet" not in browser.text(f"#servers tr[data-server-id='{mcp['id']}']")

        # The agent form offers them under their server, and an agent calls one.
        browser.open("/", "agents")
        browser.wait_for(lambda: browser.all("#tool-groups input[value='mcp:tiny/add']"), "it")
        assert "MCP server tiny" in browser.text("#tool-groups")
        browser.type_into("#field-name", "Adder")
        browser.css("#tool-groups input[value='mcp:tiny/add']").click()
        browser.css("#form-submit").click()
        browser.wait_for(lambda: "Adder" in browser.text("#agents"), "the new row")
        [agent] = api(server, "GET", "/agents")
        thread = api(server, "POST", "/threads", {"agent_id": agent["id"]})
        browser.open(f"/threads/{thread['id']}", "thread")
        browser.compose('/tool mcp:tiny/add {"a": 2, "b": 3}')
        browser.wait_for(lambda: browser.all(f"{CARD}[data-status=success]"), "the call")
        browser.screenshot("mcp-tool-called")
        assert _text(browser, f"{CARD} .tool-name") == "mcp:tiny/add"
        assert "5" in _text(browser, f"{CARD} .tool-result")


def test_a_call_s_arguments_stream_in_and_its_failure_is_shown(
    make_app: AppFactory, browser: Browser
) -> None:
    """The card follows the frames of a run of another process, piece by piece."""
    app = make_app()
    with serve(app) as server:
        browser.base = server.url
        _, thread = _agent_and_thread(server)
        browser.open(f"/threads/{thread['id']}", "thread")

        def frame(kind: EventType, **fields: Any) -> None:
            fields.setdefault("tool_call_id", "call_7")
            events.publish(events.stream_event(kind, thread["id"], 99, **fields), app)

        frame(
            EventType.TOOL_CALL_STARTED,
            round=1,
            position=0,
            name="http_get",
            function="http_get",
        )
        seen = []
        for piece in ['{"url": ', '"http://example.invalid/"', "}"]:
            frame(EventType.TOOL_CALL_ARGUMENTS_DELTA, arguments=piece)
            seen.append(
                browser.wait_for(
                    lambda piece=piece: (
                        (text := _text(browser, f"{CARD} .tool-arguments"))
                        .rstrip()
                        .endswith(piece.strip())
                        and text
                    ),
                    "the piece",
                )
            )
        browser.screenshot("tool-call-arguments")
        assert seen[0] == '{"url": ' and seen[1] == '{"url": "http://example.invalid/"'
        assert json.loads(seen[2]) == {"url": "http://example.invalid/"}
        assert _text(browser, f"{CARD} summary .badge") == "pending"

        frame(
            EventType.TOOL_CALL_FAILED, status="timeout", error="took too long", duration_ms=30000
        )
        browser.wait_for(lambda: browser.all(f"{CARD}[data-status=timeout]"), "the failure")
        browser.screenshot("tool-call-timeout")
        assert _text(browser, f"{CARD} .tool-error") == "took too long"
        assert _text(browser, f"{CARD} .tool-duration").strip() == "30.0 s"
        assert len(browser.all(CARD)) == 1
        assert browser.all(f"{CARD} a[href='/runs/99']")


def test_a_decision_the_server_refuses_is_said_at_the_call(
    live_server: LiveServer, browser: Browser
) -> None:
    """A call announced as waiting that the API does not know: the refusal shows in its card."""
    browser.base = live_server.url
    _, thread = _agent_and_thread(live_server)
    browser.open(f"/threads/{thread['id']}", "thread")
    waiting = events.stream_event(
        EventType.TOOL_CALL_APPROVAL_REQUIRED,
        thread["id"],
        4242,
        call_id=4242,
        tool_call_id="call_x",
        name="current_time",
        function="current_time",
        arguments='{"timezone": "UTC"}',
        approval_deadline="2030-01-01T00:00:00Z",
    )
    events.publish(waiting, live_server.app)
    browser.wait_for(lambda: browser.all(f"{CARD} button[data-decision=approve]"), "buttons")
    assert "until" in browser.text(f"{CARD} .approval-question")
    browser.css(f"{CARD} button[data-decision=approve]").click()
    refusal = browser.wait_for(lambda: browser.text(f"{CARD} .approval-form .error"), "it")
    browser.screenshot("tool-call-refused")
    problem = requests.post(
        f"{live_server.url}/api/runs/4242/tool-calls/4242/approve", json={}, timeout=10
    ).json()
    assert refusal == problem["detail"]
    # Still waiting, and the buttons work again.
    assert browser.css(f"{CARD} button[data-decision=approve]").is_enabled()
    assert browser.all(f"{CARD}[data-status=awaiting_approval]")
