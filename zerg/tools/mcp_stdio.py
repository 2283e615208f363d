"""The stdio transport for MCP servers: a subprocess speaking JSON-RPC, one message a line.

Why zerg has its own rather than the SDK's ``stdio_client``: that one starts
the server through asyncio's subprocess support, which calls
``subprocess.Popen`` from the running loop's thread. Under gunicorn's gevent
worker that is gevent's ``Popen``, which may start a child only from the
hub's own thread, and the MCP client's loop runs on one of gevent's real
worker threads (see :mod:`zerg.tools.mcp_client`): every stdio server failed
to start. Here the process is started with the C library's ``posix_spawnp``
(gevent's version would also watch the child from the hub, which only the
hub's own thread may ask), its pipes are read and written by the same
asyncio loop, and it is reaped by polling ``waitpid``: one transport for
plain threads and gevent alike.

The server runs in a session of its own so that stopping it stops whatever
it started too: stdin is closed first (the MCP way to ask a stdio server to
exit), then the group gets SIGTERM, then SIGKILL, each after a short wait.
Its stderr is discarded: a server's chatter there is not zerg's log, and it
could hold the secrets it was given.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import asynccontextmanager
from contextlib import suppress
from dataclasses import dataclass

import anyio
import mcp_types
from mcp.client._transport import TransportStreams
from mcp.client.stdio import get_default_environment
from mcp.shared.message import SessionMessage

# A JSON-RPC message longer than this is refused rather than buffered (16 MiB).
MAX_LINE_BYTES = 16 * 1024 * 1024
STOP_WAIT_SECONDS = 2.0


@dataclass
class _Child:
    """A started server: its pid and our ends of its stdin and stdout."""

    pid: int
    stdin: int
    stdout: int
    exited: bool = False

    def poll(self) -> bool:
        """Reap it if it has exited; a child already reaped elsewhere counts as exited."""
        if not self.exited:
            try:
                self.exited = os.waitpid(self.pid, os.WNOHANG)[0] != 0
            except ChildProcessError:
                self.exited = True
        return self.exited


def _spawn(command: str, args: Sequence[str], env: Mapping[str, str]) -> _Child:
    """Start ``command`` (searched on PATH) in a session of its own, stderr discarded."""
    child_stdin, stdin = os.pipe()
    stdout, child_stdout = os.pipe()
    actions = [
        (os.POSIX_SPAWN_DUP2, child_stdin, 0),
        (os.POSIX_SPAWN_DUP2, child_stdout, 1),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    try:
        pid = _posix_spawnp()(command, [command, *args], env, file_actions=actions, setsid=True)
    except BaseException:
        os.close(stdin)
        os.close(stdout)
        raise
    finally:
        os.close(child_stdin)
        os.close(child_stdout)
    return _Child(pid, stdin, stdout)


@asynccontextmanager
async def stdio_transport(
    command: str, args: Sequence[str], env: Mapping[str, str]
) -> AsyncIterator[TransportStreams]:
    """Start the server and yield the session's (read, write) streams; stop it on exit.

    The server inherits only the SDK's short list of safe variables
    (``HOME``, ``PATH``…) plus ``env``, never zerg's own environment.
    """
    child = _spawn(command, args, get_default_environment() | dict(env))
    try:
        async with _streams(child) as streams:
            yield streams
    finally:
        await _stop(child)


@asynccontextmanager
async def _streams(child: _Child) -> AsyncIterator[TransportStreams]:
    """Bridge the child's pipes and the session's memory streams with two tasks."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    stdout, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), open(child.stdout, "rb", buffering=0)
    )
    stdin, _ = await loop.connect_write_pipe(asyncio.Protocol, open(child.stdin, "wb", buffering=0))
    to_session, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, from_session = anyio.create_memory_object_stream[SessionMessage](0)

    async def read() -> None:
        async with to_session:
            while line := await reader.readline():
                await to_session.send(_parse(line))

    async def write() -> None:
        async with from_session:
            async for message in from_session:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                stdin.write(data.encode() + b"\n")

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read)
            tasks.start_soon(write)
            try:
                yield read_stream, write_stream
            finally:
                tasks.cancel_scope.cancel()
    finally:
        # Closing our end of stdin is how an MCP stdio server is asked to exit.
        stdin.close()
        stdout.close()


def _parse(line: bytes) -> SessionMessage | Exception:
    """One line of the server's stdout; what is not JSON-RPC goes to the session as an error."""
    try:
        message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError as error:
        return error
    return SessionMessage(message)


async def _stop(child: _Child) -> None:
    """Let the server exit, then make it: SIGTERM, then SIGKILL, to its whole session.

    Shielded: a cancelled caller must still not leave a server running.
    """
    with anyio.CancelScope(shield=True):
        for sent in (None, signal.SIGTERM, signal.SIGKILL):
            if sent is not None:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, sent)
            if await _exited(child, STOP_WAIT_SECONDS):
                break


async def _exited(child: _Child, within: float) -> bool:
    """Poll without blocking the loop: waiting on a child is not cooperative under gevent."""
    with anyio.move_on_after(within):
        while not child.poll():
            await anyio.sleep(0.01)
        return True
    return False


def _posix_spawnp() -> Callable[..., int]:
    """The C library's ``posix_spawnp``, even where gevent has patched ``os``."""
    try:
        from gevent.monkey import get_original
    except ImportError:  # gevent is a production extra
        return os.posix_spawnp
    spawn: Callable[..., int] = get_original("os", "posix_spawnp")
    return spawn
