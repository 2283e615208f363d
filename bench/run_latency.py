"""Measure a run's overhead on the offline model, end to end.

For each of ``--runs`` runs (default 20): post a user message, POST
``/api/threads/{id}/run``, and time, from just before the POST, the first
``stream_chunk`` and the ``stream_end`` seen by a websocket client watching
the thread. The server is a separate process (``flask serve``) on a temporary
SQLite file.

Baseline, measured in the same run: the offline provider streaming the same
reply in this process with no server, database or websocket in between. The
difference is what zerg adds; the ratio puts it in proportion.

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

from zerg.runs.providers.offline import OfflineProvider

START_TIMEOUT = 30.0


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
            chunk_ms, end_ms = measure_server(
                f"http://{HOST}:{port}", f"ws://{HOST}:{port}", args.runs
            )
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

    print(f"run latency on the offline model, {args.runs} runs after 1 warm-up")
    print(f"{'measure':<28}{'median ms':>12}{'p90 ms':>10}{'max ms':>10}")
    rows = [
        ("POST -> first chunk", results["server"]["first_chunk_ms"]),
        ("POST -> stream_end", results["server"]["stream_end_ms"]),
        ("direct: first delta", results["baseline_direct"]["first_chunk_ms"]),
        ("direct: whole reply", results["baseline_direct"]["stream_end_ms"]),
    ]
    for label, figures in rows:
        print(
            f"{label:<28}{figures['median']:>12.1f}{figures['p90']:>10.1f}{figures['max']:>10.1f}"
        )
    print(
        f"overhead (median): first chunk {results['overhead_ms']['first_chunk']:.1f} ms, "
        f"stream_end {results['overhead_ms']['stream_end']:.1f} ms; "
        f"stream_end / direct = {results['ratio_stream_end_vs_direct']:.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
