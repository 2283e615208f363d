"""What the benchmark scripts share: a free local port, waiting for a server, /proc readings.

The scripts run as ``python bench/<name>.py``, so this module is imported by
its plain name (``from common import ...``): Python puts the script's own
folder first on the path.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import requests
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

HOST = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on HOST that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(
    base: str,
    process: subprocess.Popen[bytes],
    timeout: float,
    describe: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``{base}/api/health`` until it answers 200.

    Raises RuntimeError, with ``describe()`` (say, the server's log) appended,
    if the process exits first or ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server at {base} exited during start-up\n{describe()}")
        try:
            if requests.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server at {base} did not answer within {timeout:.0f} s\n{describe()}")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds(core: int | None = None) -> float:
    """CPU seconds spent busy since boot (/proc/stat): on all cores, or on ``core``."""
    name = "cpu" if core is None else f"cpu{core}"
    try:
        lines = Path("/proc/stat").read_text().splitlines()
        line = next(line for line in lines if line.split()[0] == name)
        values = [int(v) for v in line.split()[1:]]
    except (OSError, ValueError, StopIteration):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (VmRSS in /proc/<pid>/status; 0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(child) for child in text.split()]
    except OSError:
        pass
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def raise_open_files_limit() -> int:
    """Lift this process's soft RLIMIT_NOFILE to its hard limit; children inherit it.

    Thousands of sockets need thousands of descriptors, on both sides.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def browser_deflate() -> ClientPerMessageDeflateFactory:
    """Offer permessage-deflate as browsers do: ``permessage-deflate; client_max_window_bits``.

    No ``server_max_window_bits``, so the server keeps its full 32 KB window,
    which is what it pays for a browser. The client's own compressor is kept
    small (memLevel 5): it only sets this process's memory, not the server's.
    """
    return ClientPerMessageDeflateFactory(
        client_max_window_bits=True, compress_settings={"memLevel": 5}
    )
