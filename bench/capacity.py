"""Capacity of the production setup: idle websockets, fan-out, runs in flight, HTTP throughput.

Runs the README's production command (``capacity_server.production_server``:
gunicorn with ``gunicorn.conf.py``, 2 workers, PostgreSQL in a schema of its
own, ``EVENT_BACKEND=redis`` on a stream of its own) once per worker class,
``--worker-class`` (gevent by default) and gthread, one after the other in
the same invocation, and measures on each:

- **idle capacity**: ``--sockets`` websockets, each subscribed to a thread,
  asking for permessage-deflate as browsers do, opened from one or two
  asyncio client processes (``ws_hold.py``) with up to ``--handshakes`` in
  flight. While they are open: the workers' memory per socket (VmRSS summed
  over the workers, after minus before, over the sockets held), their CPU
  over ``--idle-seconds`` with nothing else asked of them, then
  ``GET /api/agents`` p50/p99. A handshake that is not answered within
  ``--open-timeout`` fails; after ``--give-up`` failures the ramp stops: a
  server that holds no more is a figure, not a hang.
- **fan-out** (``ws_fanout.py``'s clients and publisher): ``--fanout-clients``
  subscribers to one thread, thread messages POSTed at ``--rate`` for
  ``--duration`` s: lost, duplicated, reordered, p99 delivery latency.
- **runs in flight** (``capacity_runs.py``): ``--runs`` runs at once against
  ``standin_model.py``, which streams a piece every ``--piece-interval`` s for
  ``--reply-seconds``: first piece p99, runs ended ``success``, HTTP p99.
- **no regression** (``http_bench.py --worker-class``): req/s of each route,
  the candidate worker class against gthread side by side.

Every figure is printed beside gthread's, with the ratio and PASS/FAIL per
target. Run from the repository root (it needs PostgreSQL and Redis):

    .venv/bin/python bench/capacity.py                         # the full scale, ~17 minutes
    .venv/bin/python bench/capacity.py --sockets 500 --runs 50 --reply-seconds 10 --quick
    .venv/bin/python bench/capacity.py --skip idle fanout http   # the runs burst alone, ~3 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

import requests
from capacity_report import Figure
from capacity_report import print_report
from capacity_runs import measure_runs
from capacity_server import BENCH
from capacity_server import ClientProcess
from capacity_server import Server
from capacity_server import probe
from capacity_server import production_server
from common import HOST
from common import free_port
from common import machine_busy_seconds
from common import raise_open_files_limit
from ws_fanout import client_processes
from ws_fanout import create_thread
from ws_fanout import processes_cpu_seconds
from ws_fanout import publish
from ws_fanout import stop_and_collect
from ws_fanout import summarize

DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
TOPICS = 100
SETTLE_SECONDS = 3.0


# --- idle capacity ---------------------------------------------------------------------


def measure_idle(server: Server, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    with requests.Session() as http:
        http.headers.update(server.headers)
        thread_id = create_thread(http, server.url, "idle")
        topics = [f"thread:{thread_id}"]
        topics += [f"thread:{create_thread(http, server.url, 'idle')}" for _ in range(TOPICS - 1)]
        for _ in range(20):  # warm both workers' paths before the baseline
            http.get(f"{server.url}/api/agents", timeout=10)
    time.sleep(SETTLE_SECONDS)
    rss_before = server.rss()
    procs = 1 if args.sockets <= 1000 else 2
    shares = [args.sockets // procs + (1 if k < args.sockets % procs else 0) for k in range(procs)]
    clients: list[ClientProcess] = []
    result: dict[str, Any] = {"sockets": args.sockets, "rss_before": rss_before}
    try:
        first = 0
        for k, share in enumerate(shares):
            config = {
                "mode": "hold",
                "url": server.ws_url,
                "headers": server.headers,
                "topics": topics,
                "first": first,
                "count": share,
                "handshakes": max(1, args.handshakes // procs),
                "open_timeout": args.open_timeout,
                "ramp_seconds": args.ramp_seconds,
                "give_up": max(1, args.give_up // procs),
                "lifetime": args.ramp_seconds + args.idle_seconds + args.probe_seconds + 300,
            }
            log = workdir / f"hold-{server.worker_class}-{k}.log"
            clients.append(ClientProcess(config, log))
            first += share
        ramps = [c.expect("opened", args.ramp_seconds + args.open_timeout + 60) for c in clients]
        result["held"] = sum(ramp["opened"] for ramp in ramps)
        result["failed"] = sum(ramp["failed"] for ramp in ramps)
        result["ramp_seconds"] = max(ramp["ramp_seconds"] for ramp in ramps)
        result["errors"] = merge_counts(ramp["errors"] for ramp in ramps)
        result["first_error"] = next((r["first_error"] for r in ramps if r["first_error"]), None)
        time.sleep(SETTLE_SECONDS)
        result["rss_after"] = server.rss()
        cpu_before, clients_before = server.cpu(), sum(c.cpu() for c in clients)
        busy_before, wall_before = machine_busy_seconds(), time.monotonic()
        time.sleep(args.idle_seconds)
        wall = time.monotonic() - wall_before
        server_cpu = server.cpu() - cpu_before
        clients_cpu = sum(c.cpu() for c in clients) - clients_before
        result["idle_cpu_pct"] = 100 * server_cpu / wall
        result["clients_cpu_pct"] = 100 * clients_cpu / wall
        busy = machine_busy_seconds() - busy_before
        result["others_cpu_pct"] = max(0.0, 100 * (busy - server_cpu - clients_cpu) / wall)
        get = probe(
            f"{server.url}/api/agents",
            server.headers,
            time.monotonic() + args.probe_seconds,
            timeout=args.http_timeout,
        )
        result["get"] = get
        closes = [c.stop(60) for c in clients]
        result["open_at_stop"] = sum(close["open_at_stop"] for close in closes)
        result["seen"] = merge_counts(close["seen"] for close in closes)
    finally:
        for client in clients:
            client.kill()
    held = result["held"]
    result["kb_per_socket"] = (result["rss_after"] - rss_before) / 1024 / held if held else None
    time.sleep(SETTLE_SECONDS)  # the server notices the closed sockets
    return result


def merge_counts(counts: Any) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for key, value in count.items():
            merged[key] = merged.get(key, 0) + value
    return merged


# --- fan-out ------------------------------------------------------------------------------


def measure_fanout(
    server: Server, workdir: Path, args: argparse.Namespace, held: int
) -> dict[str, Any]:
    if held < args.fanout_clients:
        return {"skipped": f"held only {held} idle sockets, fewer than {args.fanout_clients}"}
    procs = 2 if args.fanout_clients >= 100 else 1
    lifetime = 300.0 + args.duration
    options = {"headers": server.headers, "browser_deflate": True}
    with requests.Session() as http:
        http.headers.update(server.headers)
        thread_id = create_thread(http, server.url, "fan-out")
        url = f"{server.ws_url}?initial_topics=thread:{thread_id}"
        stage = "subscribing"
        try:
            with client_processes(
                url, args.fanout_clients, procs, workdir, lifetime, options
            ) as started:
                stage = "publishing"
                cpu_before, wall_before = server.cpu(), time.monotonic()
                clients_before, bench_before = processes_cpu_seconds(started), time.process_time()
                publication = publish(
                    http, f"{server.url}/api/threads/{thread_id}/messages", args.rate, args.duration
                )
                time.sleep(args.drain)
                wall = time.monotonic() - wall_before
                clients_after = processes_cpu_seconds(started)
                cpu = (
                    100 * (server.cpu() - cpu_before) / wall,
                    100 * (time.process_time() - bench_before) / wall,
                    None
                    if clients_before is None or clients_after is None
                    else 100 * (clients_after - clients_before) / wall,
                )
                stage = "collecting"
                records = stop_and_collect(started)
        except (RuntimeError, requests.RequestException) as exc:
            return {"skipped": f"{stage}: {type(exc).__name__}: {exc}"[:400]}
    return {"result": summarize(records, publication, cpu, procs)}


# --- no regression: http_bench.py, the two worker classes side by side ---------------


def measure_http(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    output = workdir / "http.json"
    command = [sys.executable, str(BENCH / "http_bench.py"), "--worker-class", args.worker_class]
    command += ["--duration", str(args.http_duration), "--warmup", "1"]
    command += ["--runs", str(args.http_runs), "--json", str(output)]
    budget = 12 * (1 + args.http_runs * args.http_duration) + 240
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=budget, check=False, cwd=BENCH.parent
        )
    except subprocess.TimeoutExpired:
        return {"skipped": f"http_bench.py took longer than {budget:.0f} s"}
    if done.returncode != 0 or not output.exists():
        return {"skipped": f"http_bench.py failed ({done.returncode}): {done.stderr[-600:]}"}
    rows = {row["key"]: row for row in json.loads(output.read_text())["cases"]}
    return {"rows": rows}


# --- the run ------------------------------------------------------------------------------


def measure_config(
    worker_class: str, workdir: Path, model_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    gunicorn_args = []
    if args.worker_connections:
        gunicorn_args = ["--worker-connections", str(args.worker_connections)]
    measured: dict[str, Any] = {"worker_class": worker_class}
    began = time.monotonic()
    with production_server(
        worker_class, workdir, args.database_url, args.redis_url, model_url, gunicorn_args
    ) as server:
        if "idle" in args.skip:
            # Fan-out then assumes the server holds its clients (gevent does).
            measured["idle"], held = {"skipped": "--skip idle"}, args.fanout_clients
        else:
            step(measured, "idle", lambda: measure_idle(server, workdir, args))
            held = measured["idle"].get("held", 0)
        if "fanout" not in args.skip:
            step(measured, "fanout", lambda: measure_fanout(server, workdir, args, held))
        if "runs" not in args.skip:
            step(
                measured,
                "runs",
                lambda: measure_runs(
                    server, workdir, model_url, args.runs, args.reply_seconds, args.slack
                ),
            )
    measured["seconds"] = time.monotonic() - began
    return measured


def step(measured: dict[str, Any], name: str, measure: Callable[[], Any]) -> None:
    """Run one measurement; a failure is recorded as its figure and the next one still runs."""
    print(f"  {measured['worker_class']}: {name} ...", flush=True)
    try:
        measured[name] = measure()
    except Exception as exc:
        measured[name] = {"skipped": f"{type(exc).__name__}: {exc}"[:600]}
    if isinstance(measured[name], dict) and "skipped" in measured[name]:
        print(f"    not measured: {measured[name]['skipped']}", flush=True)


def start_model(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    """Start the stand-in model in its own process; wait for its ``ready`` line."""
    port = free_port()
    pieces = max(1, round(args.reply_seconds / args.piece_interval))
    command = [sys.executable, str(BENCH / "standin_model.py"), "--port", str(port)]
    command += ["--pieces", str(pieces), "--interval", str(args.piece_interval)]
    with (workdir / "standin.log").open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    ready = threading.Event()

    def read() -> None:
        if process.stdout is not None and process.stdout.readline().strip() == "ready":
            ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(30):
        process.kill()
        raise SystemExit(f"the stand-in model did not start; see {workdir / 'standin.log'}")
    return process, f"http://{HOST}:{port}/v1"


def raw(sections: dict[str, Any]) -> dict[str, Any]:
    """What one worker class measured, as plain data for the JSON."""
    plain = {}
    for name, data in sections.items():
        plain[name] = asdict(data) if is_dataclass(data) else data
        if isinstance(data, dict):
            plain[name] = {k: asdict(v) if is_dataclass(v) else v for k, v in data.items()}
    return plain


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--worker-class", choices=("gevent", "gthread"), default="gevent", help="the candidate")
    add("--worker-connections", type=int, help="gunicorn --worker-connections for both")
    add("--sockets", type=int, default=10_000, help="idle websockets to hold")
    add("--handshakes", type=int, default=500, help="handshakes in flight, all clients")
    add("--open-timeout", type=float, default=15.0, help="seconds for one handshake")
    add("--ramp-seconds", type=float, default=240.0, help="seconds to open them all")
    add("--give-up", type=int, default=500, help="stop the ramp after this many failures")
    add("--idle-seconds", type=float, default=10.0, help="CPU window while idle")
    add("--probe-seconds", type=float, default=10.0, help="GETs while the sockets are open")
    add("--http-timeout", type=float, default=5.0, help="seconds before a GET counts as failed")
    add("--fanout-clients", type=int, default=2000)
    add("--rate", type=float, default=10.0, help="fan-out events per second")
    add("--duration", type=float, default=10.0, help="fan-out seconds of publishing")
    add("--drain", type=float, default=3.0, help="fan-out seconds to wait afterwards")
    add("--runs", type=int, default=500, help="runs at once")
    add("--reply-seconds", type=float, default=30.0, help="the stand-in's reply length")
    add("--piece-interval", type=float, default=0.5, help="seconds between pieces")
    add("--slack", type=float, default=30.0, help="seconds past a reply before giving up")
    add("--http-duration", type=float, default=5.0, help="http_bench.py --duration")
    add("--http-runs", type=int, default=3, help="http_bench.py --runs")
    add("--skip", nargs="+", default=[], choices=("idle", "fanout", "runs", "http"))
    add("--quick", action="store_true", help="short: 200 fan-out clients, 5 s, 1 http run")
    add("--database-url", default=os.environ.get("CAPACITY_DATABASE_URL", DATABASE_URL))
    add("--redis-url", default=os.environ.get("CAPACITY_REDIS_URL", REDIS_URL))
    add("--json", type=Path, metavar="PATH", help="also save the figures here")
    add("--logs", type=Path, metavar="DIR", help="keep the servers' and clients' logs here")
    args = parser.parse_args(argv)
    if args.quick:
        args.fanout_clients = min(args.fanout_clients, 200)
        args.duration, args.http_duration, args.http_runs = 5.0, 2.0, 1
    if not (1 <= args.sockets <= 20_000 and 1 <= args.runs <= 2000):
        parser.error("keep it bounded: 1 <= sockets <= 20000, 1 <= runs <= 2000")
    if not 1 <= args.fanout_clients <= 2000:
        parser.error("--fanout-clients must be between 1 and 2000 (ws_fanout.py's bound)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    files = raise_open_files_limit()
    classes = (
        [args.worker_class] if args.worker_class == "gthread" else ["gthread", args.worker_class]
    )
    load_before = os.getloadavg()
    print(
        f"capacity: {' vs '.join(classes)}, {args.sockets} sockets, {args.fanout_clients} "
        f"fan-out clients, {args.runs} runs of {args.reply_seconds:g} s; open files {files}; "
        f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}",
        flush=True,
    )
    measured: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="zerg-capacity-") as tmp:
        workdir = args.logs or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        model, model_url = start_model(args, workdir)
        try:
            for worker_class in classes:
                measured[worker_class] = measure_config(worker_class, workdir, model_url, args)
        finally:
            model.terminate()
            model.wait(timeout=10)
        http: dict[str, Any] = {"skipped": "--skip http"}
        if "http" not in args.skip and args.worker_class != "gthread":
            print("  http_bench.py --worker-class ...", flush=True)
            http = measure_http(workdir, args)
    figures: list[Figure] = print_report(measured, http, args)
    print(f"load average before {load_before}, after {os.getloadavg()}")
    if args.json:
        document = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "figures": [figure.as_dict() for figure in figures],
            "measured": {name: raw(sections) for name, sections in measured.items()},
            "http": http,
            "load_average": {"before": load_before, "after": os.getloadavg()},
        }
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
