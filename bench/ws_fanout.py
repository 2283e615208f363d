"""Websocket fan-out benchmark: one thread topic, many subscribers, a steady event rate.

What it measures: N websocket clients subscribe to ``thread:{id}`` while a
publisher POSTs thread messages at a fixed rate; every ``thread_message``
frame that reaches a client is one delivery. For each N it prints deliveries
against the expected ``events x clients``, losses, duplicates, out-of-order
frames, throughput (deliveries per second) and the latency from just before
the POST to the frame's arrival (p50/p99/max). A single client is measured in
the same run as the baseline, and every p99 is also given as a ratio of it.

The server is a real ``flask serve`` in its own process (which upgrades its
database at start-up), on 127.0.0.1 and a fresh SQLite file in a temporary
directory; its log goes to a file there.
The clients run out of this process, so that the harness is not what gets
measured: K client processes (``--client-procs``; by default 2 for N >= 100,
else 1) each run their share of the N clients in one asyncio event loop.
Every client subscribes with ``?initial_topics=thread:{id}`` and waits for
its ``thread_history``; publishing starts only once every client of every
process is ready, and after the drain the processes are told to stop and
hand back what each client received (JSON lines in a file per process). This
process only publishes. CPU use is printed for the server, this process and
the client processes together: on a small machine they all compete for the
same cores, so the latencies are still an upper bound on the server's share.

Run it from the repository root:

    .venv/bin/python bench/ws_fanout.py
    .venv/bin/python bench/ws_fanout.py --clients 50 200 --rate 10 --duration 10 --json out.json
    .venv/bin/python bench/ws_fanout.py --clients 200 --client-procs 4

The target from the issue is 200 clients at 10 events/s with p99 under 100 ms
and nothing lost; the last line says whether this run met it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import IO
from typing import Any

import requests
import uvloop
from common import HOST
from common import browser_deflate
from common import free_port
from common import wait_healthy
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect

START_TIMEOUT = 30.0
SUBSCRIBE_TIMEOUT = 60.0
CONCURRENT_HANDSHAKES = 32
PROCESS_GRACE = 30.0  # for a client process to start, or to stop and write its records
CLOSE_TIMEOUT = 10.0
WORKER_ARG = "_client"
TARGET_CLIENTS = 200
TARGET_RATE = 10.0
TARGET_P99_MS = 100.0


# --- the server -------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")


def server_env(database: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ENVIRONMENT="testing",
        DATABASE_URL=f"sqlite:///{database}",
        SCHEDULER_ENABLED="false",
        AUTO_CREATE_TABLES="true",  # testing does not upgrade at start-up by default
        API_TOKEN="",  # an empty token means no token
        FLASK_SKIP_DOTENV="1",  # a developer's .env must not change the measurement
        PYTHONUNBUFFERED="1",
    )
    return env


def log_tail(server: Server, lines: int = 20) -> str:
    try:
        return "\n".join(server.log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def running_server(workdir: Path) -> Iterator[Server]:
    """Start ``flask serve`` on a free local port; always stop it on the way out."""
    port = free_port()
    command = [sys.executable, "-m", "flask", "--app", "zerg", "serve"]
    command += ["--host", HOST, "--port", str(port), "--no-reload"]
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=server_env(workdir / "bench.sqlite"),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://{HOST}:{port}", log_path)
    try:
        wait_healthy(server.url, server.process, START_TIMEOUT, lambda: log_tail(server))
        yield server
    finally:
        stop(process)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- HTTP setup and the publisher -------------------------------------------


def post(http: requests.Session, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(url, json=body, timeout=30)
    if response.status_code != 201:
        raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:300]}")
    result: dict[str, Any] = response.json()
    return result


def create_thread(http: requests.Session, base: str, title: str) -> int:
    agent = post(http, f"{base}/api/agents", {"name": "bench", "task_instructions": "none"})
    thread = post(http, f"{base}/api/threads", {"agent_id": agent["id"], "title": title})
    thread_id: int = thread["id"]
    return thread_id


@dataclass
class Publication:
    ids: list[int] = field(default_factory=list)
    post_seconds: list[float] = field(default_factory=list)
    max_lag: float = 0.0
    started: float = 0.0  # wall clock of the first send
    finished: float = 0.0


def publish(http: requests.Session, url: str, rate: float, duration: float) -> Publication:
    """POST one message per 1/rate s at fixed instants; a late send is not made up by skipping."""
    result = Publication()
    count = max(1, round(rate * duration))
    start = time.monotonic() + 0.05
    result.started = time.time() + 0.05
    for seq in range(count):
        due = start + seq / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        result.max_lag = max(result.max_lag, time.monotonic() - due)
        before = time.perf_counter()
        sent = time.time()
        message = post(http, url, {"content": json.dumps({"seq": seq, "sent": sent})})
        result.post_seconds.append(time.perf_counter() - before)
        result.ids.append(message["id"])
    result.finished = time.time()
    return result


# --- clients: the parent's side ----------------------------------------------


@dataclass
class ClientRecord:
    """One subscriber as reported by its process: frames in arrival order, how it ended."""

    index: int
    received: list[tuple[int, float, float]] = field(default_factory=list)  # id, latency, arrival
    error: str | None = None


@dataclass
class ClientProcess:
    process: subprocess.Popen[str]
    first: int  # index of its first client
    count: int
    output: Path  # JSON lines written on exit
    log: Path  # its stderr


def client_shares(count: int, procs: int) -> list[tuple[int, int]]:
    """Split ``count`` clients over ``procs`` processes: (first index, how many) each."""
    procs = max(1, min(procs, count))
    shares = []
    first = 0
    for k in range(procs):
        size = count // procs + (1 if k < count % procs else 0)
        shares.append((first, size))
        first += size
    return shares


def default_client_procs(count: int) -> int:
    return 2 if count >= 100 else 1


def forward_lines(k: int, stream: IO[str], lines: queue.Queue[tuple[int, str | None]]) -> None:
    """Copy a client process's control lines to ``lines``; None marks its end."""
    try:
        for line in stream:
            lines.put((k, line.strip()))
    except (OSError, ValueError):
        pass
    finally:
        stream.close()
    lines.put((k, None))


def process_log_tail(path: Path, lines: int = 10) -> str:
    """The end of a client process's stderr, on a line of its own; nothing if it is empty."""
    try:
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
    return f"\n{tail}" if tail else ""


@contextmanager
def client_processes(
    url: str,
    count: int,
    procs: int,
    workdir: Path,
    lifetime: float,
    options: dict[str, Any] | None = None,
) -> Iterator[list[ClientProcess]]:
    """Start the client processes and return once every client has its thread history.

    ``options`` go to every client (``headers``, ``browser_deflate``). Every
    process is terminated on the way out if it has not exited by then.
    """
    started: list[ClientProcess] = []
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
    shares = client_shares(count, procs)
    handshakes = max(1, CONCURRENT_HANDSHAKES // len(shares))
    rundir = Path(tempfile.mkdtemp(prefix=f"clients-{count}-", dir=workdir))
    try:
        for k, (first, size) in enumerate(shares):
            name = f"clients-{count}-{k}"
            output = rundir / f"{k}.jsonl"
            config = {
                "url": url,
                "first": first,
                "count": size,
                "handshakes": handshakes,
                "output": str(output),
                "lifetime": lifetime,
                **(options or {}),
            }
            log_path = rundir / f"{k}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), WORKER_ARG, json.dumps(config)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            started.append(ClientProcess(process, first, size, output, log_path))
            assert process.stdout is not None
            reader = threading.Thread(
                target=forward_lines,
                args=(k, process.stdout, lines),
                name=f"bench-{name}",
                daemon=True,
            )
            reader.start()
        wait_ready(started, lines)
        yield started
    finally:
        for client_process in started:
            stop(client_process.process)
            if client_process.process.stdin is not None:
                try:
                    client_process.process.stdin.close()
                except OSError:
                    pass  # a broken pipe: the process is gone anyway


def wait_ready(started: list[ClientProcess], lines: queue.Queue[tuple[int, str | None]]) -> None:
    """Wait for a ``ready`` line from every process; raise on a failure or the timeout."""
    pending = set(range(len(started)))
    deadline = time.monotonic() + SUBSCRIBE_TIMEOUT + PROCESS_GRACE
    while pending:
        try:
            k, line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise RuntimeError(
                f"clients not subscribed within {SUBSCRIBE_TIMEOUT + PROCESS_GRACE:.0f} s"
            ) from None
        if line == "ready":
            pending.discard(k)
        elif line is None or line.startswith("failed"):
            reason = line or f"exited with {started[k].process.wait(timeout=10)}"
            raise RuntimeError(
                f"client process {k} ({started[k].count} clients): {reason}"
                f"{process_log_tail(started[k].log)}"
            )


def stop_and_collect(started: list[ClientProcess]) -> list[ClientRecord]:
    """Tell every process to stop, wait for it to exit, read what its clients received."""
    for client_process in started:
        stdin = client_process.process.stdin
        try:
            if stdin is not None:
                stdin.write("stop\n")
                stdin.close()
        except (BrokenPipeError, OSError):
            pass  # already gone: its exit status below says how
    records: list[ClientRecord] = []
    deadline = time.monotonic() + PROCESS_GRACE
    for k, client_process in enumerate(started):
        try:
            code = client_process.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"client process {k} did not stop within {PROCESS_GRACE:.0f} s"
            ) from None
        if code != 0:
            raise RuntimeError(
                f"client process {k} exited with {code}{process_log_tail(client_process.log)}"
            )
        records += read_records(client_process)
    return records


def read_records(client_process: ClientProcess) -> list[ClientRecord]:
    first, count = client_process.first, client_process.count
    records = [ClientRecord(first + i) for i in range(count)]
    with client_process.output.open() as lines:
        for line in lines:
            item = json.loads(line)
            record = records[item["client"] - first]
            if "error" in item:
                record.error = item["error"]
            else:
                record.received.append((item["id"], item["latency"], item["arrival"]))
    return records


def processes_cpu_seconds(started: list[ClientProcess]) -> float | None:
    readings = [cpu_seconds(client_process.process.pid) for client_process in started]
    if any(reading is None for reading in readings):
        return None
    return sum(reading for reading in readings if reading is not None)


# --- clients: inside a client process ----------------------------------------
#
# ``python ws_fanout.py _client '{json config}'``: its share of the clients in one
# asyncio event loop. Control lines on stdout (``ready`` or ``failed ...``), then
# ``stop`` (or end of input, or the lifetime running out) on stdin ends it; what
# every client received goes to the output file as JSON lines. A frame is only
# timestamped on arrival and parsed after the stop, so the hot path stays short.


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def subscribe(url: str, gate: asyncio.Semaphore, config: dict[str, Any]) -> ClientConnection:
    async with gate:  # a burst of handshakes would overflow the server's listen backlog
        ws = await connect(
            url,
            open_timeout=30,
            compression=None,
            # capacity.py asks for permessage-deflate as a browser does, with a token.
            extensions=[browser_deflate()] if config.get("browser_deflate") else None,
            additional_headers=config.get("headers"),
            max_size=None,
        )
    try:
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "thread_history":
                return ws
            if frame.get("type") == "error":
                raise RuntimeError(f"subscription refused: {frame}")
    except BaseException:
        await ws.close()
        raise


async def receive(ws: ClientConnection, frames: list[tuple[float, str | bytes]]) -> str | None:
    """Keep every frame with its arrival time until the connection closes; the error if any."""
    try:
        async for text in ws:
            frames.append((time.time(), text))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def decode(frames: list[tuple[float, str | bytes]]) -> list[tuple[int, float, float]]:
    """(message id, latency, arrival) for each ``thread_message`` frame, in arrival order."""
    received = []
    for arrived, text in frames:
        frame = json.loads(text)
        if frame.get("type") != "thread_message":
            continue
        message = frame["message"]
        sent = json.loads(message["content"])["sent"]
        received.append((message["id"], arrived - sent, arrived))
    return received


async def close_all(connections: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)


async def client_worker(config: dict[str, Any]) -> int:
    began = time.monotonic()
    gate = asyncio.Semaphore(config["handshakes"])
    count: int = config["count"]
    try:
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
            outcomes = await asyncio.gather(
                *(subscribe(config["url"], gate, config) for _ in range(count)),
                return_exceptions=True,
            )
    except TimeoutError:
        emit(f"failed: not subscribed within {SUBSCRIBE_TIMEOUT:.0f} s")
        return 1
    connections = [ws for ws in outcomes if isinstance(ws, ClientConnection)]
    failures = [ws for ws in outcomes if not isinstance(ws, ClientConnection)]
    if failures:
        await asyncio.wait_for(close_all(connections), CLOSE_TIMEOUT)
        first = failures[0]
        emit(f"failed: {len(failures)} of {count} clients: {type(first).__name__}: {first}")
        return 1

    frames: list[list[tuple[float, str | bytes]]] = [[] for _ in connections]
    receivers = [
        asyncio.create_task(receive(ws, mine)) for ws, mine in zip(connections, frames, strict=True)
    ]
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    emit("ready")
    try:
        remaining = config["lifetime"] - (time.monotonic() - began)
        await asyncio.wait_for(stdin.readline(), max(0.0, remaining))  # "stop" or end of input
    except TimeoutError:
        print("lifetime over before a stop: stopping anyway", file=sys.stderr)

    try:
        await asyncio.wait_for(close_all(connections), CLOSE_TIMEOUT)
    except TimeoutError:
        print("closing the connections timed out", file=sys.stderr)
    done, pending = await asyncio.wait(receivers, timeout=CLOSE_TIMEOUT)
    for task in pending:
        task.cancel()
    with open(config["output"], "w") as output:
        for number, (task, mine) in enumerate(zip(receivers, frames, strict=True)):
            index = config["first"] + number
            for message_id, latency, arrival in decode(mine):
                record = {"client": index, "id": message_id, "latency": latency}
                output.write(json.dumps({**record, "arrival": arrival}) + "\n")
            error = task.result() if task in done else "did not close in time"
            if error:
                output.write(json.dumps({"client": index, "error": error}) + "\n")
    return 0


def client_main(argv: list[str]) -> int:
    # On uvloop: asyncio's own loop spent as much CPU reading the frames as
    # the server spent sending them, and the two share this machine's cores.
    return uvloop.run(client_worker(json.loads(argv[0])))


# --- one measurement --------------------------------------------------------


@dataclass
class Result:
    clients: int
    events: int
    expected: int
    delivered: int
    lost: int
    duplicates: int
    out_of_order: int
    client_errors: int
    throughput: float  # deliveries per second, first send to last arrival
    p50_ms: float
    p99_ms: float
    max_ms: float
    post_p50_ms: float
    post_p99_ms: float
    max_send_lag_ms: float
    server_cpu_pct: float | None
    bench_cpu_pct: float  # this process: the publisher
    clients_cpu_pct: float | None  # the client processes together
    client_procs: int

    @property
    def target_met(self) -> bool:
        return self.lost == 0 and self.client_errors == 0 and self.p99_ms < TARGET_P99_MS


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of unsorted values; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * fraction - 1e-9))
    return ordered[rank - 1]


def count_client(client: ClientRecord, expected: set[int]) -> tuple[int, int, int, list[float]]:
    """Return (unique deliveries, duplicates, out of order, latencies) for one client."""
    seen: set[int] = set()
    duplicates = out_of_order = 0
    latest = 0
    latencies: list[float] = []
    for message_id, latency, _ in client.received:
        if message_id not in expected:
            continue
        if message_id in seen:
            duplicates += 1
            continue
        if message_id < latest:
            out_of_order += 1
        latest = max(latest, message_id)
        seen.add(message_id)
        latencies.append(latency)
    return len(seen), duplicates, out_of_order, latencies


def summarize(
    clients: list[ClientRecord],
    publication: Publication,
    cpu: tuple[float | None, float, float | None],
    procs: int,
) -> Result:
    expected_ids = set(publication.ids)
    delivered = duplicates = out_of_order = 0
    latencies: list[float] = []
    last_arrival = publication.finished
    for client in clients:
        unique, dup, disorder, client_latencies = count_client(client, expected_ids)
        delivered += unique
        duplicates += dup
        out_of_order += disorder
        latencies += client_latencies
        if client.received:
            last_arrival = max(last_arrival, client.received[-1][2])
    events = len(publication.ids)
    expected = events * len(clients)
    elapsed = max(last_arrival - publication.started, 1e-9)
    ms = 1000.0
    return Result(
        clients=len(clients),
        events=events,
        expected=expected,
        delivered=delivered,
        lost=expected - delivered,
        duplicates=duplicates,
        out_of_order=out_of_order,
        client_errors=sum(1 for client in clients if client.error),
        throughput=(delivered + duplicates) / elapsed,
        p50_ms=percentile(latencies, 0.50) * ms,
        p99_ms=percentile(latencies, 0.99) * ms,
        max_ms=max(latencies, default=0.0) * ms,
        post_p50_ms=percentile(publication.post_seconds, 0.50) * ms,
        post_p99_ms=percentile(publication.post_seconds, 0.99) * ms,
        max_send_lag_ms=publication.max_lag * ms,
        server_cpu_pct=cpu[0],
        bench_cpu_pct=cpu[1],
        clients_cpu_pct=cpu[2],
        client_procs=procs,
    )


def measure(
    server: Server,
    workdir: Path,
    count: int,
    procs: int,
    args: argparse.Namespace,
) -> Result:
    """Subscribe ``count`` clients (in ``procs`` processes) to a fresh thread, publish, drain."""
    lifetime = SUBSCRIBE_TIMEOUT + PROCESS_GRACE + args.duration + args.drain + 60.0
    with requests.Session() as http:
        thread_id = create_thread(http, server.url, f"fan-out to {count}")
        url = f"{server.ws_url}/api/ws?initial_topics=thread:{thread_id}"
        with client_processes(url, count, procs, workdir, lifetime) as started:
            before = CpuReading.take(server, started)
            publication = publish(
                http, f"{server.url}/api/threads/{thread_id}/messages", args.rate, args.duration
            )
            time.sleep(args.drain)
            cpu = before.use_since(server, started)
            records = stop_and_collect(started)
    return summarize(records, publication, cpu, len(started))


@dataclass
class CpuReading:
    server: float | None
    bench: float
    clients: float | None
    wall: float

    @classmethod
    def take(cls, server: Server, started: list[ClientProcess]) -> CpuReading:
        return cls(
            cpu_seconds(server.process.pid),
            time.process_time(),
            processes_cpu_seconds(started),
            time.monotonic(),
        )

    def use_since(
        self, server: Server, started: list[ClientProcess]
    ) -> tuple[float | None, float, float | None]:
        """(server, this process, client processes) in percent of one core (200 = 2 cores)."""
        now = CpuReading.take(server, started)
        wall = max(now.wall - self.wall, 1e-9)

        def pct(after: float | None, before: float | None) -> float | None:
            return None if after is None or before is None else 100.0 * (after - before) / wall

        bench = 100.0 * (now.bench - self.bench) / wall
        return pct(now.server, self.server), bench, pct(now.clients, self.clients)


# --- report -----------------------------------------------------------------

COLUMNS = (
    ("clients", "clients", "{:d}"),
    ("events", "events", "{:d}"),
    ("expected", "expected", "{:d}"),
    ("delivered", "delivered", "{:d}"),
    ("lost", "lost", "{:d}"),
    ("dup", "duplicates", "{:d}"),
    ("ooo", "out_of_order", "{:d}"),
    ("frames/s", "throughput", "{:.0f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("max ms", "max_ms", "{:.1f}"),
    ("POST p99 ms", "post_p99_ms", "{:.1f}"),
    ("srv cpu%", "server_cpu_pct", "{:.0f}"),
    ("bench cpu%", "bench_cpu_pct", "{:.0f}"),
    ("procs", "client_procs", "{:d}"),
    ("clients cpu%", "clients_cpu_pct", "{:.0f}"),
)


def cell(result: Result, attribute: str, template: str) -> str:
    value = getattr(result, attribute)
    return "n/a" if value is None else template.format(value)


def print_table(results: list[Result], baseline: Result) -> None:
    headers = [title for title, _, _ in COLUMNS] + ["p99/p99(1)"]
    rows = [
        [cell(result, attribute, template) for _, attribute, template in COLUMNS]
        + [f"{ratio(result.p99_ms, baseline.p99_ms):.2f}"]
        for result in [baseline, *results]
    ]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print("  ".join(text.rjust(width) for text, width in zip(row, widths, strict=True)))


def ratio(value: float, base: float) -> float:
    return value / base if base > 0 else float("inf")


def target_verdict(results: list[Result], rate: float) -> str:
    goal = f"{TARGET_CLIENTS} clients at {TARGET_RATE:g}/s, p99 < {TARGET_P99_MS:g} ms, none lost"
    match = [result for result in results if result.clients == TARGET_CLIENTS]
    if not match or rate != TARGET_RATE:
        return f"target ({goal}): not measured in this run"
    result = match[0]
    verdict = "MET" if result.target_met else "MISSED"
    return f"target ({goal}): {verdict} (p99 {result.p99_ms:.1f} ms, lost {result.lost})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[50, 200], metavar="N", help="one run per N"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds to wait afterwards")
    parser.add_argument(
        "--client-procs",
        type=int,
        metavar="K",
        help="client processes per N (default: 2 for N >= 100, else 1; never more than N)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also save results here")
    args = parser.parse_args(argv)
    if args.client_procs is not None and not 1 <= args.client_procs <= 16:
        parser.error("--client-procs must be between 1 and 16")
    if args.rate <= 0 or args.duration <= 0 or args.drain < 0 or min(args.clients) < 1:
        parser.error("rate and duration must be positive, drain >= 0 and clients >= 1")
    if args.duration > 600 or max(args.clients) > 2000:
        parser.error("keep it bounded: duration <= 600 s and clients <= 2000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Turn SIGTERM into an exception so the server is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    print(
        f"ws fan-out: {args.rate:g} events/s for {args.duration:g} s, drain {args.drain:g} s, "
        f"clients {args.clients} (baseline 1), {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="zerg-bench-") as tmp, running_server(Path(tmp)) as srv:
        baseline = measure(srv, Path(tmp), 1, 1, args)
        results = [
            measure(srv, Path(tmp), n, args.client_procs or default_client_procs(n), args)
            for n in args.clients
        ]
    print_table(results, baseline)
    print(
        "throughput = frames delivered / (first send .. last arrival); cpu% = % of one core; "
        "bench = the publisher, clients = the client processes together"
    )
    verdict = target_verdict(results, args.rate)
    print(verdict)
    if args.json:
        document = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "baseline": asdict(baseline),
            "results": [
                {**asdict(r), "p99_ratio": ratio(r.p99_ms, baseline.p99_ms)} for r in results
            ],
            "target": verdict,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [WORKER_ARG]:
        sys.exit(client_main(sys.argv[2:]))
    sys.exit(main())
