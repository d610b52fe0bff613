"""A small Redis client on trio: pipelined commands, Lua scripts and subscriptions.

A shared crawl talks to Redis on every batch of pages, so the per-call cost
matters. Measured on loopback, one GET took about 50 µs over a trio socket
with hiredis parsing the replies, against 600-850 µs through a general
anyio-based client under trio. The crawl needs only three things from Redis,
which is what this module offers: a batch of commands sent in one write
(``pipeline``), Lua scripts run by SHA with a fallback to loading them
(``Script``), messages published on a few channels (``Subscription``, so
that a waiting worker is woken rather than polling), and a clear error naming
the server and the command when something fails. Replies are parsed by
hiredis, the C parser Redis itself ships.

Cancellation: a call cancelled after its request was written may still run on
the server, and its reply would be read by the next call. So a connection
whose call was interrupted is closed, never reused; callers that must not
leave a half-known state (leases, commits) shield their calls.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import unquote, urlsplit

import hiredis
import trio

__all__ = [
    "RedisClient",
    "RedisCommandError",
    "RedisConnectionError",
    "RedisError",
    "RedisTarget",
    "Script",
    "Subscription",
]

log = logging.getLogger("crawler.distributed")

Arg = bytes | str | int | float
Reply = object

_READ_SIZE = 65536
_DEFAULT_POOL = 4
_RESUBSCRIBE_FIRST = 0.1  # a lost subscription is made again after this, doubling up to
_RESUBSCRIBE_MAX = 5.0


class RedisError(Exception):
    """Base class of every error this client raises."""


class RedisConnectionError(RedisError):
    """The server could not be reached, or the connection broke mid-call."""


class RedisCommandError(RedisError):
    """The server answered a command with an error reply."""


@dataclass(frozen=True)
class RedisTarget:
    """Where a Redis server is and how to log in, parsed from a ``redis://`` URL.

    The password may come from the URL or, so that it stays out of command
    lines and process listings, from the ``REDIS_PASSWORD`` environment
    variable.
    """

    host: str
    port: int
    db: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> RedisTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise RedisError(f"{_safe(url)}: a Redis URL starts with redis:// or rediss://")
        path = parts.path.lstrip("/")
        try:
            db = int(path) if path else 0
            port = parts.port or 6379
        except ValueError as exc:
            raise RedisError(f"{_safe(url)}: bad port or database number ({exc})") from None
        password = unquote(parts.password) if parts.password else os.environ.get("REDIS_PASSWORD")
        username = unquote(parts.username) if parts.username else None
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            db=db,
            tls=parts.scheme == "rediss",
            username=username or None,
            password=password or None,
        )

    def __str__(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


def _safe(url: str) -> str:
    """``url`` without its credentials, for messages."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"***@{host}{port}").geturl()


def encode_command(args: Sequence[Arg]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        else:
            data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Connection:
    """One socket to the server; callers hold the pool's slot while they use it."""

    def __init__(self, stream: trio.abc.Stream, target: RedisTarget) -> None:
        self._stream = stream
        self._target = target
        self._reader = hiredis.Reader()
        self.broken = False

    async def call(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        """Send every command in one write and read one reply each, in order."""
        payload = b"".join(encode_command(c) for c in commands)
        done = False
        try:
            await self._stream.send_all(payload)
            replies = [await self._read_reply() for _ in commands]
            done = True
            return replies
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise RedisConnectionError(f"{self._target}: connection lost ({exc})") from None
        except hiredis.ProtocolError as exc:
            raise RedisConnectionError(f"{self._target}: not a Redis reply ({exc})") from None
        finally:
            if not done:
                self.broken = True

    async def send_all(self, payload: bytes) -> None:
        try:
            await self._stream.send_all(payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.broken = True
            raise RedisConnectionError(f"{self._target}: connection lost ({exc})") from None

    async def receive(self) -> Reply:
        """The next message the server pushes (on a subscribed connection)."""
        done = False
        try:
            reply = await self._read_reply()
            done = True
            return reply
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise RedisConnectionError(f"{self._target}: connection lost ({exc})") from None
        except hiredis.ProtocolError as exc:
            raise RedisConnectionError(f"{self._target}: not a Redis reply ({exc})") from None
        finally:
            if not done:
                self.broken = True

    async def _read_reply(self) -> Reply:
        while True:
            reply = self._reader.gets()
            if reply is not False:
                return reply
            data = await self._stream.receive_some(_READ_SIZE)
            if not data:
                raise RedisConnectionError(f"{self._target}: the server closed the connection")
            self._reader.feed(data if isinstance(data, bytes) else bytes(data))

    async def aclose(self) -> None:
        self.broken = True
        with trio.CancelScope(shield=True):
            await self._stream.aclose()


class Script:
    """A Lua script, run by its SHA1 and loaded on the server the first time it is missing."""

    def __init__(self, source: str, name: str) -> None:
        self.source = source
        self.name = name
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def command(self, keys: Sequence[Arg], args: Sequence[Arg]) -> list[Arg]:
        return ["EVALSHA", self.sha, len(keys), *keys, *args]


class RedisClient:
    """A pool of a few connections to one server; open once, share across tasks.

    ``pipeline`` is the one primitive: the crawl batches everything it sends,
    so a call is a list of commands and the answer is their replies. A reply
    that is an error raises ``RedisCommandError`` naming the command, after
    the whole batch was read (the connection stays in step).
    """

    def __init__(
        self,
        url: str,
        *,
        scripts: Sequence[Script] = (),
        pool_size: int = _DEFAULT_POOL,
        connect_timeout: float = 10.0,
    ) -> None:
        self.target = RedisTarget.from_url(url)
        self._scripts = {script.sha: script for script in scripts}
        self._connect_timeout = connect_timeout
        self._idle: list[_Connection] = []
        self._slots = trio.Semaphore(pool_size)
        self._closed = False

    async def __aenter__(self) -> RedisClient:
        try:
            await self.execute("PING")
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.aclose()

    async def execute(self, *args: Arg) -> Reply:
        """One command; its reply."""
        return (await self.pipeline([args]))[0]

    def register(self, script: Script) -> Script:
        """Make ``script`` known: loaded on every new connection, reloaded when missing."""
        self._scripts[script.sha] = script
        return script

    async def run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Reply:
        """Run ``script`` (registering it if needed); its reply."""
        if script.sha not in self._scripts:
            self.register(script)
        return (await self.pipeline([script.command(keys, args)]))[0]

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        """Send ``commands`` in one write; their replies in order.

        Scripts are loaded on every new connection, so ``EVALSHA`` finds them;
        when one is missing anyway (``SCRIPT FLUSH`` on a live connection),
        the scripts are loaded and just the refused commands are sent again.
        A refused script did nothing, so nothing runs twice, but it then runs
        after the rest of its batch: keep a script that must run in order in a
        batch of its own.
        """
        if self._closed:
            raise RedisError(f"{self.target}: the client is closed")
        replies = await self._call(commands)
        missing = [i for i, reply in enumerate(replies) if _is_noscript(reply)]
        if missing:
            load: list[list[Arg]] = [["SCRIPT", "LOAD", s.source] for s in self._scripts.values()]
            again = await self._call([*load, *(commands[i] for i in missing)])
            for i, reply in zip(missing, again[len(load) :], strict=True):
                replies[i] = reply
        for command, reply in zip(commands, replies, strict=True):
            if isinstance(reply, hiredis.ReplyError):
                raise RedisCommandError(f"{self.target}: {self._describe(command)} failed: {reply}")
        return replies

    def _describe(self, command: Sequence[Arg]) -> str:
        """A command's name for an error message; a script by its name, never its arguments."""
        name = command[0]
        if name == "EVALSHA":
            script = self._scripts.get(str(command[1]))
            if script is not None:
                return f"script {script.name}"
        return name.decode(errors="replace") if isinstance(name, bytes) else str(name)

    async def _call(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        async with self._slots:
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                replies = await connection.call(commands)
            finally:
                if connection.broken or self._closed:
                    await connection.aclose()
                else:
                    self._idle.append(connection)
            return replies

    async def _connect(self, *, scripts: bool = True) -> _Connection:
        target = self.target
        try:
            with trio.fail_after(self._connect_timeout):
                socket_stream = await trio.open_tcp_stream(target.host, target.port)
                _refuse_self_connection(socket_stream, target)
                stream: trio.abc.Stream = socket_stream
                if target.tls:
                    context = ssl.create_default_context()
                    stream = trio.SSLStream(stream, context, server_hostname=target.host)
                    await stream.do_handshake()
        except trio.TooSlowError:
            raise RedisConnectionError(
                f"{target}: no connection within {self._connect_timeout:g} s"
            ) from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise RedisConnectionError(f"{target}: cannot connect ({exc})") from None
        except RedisConnectionError:
            await socket_stream.aclose()
            raise
        connection = _Connection(stream, target)
        hello: list[list[Arg]] = []
        if target.password is not None:
            auth: list[Arg] = ["AUTH", target.password]
            if target.username is not None:
                auth.insert(1, target.username)
            hello.append(auth)
        if target.db:
            hello.append(["SELECT", target.db])
        if scripts:
            hello.extend(["SCRIPT", "LOAD", s.source] for s in self._scripts.values())
        if hello:
            try:
                replies = await connection.call(hello)
            except BaseException:
                # Broken while logging in: close it here, not in the garbage collector.
                await connection.aclose()
                raise
            for command, reply in zip(hello, replies, strict=True):
                if isinstance(reply, hiredis.ReplyError):
                    await connection.aclose()
                    raise RedisConnectionError(f"{target}: {command[0]!s} refused: {reply}")
        return connection


class Subscription:
    """Messages published on ``channels``, each passed to ``on_message(channel, data)``.

    A subscribed connection carries nothing but messages, so it is one of its own,
    outside the client's pool, and it is closed (never reused) when ``run`` ends,
    cancelled or not. Messages are hints, not a log: one published while the
    connection was down is lost. So ``ready`` says whether messages come now (a
    waiter that sees it false polls instead), and ``on_ready`` is called each time
    the subscription is made, for the owner to look again at what it may have
    missed meanwhile.
    """

    def __init__(
        self,
        client: RedisClient,
        channels: Sequence[str],
        on_message: Callable[[bytes, bytes], None],
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self.channels = list(channels)
        self._on_message = on_message
        self._on_ready = on_ready
        self.ready = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay subscribed until cancelled, subscribing again after a loss.

        ``started`` once the first attempt succeeded or failed: from then on,
        when ``ready``, every message published reaches ``on_message``."""
        backoff = _RESUBSCRIBE_FIRST
        started = False
        failed = False
        while True:
            try:
                connection = await self._client._connect(scripts=False)
                try:
                    await self._subscribe(connection)
                    self.ready = True
                    backoff = _RESUBSCRIBE_FIRST
                    if failed:
                        failed = False
                        log.info("%s: subscribed again to %s", self._client.target, self.channels)
                    if self._on_ready is not None:
                        self._on_ready()
                    if not started:
                        started = True
                        task_status.started()
                    await self._listen(connection)
                finally:
                    self.ready = False
                    await connection.aclose()
            except RedisError as exc:
                if not failed:
                    failed = True
                    log.info(
                        "%s: no subscription to %s (%s); polling until there is one",
                        self._client.target,
                        self.channels,
                        exc,
                    )
            if not started:
                started = True
                task_status.started()
            await trio.sleep(backoff)
            backoff = min(_RESUBSCRIBE_MAX, backoff * 2)

    async def _subscribe(self, connection: _Connection) -> None:
        await connection.send_all(encode_command(["SUBSCRIBE", *self.channels]))
        for channel in self.channels:
            reply = await connection.receive()
            if not (
                isinstance(reply, list)
                and len(reply) == 3
                and reply[:2] == [b"subscribe", channel.encode()]
            ):
                raise RedisCommandError(f"{self._client.target}: SUBSCRIBE refused: {reply!r}")

    async def _listen(self, connection: _Connection) -> None:
        while True:
            reply = await connection.receive()
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                channel, data = reply[1], reply[2]
                if isinstance(channel, bytes) and isinstance(data, bytes):
                    self._on_message(channel, data)


def _refuse_self_connection(stream: trio.SocketStream, target: RedisTarget) -> None:
    """A TCP connection to a loopback port nobody listens on can connect to itself
    (the kernel picks that very port as its source); it would then hold the port
    against the server coming back, and read its own commands as replies."""
    sock = stream.socket
    if sock.getsockname() == sock.getpeername():
        raise RedisConnectionError(f"{target}: cannot connect (connected to itself: no server)")


def _is_noscript(reply: Reply) -> bool:
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT")
