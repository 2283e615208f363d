"""A small synchronous websocket client for tests, over the websockets library's real client."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


class WSClient:
    """Send and receive JSON frames; fail loudly when a frame does not come."""

    def __init__(self, url: str, **options: Any) -> None:
        """Connect; ``options`` go to the handshake (``origin``, ``additional_headers``)."""
        self.ws = connect(url, open_timeout=10, max_size=None, compression=None, **options)

    def send(self, frame: dict[str, Any] | str | bytes) -> None:
        self.ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    def recv(self, timeout: float = 5) -> dict[str, Any]:
        try:
            text = self.ws.recv(timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"no frame within {timeout} s") from None
        frame: dict[str, Any] = json.loads(text)
        return frame

    def recv_type(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        frame = self.recv(timeout)
        assert frame["type"] == kind, frame
        return frame

    def recv_until(
        self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        """Skip frames (other events of the same topics) until one is wanted.

        Events from another process arrive through Redis whenever its listener
        delivers them, so one made before a subscription may still land after it.
        """
        for _ in range(200):
            frame = self.recv(timeout)
            if wanted(frame):
                return frame
        raise AssertionError("the wanted frame never came")

    def expect_silence(self, seconds: float = 0.3) -> None:
        try:
            text = self.ws.recv(timeout=seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame: {text!r}")

    def wait_closed(self, timeout: float = 10) -> int | None:
        """Wait for the server to close the connection; return its close code."""
        try:
            while True:
                self.ws.recv(timeout=timeout)
        except ConnectionClosed:
            return self.ws.close_code
        except TimeoutError:
            raise AssertionError(f"still open after {timeout} s") from None

    def ping(self, message_id: str = "alive") -> None:
        """Prove the connection still answers."""
        self.send({"type": "ping", "message_id": message_id})
        assert self.recv_type("pong")["message_id"] == message_id

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> WSClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
