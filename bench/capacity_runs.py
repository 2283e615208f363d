"""Runs in flight, for capacity.py: many runs at once against a slow stand-in model.

Seeds one thread per run (a user message on each, the threads spread over a
few agents), subscribes watchers to every thread (``ws_hold.py`` in ``watch``
mode: 100 topics a socket), then queues every run at once (32 POSTs in
flight) and times, per run, from just before its ``POST .../run`` to the
arrival of its first ``stream_chunk``. Meanwhile a probe GETs
``/api/agents`` and samples how many streams the stand-in has open. Runs
still going when the deadline passes (the stand-in's reply time plus
``slack``) count as not succeeded; the server's shutdown interrupts them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import requests
from capacity_server import ClientProcess
from capacity_server import Probe
from capacity_server import Server
from capacity_server import probe

TOPICS_PER_SOCKET = 100
POSTS_IN_FLIGHT = 32
AGENTS = 20
WATCH_TIMEOUT = 60.0


@dataclass
class RunsResult:
    runs: int
    queued: int = 0  # POST .../run answered 202
    statuses: dict[str, int] = field(default_factory=dict)
    first_piece: list[float | None] = field(default_factory=list)  # seconds, None: never
    # Per run: seconds its POST took to be answered, and from then to its first piece.
    answered: list[float] = field(default_factory=list)
    answered_to_first: list[float] = field(default_factory=list)
    probe: Probe = field(default_factory=lambda: Probe([]))
    peak_streams: int = 0
    queue_seconds: float = 0.0  # to POST every run
    problems: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        return self.statuses.get("success", 0)


class Http:
    """A requests session per thread, with the server's token."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
            self.local.session.headers.update(self.server.headers)
        session: requests.Session = self.local.session
        return session

    def post(self, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return self.session().post(f"{self.server.url}{path}", json=body, timeout=30)

    def created(self, path: str, body: dict[str, Any]) -> int:
        response = self.post(path, body)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")
        identifier: int = response.json()["id"]
        return identifier


def seed(http: Http, runs: int) -> list[int]:
    """One thread per run, each with a user message to answer; return the thread ids."""
    agents = [
        http.created("/api/agents", {"name": f"capacity agent {n}", "task_instructions": "go"})
        for n in range(min(AGENTS, runs))
    ]

    def thread(number: int) -> int:
        agent = agents[number % len(agents)]
        thread_id = http.created("/api/threads", {"agent_id": agent, "title": f"run {number}"})
        http.created(f"/api/threads/{thread_id}/messages", {"content": f"question {number}"})
        return thread_id

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(thread, range(runs)))


def stand_in_open(model_url: str) -> int:
    try:
        stats = requests.get(model_url.removesuffix("/v1") + "/stats", timeout=2).json()
    except (requests.RequestException, ValueError):
        return 0
    opened: int = stats["open"]
    return opened


def measure_runs(
    server: Server,
    workdir: Path,
    model_url: str,
    runs: int,
    reply_seconds: float,
    slack: float,
) -> RunsResult:
    result = RunsResult(runs)
    http = Http(server)
    threads = seed(http, runs)
    groups = [
        [f"thread:{tid}" for tid in threads[i : i + TOPICS_PER_SOCKET]]
        for i in range(0, len(threads), TOPICS_PER_SOCKET)
    ]
    output = workdir / f"runs-{server.worker_class}.json"
    config = {
        "mode": "watch",
        "url": server.ws_url,
        "headers": server.headers,
        "groups": groups,
        "open_timeout": WATCH_TIMEOUT,
        "output": str(output),
        "lifetime": WATCH_TIMEOUT + reply_seconds + slack + 120,
    }
    watcher = ClientProcess(config, workdir / f"runs-watch-{server.worker_class}.log")
    try:
        opened = watcher.expect("opened", WATCH_TIMEOUT + 10)
        if opened["failed"]:
            result.problems.append(f"watchers not subscribed: {opened.get('first_error')}")
            return result
        done = threading.Event()
        probed: list[Probe] = []
        peaks: list[int] = [0]

        def probing() -> None:
            probed.append(probe(f"{server.url}/api/agents", server.headers, done, 0.1))

        def sampling() -> None:
            while not done.wait(0.25):
                peaks[0] = max(peaks[0], stand_in_open(model_url))

        helpers = [threading.Thread(target=probing), threading.Thread(target=sampling)]
        for helper in helpers:
            helper.start()
        queued = queue_runs(http, threads, result)
        deadline = time.monotonic() + reply_seconds + slack
        ended = 0
        while time.monotonic() < deadline and ended < len(queued):
            time.sleep(1)
            ended = (watcher.latest("progress") or {}).get("ended", ended)
        done.set()
        for helper in helpers:
            helper.join(timeout=30)
        result.probe = probed[0] if probed else Probe([])
        result.peak_streams = peaks[0]
        watcher.stop(30)
    finally:
        watcher.kill()
    records = json.loads(output.read_text()) if output.exists() else {}
    collect(http, records, queued, result)
    return result


def queue_runs(
    http: Http, threads: list[int], result: RunsResult
) -> dict[int, tuple[float, float]]:
    """POST every run at once; run id -> wall times just before its POST and of its answer."""
    began = time.monotonic()

    def one(thread_id: int) -> tuple[int | None, float, float, str | None]:
        queued_at = time.time()
        try:
            response = http.post(f"/api/threads/{thread_id}/run")
        except requests.RequestException as exc:
            return None, queued_at, time.time(), f"POST run: {type(exc).__name__}"
        answered_at = time.time()
        if response.status_code != 202:
            return None, queued_at, answered_at, f"POST run: {response.status_code}"
        return response.json()["id"], queued_at, answered_at, None

    queued: dict[int, tuple[float, float]] = {}
    with ThreadPoolExecutor(POSTS_IN_FLIGHT) as pool:
        for run_id, queued_at, answered_at, problem in pool.map(one, threads):
            if run_id is None:
                result.problems.append(problem or "POST run failed")
            else:
                queued[run_id] = (queued_at, answered_at)
    result.queued = len(queued)
    result.queue_seconds = time.monotonic() - began
    return queued


def collect(
    http: Http, records: dict[str, Any], queued: dict[int, tuple[float, float]], result: RunsResult
) -> None:
    """Each run's first-piece delay and final status (its stream_end, else the API's)."""
    first = {int(run): at for run, at in records.get("first_chunk", {}).items()}
    ends = {int(run): end["status"] for run, end in records.get("ends", {}).items()}
    result.problems += records.get("problems", [])
    statuses: Counter[str] = Counter()
    missing = [run for run in queued if run not in ends]

    def status(run_id: int) -> str:
        try:
            response = http.session().get(f"{http.server.url}/api/runs/{run_id}", timeout=10)
        except requests.RequestException as exc:
            return f"unknown ({type(exc).__name__})"
        return str(response.json().get("status")) if response.ok else f"HTTP {response.status_code}"

    with ThreadPoolExecutor(8) as pool:
        for run_id, state in zip(missing, pool.map(status, missing), strict=True):
            ends[run_id] = state
    for run_id, (queued_at, answered_at) in queued.items():
        statuses[ends[run_id]] += 1
        result.first_piece.append(first[run_id] - queued_at if run_id in first else None)
        result.answered.append(answered_at - queued_at)
        if run_id in first:
            result.answered_to_first.append(first[run_id] - answered_at)
    result.statuses = dict(statuses)
