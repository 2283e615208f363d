"""http_bench.py's third baseline: the statements each view issues, on raw sqlite3.

In the benchmark's process (pinned to the server's core once the servers are
stopped), on the same database file, in the same transaction shape as the view:
queries per second of each case, the median of ``runs``.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import time
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from http_bench import Seeded

AGENT_COLUMNS = (
    "id, name, status, system_instructions, task_instructions, model, schedule, "
    "run_on_schedule, config, last_error, created_at, updated_at, next_run_at, last_run_at"
)
MESSAGE_COLUMNS = (
    "id, thread_id, role, content, tool_calls, tool_call_id, name, processed, partial, timestamp"
)


def sqlite_statements(
    connection: sqlite3.Connection, seeded: Seeded, post_content: str
) -> dict[str, Callable[[], object]]:
    """One callable per case: the statements its view issues, in the same transaction shape."""
    execute = connection.execute

    def read(sql: str, params: tuple[Any, ...], many: bool = False) -> object:
        execute("BEGIN")
        try:
            cursor = execute(sql, params)
            return cursor.fetchall() if many else cursor.fetchone()
        finally:
            execute("ROLLBACK")

    def messages() -> object:
        execute("BEGIN")
        try:
            execute(
                "SELECT EXISTS (SELECT * FROM agent_threads WHERE agent_threads.id = ?) AS anon_1",
                (seeded.read_thread_id,),
            ).fetchone()
            return execute(
                f"SELECT {MESSAGE_COLUMNS} FROM thread_messages WHERE thread_id = ? "
                "ORDER BY timestamp, id LIMIT ? OFFSET ?",
                (seeded.read_thread_id, 50, 0),
            ).fetchall()
        finally:
            execute("ROLLBACK")

    def post_message() -> object:
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
        execute("BEGIN IMMEDIATE")
        try:
            execute(
                "SELECT agent_threads.id FROM agent_threads WHERE agent_threads.id = ?",
                (seeded.write_thread_id,),
            ).fetchone()
            execute(
                "UPDATE agent_threads SET updated_at = ? WHERE agent_threads.id = ?",
                (now, seeded.write_thread_id),
            )
            message_id = execute(
                "INSERT INTO thread_messages (thread_id, role, content, tool_calls, tool_call_id,"
                " name, processed, partial, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                (
                    seeded.write_thread_id,
                    "user",
                    post_content,
                    "null",
                    None,
                    None,
                    0,
                    0,
                    now,
                ),
            ).fetchone()
            execute("COMMIT")
            return message_id
        except BaseException:
            execute("ROLLBACK")
            raise

    return {
        "health": lambda: read("SELECT 1", ()),
        "agent": lambda: read(
            f"SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?", (seeded.agent_id,)
        ),
        "agents": lambda: read(
            f"SELECT {AGENT_COLUMNS} FROM agents ORDER BY created_at, id LIMIT ? OFFSET ?",
            (100, 0),
            many=True,
        ),
        "messages": messages,
        "post_message": post_message,
    }


def sqlite_baseline(
    database: Path,
    seeded: Seeded,
    post_content: str,
    runs: int,
    seconds: float,
    core: int | None,
) -> dict[str, dict[str, Any]]:
    """Queries per second of each case's statements, in this process, median of ``runs``."""
    previous = os.sched_getaffinity(0) if core is not None else None
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    for pragma in (
        "journal_mode=WAL",
        "foreign_keys=ON",
        "busy_timeout=30000",
        "synchronous=NORMAL",
    ):
        connection.execute(f"PRAGMA {pragma}")
    results: dict[str, dict[str, Any]] = {}
    try:
        if core is not None:
            os.sched_setaffinity(0, {core})
        for key, work in sqlite_statements(connection, seeded, post_content).items():
            rates = []
            for run in range(runs + 1):  # the first is the warm-up
                count, began = 0, time.perf_counter()
                ends = began + (seconds / 3 if run == 0 else seconds)
                while True:
                    for _ in range(50):
                        work()
                    count += 50
                    now = time.perf_counter()
                    if now >= ends:
                        break
                if run:
                    rates.append(count / (now - began))
            results[key] = {"qps": statistics.median(rates), "runs": rates}
    finally:
        connection.close()
        if previous is not None:
            os.sched_setaffinity(0, previous)
    return results
