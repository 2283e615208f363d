"""The production server capacity.py measures, and the client processes it drives.

``production_server`` runs the README's production command: gunicorn with
``gunicorn.conf.py`` and 2 workers (``-k`` picks the worker class, overriding
the config), ``ENVIRONMENT=production`` with an API token, PostgreSQL in a
schema of the benchmark's own (upgraded with ``flask db upgrade`` first, as
``make serve`` does, and dropped afterwards), ``EVENT_BACKEND=redis`` on a
stream of its own (deleted afterwards), and the stand-in model as its OpenAI
provider. ``ClientProcess`` runs ``ws_hold.py`` and reads its control lines
with a deadline, so nothing here waits for ever.
"""

from __future__ import annotations

import json
import math
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from typing import Any

import psycopg
import redis
import requests
from common import HOST
from common import child_pids
from common import free_port
from common import process_cpu_seconds
from common import rss_bytes
from common import wait_healthy
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORKERS = 2
START_TIMEOUT = 90.0
# The drain on SIGTERM gets GRACEFUL_TIMEOUT; a worker that hangs past it is killed.
GRACEFUL_TIMEOUT = 10
STOP_TIMEOUT = GRACEFUL_TIMEOUT + 20.0


@dataclass
class Server:
    worker_class: str
    process: subprocess.Popen[bytes]
    url: str
    token: str
    log_path: Path
    workers: list[int]

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/api/ws"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def rss(self) -> int:
        """Sum of the workers' resident memory, in bytes."""
        return sum(rss_bytes(pid) for pid in self.workers)

    def cpu(self) -> float:
        """Sum of the workers' user + system CPU seconds."""
        return sum(process_cpu_seconds(pid) for pid in self.workers)

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        # The token never reaches the log through us, but mask it all the same.
        return "\n".join(text.splitlines()[-lines:]).replace(self.token, "***")


@contextmanager
def postgresql_schema(admin_url: str, name: str) -> Iterator[str]:
    """Lend a SQLAlchemy URL whose ``search_path`` is a new schema; drop it afterwards."""
    plain = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True, connect_timeout=10) as connection:
        connection.execute(f"CREATE SCHEMA {name}")
    try:
        url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={name}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(plain, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def server_env(
    database_url: str, redis_url: str, stream: str, token: str, port: int, model_url: str
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ENVIRONMENT="production",
        API_TOKEN=token,
        DATABASE_URL=database_url,
        EVENT_BACKEND="redis",
        REDIS_URL=redis_url,
        EVENT_STREAM=stream,
        BIND=f"{HOST}:{port}",
        WEB_CONCURRENCY=str(WORKERS),
        GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT),
        LLM_PROVIDER="openai",
        OPENAI_BASE_URL=model_url,
        OPENAI_API_KEY="bench-standin",
        OPENAI_MODELS="standin",
        PYTHON_DOTENV_DISABLED="1",  # a developer's .env must not change the measurement
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def production_server(
    worker_class: str,
    workdir: Path,
    database_url: str,
    redis_url: str,
    model_url: str,
    gunicorn_args: list[str],
) -> Iterator[Server]:
    """Serve zerg as the README's production command does; stop it and clean up afterwards."""
    tag = secrets.token_hex(4)
    stream = f"zerg:bench:capacity:{worker_class}:{tag}"
    token = secrets.token_hex(16)
    port = free_port()
    log_path = workdir / f"server-{worker_class}.log"
    with postgresql_schema(database_url, f"bench_capacity_{worker_class}_{tag}") as url:
        env = server_env(url, redis_url, stream, token, port, model_url)
        with log_path.open("wb") as log:
            subprocess.run(
                [sys.executable, "-m", "flask", "--app", "zerg", "db", "upgrade"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=START_TIMEOUT,
                check=True,
            )
            command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
            command += ["-k", worker_class, *gunicorn_args]
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(worker_class, process, f"http://{HOST}:{port}", token, log_path, [])
        try:
            wait_healthy(server.url, process, START_TIMEOUT, server.log_tail)
            server.workers = wait_workers(server)
            yield server
        finally:
            stop(process)
            client = redis.Redis.from_url(redis_url, socket_timeout=10)
            client.delete(stream)
            client.close()


def wait_workers(server: Server) -> list[int]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        workers = child_pids(server.process.pid)
        if len(workers) == WORKERS:
            return workers
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not start {WORKERS} workers:\n{server.log_tail()}")


def stop(process: subprocess.Popen[Any]) -> float:
    """SIGTERM, then SIGKILL to its process group if it lingers; return the seconds it took."""
    began = time.monotonic()
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # its own session
            except OSError:
                process.kill()
            process.wait(timeout=STOP_TIMEOUT)
    return time.monotonic() - began


# --- client processes ------------------------------------------------------------


class ClientProcess:
    """One ``ws_hold.py`` process; its control lines are read with a deadline."""

    def __init__(self, config: dict[str, Any], log_path: Path) -> None:
        self.log_path = log_path
        self.lines: queue.Queue[str | None] = queue.Queue()
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(BENCH / "ws_hold.py"), json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.process.stdout is not None
        threading.Thread(
            target=self.forward, args=(self.process.stdout,), name="bench-client", daemon=True
        ).start()

    def forward(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self.lines.put(line.strip())
        except (OSError, ValueError):
            pass
        self.lines.put(None)

    def expect(self, word: str, timeout: float) -> dict[str, Any]:
        """Wait for the ``word {json}`` line; raise with the process's stderr otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"no {word!r} from a client process in {timeout:.0f} s"
                ) from None
            if line is None:
                code = self.process.wait(timeout=10)
                raise RuntimeError(f"client process exited ({code}) before {word!r}{self.tail()}")
            head, _, payload = line.partition(" ")
            if head == word:
                result: dict[str, Any] = json.loads(payload)
                return result

    def latest(self, word: str) -> dict[str, Any] | None:
        """The last ``word`` line received so far, without waiting; others are dropped."""
        found = None
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return found
            if line is None:
                self.lines.put(None)  # for expect() to report the exit
                return found
            head, _, payload = line.partition(" ")
            if head == word:
                found = json.loads(payload)

    def stop(self, timeout: float) -> dict[str, Any]:
        """Tell it to close its sockets; return its ``closed`` line."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write("stop\n")
            self.process.stdin.close()
        except OSError:
            pass  # gone already: expect() says how
        try:
            return self.expect("closed", timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def cpu(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def tail(self, lines: int = 10) -> str:
        try:
            text = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
        return f"\n{text}" if text else ""


# --- an HTTP probe --------------------------------------------------------------


@dataclass
class Probe:
    """Latencies of one GET repeated at a pace; ``None`` for a timeout, an error or a non-2xx."""

    latencies: list[float | None]

    @property
    def failures(self) -> int:
        return sum(1 for latency in self.latencies if latency is None)

    def percentile_ms(self, fraction: float) -> float:
        """Nearest rank, a failure counting as slower than any answer (inf)."""
        ordered = sorted(float("inf") if v is None else v for v in self.latencies)
        if not ordered:
            return float("nan")
        rank = max(1, math.ceil(len(ordered) * fraction - 1e-9))
        return ordered[rank - 1] * 1000


def probe(
    url: str,
    headers: dict[str, str],
    until: threading.Event | float,
    interval: float = 0.05,
    timeout: float = 5.0,
) -> Probe:
    """GET ``url`` one request at a time until ``until`` (a monotonic time, or an event) passes."""
    result = Probe([])
    with requests.Session() as http:
        http.headers.update(headers)
        while not (
            until.is_set() if isinstance(until, threading.Event) else time.monotonic() >= until
        ):
            began = time.perf_counter()
            try:
                response = http.get(url, timeout=timeout)
                ok = 200 <= response.status_code < 300
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - began
            result.latencies.append(elapsed if ok else None)
            time.sleep(max(0.0, interval - elapsed))
    return result
