"""Client process for capacity.py: open many websockets and hold them, or watch runs stream.

``python bench/ws_hold.py '{json config}'`` runs in one asyncio event loop, so
that thousands of sockets cost the client a task each, not a thread. Every
socket asks for permessage-deflate as a browser does (``common.browser_deflate``),
subscribes through ``?initial_topics=`` and counts as open once it has every
``thread_history`` its topics bring. Control lines go to stdout as
``<word> <json>``; ``stop`` (or the end of stdin) on stdin ends it.

Modes (``config["mode"]``):

- ``hold``: open ``count`` sockets with at most ``handshakes`` in flight, each
  within ``open_timeout``; give up once ``give_up`` have failed or
  ``ramp_seconds`` have passed, so a server that stops answering handshakes
  makes a figure, not a hang. Prints ``opened {...}``, holds the sockets
  (draining whatever the server sends), and on ``stop`` prints
  ``closed {...}`` with how many were still open.
- ``watch``: one socket per group of topics; records, per run, when its first
  ``stream_chunk`` arrived, how many chunks came and its ``stream_end``
  status. Prints ``opened {...}``, then ``progress {...}`` (runs ended so far)
  every second, and on ``stop`` writes the records to
  ``config["output"]`` and prints ``closed {...}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

from common import browser_deflate
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

CLOSE_TIMEOUT = 10.0


def emit(word: str, payload: dict[str, Any]) -> None:
    sys.stdout.write(f"{word} {json.dumps(payload)}\n")
    sys.stdout.flush()


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


async def subscribe(url: str, topics: list[str], config: dict[str, Any]) -> ClientConnection:
    """Connect as a browser would and wait for the history of every thread topic."""
    query = quote(",".join(topics), safe=":,")
    ws = await connect(
        f"{url}?initial_topics={query}",
        additional_headers=config.get("headers") or {},
        compression=None,
        extensions=[browser_deflate()],
        open_timeout=config["open_timeout"],
        ping_interval=None,  # browsers do not ping; the server's pings are answered
        max_size=None,
        close_timeout=2,
    )
    try:
        histories = sum(1 for topic in topics if topic.startswith("thread:"))
        async with asyncio.timeout(config["open_timeout"]):
            while histories:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "thread_history":
                    histories -= 1
                elif frame.get("type") == "error":
                    raise RuntimeError(f"subscription refused: {frame.get('error')}")
    except BaseException:
        await ws.close()
        raise
    return ws


async def drain(ws: ClientConnection, seen: Counter[str]) -> None:
    """Read and drop what the server sends, so its queue never backs up; note how it ended."""
    try:
        async for _ in ws:
            seen["frames"] += 1
    except Exception as exc:
        seen[f"dropped: {error_kind(exc)}"] += 1
    else:
        seen["closed by server"] += 1


async def wait_for_stop(deadline: float) -> None:
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    try:
        await asyncio.wait_for(stdin.readline(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        print("lifetime over before a stop: stopping anyway", file=sys.stderr)


async def close_all(connections: list[ClientConnection]) -> None:
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
    except TimeoutError:
        print("closing the connections timed out", file=sys.stderr)


async def hold(config: dict[str, Any]) -> int:
    began = time.monotonic()
    topics: list[str] = config["topics"]
    gate = asyncio.Semaphore(config["handshakes"])
    opened: list[ClientConnection] = []
    errors: Counter[str] = Counter()
    first_error: list[str] = []
    gave_up = asyncio.Event()

    async def one(index: int) -> None:
        async with gate:
            if gave_up.is_set():
                errors["not attempted (gave up)"] += 1
                return
            try:
                topic = topics[(config["first"] + index) % len(topics)]
                opened.append(await subscribe(config["url"], [topic], config))
            except Exception as exc:
                errors[error_kind(exc)] += 1
                if not first_error:
                    first_error.append(f"{error_kind(exc)}: {exc}"[:300])
                if sum(errors.values()) >= config["give_up"]:
                    gave_up.set()

    tasks = [asyncio.create_task(one(index)) for index in range(config["count"])]
    done, pending = await asyncio.wait(tasks, timeout=config["ramp_seconds"])
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        errors["not opened (ramp deadline)"] += len(pending)
    ramp = time.monotonic() - began
    seen: Counter[str] = Counter()
    drains = [asyncio.create_task(drain(ws, seen)) for ws in opened]
    emit(
        "opened",
        {
            "opened": len(opened),
            "failed": sum(errors.values()),
            "errors": dict(errors),
            "first_error": first_error[0] if first_error else None,
            "ramp_seconds": ramp,
            "gave_up": gave_up.is_set(),
        },
    )
    await wait_for_stop(began + config["lifetime"])
    still_open = sum(1 for task in drains if not task.done())
    await close_all(opened)
    if drains:
        await asyncio.wait(drains, timeout=CLOSE_TIMEOUT)
    emit("closed", {"open_at_stop": still_open, "seen": dict(seen)})
    return 0


async def watch(config: dict[str, Any]) -> int:
    began = time.monotonic()
    groups: list[list[str]] = config["groups"]
    first_chunk: dict[int, float] = {}
    chunks: Counter[int] = Counter()
    ends: dict[int, dict[str, Any]] = {}
    problems: list[str] = []

    async def record(ws: ClientConnection) -> None:
        try:
            async for text in ws:
                arrived = time.time()
                frame = json.loads(text)
                kind = frame.get("type")
                if kind == "stream_chunk":
                    run = frame["run_id"]
                    first_chunk.setdefault(run, arrived)
                    chunks[run] += 1
                elif kind == "stream_end":
                    ends[frame["run_id"]] = {"status": frame.get("status"), "at": arrived}
        except Exception as exc:
            problems.append(f"watcher dropped: {error_kind(exc)}: {exc}"[:300])

    try:
        connections = await asyncio.gather(*(subscribe(config["url"], g, config) for g in groups))
    except Exception as exc:
        emit("opened", {"opened": 0, "failed": len(groups), "first_error": f"{exc}"[:300]})
        return 0
    readers = [asyncio.create_task(record(ws)) for ws in connections]
    emit("opened", {"opened": len(connections), "failed": 0})

    async def progress() -> None:
        while True:
            await asyncio.sleep(1)
            emit("progress", {"ended": len(ends), "started": len(first_chunk)})

    reporter = asyncio.create_task(progress())
    await wait_for_stop(began + config["lifetime"])
    reporter.cancel()
    await close_all(list(connections))
    await asyncio.wait(readers, timeout=CLOSE_TIMEOUT)
    records = {
        "first_chunk": {str(run): at for run, at in first_chunk.items()},
        "chunks": {str(run): count for run, count in chunks.items()},
        "ends": {str(run): end for run, end in ends.items()},
        "problems": problems,
    }
    with open(config["output"], "w") as output:
        json.dump(records, output)
    emit("closed", {"runs_seen": len(first_chunk), "ended": len(ends)})
    return 0


if __name__ == "__main__":
    settings = json.loads(sys.argv[1])
    mode = {"hold": hold, "watch": watch}[settings["mode"]]
    sys.exit(asyncio.run(mode(settings)))
