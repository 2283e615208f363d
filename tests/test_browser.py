"""The web UI in a real browser: headless Chromium against a live server.

Each test drives the pages as a person would (forms, buttons, the keyboard)
and checks what they show against what the API says. Every page a test visits
is saved as a screenshot in tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select
from sqlalchemy import text

from tests.browser import DESKTOP
from tests.browser import Browser
from tests.browser import find_chromium
from tests.browser import new_profile
from tests.browser import start_chromium
from tests.conftest import AppFactory
from tests.conftest import LiveServer
from tests.conftest import serve
from tests.test_run_states import orphan_run
from zerg import db
from zerg.locks import make_locks
from zerg.models import Agent
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.realtime.hub import get_hub
from zerg.runs import lifecycle

TOKEN = "browser-test-token"


@pytest.fixture(scope="module")
def chromium() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for this module; each test uses its own server (origin).

    Module-scoped so that the browser is gone before the rest of the suite runs.
    """
    binary, driver_path = find_chromium()
    profile = new_profile()
    driver = start_chromium(binary, driver_path, profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(chromium: webdriver.Chrome, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """The shared browser, reset for this test; fails the test on any script error."""
    chromium.set_window_size(*DESKTOP)
    browser = Browser(chromium, request.node.name)
    yield browser
    errors = browser.console_errors()
    # Leave the page so that its websocket closes before the server stops.
    chromium.get("about:blank")
    assert errors == [], errors


def api(server: LiveServer, method: str, path: str, body: Any = None, token: str = "") -> Any:
    """Call the API over HTTP as any other client would."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.request(
        method, f"{server.url}/api{path}", json=body, headers=headers, timeout=10
    )
    assert response.ok, response.text
    return response.json() if response.content else None


def test_create_an_agent_through_the_form(live_server: LiveServer, browser: Browser) -> None:
    browser.base = live_server.url
    browser.open("/", "agents-empty")
    assert browser.css("#agents-empty").is_displayed()

    browser.type_into("#field-name", "Morning digest")
    browser.type_into("#field-task_instructions", "Summarise the news.")
    browser.type_into("#field-schedule", "0 8 * * 1-5")
    assert browser.text("#schedule-words") == "At 08:00 UTC on weekdays (Monday to Friday)"
    browser.css("#form-submit").click()

    browser.wait_for(lambda: "Morning digest" in browser.text("#agents"), "the new agent's row")
    browser.screenshot("agents-created")
    [agent] = api(live_server, "GET", "/agents")
    assert agent["name"] == "Morning digest"
    assert agent["schedule"] == "0 8 * * 1-5" and agent["run_on_schedule"] is True
    row = browser.text(f"#agents tr[data-agent-id='{agent['id']}']")
    assert "At 08:00 UTC on weekdays" in row
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
    assert browser.text("#schedule-words") == (
        "At 09:00 America/New_York on weekdays (Monday to Friday)"
    )
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
    assert "At 09:00 America/New_York on weekdays" in row


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


def _send(browser: Browser, text: str) -> None:
    box = browser.css("#compose")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def _start_a_long_reply(browser: Browser, server: LiveServer) -> dict[str, Any]:
    """Open a new thread's page, send a message, and wait for the reply's first pieces."""
    browser.base = server.url
    _, thread = _thread(server)
    browser.open(f"/threads/{thread['id']}", "thread")
    _send(browser, "Please write something long")
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

        _send(browser, "Hello there, agent")
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
        assert shown == reply["content"]
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
        _send(browser, "Actually, say this instead")

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
        locks = make_locks(db.get_database(app).engine)
        try:
            with db.session_scope(app) as session:
                assert lifecycle.mark_interrupted(session, dead=locks) == 1
        finally:
            locks.close()

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
        _send(browser, "Keep talking while I reconnect")
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
    assert "At 06:30 UTC" in browser.text(row)

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
        browser.wait_for(lambda: "Late" not in browser.text("#runs"), "the agent filter")
        browser.screenshot("runs-filtered")
        assert len(browser.all("#runs tr")) == 1
        assert agent["id"] == run["agent_id"]


def test_with_a_token_the_ui_asks_for_it_and_gets_in(
    make_app: AppFactory, browser: Browser
) -> None:
    with serve(make_app(API_TOKEN=TOKEN)) as server:
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
    width = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    for path in ("/", f"/agents/{agent['id']}", f"/threads/{thread['id']}", "/runs"):
        browser.open(path, f"narrow-{path}")
        if path.startswith("/threads"):
            browser.wait_for(lambda: browser.all("#messages li[data-role=assistant]"), "reply")
            browser.screenshot("narrow-thread-replied")
        scroll_width, client_width = browser.js(width)
        assert scroll_width <= client_width, f"{path} scrolls sideways at 360 px"
        # Every form control has a label a screen reader can announce.
        unlabelled = browser.js(
            "return [...document.querySelectorAll('main input, main select, main textarea')]"
            ".filter(c => !c.labels.length && !c.getAttribute('aria-label')).map(c => c.id)"
        )
        assert unlabelled == [], f"{path}: {unlabelled}"


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
    assert "At 14:15 UTC on day 1 of the month" in browser.text("#agents tr")

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
            _send(browser, "Seen from two tabs")
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


CRON_IN_WORDS = {
    "* * * * *": "Every minute",
    "*/5 * * * *": "Every 5 minutes",
    "0 * * * *": "Every hour, on the hour",
    "5,35 * * * *": "Every hour at minute 5 and 35",
    "0 */2 * * *": "Every 2 hours, on the hour (UTC)",
    "0 8 * * 1-5": "At 08:00 UTC on weekdays (Monday to Friday)",
    "0 8 * * 0,6": "At 08:00 UTC on Sunday and Saturday",
    "0 12 * * 7": "At 12:00 UTC on Sunday",
    "0 8 * * mon-fri": "At 08:00 UTC on Monday to Friday",
    "0 0 1 1 *": "At 00:00 UTC on day 1 of the month in January",
    "0 8 1 * 1": "At 08:00 UTC on day 1 of the month or Monday",
    "*/15 9-17 * * 1-5": "Every 15 minutes during hour 9 to 17 UTC on weekdays (Monday to Friday)",
    "not a cron": "",
    "0 8 * * 1-5 extra": "",
}


def test_schedules_are_described_in_words(live_server: LiveServer, browser: Browser) -> None:
    """The page's own cron describer, run in the browser on the shapes people write."""
    browser.base = live_server.url
    browser.open("/", "agents")
    described = browser.driver.execute_async_script(
        "const [expressions, done] = arguments;"
        "import('/assets/js/cron.js').then(({ describeCron }) =>"
        "  done(Object.fromEntries(expressions.map((e) => [e, describeCron(e)]))));",
        list(CRON_IN_WORDS),
    )
    assert described == CRON_IN_WORDS
