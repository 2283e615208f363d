"""What the benchmark scripts share: a free local port, and waiting for a server.

The scripts run as ``python bench/<name>.py``, so this module is imported by
its plain name (``from common import ...``): Python puts the script's own
folder first on the path.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

import requests

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
