"""Measure a run's overhead on the offline model, end to end.

For each of ``--runs`` runs (default 20): post a user message, POST
``/api/threads/{id}/run``, and time, from just before the POST, the first
``stream_chunk`` and the ``stream_end`` seen by a websocket client watching
the thread. The server is a separate process (``flask serve``) on a temporary
SQLite file.

Baseline, measured in the same run: the offline provider streaming the same
reply in this process with no server, database or websocket in between. The
difference is what zerg adds; the ratio puts it in proportion.

Then, for each ``multitask_strategy`` that stops a running run (interrupt,
rollback): while a run streams, post a message and ask for a run with that
strategy, and time from just before that POST the old run's ``stream_end``
and the new run's first chunk. Its baseline is the first chunk of a run on an
idle thread, above: the ratio is what taking a busy thread's place costs.

    .venv/bin/python bench/run_latency.py [--runs 20] [--delay 0.02] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from common import HOST
from common import free_port
from common import wait_healthy
from websockets.sync.client import connect

from zerg.providers.offline import OfflineProvider

START_TIMEOUT = 30.0
TAKEOVER_STRATEGIES = ("interrupt", "rollback")


def start_server(workdir: Path, port: int, delay: float) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENVIRONMENT": "testing",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite'}",
        "SCHEDULER_ENABLED": "false",
        # Testing does not upgrade at start-up by default; this fresh file must.
        "AUTO_CREATE_TABLES": "true",
        "OFFLINE_DELAY_SECONDS": str(delay),
    }
    log = (workdir / "server.log").open("wb")
    command = [sys.executable, "-m", "flask", "--app", "zerg", "serve", "--port", str(port)]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def measure_server(base: str, ws_url: str, runs: int) -> tuple[list[float], list[float]]:
    """Return (POST→first chunk, POST→stream_end) in milliseconds for each run."""
    http = requests.Session()
    agent = http.post(f"{base}/api/agents", json={"name": "bench"}, timeout=10).json()
    thread = http.post(f"{base}/api/threads", json={"agent_id": agent["id"]}, timeout=10).json()
    first_chunk: list[float] = []
    end: list[float] = []
    with connect(f"{ws_url}/api/ws?initial_topics=thread:{thread['id']}", compression=None) as ws:
        json.loads(ws.recv(timeout=10))
        for index in range(runs + 1):
            http.post(
                f"{base}/api/threads/{thread['id']}/messages",
                json={"content": f"benchmark message {index}"},
                timeout=10,
            )
            started = time.perf_counter()
            response = http.post(f"{base}/api/threads/{thread['id']}/run", timeout=10)
            response.raise_for_status()
            chunk_at = None
            while True:
                frame = json.loads(ws.recv(timeout=30))
                if frame["type"] == "stream_chunk" and chunk_at is None:
                    chunk_at = time.perf_counter()
                if frame["type"] == "stream_end":
                    break
            done = time.perf_counter()
            if index == 0 or chunk_at is None:
                continue  # warm-up
            first_chunk.append((chunk_at - started) * 1000)
            end.append((done - started) * 1000)
    http.close()
    return first_chunk, end


def measure_takeover(
    base: str, ws_url: str, runs: int, strategy: str
) -> tuple[list[float], list[float]]:
    """Return (POST→old stream_end, POST→new first chunk) in ms for runs that take a busy thread."""
    http = requests.Session()
    agent = http.post(f"{base}/api/agents", json={"name": "bench"}, timeout=10).json()
    thread = http.post(f"{base}/api/threads", json={"agent_id": agent["id"]}, timeout=10).json()
    messages = f"{base}/api/threads/{thread['id']}/messages"
    run_url = f"{base}/api/threads/{thread['id']}/run"
    old_end: list[float] = []
    new_chunk: list[float] = []
    with connect(f"{ws_url}/api/ws?initial_topics=thread:{thread['id']}", compression=None) as ws:
        json.loads(ws.recv(timeout=10))
        for index in range(runs + 1):
            http.post(messages, json={"content": f"a long question {index}"}, timeout=10)
            old = http.post(run_url, timeout=10).json()["id"]
            while json.loads(ws.recv(timeout=30))["type"] != "stream_chunk":
                pass
            http.post(messages, json={"content": f"never mind {index}"}, timeout=10)
            started = time.perf_counter()
            response = http.post(run_url, json={"multitask_strategy": strategy}, timeout=10)
            new = response.json()["id"]
            ended_at = chunk_at = None
            while True:
                frame = json.loads(ws.recv(timeout=30))
                if frame["type"] == "stream_end" and frame["run_id"] == old:
                    ended_at = time.perf_counter()
                elif frame["type"] == "stream_chunk" and frame["run_id"] == new and not chunk_at:
                    chunk_at = time.perf_counter()
                elif frame["type"] == "stream_end" and frame["run_id"] == new:
                    break
            if index == 0 or ended_at is None or chunk_at is None:
                continue  # warm-up
            old_end.append((ended_at - started) * 1000)
            new_chunk.append((chunk_at - started) * 1000)
    http.close()
    return old_end, new_chunk


def measure_direct(runs: int, delay: float) -> tuple[list[float], list[float]]:
    """The same reply streamed by the provider in-process: the floor."""
    provider = OfflineProvider(delay=delay)
    first: list[float] = []
    end: list[float] = []
    for index in range(runs):
        messages = [{"role": "user", "content": f"benchmark message {index}"}]
        started = time.perf_counter()
        first_at = None
        for item in provider.stream("offline", messages):
            if isinstance(item, str) and first_at is None:
                first_at = time.perf_counter()
        first.append(((first_at or started) - started) * 1000)
        end.append((time.perf_counter() - started) * 1000)
    return first, end


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p90": statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0],
        "max": max(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.02, help="offline model's delay")
    parser.add_argument("--json", type=Path, help="also save the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="zerg-bench-") as tmp:
        port = free_port()
        server = start_server(Path(tmp), port, args.delay)
        try:
            wait_healthy(f"http://{HOST}:{port}", server, START_TIMEOUT)
            base, ws_url = f"http://{HOST}:{port}", f"ws://{HOST}:{port}"
            chunk_ms, end_ms = measure_server(base, ws_url, args.runs)
            takeovers = {
                strategy: measure_takeover(base, ws_url, args.runs, strategy)
                for strategy in TAKEOVER_STRATEGIES
            }
        finally:
            server.terminate()
            server.wait(timeout=10)
    direct_first, direct_end = measure_direct(args.runs, args.delay)

    results: dict[str, Any] = {
        "runs": args.runs,
        "offline_delay_s": args.delay,
        "server": {"first_chunk_ms": summary(chunk_ms), "stream_end_ms": summary(end_ms)},
        "baseline_direct": {
            "first_chunk_ms": summary(direct_first),
            "stream_end_ms": summary(direct_end),
        },
    }
    server_end = results["server"]["stream_end_ms"]["median"]
    direct_end_median = results["baseline_direct"]["stream_end_ms"]["median"]
    results["overhead_ms"] = {
        "first_chunk": results["server"]["first_chunk_ms"]["median"]
        - results["baseline_direct"]["first_chunk_ms"]["median"],
        "stream_end": server_end - direct_end_median,
    }
    results["ratio_stream_end_vs_direct"] = server_end / direct_end_median
    idle_first = results["server"]["first_chunk_ms"]["median"]
    results["takeover"] = {
        strategy: {
            "old_stream_end_ms": summary(old_end),
            "new_first_chunk_ms": summary(new_chunk),
            "ratio_new_first_chunk_vs_idle": summary(new_chunk)["median"] / idle_first,
        }
        for strategy, (old_end, new_chunk) in takeovers.items()
    }

    print(f"run latency on the offline model, {args.runs} runs after 1 warm-up")
    print(f"{'measure':<32}{'median ms':>12}{'p90 ms':>10}{'max ms':>10}")
    rows = [
        ("POST -> first chunk", results["server"]["first_chunk_ms"]),
        ("POST -> stream_end", results["server"]["stream_end_ms"]),
        ("direct: first delta", results["baseline_direct"]["first_chunk_ms"]),
        ("direct: whole reply", results["baseline_direct"]["stream_end_ms"]),
    ]
    for strategy, figures in results["takeover"].items():
        rows.append((f"{strategy}: -> old stream_end", figures["old_stream_end_ms"]))
        rows.append((f"{strategy}: -> new 1st chunk", figures["new_first_chunk_ms"]))
    for label, figures in rows:
        print(
            f"{label:<32}{figures['median']:>12.1f}{figures['p90']:>10.1f}{figures['max']:>10.1f}"
        )
    print(
        f"overhead (median): first chunk {results['overhead_ms']['first_chunk']:.1f} ms, "
        f"stream_end {results['overhead_ms']['stream_end']:.1f} ms; "
        f"stream_end / direct = {results['ratio_stream_end_vs_direct']:.2f}"
    )
    for strategy, figures in results["takeover"].items():
        print(
            f"{strategy}: new run's first chunk / an idle thread's = "
            f"{figures['ratio_new_first_chunk_vs_idle']:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
