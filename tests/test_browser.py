"""The web UI in a real browser: headless Chromium against a live server.

Each test drives the pages as a person would (forms, buttons, the keyboard)
and checks what they show against what the API says. Every page a test visits
is saved as a screenshot in tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import requests
from flask import Flask
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select
from sqlalchemy import select
from sqlalchemy import text

from tests.browser import Browser
from tests.browser import api
from tests.conftest import AppFactory
from tests.conftest import LiveServer
from tests.conftest import serve
from tests.helpers import orphan_run
from tests.helpers import reap_dead_owners
from tests.helpers import wait_for
from tests.wsclient import WSClient
from zerg import db
from zerg.models import Agent
from zerg.models import IdempotencyKey
from zerg.models import Run
from zerg.models import WsTicket
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.realtime.hub import get_hub
from zerg.runs import lifecycle

TOKEN = "browser-test-token"

# One Chromium per module (tests/conftest.py): under pytest-xdist (--dist loadgroup) all
# of its tests go to one worker. `.ci/run` runs them on one database only.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_create_an_agent_through_the_form(live_server: LiveServer, browser: Browser) -> None:
    browser.base = live_server.url
    browser.open("/", "agents-empty")
    assert browser.css("#agents-empty").is_displayed()

    browser.type_into("#field-name", "Morning digest")
    browser.type_into("#field-task_instructions", "Summarise the news.")
    browser.type_into("#field-schedule", "0 8 * * 1-5")
    words = "At 08:00, Monday through Friday (UTC)"
    browser.wait_for(lambda: browser.text("#schedule-words") == words, "the server's words")
    browser.css("#form-submit").click()

    browser.wait_for(lambda: "Morning digest" in browser.text("#agents"), "the new agent's row")
    browser.screenshot("agents-created")
    [agent] = api(live_server, "GET", "/agents")
    assert agent["name"] == "Morning digest"
    assert agent["schedule"] == "0 8 * * 1-5" and agent["run_on_schedule"] is True
    row = browser.text(f"#agents tr[data-agent-id='{agent['id']}']")
    assert "At 08:00, Monday through Friday (UTC)" in row
    assert "Next run:" in row
    assert browser.css("#field-name").get_attribute("value") == ""


def test_a_bad_cron_shows_the_servers_message_at_the_schedule_field(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    browser.open("/", "agents")
    browser.type_into("#field-name", "Broken")
    browser.type_into("#field-schedule", "every morning")
    browser.css("#form-submit").click()

    message = browser.wait_for(lambda: browser.text("#error-schedule"), "the schedule's error")
    browser.screenshot("agents-bad-cron")
    assert "invalid cron expression" in message
    schedule = browser.css("#field-schedule")
    assert schedule.get_attribute("aria-invalid") == "true"
    assert "error-schedule" in (schedule.get_attribute("aria-describedby") or "")
    # The browser moved focus to the field at fault; the name had no error.
    assert browser.js("return document.activeElement.id") == "field-schedule"
    assert browser.text("#error-name") == ""
    assert api(live_server, "GET", "/agents") == []


def test_a_schedule_shows_its_zone_words_and_next_runs(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    browser.open("/", "agents")
    browser.type_into("#field-name", "Standup")
    browser.type_into("#field-task_instructions", "Plan the day.")
    browser.type_into("#field-schedule", "0 9 * * 1-5")
    browser.css("#field-timezone").clear()
    browser.type_into("#field-timezone", "America/New_York")
    words = "At 09:00, Monday through Friday (America/New_York)"
    browser.wait_for(lambda: browser.text("#schedule-words") == words, "the server's words")
    browser.wait_for(lambda: browser.all("#schedule-next time"), "the server's next runs")
    shown = [t.get_attribute("datetime") for t in browser.all("#schedule-next time")]
    preview = requests.get(
        f"{live_server.url}/api/schedules/preview",
        params={"cron": "0 9 * * 1-5", "timezone": "America/New_York", "count": 3},
        timeout=10,
    ).json()
    assert [value.replace(".000Z", "Z") for value in shown] == preview["next_runs"]
    browser.screenshot("agents-schedule-preview")

    browser.css("#form-submit").click()
    browser.wait_for(lambda: "Standup" in browser.text("#agents"), "the new agent's row")
    [agent] = api(live_server, "GET", "/agents")
    assert agent["timezone"] == "America/New_York"
    row = browser.text(f"#agents tr[data-agent-id='{agent['id']}']")
    assert words in row


def test_an_unknown_zone_shows_the_servers_message_at_its_field(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    browser.open("/", "agents")
    browser.type_into("#field-name", "Lost")
    browser.type_into("#field-schedule", "0 9 * * *")
    browser.css("#field-timezone").clear()
    browser.type_into("#field-timezone", "Mars/Olympus_Mons")
    browser.css("#form-submit").click()
    message = browser.wait_for(lambda: browser.text("#error-timezone"), "the zone's error")
    assert "unknown time zone" in message
    assert browser.text("#schedule-next") == ""
    assert api(live_server, "GET", "/agents") == []


def test_a_schedule_paused_by_failures_says_so_with_its_reason(
    live_server: LiveServer, browser: Browser
) -> None:
    agent = api(
        live_server,
        "POST",
        "/agents",
        {"name": "Flaky", "task_instructions": "Try.", "schedule": "*/5 * * * *"},
    )
    reason = "schedule paused after 3 scheduled runs failed in a row; the last: down"
    with db.session_scope(live_server.app) as session:
        row = session.get(Agent, agent["id"])
        assert row is not None
        row.run_on_schedule, row.consecutive_failures, row.last_error = False, 3, reason
        row.status, row.next_run_at = "error", None
    browser.base = live_server.url
    browser.open("/", "agents")
    cells = f"#agents tr[data-agent-id='{agent['id']}']"
    browser.wait_for(lambda: "Paused after 3 failed runs in a row" in browser.text(cells), "it")
    assert reason in browser.text(f"{cells} td[data-label='Last error']")
    assert not browser.css(f"#toggle-{agent['id']}").is_selected()
    browser.screenshot("agents-paused")


def _thread(server: LiveServer) -> tuple[dict[str, Any], dict[str, Any]]:
    agent = api(server, "POST", "/agents", {"name": "Echo", "task_instructions": "Report."})
    thread = api(server, "POST", "/threads", {"agent_id": agent["id"], "title": "First chat"})
    return agent, thread


def _start_a_long_reply(browser: Browser, server: LiveServer) -> dict[str, Any]:
    """Open a new thread's page, send a message, and wait for the reply's first pieces."""
    browser.base = server.url
    _, thread = _thread(server)
    browser.open(f"/threads/{thread['id']}", "thread")
    browser.compose("Please write something long")
    browser.wait_for(
        lambda: browser.text("#messages li[data-streaming] .content"), "the first pieces"
    )
    return thread


def _reply_pieces(browser: Browser) -> list[str]:
    """Watch the streamed reply until it is stored; return every text it showed."""
    seen: list[str] = []

    def stored() -> bool:
        text = browser.text("#messages li[data-role=assistant] .content")
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        return bool(browser.all("#messages li[data-role=assistant][data-id]"))

    browser.wait_for(stored, "the reply to be stored", timeout=20)
    seen.append(browser.text("#messages li[data-role=assistant] .content"))
    return seen


def _stored_messages(server: LiveServer, thread_id: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = api(server, "GET", f"/threads/{thread_id}/messages")
    return messages


def test_a_reply_streams_in_pieces_and_ends_as_stored(
    make_app: AppFactory, browser: Browser
) -> None:
    with serve(make_app(OFFLINE_DELAY_SECONDS=0.1)) as server:
        browser.base = server.url
        agent, thread = _thread(server)
        browser.open(f"/agents/{agent['id']}", "agent")
        browser.css(f"#threads a[href='/threads/{thread['id']}']").click()
        browser.wait_live()
        assert browser.text("#thread-title") == "First chat"
        browser.screenshot("thread-empty")

        browser.compose("Hello there, agent")
        browser.wait_for(lambda: browser.all("#messages li[data-role=user]"), "my message")
        pieces = _reply_pieces(browser)
        browser.screenshot("thread-replied")

        user, reply = _stored_messages(server, thread["id"])
        assert browser.text("#messages li[data-role=user] .content") == user["content"]
        assert user["content"] == "Hello there, agent"
        # Several growing prefixes of the reply were shown before it was whole.
        assert len(set(pieces)) >= 3, pieces
        assert all(reply["content"].startswith(piece) for piece in pieces)
        assert pieces[-1] == reply["content"] and not reply["partial"]
        assert len(browser.all("#messages li")) == 2
        assert not browser.css("#cancel-run").is_displayed()


def test_offline_a_message_is_sent_and_answered_in_one_rest_request(
    make_app: AppFactory, browser: Browser
) -> None:
    """With no websocket place free, the composer falls back to one idempotent POST."""
    app = make_app(OFFLINE_DELAY_SECONDS=0.01, WS_MAX_CONNECTIONS=1)
    with serve(app) as server, WSClient(f"{server.ws_url}/api/ws") as holder:
        browser.base = server.url
        _, thread = _thread(server)
        browser.driver.get(f"{server.url}/threads/{thread['id']}")
        browser.wait_for(
            lambda: browser.css("#live-status").get_attribute("data-state") == "offline",
            "the page to find no websocket place",
        )
        browser.compose("Sent without a socket")
        browser.wait_for(lambda: browser.all("#messages li[data-role=user]"), "my message")
        browser.screenshot("thread-sent-offline")

        def answered() -> bool:
            return [m["role"] for m in _stored_messages(server, thread["id"])] == [
                "user",
                "assistant",
            ]

        wait_for(answered, "the reply to be stored")
        [run] = api(server, "GET", f"/runs?thread_id={thread['id']}")
        assert (run["status"], run["trigger"]) == ("success", "api")
        with db.session_scope(app, write=False) as session:
            keys = session.scalars(select(IdempotencyKey.path)).all()
        assert keys == [f"/api/threads/{thread['id']}/messages"]
        holder.close()
        # Live again, the page shows the reply it could not watch.
        browser.wait_live()
        browser.wait_for(
            lambda: browser.all("#messages li[data-role=assistant][data-id]"), "the stored reply"
        )
        refused = browser.console_errors()
        assert all("WebSocket" in error and "503" in error for error in refused), refused


def test_cancelling_a_run_keeps_the_reply_marked_partial(
    make_app: AppFactory, browser: Browser
) -> None:
    with serve(make_app(OFFLINE_DELAY_SECONDS=0.3)) as server:
        thread = _start_a_long_reply(browser, server)
        cancel = browser.wait_for(
            lambda: browser.css("#cancel-run").is_displayed() and browser.css("#cancel-run"),
            "the cancel button",
        )
        browser.screenshot("thread-streaming")
        cancel.click()

        label = browser.wait_for(
            lambda: browser.text("#messages li[data-role=assistant] .partial-label"),
            "the partial marker",
        )
        browser.screenshot("thread-cancelled")
        assert "cancelled" in label
        _, reply = _stored_messages(server, thread["id"])
        assert reply["partial"] is True
        shown = browser.text("#messages li[data-role=assistant] .content")
        # Shown as Markdown, which drops the trailing space of the last piece.
        assert shown == reply["content"].strip()
        [run] = api(server, "GET", f"/runs?thread_id={thread['id']}")
        assert run["status"] == "cancelled"
        browser.wait_for(lambda: not browser.css("#cancel-run").is_displayed(), "cancel to hide")

        # A fresh load shows the stored reply as partial too.
        browser.open(f"/threads/{thread['id']}", "thread-reloaded")
        assert "Partial reply" in browser.text("#messages li[data-role=assistant] .partial-label")


def test_a_message_sent_with_rollback_replaces_the_reply_being_written(
    make_app: AppFactory, browser: Browser
) -> None:
    with serve(make_app(OFFLINE_DELAY_SECONDS=0.3)) as server:
        thread = _start_a_long_reply(browser, server)
        Select(browser.css("#strategy")).select_by_value("rollback")
        browser.compose("Actually, say this instead")

        def replaced() -> bool:
            replies = browser.all("#messages li[data-role=assistant]")
            return len(replies) == 1 and replies[0].get_attribute("data-id") is not None

        browser.wait_for(replaced, "one stored reply")
        browser.screenshot("thread-rolled-back")
        stored = _stored_messages(server, thread["id"])
        assert [m["role"] for m in stored] == ["user", "user", "assistant"]
        reply = browser.css("#messages li[data-role=assistant]")
        assert reply.get_attribute("data-partial") is None
        assert "say this instead" in reply.find_element(By.CSS_SELECTOR, ".content").text
        runs = api(server, "GET", f"/runs?thread_id={thread['id']}")
        assert [(r["status"], r["stop_requested"]) for r in reversed(runs)] == [
            ("cancelled", "rollback"),
            ("success", None),
        ]


def _reply_of_another_process(app: Flask, server: LiveServer, browser: Browser) -> int:
    """Open a thread whose reply a worker of some other process is streaming; return its run."""
    browser.base = server.url
    _, thread = _thread(server)
    api(server, "POST", f"/threads/{thread['id']}/messages", {"content": "Hello"})
    browser.open(f"/threads/{thread['id']}", "thread")
    run_id = orphan_run(app, thread)
    with db.session_scope(app) as session:
        assert lifecycle.begin_run(session, run_id) is not None
    # What that worker's first piece looks like when it reaches this process.
    piece = events.stream_event(EventType.STREAM_CHUNK, thread["id"], run_id, content="Half an")
    events.publish(piece, app)
    browser.wait_for(
        lambda: browser.text("#messages li[data-streaming] .content"), "the first piece"
    )
    return run_id


def _assert_bubble_ended(browser: Browser, run_id: int) -> None:
    label = browser.wait_for(
        lambda: browser.text("#messages li[data-role=assistant] .partial-label"),
        "the reply to stop saying it is being written",
    )
    assert "interrupted" in label
    assert browser.all("#messages li[data-streaming]") == []
    assert "replying" not in browser.text("#messages")
    browser.wait_for(
        lambda: browser.text("#run-state") == f"Run {run_id} ended: interrupted.", "the run's end"
    )


def test_a_reply_whose_process_died_ends_when_it_is_reaped(
    make_app: AppFactory, browser: Browser
) -> None:
    app = make_app()
    with serve(app) as server:
        run_id = _reply_of_another_process(app, server, browser)
        assert reap_dead_owners(app) == 1

        _assert_bubble_ended(browser, run_id)
        browser.screenshot("thread-reaped")


def test_a_run_s_final_state_ends_its_reply_if_the_stream_end_was_lost(
    make_app: AppFactory, browser: Browser
) -> None:
    app = make_app()
    with serve(app) as server:
        run_id = _reply_of_another_process(app, server, browser)
        # The run ended, but of its announcements only its new state arrives.
        with db.session_scope(app) as session:
            session.execute(
                text("UPDATE runs SET status = 'interrupted' WHERE id = :id"), {"id": run_id}
            )
        run = api(server, "GET", f"/runs/{run_id}")
        events.publish(events.run_updated(run), app)

        _assert_bubble_ended(browser, run_id)


def test_after_a_dropped_connection_nothing_is_missing_or_doubled(
    make_app: AppFactory, browser: Browser
) -> None:
    app = make_app(OFFLINE_DELAY_SECONDS=0.2)
    with serve(app) as server:
        browser.base = server.url
        _, thread = _thread(server)
        browser.open(f"/threads/{thread['id']}", "thread")
        browser.compose("Keep talking while I reconnect")
        browser.wait_for(
            lambda: browser.text("#messages li[data-streaming] .content"), "the first pieces"
        )
        # The server drops every websocket (as a restarting worker does).
        assert get_hub(app).close_all(1012, "restarting") == 1
        browser.wait_for(
            lambda: browser.css("#live-status").get_attribute("data-state") != "live",
            "the page to notice the drop",
        )
        browser.screenshot("thread-dropped")
        browser.wait_live()
        browser.wait_for(
            lambda: browser.all("#messages li[data-role=assistant][data-id]"), "the stored reply"
        )
        browser.screenshot("thread-resumed")

        stored = _stored_messages(server, thread["id"])
        shown = [
            (item.get_attribute("data-role"), item.find_element("css selector", ".content").text)
            for item in browser.all("#messages li")
        ]
        assert shown == [(message["role"], message["content"]) for message in stored]


def test_the_dashboard_follows_changes_made_through_the_api(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    first = api(live_server, "POST", "/agents", {"name": "Scout", "task_instructions": "Look."})
    browser.open("/", "agents")
    browser.js("window.notReloaded = true")
    assert "Scout" in browser.text(f"#agents tr[data-agent-id='{first['id']}']")

    changes = {"name": "Ranger", "schedule": "30 6 * * *"}
    api(live_server, "PATCH", f"/agents/{first['id']}", changes)
    row = f"#agents tr[data-agent-id='{first['id']}']"
    browser.wait_for(lambda: "Ranger" in browser.text(row), "the new name")
    browser.wait_for(lambda: "At 06:30 (UTC)" in browser.text(row), "the schedule's words")

    second = api(live_server, "POST", "/agents", {"name": "Newcomer"})
    browser.wait_for(lambda: "Newcomer" in browser.text("#agents"), "the new agent")
    api(live_server, "POST", f"/agents/{first['id']}/run")
    browser.wait_for(lambda: "success" in browser.text(f"{row} td[data-label='Last run']"), "run")
    api(live_server, "DELETE", f"/agents/{second['id']}")
    browser.wait_for(lambda: "Newcomer" not in browser.text("#agents"), "the deletion")
    browser.screenshot("agents-updated-live")
    assert browser.js("return window.notReloaded") is True


def test_the_agents_page_runs_toggles_and_deletes(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    agent = api(
        live_server,
        "POST",
        "/agents",
        {"name": "Worker", "task_instructions": "Work.", "schedule": "0 * * * *"},
    )
    browser.open("/", "agents")
    row = f"#agents tr[data-agent-id='{agent['id']}']"

    browser.css(f"#toggle-{agent['id']}").click()
    browser.wait_for(lambda: "Schedule off" in browser.text(row), "the schedule to turn off")
    assert api(live_server, "GET", f"/agents/{agent['id']}")["run_on_schedule"] is False

    browser.css(f"{row} button[aria-label='Run now: Worker']").click()
    browser.wait_for(lambda: "success" in browser.text(f"{row} td[data-label='Last run']"), "run")
    assert [run["trigger"] for run in api(live_server, "GET", "/runs")] == ["manual"]

    browser.css(f"{row} button[aria-label='Edit: Worker']").click()
    assert browser.text("#form-title") == "Edit Worker"
    browser.type_into("#field-name", "Night worker")
    browser.css("#form-submit").click()
    browser.wait_for(lambda: "Night worker" in browser.text(row), "the renamed row")
    browser.screenshot("agents-edited")

    browser.css(f"{row} button[aria-label='Delete: Night worker']").click()
    browser.driver.switch_to.alert.accept()
    browser.wait_for(lambda: not browser.all(row), "the row to go")
    assert api(live_server, "GET", "/agents") == []


def test_the_agent_page_starts_threads_and_filters_runs(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    agent, thread = _thread(live_server)
    api(live_server, "POST", f"/agents/{agent['id']}/messages", {"content": "Be brief."})
    api(live_server, "POST", f"/threads/{thread['id']}/messages", {"content": "Hi"})
    api(live_server, "POST", f"/threads/{thread['id']}/run")
    browser.open(f"/agents/{agent['id']}", "agent")
    assert browser.text("#agent-name") == "Echo"
    assert "Be brief." in browser.text("#agent-messages")

    # "Run now" adds a manual run (and its thread) live, next to the api one.
    browser.css("#run-now").click()
    browser.wait_for(lambda: len(browser.all("#runs tr")) == 2, "two runs")
    browser.wait_for(lambda: browser.text("#runs").count("success") == 2, "both to succeed")
    browser.wait_for(lambda: len(browser.all("#threads li")) == 2, "the task thread")
    browser.screenshot("agent-two-runs")
    select = browser.css("#filter-trigger")
    select.send_keys("manual")
    browser.wait_for(lambda: len(browser.all("#runs tr")) == 1, "the trigger filter")
    assert "manual" in browser.text("#runs tr")
    browser.css("#filter-status").send_keys("failed")
    browser.wait_for(lambda: browser.css("#runs-empty").is_displayed(), "no failed runs")

    browser.type_into("#thread-title", "Planning")
    browser.css("#thread-title").send_keys(Keys.ENTER)
    browser.wait_for(lambda: browser.text("#thread-title") == "Planning", "the new thread")
    browser.wait_live()
    browser.screenshot("thread-new")
    titles = [t["title"] for t in api(live_server, "GET", f"/threads?agent_id={agent['id']}")]
    assert "Planning" in titles

    # "Edit" on the agent's page opens the dashboard's form on that agent.
    browser.open(f"/agents/{agent['id']}", "agent-again")
    browser.css("#edit-agent").click()
    browser.wait_live()
    browser.wait_for(lambda: browser.text("#form-title") == "Edit Echo", "the edit form")
    assert browser.css("#field-task_instructions").get_attribute("value") == "Report."


def test_the_runs_page_shows_statuses_live(make_app: AppFactory, browser: Browser) -> None:
    with serve(make_app(OFFLINE_DELAY_SECONDS=0.1)) as server:
        browser.base = server.url
        agent, thread = _thread(server)
        browser.open("/runs", "runs-empty")
        api(server, "POST", f"/threads/{thread['id']}/messages", {"content": "Go"})
        run = api(server, "POST", f"/threads/{thread['id']}/run")
        row = f"#runs tr[data-run-id='{run['id']}']"
        browser.wait_for(lambda: "running" in browser.text(row), "the run to show running")
        browser.screenshot("runs-running")
        browser.wait_for(lambda: "success" in browser.text(row), "the run to succeed")
        assert "Echo" in browser.text(row)

        # A run of an agent created after the page loaded shows up too.
        other = api(server, "POST", "/agents", {"name": "Late", "task_instructions": "Hurry."})
        api(server, "POST", f"/agents/{other['id']}/run")
        browser.wait_for(lambda: "Late" in browser.text("#runs"), "the new agent's run")
        browser.css("#filter-agent").send_keys("Echo")
        # The list is emptied and refilled when a filter changes: "Late" is
        # gone from the empty list before Echo's run is back, so wait for that.
        browser.wait_for(
            lambda: "Late" not in browser.text("#runs") and browser.all(row), "the agent filter"
        )
        browser.screenshot("runs-filtered")
        assert len(browser.all("#runs tr")) == 1
        assert agent["id"] == run["agent_id"]


def test_with_a_token_the_ui_asks_for_it_and_gets_in(
    make_app: AppFactory, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    """The token goes in a header, never in a URL: the websocket connects with a ticket."""
    caplog.set_level(logging.INFO, logger="werkzeug")
    app = make_app(API_TOKEN=TOKEN)
    with serve(app) as server:
        browser.base = server.url
        api(server, "POST", "/agents", {"name": "Secret agent"}, token=TOKEN)
        browser.driver.get(server.url + "/")
        browser.wait_for(lambda: browser.css("#token-dialog").is_displayed(), "the token prompt")
        browser.screenshot("token-prompt")
        assert browser.js("return document.activeElement.id") == "token-input"
        browser.css("#token-input").send_keys("wrong" + Keys.ENTER)
        browser.wait_for(
            lambda: "refused" in browser.text("#token-message"), "the refusal to be explained"
        )
        browser.screenshot("token-refused")
        browser.css("#token-input").send_keys(TOKEN + Keys.ENTER)
        browser.wait_live()
        browser.wait_for(lambda: "Secret agent" in browser.text("#agents"), "the agents")
        browser.screenshot("token-accepted")
        assert not browser.css("#token-dialog").is_displayed()
        assert browser.js("return sessionStorage.getItem('zerg.token')") == TOKEN
        assert browser.js("return localStorage.length") == 0

        # Other pages use the kept token without asking again.
        browser.open("/runs", "runs-with-token")
        assert not browser.css("#token-dialog").is_displayed()
        browser.wait_live()

        # Every request line the server wrote (a websocket's once it closes): the
        # handshakes carried tickets, each used up, and the token was in none.
        def lines() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "werkzeug"]

        def handshakes() -> list[str]:
            return [line for line in lines() if "GET /api/ws?" in line]

        browser.driver.get("about:blank")
        wait_for(lambda: len(handshakes()) >= 2, "both pages' websockets to close")
    assert all("ticket=" in line for line in handshakes()), handshakes()
    assert not any(TOKEN in line for line in lines())
    assert [line for line in lines() if "POST /api/ws/tickets" in line]
    with db.session_scope(app, write=False) as session:
        assert session.query(WsTicket).count() == 0


def test_every_page_is_readable_at_360_pixels(live_server: LiveServer, browser: Browser) -> None:
    browser.base = live_server.url
    agent = api(
        live_server,
        "POST",
        "/agents",
        {"name": "A rather long agent name for a small screen", "schedule": "*/15 9-17 * * 1-5"},
    )
    thread = api(live_server, "POST", "/threads", {"agent_id": agent["id"]})
    api(live_server, "POST", f"/threads/{thread['id']}/messages", {"content": "word " * 80})
    api(live_server, "POST", f"/threads/{thread['id']}/run")
    browser.driver.set_window_size(360, 800)
    for path in ("/", f"/agents/{agent['id']}", f"/threads/{thread['id']}", "/runs"):
        browser.open(path, f"narrow-{path}")
        if path.startswith("/threads"):
            browser.wait_for(lambda: browser.all("#messages li[data-role=assistant]"), "reply")
            browser.screenshot("narrow-thread-replied")
        browser.assert_readable(path)


def test_an_agent_can_be_made_and_run_with_the_keyboard_alone(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    browser.open("/", "agents")
    focused = "return document.activeElement.id || document.activeElement.textContent"

    def keys(text: str) -> None:
        """Type into whatever has the focus, as a person at a keyboard does."""
        ActionChains(browser.driver).send_keys(text).perform()

    def tab_to(target: str) -> None:
        for _ in range(60):
            if browser.js(focused) == target:
                return
            keys(Keys.TAB)
        raise AssertionError(f"Tab never reached {target}")

    tab_to("field-name")
    keys("Typist")
    tab_to("field-task_instructions")
    keys("Type.")
    tab_to("field-schedule")
    keys("15 14 1 * *" + Keys.ENTER)
    browser.wait_for(lambda: "Typist" in browser.text("#agents"), "the new row")
    browser.wait_for(
        lambda: "At 14:15, on day 1 of the month (UTC)" in browser.text("#agents tr"), "words"
    )

    tab_to("Run now")
    keys(Keys.ENTER)
    browser.wait_for(lambda: "success" in browser.text("#agents td[data-label='Last run']"), "run")
    browser.screenshot("agents-keyboard")
    # The focused control is drawn with a visible outline.
    outline = browser.js("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_times_are_shown_in_the_browsers_time_zone(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    agent = api(live_server, "POST", "/agents", {"name": "Clock", "schedule": "0 12 * * *"})
    browser.driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Kolkata"})
    try:
        browser.open(f"/agents/{agent['id']}", "agent-kolkata")
        shown = browser.css("#agent-facts time")
        # Noon UTC is 17:30 in India (UTC+05:30, no daylight saving).
        assert shown.get_attribute("datetime").endswith("T12:00:00.000Z")
        assert re.search(r"\b(5|17):30\b", shown.text), shown.text
    finally:
        browser.driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})


def test_a_second_browser_tab_watches_the_same_chat_live(
    make_app: AppFactory, browser: Browser
) -> None:
    with serve(make_app(OFFLINE_DELAY_SECONDS=0.1)) as server:
        browser.base = server.url
        _, thread = _thread(server)
        path = f"/threads/{thread['id']}"
        browser.open(path, "thread-tab-one")
        first = browser.driver.current_window_handle
        browser.driver.switch_to.new_window("tab")
        second = browser.driver.current_window_handle
        try:
            browser.open(path, "thread-tab-two")
            browser.driver.switch_to.window(first)
            browser.compose("Seen from two tabs")
            browser.driver.switch_to.window(second)
            browser.wait_for(
                lambda: browser.all("#messages li[data-role=assistant][data-id]"),
                "the other tab's reply",
            )
            browser.screenshot("thread-tab-two-replied")
            stored = _stored_messages(server, thread["id"])
            shown = [item.text for item in browser.all("#messages li .content")]
            assert shown == [message["content"] for message in stored]
        finally:
            browser.driver.close()
            browser.driver.switch_to.window(first)


def test_the_schedule_preview_shows_the_servers_error_or_words_never_both(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    browser.open("/", "agents")
    browser.type_into("#field-schedule", "0 9 * * *")
    browser.wait_for(lambda: browser.text("#schedule-words"), "the words of a good schedule")

    # An out-of-range minute: the server's message at the field, as it is typed.
    schedule = browser.css("#field-schedule")
    schedule.clear()
    browser.type_into("#field-schedule", "61 * * * *")
    message = browser.wait_for(lambda: browser.text("#error-schedule"), "the schedule's error")
    browser.screenshot("preview-bad-minute")
    assert "minute field '61' is not valid: it takes 0-59" in message
    assert schedule.get_attribute("aria-invalid") == "true"
    assert browser.text("#schedule-words") == ""
    assert browser.text("#schedule-next") == ""

    # A schedule that is valid field by field but never fires.
    schedule.clear()
    browser.type_into("#field-schedule", "0 0 31 2 *")
    browser.wait_for(lambda: "never fires" in browser.text("#error-schedule"), "never fires")
    assert browser.text("#schedule-words") == ""

    # Fixed: the error goes, the words and next runs come.
    schedule.clear()
    browser.type_into("#field-schedule", "0 0 28 2 *")
    browser.wait_for(lambda: browser.all("#schedule-next time"), "the next runs")
    words = "At 00:00, on day 28 of the month, only in February (UTC)"
    assert browser.text("#schedule-words") == words
    assert browser.text("#error-schedule") == ""
    assert schedule.get_attribute("aria-invalid") is None

    # A bad zone is named at its own field, and the words go.
    browser.css("#field-timezone").clear()
    browser.type_into("#field-timezone", "Mars/Olympus_Mons")
    browser.wait_for(lambda: browser.text("#error-timezone"), "the zone's error")
    assert browser.text("#schedule-words") == ""
    assert browser.text("#error-schedule") == ""
    browser.screenshot("preview-bad-zone")
    assert api(live_server, "GET", "/agents") == []


def test_the_dashboard_labels_zones_blanks_models_and_shows_a_new_row(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    for number in range(12):
        api(live_server, "POST", "/agents", {"name": f"Filler {number}", "schedule": "0 8 * * *"})
    bare = api(live_server, "POST", "/agents", {"name": "Unscheduled"})
    browser.open("/", "agents-many")
    row = f"#agents tr[data-agent-id='{bare['id']}']"
    browser.wait_for(lambda: browser.all(row), "the unscheduled agent's row")
    # No schedule: a blank like the other blank cells, and no switch for it.
    assert browser.text(f"{row} td[data-label='Schedule']") == "—"
    assert browser.all(f"#toggle-{bare['id']}") == []
    # Times name their zone (the browser's: UTC here).
    next_run = browser.text("#agents td[data-label='Schedule'] time")
    assert re.search(r"\b(UTC|GMT)\b", next_run), next_run
    # The model is named once, as GET /api/models names it.
    labels = [option.text for option in Select(browser.css("#field-model")).options]
    assert "Offline model (no network)" in labels
    assert not [label for label in labels if "(offline)" in label], labels

    # The focus ring is not the colour that marks a field in error.
    browser.css("#field-name").click()
    focus = browser.js("return getComputedStyle(document.activeElement).outlineColor")
    browser.js("document.getElementById('field-name').setAttribute('aria-invalid', 'true')")
    error = browser.js("return getComputedStyle(document.activeElement).borderTopColor")
    browser.js("document.getElementById('field-name').removeAttribute('aria-invalid')")
    assert focus != error, focus

    browser.type_into("#field-name", "Newest")
    browser.css("#form-submit").click()
    created = browser.wait_for(
        lambda: [a for a in api(live_server, "GET", "/agents") if a["name"] == "Newest"], "it"
    )[0]
    new_row = f"#agents tr[data-agent-id='{created['id']}']"
    browser.wait_for(lambda: browser.all(new_row), "the new row")
    # The form sits below the table: the new row was brought into view.
    in_view = (
        "const box = document.querySelector(arguments[0]).getBoundingClientRect();"
        "return box.top >= 0 && box.bottom <= window.innerHeight;"
    )
    assert browser.js(in_view, new_row)
    browser.screenshot("agents-new-row-in-view")


def test_the_agents_list_is_searched_and_paged_by_the_server(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    for number in range(26):
        api(live_server, "POST", "/agents", {"name": f"Worker {number:02d}"})
    api(live_server, "POST", "/agents", {"name": "Morning DIGEST"})
    browser.open("/", "agents-paged")
    names = "return [...document.querySelectorAll('#agents th a')].map((a) => a.textContent)"
    browser.wait_for(lambda: len(browser.js(names)) == 25, "a page of 25 agents")
    assert browser.js(names)[0] == "Worker 00"
    assert browser.text("#agents-pages [data-page=label]") == "Page 1"
    assert not browser.css("#agents-pages [data-page=previous]").is_enabled()

    browser.css("#agents-pages [data-page=next]").click()
    browser.wait_for(lambda: browser.js(names) == ["Worker 25", "Morning DIGEST"], "page 2")
    assert not browser.css("#agents-pages [data-page=next]").is_enabled()
    browser.screenshot("agents-page-2")

    browser.type_into("#search-q", "digest")
    browser.wait_for(lambda: browser.js(names) == ["Morning DIGEST"], "the search's match")
    assert not browser.css("#agents-pages").is_displayed()
    browser.screenshot("agents-search")
    browser.type_into("#search-q", "nobody")
    browser.wait_for(lambda: browser.css("#agents-none-match").is_displayed(), "no match")
    assert not browser.css("#agents-empty").is_displayed()


def test_the_runs_list_is_searched_and_paged_by_the_server(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    quiet, thread = _thread(live_server)
    loud = api(live_server, "POST", "/agents", {"name": "Loud"})
    with db.session_scope(live_server.app) as session:
        for _ in range(52):
            session.add(
                Run(agent_id=quiet["id"], thread_id=thread["id"], trigger="api", status="success")
            )
        session.add(
            Run(
                agent_id=quiet["id"],
                thread_id=thread["id"],
                trigger="api",
                status="failed",
                error="Upstream TIMEOUT",
            )
        )
    loud_thread = api(live_server, "POST", "/threads", {"agent_id": loud["id"]})
    with db.session_scope(live_server.app) as session:
        session.add(
            Run(agent_id=loud["id"], thread_id=loud_thread["id"], trigger="api", status="success")
        )
    browser.open("/runs", "runs-paged")
    ids = "return [...document.querySelectorAll('#runs tr')].map((tr) => Number(tr.dataset.runId))"
    browser.wait_for(lambda: len(browser.js(ids)) == 50, "a page of 50 runs")
    assert browser.js(ids) == list(range(54, 4, -1))
    browser.css("#runs-pages [data-page=next]").click()
    browser.wait_for(lambda: browser.js(ids) == [4, 3, 2, 1], "the older runs")

    # The agent's name or the run's error, ignoring case; back on the first page.
    browser.type_into("#filter-q", "timeout")
    browser.wait_for(lambda: browser.js(ids) == [53], "the run whose error matches")
    assert not browser.css("#runs-pages").is_displayed()
    browser.type_into("#filter-q", "LOUD")
    browser.wait_for(lambda: browser.js(ids) == [54], "the run whose agent matches")
    browser.screenshot("runs-search")


@pytest.mark.parametrize(
    ("path", "detail"),
    [("/agents/9999", "Agent 9999 not found"), ("/threads/9999", "Thread 9999 not found")],
)
def test_a_missing_agent_or_thread_says_so_with_a_way_back(
    live_server: LiveServer, browser: Browser, path: str, detail: str
) -> None:
    browser.base = live_server.url
    browser.driver.get(live_server.url + path)
    browser.wait_for(lambda: browser.text("h1") == "Not found", "the not-found page")
    browser.screenshot("not-found")
    assert detail in browser.text("main")
    assert browser.css("main a").get_attribute("pathname") == "/"
    # Nothing that would act on what is not there.
    assert browser.all("main form, main button") == []
    assert not browser.css("#live-status").is_displayed()
    browser.css("main a").click()
    browser.wait_live()


def test_an_unknown_page_shows_an_html_404_in_the_browser(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    browser.driver.get(live_server.url + "/nope")
    assert browser.text("h1") == "Not found"
    assert "There is no page at /nope" in browser.text("main")
    browser.screenshot("unknown-page")
    # The one error Chromium logs is the page's own 404.
    [error] = browser.console_errors()
    assert "/nope - Failed to load resource" in error and "404" in error
    browser.css("main a").click()
    browser.wait_live()


def test_a_thread_is_renamed_and_deleted_from_its_page(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    agent, thread = _thread(live_server)
    browser.open(f"/threads/{thread['id']}", "thread")
    browser.css("#rename-thread").click()
    assert browser.css("#field-title").get_attribute("value") == "First chat"

    # A blank title is refused by the server, at the field, and nothing changes.
    browser.type_into("#field-title", "   ")
    browser.css("#rename-form button[type=submit]").click()
    browser.wait_for(lambda: browser.text("#error-title"), "the title's error")
    assert browser.css("#field-title").get_attribute("aria-invalid") == "true"
    assert api(live_server, "GET", f"/threads/{thread['id']}")["title"] == "First chat"

    browser.type_into("#field-title", "Renamed chat" + Keys.ENTER)
    browser.wait_for(lambda: browser.text("#thread-title") == "Renamed chat", "the new title")
    assert not browser.css("#rename-form").is_displayed()
    assert api(live_server, "GET", f"/threads/{thread['id']}")["title"] == "Renamed chat"
    browser.screenshot("thread-renamed")

    browser.css("#delete-thread").click()
    browser.driver.switch_to.alert.accept()
    browser.wait_for(lambda: browser.driver.current_url.endswith(f"/agents/{agent['id']}"), "back")
    browser.wait_live()
    browser.wait_for(lambda: browser.css("#threads-empty").is_displayed(), "no threads left")
    gone = requests.get(f"{live_server.url}/api/threads/{thread['id']}", timeout=10)
    assert gone.status_code == 404


XSS = "<img src=x onerror=alert(1)> <script>alert(2)</script>"
MARKDOWN_REPLY = f"""Here is the plan:

- read the **news**
- write a `digest`

```
print("<b>not bold</b>")
```

| step | who |
|---|---|
| 1 | me |

See [the docs](https://example.com/docs), not [this](javascript:alert(3)).
{XSS}
"""


def _nothing_ran(browser: Browser, reply: str) -> None:
    """No script, image, style or javascript: link came through, and none ran."""
    assert browser.all(f"{reply} :is(script, img, style, iframe, [onerror])") == []
    assert browser.all(f"{reply} a[href^='javascript' i]") == []
    assert browser.js("return window.__xss === undefined")


def test_a_stored_reply_is_shown_as_safe_markdown(
    live_server: LiveServer, browser: Browser
) -> None:
    browser.base = live_server.url
    _, thread = _thread(live_server)
    path = f"/threads/{thread['id']}/messages"
    api(live_server, "POST", path, {"role": "assistant", "content": MARKDOWN_REPLY})
    browser.open(f"/threads/{thread['id']}", "thread-markdown")
    reply = "#messages li[data-role=assistant] .content"
    assert [li.text for li in browser.all(f"{reply} ul li")] == ["read the news", "write a digest"]
    assert browser.text(f"{reply} ul strong") == "news"
    assert browser.text(f"{reply} pre code") == 'print("<b>not bold</b>")'
    assert browser.text(f"{reply} table td") == "1"
    link = browser.css(f"{reply} a[href='https://example.com/docs']")
    assert link.get_attribute("target") == "_blank"
    assert set(link.get_attribute("rel").split()) >= {"noopener", "noreferrer"}
    # Raw HTML is shown as the text it is.
    assert XSS in browser.text(reply)
    _nothing_ran(browser, reply)
    assert (
        "'self'"
        in requests.get(live_server.url + "/", timeout=10).headers["Content-Security-Policy"]
    )


def test_a_reply_is_rendered_as_markdown_while_it_streams(
    make_app: AppFactory, browser: Browser
) -> None:
    with serve(make_app(OFFLINE_DELAY_SECONDS=0.1)) as server:
        browser.base = server.url
        _, thread = _thread(server)
        browser.open(f"/threads/{thread['id']}", "thread")
        said = (
            "Use **bold** then `code` and [docs](https://example.com/docs) but not "
            f"[x](javascript:alert(1)) or {XSS} and a few more words to keep it "
            "streaming for a while after the bold part has arrived"
        )
        browser.compose(said)
        streaming = "#messages li[data-streaming] .content"
        # The bold is bold while the rest of the reply is still coming.
        browser.wait_for(lambda: browser.all(f"{streaming} strong"), "bold text mid-stream")
        browser.screenshot("thread-markdown-streaming")
        browser.wait_for(
            lambda: browser.all("#messages li[data-role=assistant][data-id]"), "the stored reply"
        )
        reply = "#messages li[data-role=assistant] .content"
        assert browser.text(f"{reply} strong") == "bold"
        assert browser.text(f"{reply} code") == "code"
        assert browser.all(f"{reply} a[href='https://example.com/docs']")
        assert XSS in browser.text(reply)
        _nothing_ran(browser, reply)
        browser.screenshot("thread-markdown-stored")


def test_the_api_docs_page_lists_every_operation_and_tries_one(
    live_server: LiveServer, browser: Browser
) -> None:
    """The vendored Swagger UI runs under the UI's strict CSP (any refusal is a console error)."""
    api(live_server, "POST", "/agents", {"name": "Listed by the docs"})
    spec = requests.get(f"{live_server.url}/api/openapi.json", timeout=10).json()
    browser.driver.get(live_server.url + "/api/docs")
    browser.wait_for(lambda: browser.all(".opblock"), "the operations to show")
    browser.screenshot("api-docs")
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            block = f"#operations-{operation['tags'][0]}-{operation['operationId']}"
            assert browser.all(block), (method, path)
    block = "#operations-agents-list_agents"
    browser.css(f"{block} .opblock-summary-control").click()
    browser.wait_for(lambda: browser.all(f"{block} .try-out__btn"), "the Try it out button")
    browser.css(f"{block} .try-out__btn").click()
    browser.wait_for(lambda: browser.all(f"{block} .execute"), "the Execute button")
    browser.css(f"{block} .execute").click()
    browser.wait_for(
        lambda: "Listed by the docs" in browser.text(f"{block} .live-responses-table"),
        "the answer of GET /api/agents",
    )
    browser.screenshot("api-docs-tried")
