"""One websocket client as the hub serves it: its send queue, its writer and its end.

Every connection has a bounded send queue and one writer thread, the only code
that sends frames on its socket (pings and the reader's replies go through the
same lock, see :class:`WholeSends`). Queuing never waits, so a slow or dead
client never stalls the publisher or the other clients; a client whose queue
overflows is dropped instead, and one that leaves a keepalive ping unanswered
is expired (see ``zerg.realtime.keepalive``).
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import socket
import threading
from typing import Any
from typing import Protocol

from wsproto import ConnectionState
from wsproto import WSConnection
from wsproto.events import Ping
from wsproto.frame_protocol import FrameProtocol
from wsproto.utilities import LocalProtocolError

from zerg.realtime.events import Event
from zerg.realtime.events import id_key

log = logging.getLogger(__name__)

# Queued to end a connection: (close code, reason).
Close = tuple[int, str | None]
NORMAL_CLOSE: Close = (1000, None)
TOO_SLOW: Close = (1008, "too slow")
PING_TIMEOUT: Close = (1008, "ping timeout")
_ids = itertools.count(1)


class Socket(Protocol):
    """The part of simple-websocket's server connection used here."""

    sock: socket.socket | WholeSends
    # The protocol state, whether we may still send, and whether the peer
    # answered our last ping.
    ws: WSConnection
    connected: bool
    pong_received: bool

    def close(self, reason: int | None = None, message: str | None = None) -> None: ...


def text_frame(text: str) -> bytes:
    """Encode ``text`` as one whole websocket text frame, as a server sends it.

    The bytes are the same for every client, since none negotiates an
    extension (permessage-deflate is declined): an event fanned out to a
    thousand clients is encoded once, not once per client.
    """
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(text, fin=True))


class WholeSends:
    """A websocket's socket as its frames need it written: each whole, one writer at a time.

    simple-websocket writes a frame with one ``socket.send`` and ignores how
    much of it went out. A send may write only part: under gevent whenever
    the frame is larger than the room left in the socket's buffer (a client
    reading slowly), and the rest of the frame is lost, which garbles every
    frame after it for that client. Its reader also writes (pongs, the reply
    to a close) while the connection's writer does. So the connection's
    socket is wrapped: every send writes all it is given, under one lock.
    One ``send`` usually takes the whole frame; only the rest, if any, goes
    through ``sendall`` (which under gevent costs a ``getsockopt`` and a
    timer per call, a fifth of a fan-out's CPU when every frame paid it).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, data: bytes, flags: int = 0) -> int:
        with self._lock:
            sent = self._sock.send(data, flags)
            if sent < len(data):
                self._sock.sendall(memoryview(data)[sent:], flags)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Connection:
    """One websocket client: its topics, its send queue and its writer thread."""

    def __init__(self, ws: Socket, queue_size: int, drop_grace: float) -> None:
        self.id = next(_ids)
        if not isinstance(ws.sock, WholeSends):
            ws.sock = WholeSends(ws.sock)
        self.ws = ws
        self.topics: set[str] = set()
        self.dropped = False
        self.closed = False
        self._hang_up = False
        # A close was asked for (request_close): no more pings.
        self._closing = False
        self._drop_grace = drop_grace
        # SimpleQueue is implemented in C and takes no Python-level lock per
        # put, which matters when one event is queued for hundreds of clients;
        # the bound is enforced here instead (approximately, which is enough).
        self._queue_size = queue_size
        self._outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        # While a reconnecting client is brought up to date, live events wait
        # here, so that replayed and live events reach it once and in order.
        self._held: list[tuple[str | None, bytes]] | None = None
        self._hold_lock = threading.Lock()
        self._writer = threading.Thread(
            target=self._write_loop, name=f"zerg-ws-writer-{self.id}", daemon=True
        )

    def start(self) -> None:
        self._writer.start()

    def send(self, frame: dict[str, Any]) -> bool:
        """Queue a frame for this client; False (and the client dropped) if it is behind."""
        return self.send_bytes(text_frame(json.dumps(frame)))

    def send_event(self, event_id: str | None, data: bytes) -> bool:
        """Queue an event's encoded frame, or hold it while the client is resuming."""
        with self._hold_lock:
            if self._held is not None:
                self._held.append((event_id, data))
                return True
        return self.send_bytes(data)

    def hold(self) -> None:
        """Start holding live events back (see ``resume``)."""
        with self._hold_lock:
            self._held = []

    def resume(self, missed: list[Event], after: str) -> None:
        """Send the missed events, then the held live ones that are newer than all of them."""
        with self._hold_lock:
            held, self._held = self._held or [], None
            last = id_key(after)
            for event in missed:
                self.send(event.frame())
                last = max(last, id_key(event.id or after))
            for event_id, data in held:
                if event_id is None or id_key(event_id) > last:
                    self.send_bytes(data)

    def send_bytes(self, data: bytes) -> bool:
        """Queue an encoded frame (see ``text_frame``); False if the client is behind."""
        if self.dropped:
            return False
        if self._outbox.qsize() >= self._queue_size:
            self.drop("client too slow: its send queue overflowed")
            return False
        self._outbox.put(data)
        return True

    def ping(self) -> bool:
        """Send a keepalive ping (see ``zerg.realtime.keepalive``); False once the client is gone.

        A client that has not answered the previous ping is expired instead.
        Once we have asked to close, nothing more may be sent: the turn only
        counts, and a client that has not answered our close by the turn after
        is hung up on. The ping goes straight to the socket, past the send
        queue: it must not wait behind a backlog, and it is a frame of two bytes.
        """
        if self.closed or self.dropped:
            return False
        if not self.ws.pong_received:
            self.expire()
            return False
        self.ws.pong_received = False
        if self._closing:
            return True
        try:
            self.ws.sock.send(self.ws.ws.send(Ping()))
        except (OSError, LocalProtocolError):
            # Gone, or closing: the reader notices and the handler cleans up.
            return False
        return True

    def expire(self) -> None:
        """Drop a client that left a ping (or our close) unanswered for a whole interval.

        It has had its grace already, so the writer hangs up right after the
        close frame instead of waiting for a reply: a peer that vanished (a
        laptop closed, a network gone) sends none.
        """
        if self._closing:
            self._shutdown_socket()
            return
        self.drop("no answer to the keepalive ping (WS_PING_INTERVAL)", PING_TIMEOUT, True)

    def drop(self, reason: str, close: Close = TOO_SLOW, hang_up: bool = False) -> None:
        """Disconnect a client that cannot keep up, telling it why if it still listens.

        The queue is emptied so the error frame goes out next. If the client
        reads nothing within the grace period, its socket is shut down, which
        frees a writer blocked on a full TCP buffer and wakes the reader, which
        would otherwise wait forever for the close reply of a client that has
        stopped reading. With ``hang_up``, the writer shuts it down as soon as
        the close frame is out.
        """
        if self.dropped:
            return
        self._hang_up = hang_up
        self.dropped = True
        log.warning("dropping websocket client %s: %s", self.id, reason)
        while True:
            try:
                self._outbox.get_nowait()
            except queue.Empty:
                break
        error = {"type": "error", "message_id": None, "error": reason, "details": None}
        self._outbox.put_nowait(text_frame(json.dumps(error)))
        self._outbox.put_nowait(close)
        timer = threading.Timer(self._drop_grace, self._shutdown_socket)
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        """Let the writer send what is queued and a close frame, then end the connection.

        The socket is shut down last in every case: some servers (Werkzeug's)
        keep reading a finished websocket's socket until the peer hangs up,
        while the peer waits for the server to hang up first.
        """
        self.closed = True
        self._outbox.put(NORMAL_CLOSE)
        self._writer.join(timeout=self._drop_grace + 1)
        self._shutdown_socket()
        self._writer.join(timeout=1)

    def request_close(self, code: int, reason: str) -> None:
        """Ask the writer to close after what is queued; the handler cleans up."""
        self._closing = True
        self._outbox.put((code, reason))

    def _shutdown_socket(self) -> None:
        """Cut the connection off, waking any thread blocked on it."""
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write_loop(self) -> None:
        while True:
            item = self._outbox.get()
            try:
                if isinstance(item, tuple):
                    code, reason = item
                    self.ws.close(code, reason)
                    if self._hang_up:
                        self._shutdown_socket()
                    return
                # What simple-websocket's send checks: nothing after a close.
                if not self.ws.connected or self.ws.ws.state is not ConnectionState.OPEN:
                    return
                self.ws.sock.send(item)  # type: ignore[arg-type]
            except Exception:
                # The peer went away; the reader side notices and cleans up.
                return
