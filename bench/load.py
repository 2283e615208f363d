"""Mixed load against gunicorn for a fixed time, then a check for leaks and lost messages.

What it does: starts zerg under gunicorn (the project's gunicorn.conf.py, one
worker, ENVIRONMENT=development for ``GET /api/admin/stats``) on a fresh
SQLite file, seeds agents and threads, opens the websocket watchers (in a
process of their own, so their GIL is not the load generator's), then for
``--duration`` seconds runs reader, writer and runner threads against it:

- readers: ``GET /api/agents/{id}``, ``GET /api/agents?limit=100``,
  ``GET /api/threads/{id}/messages?limit=50``, ``GET /api/runs?limit=20``;
- writers: ``POST /api/threads/{id}/messages`` on the watched threads and
  ``PATCH /api/agents/{id}``;
- runners: each on a thread of its own, ``POST /api/threads/{id}/messages``
  then ``POST /api/threads/{id}/run`` on the offline model, waiting for the
  run to finish (its latency is start to finished).

Afterwards it checks, and exits 1 if any check fails:

- no request failed (every answer 2xx) and every run ended in ``success``;
- no message was lost: each watcher received, as ``thread_message`` frames,
  exactly the messages its thread holds beyond the history it was sent;
- nothing leaked in the server: no pool connection checked out, no websocket
  connection or writer thread left, no run in flight, and every kind of
  thread back to its count before the load (the two thread pools, gunicorn's
  request threads and the runner's, only within their configured size: they
  keep their threads once started);

and prints p50/p99 per operation::

    .venv/bin/python bench/load.py                     # 60 s, 50 watchers
    .venv/bin/python bench/load.py --duration 20 --json /tmp/load.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import requests
from common import HOST
from common import free_port
from common import wait_healthy
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
GUNICORN_THREADS = 128
RUN_WORKERS = 4
# Kinds of thread that belong to a pool which keeps its threads once started.
POOLS = {"ThreadPoolExecutor": GUNICORN_THREADS, "zerg-run": RUN_WORKERS}


def start_server(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """Start gunicorn on a fresh database in ``workdir``, its log in ``workdir/server.log``."""
    env = dict(os.environ)
    env.update(
        BIND=f"{HOST}:{port}",
        WEB_CONCURRENCY="1",
        GUNICORN_THREADS=str(GUNICORN_THREADS),
        ENVIRONMENT="development",
        DATABASE_URL=f"sqlite:///{workdir / 'zerg.sqlite'}",
        AUTO_CREATE_TABLES="true",
        SCHEDULER_ENABLED="false",
        EVENT_BACKEND="memory",
        RUN_WORKERS=str(RUN_WORKERS),
        OFFLINE_DELAY_SECONDS="0.005",
        API_TOKEN="",
    )
    command = [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py"]
    with (workdir / "server.log").open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def log_tail(workdir: Path, lines: int = 30) -> str:
    try:
        text = (workdir / "server.log").read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


# --- the watchers, in a process of their own ------------------------------------


def watch(
    ws_base: str,
    thread_id: int,
    ready: threading.Barrier,
    stop: threading.Event,
    out: dict[str, Any],
) -> None:
    """Watch one thread: remember its history and every message frame after it."""
    received: list[int] = []
    out.update(thread_id=thread_id, history=[], received=received, error=None)
    try:
        with connect(f"{ws_base}/api/ws?initial_topics=thread:{thread_id}", open_timeout=30) as ws:
            while True:
                frame = json.loads(ws.recv(timeout=30))
                if frame["type"] == "thread_history":
                    out["history"] = [message["id"] for message in frame["messages"]]
                    break
            ready.wait(timeout=60)
            while not stop.is_set():
                try:
                    frame = json.loads(ws.recv(timeout=0.2))
                except TimeoutError:
                    continue
                if frame["type"] == "thread_message":
                    received.append(frame["message"]["id"])
                elif frame["type"] == "error":
                    out["error"] = frame
    except Exception as exc:  # reported, and counted as a failure
        out["error"] = f"{type(exc).__name__}: {exc}"
        if not ready.broken:
            ready.abort()


def watchers_process(
    ws_base: str,
    thread_ids: list[int],
    ready: Any,
    stop: Any,
    results: Any,
) -> None:
    """Run one watcher thread per thread id; hand back what each received."""
    barrier = threading.Barrier(len(thread_ids) + 1)
    local_stop = threading.Event()
    outs: list[dict[str, Any]] = [{} for _ in thread_ids]
    threads = [
        threading.Thread(target=watch, args=(ws_base, tid, barrier, local_stop, out))
        for tid, out in zip(thread_ids, outs, strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        pass
    ready.set()
    stop.wait()
    local_stop.set()
    for thread in threads:
        thread.join(timeout=10)
    results.put(outs)


# --- the load --------------------------------------------------------------------


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, http: requests.Session, op: str, method: str, url: str, **kw: Any) -> Any:
        began = time.perf_counter()
        try:
            response = http.request(method, url, timeout=30, **kw)
        except requests.RequestException as exc:
            with self.lock:
                self.failures.append(f"{op}: {type(exc).__name__}: {exc}")
            return None
        elapsed = time.perf_counter() - began
        with self.lock:
            self.latencies[op].append(elapsed)
            if not 200 <= response.status_code < 300:
                self.failures.append(f"{op}: {response.status_code} {response.text[:200]}")
                return None
        return response.json() if response.content else {}


def steps(start: int, until: float) -> Iterator[int]:
    """Count up from ``start + 1`` until the monotonic clock passes ``until``."""
    step = start
    while time.monotonic() < until:
        step += 1
        yield step


def reader(base: str, seed: dict[str, Any], tally: Tally, until: float, index: int) -> None:
    agents, threads = seed["agents"], seed["watched"]
    with requests.Session() as http:
        for step in steps(index, until):
            agent, thread = agents[step % len(agents)], threads[step % len(threads)]
            tally.call(http, "GET agent", "GET", f"{base}/api/agents/{agent}")
            tally.call(http, "GET agents?limit=100", "GET", f"{base}/api/agents?limit=100")
            tally.call(
                http,
                "GET thread messages?limit=50",
                "GET",
                f"{base}/api/threads/{thread}/messages?limit=50",
            )
            if step % 4 == 0:
                tally.call(http, "GET runs?limit=20", "GET", f"{base}/api/runs?limit=20")


def writer(base: str, seed: dict[str, Any], tally: Tally, until: float, index: int) -> None:
    agents, threads = seed["agents"], seed["watched"]
    with requests.Session() as http:
        for step in steps(index, until):
            thread = threads[step % len(threads)]
            body = {"content": f"writer {index} message {step}"}
            tally.call(
                http, "POST message", "POST", f"{base}/api/threads/{thread}/messages", json=body
            )
            if step % 5 == 0:
                agent = agents[step % len(agents)]
                patch = {"system_instructions": f"revision {step}"}
                tally.call(http, "PATCH agent", "PATCH", f"{base}/api/agents/{agent}", json=patch)


def runner(base: str, thread: int, tally: Tally, until: float, outcomes: list[str]) -> None:
    with requests.Session() as http:
        for step in steps(0, until):
            body = {"content": f"question {step}"}
            tally.call(
                http, "POST message", "POST", f"{base}/api/threads/{thread}/messages", json=body
            )
            began = time.perf_counter()
            run = tally.call(http, "POST run", "POST", f"{base}/api/threads/{thread}/run")
            if run is None:
                continue
            while True:
                state = tally.call(http, "GET run", "GET", f"{base}/api/runs/{run['id']}")
                if state is None or state["finished_at"] is not None:
                    break
                time.sleep(0.01)
            with tally.lock:
                tally.latencies["run (start to finished)"].append(time.perf_counter() - began)
                outcomes.append(state["status"] if state else "unknown")


def seed(base: str, agents: int, watched: int, run_threads: int) -> dict[str, Any]:
    with requests.Session() as http:

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = http.post(f"{base}{path}", json=body, timeout=10)
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            return result

        ids = [
            post("/api/agents", {"name": f"agent {n}", "task_instructions": "report"})["id"]
            for n in range(agents)
        ]
        chats = [
            post("/api/threads", {"agent_id": ids[n % agents], "title": f"chat {n}"})["id"]
            for n in range(watched)
        ]
        runs = [
            post("/api/threads", {"agent_id": ids[n % agents], "title": f"runs {n}"})["id"]
            for n in range(run_threads)
        ]
        for thread in chats:
            post(f"/api/threads/{thread}/messages", {"content": "history"})
    return {"agents": ids, "watched": chats, "run_threads": runs}


def stats(base: str) -> dict[str, Any]:
    response = requests.get(f"{base}/api/admin/stats", timeout=10)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def thread_message_ids(base: str, thread: int) -> list[int]:
    ids: list[int] = []
    with requests.Session() as http:
        while True:
            page = http.get(
                f"{base}/api/threads/{thread}/messages",
                params={"skip": len(ids), "limit": 100},
                timeout=10,
            ).json()
            ids += [message["id"] for message in page]
            if len(page) < 100:
                return ids


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def leak_problems(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    problems = []
    if after["pool"]["checked_out"]:
        problems.append(f"{after['pool']['checked_out']} pool connection(s) checked out")
    if after["websockets"]["connections"]:
        problems.append(f"{after['websockets']['connections']} websocket connection(s) left")
    if after["runs_in_flight"]:
        problems.append(f"{after['runs_in_flight']} run(s) still in flight")
    was, now = before["threads"]["by_kind"], after["threads"]["by_kind"]
    for kind in sorted(set(was) | set(now)):
        if kind in POOLS:
            if now.get(kind, 0) > POOLS[kind]:
                problems.append(f"{now[kind]} {kind} threads, more than its size {POOLS[kind]}")
        elif now.get(kind, 0) > was.get(kind, 0):
            problems.append(f"{kind} threads: {was.get(kind, 0)} before, {now[kind]} after")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--watchers", type=int, default=50, help="websocket watchers")
    parser.add_argument("--readers", type=int, default=4, help="reader threads")
    parser.add_argument("--writers", type=int, default=2, help="writer threads")
    parser.add_argument("--runners", type=int, default=2, help="runner threads")
    parser.add_argument("--agents", type=int, default=20, help="agents to seed")
    parser.add_argument("--json", type=Path, help="also save the results here")
    args = parser.parse_args()

    port = free_port()
    base, ws_base = f"http://{HOST}:{port}", f"ws://{HOST}:{port}"
    with tempfile.TemporaryDirectory(prefix="zerg-load-") as tmp:
        workdir = Path(tmp)
        server = start_server(workdir, port)
        try:
            wait_healthy(base, server, START_TIMEOUT, lambda: log_tail(workdir))
            return run_load(args, base, ws_base)
        finally:
            server.terminate()
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            if server.returncode != 0:
                print(f"server exited with {server.returncode}; its log ends:\n{log_tail(workdir)}")


def run_load(args: argparse.Namespace, base: str, ws_base: str) -> int:
    # Watchers watch the chat threads round-robin, so several share each topic.
    chats = max(1, min(args.watchers, 10))
    data = seed(base, args.agents, chats, args.runners)
    # Warm up what keeps threads once started, then take the baseline.
    warm = Tally()
    runner(base, data["run_threads"][0], warm, time.monotonic() + 0.5, [])
    with connect(f"{ws_base}/api/ws?initial_topics=thread:{data['watched'][0]}") as ws:
        ws.recv(timeout=10)
    time.sleep(1)
    before = stats(base)

    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    watched = [data["watched"][n % chats] for n in range(args.watchers)]
    watchers = context.Process(
        target=watchers_process, args=(ws_base, watched, ready, stop, results)
    )
    watchers.start()
    if not ready.wait(timeout=90):
        raise SystemExit("the watchers did not subscribe within 90 s")

    tally = Tally()
    outcomes: list[str] = []
    until = time.monotonic() + args.duration
    workers = [
        *(
            threading.Thread(target=reader, args=(base, data, tally, until, n))
            for n in range(args.readers)
        ),
        *(
            threading.Thread(target=writer, args=(base, data, tally, until, n))
            for n in range(args.writers)
        ),
        *(
            threading.Thread(target=runner, args=(base, thread, tally, until, outcomes))
            for thread in data["run_threads"]
        ),
    ]
    began = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - began

    time.sleep(2)  # let the last events reach the watchers
    stop.set()
    seen: list[dict[str, Any]] = results.get(timeout=60)
    watchers.join(timeout=30)
    time.sleep(2)  # the server notices the closed sockets and ends their writers
    after = stats(base)

    lost = []
    for out in seen:
        if out.get("error"):
            lost.append(f"watcher of thread {out.get('thread_id')}: {out['error']}")
            continue
        stored = thread_message_ids(base, out["thread_id"])
        expected = [mid for mid in stored if mid not in set(out["history"])]
        if out["received"] != expected:
            missing = sorted(set(expected) - set(out["received"]))
            extra = len(out["received"]) - len(set(out["received"]))
            lost.append(
                f"watcher of thread {out['thread_id']}: {len(missing)} missing, "
                f"{extra} duplicate(s), order {'differs' if not missing and not extra else 'n/a'}"
            )
    failed_runs = [status for status in outcomes if status != "success"]
    leaks = leak_problems(before, after)
    frames = sum(len(out.get("received", [])) for out in seen)

    print(
        f"load: {elapsed:.1f} s, {args.readers} readers, {args.writers} writers, "
        f"{args.runners} runners, {args.watchers} watchers on {chats} threads"
    )
    print(f"{'operation':32s} {'count':>7s} {'req/s':>7s} {'p50 ms':>8s} {'p99 ms':>8s}")
    table = {}
    for op, values in sorted(tally.latencies.items()):
        p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
        table[op] = {
            "count": len(values),
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "mean_ms": round(statistics.fmean(values) * 1000, 2),
        }
        print(f"{op:32s} {len(values):7d} {len(values) / elapsed:7.1f} {p50:8.2f} {p99:8.2f}")
    print(f"websocket thread_message frames received: {frames}")
    print(f"server before: {json.dumps(before['threads']['by_kind'])}, pool {before['pool']}")
    print(f"server after:  {json.dumps(after['threads']['by_kind'])}, pool {after['pool']}")
    checks = {
        "request errors": tally.failures,
        "runs not succeeded": failed_runs,
        "lost or out-of-order messages": lost,
        "leaks": leaks,
    }
    for name, problems in checks.items():
        print(f"{'PASS' if not problems else 'FAIL'}: {name}: {len(problems)}")
        for problem in problems[:10]:
            print(f"    {problem}")
    if args.json:
        document = {
            "seconds": elapsed,
            "operations": table,
            "frames": frames,
            "before": before,
            "after": after,
            "checks": checks,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if any(checks.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
