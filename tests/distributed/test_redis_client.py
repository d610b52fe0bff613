"""The trio Redis client against a real redis-server on loopback."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import trio

from crawler.distributed import (
    RedisClient,
    RedisCommandError,
    RedisConnectionError,
    RedisError,
    RedisTarget,
    Script,
    Subscription,
)
from crawler.distributed._redis import _refuse_self_connection
from tests.redis_server import RedisServer, free_port, run_redis
from tests.servers import serve_tcp

INCR_BY = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])", "incr_by")


async def test_pipeline_sends_a_batch_and_returns_replies_in_order(
    redis_server: RedisServer,
) -> None:
    async with RedisClient(redis_server.url) as client:
        replies = await client.pipeline(
            [["SET", "k", "v"], ["GET", "k"], ["RPUSH", "l", "a", "b"], ["LRANGE", "l", 0, -1]]
        )
    assert replies == [b"OK", b"v", 2, [b"a", b"b"]]


async def test_binary_values_round_trip(redis_server: RedisServer) -> None:
    value = bytes(range(256)) * 3 + b"\r\n$5\r\n"
    async with RedisClient(redis_server.url) as client:
        await client.execute("SET", "bin", value)
        assert await client.execute("GET", "bin") == value


async def test_a_script_runs_by_sha_and_is_reloaded_after_a_flush(
    redis_server: RedisServer,
) -> None:
    async with RedisClient(redis_server.url, scripts=[INCR_BY]) as client:
        assert await client.run(INCR_BY, ["n"], [5]) == 5
        await client.execute("SCRIPT", "FLUSH")
        # the refused script is sent again after loading, and ran once only
        assert await client.run(INCR_BY, ["n"], [2]) == 7
        assert await client.execute("GET", "n") == b"7"


async def test_an_error_reply_names_the_command_and_keeps_the_connection_usable(
    redis_server: RedisServer,
) -> None:
    async with RedisClient(redis_server.url, pool_size=1) as client:
        await client.execute("SET", "s", "text")
        with pytest.raises(RedisCommandError, match=r"INCR failed: .*not an integer"):
            await client.pipeline([["INCR", "s"], ["SET", "after", "1"]])
        # the reply after the error was read too: the next call is not out of step
        assert await client.execute("GET", "after") == b"1"


async def test_a_failing_script_is_named_without_its_arguments(
    redis_server: RedisServer,
) -> None:
    broken = Script("return redis.call('NOSUCHCOMMAND')", "broken_script")
    async with RedisClient(redis_server.url) as client:
        with pytest.raises(RedisCommandError, match="script broken_script failed") as err:
            await client.run(broken, ["key"], ["secret-argument"])
    assert "secret-argument" not in str(err.value)


async def test_a_cancelled_call_does_not_leave_its_reply_for_the_next_one(
    redis_server: RedisServer,
) -> None:
    async with RedisClient(redis_server.url, pool_size=1) as client:
        await client.execute("RPUSH", "q", "first")
        with trio.move_on_after(0):
            await client.execute("LPOP", "q")
        # whatever the cancelled call did on the server, this reply is this call's own
        assert await client.execute("ECHO", "mine") == b"mine"


async def _subscribers(client: RedisClient, channel: str) -> int:
    reply = await client.execute("PUBSUB", "NUMSUB", channel)
    assert isinstance(reply, list)
    return int(reply[1])


async def test_a_subscription_hears_every_message_and_subscribes_again_after_a_loss(
    redis_server: RedisServer,
) -> None:
    heard, messages = trio.open_memory_channel[tuple[bytes, bytes]](10)
    ready = trio.Event()

    def on_ready() -> None:
        ready.set()

    async with RedisClient(redis_server.url) as client:
        subscription = Subscription(client, ["a", "b"], lambda *m: heard.send_nowait(m), on_ready)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(subscription.run)
                assert subscription.ready and ready.is_set()
                await client.execute("PUBLISH", "b", "hello")
                assert await messages.receive() == (b"b", b"hello")
                # The server drops the subscribed connection: it is made again, said so.
                ready = trio.Event()
                assert await client.execute("CLIENT", "KILL", "TYPE", "pubsub") == 1
                await ready.wait()
                assert await client.execute("PUBLISH", "a", "again") == 1
                assert await messages.receive() == (b"a", b"again")
                nursery.cancel_scope.cancel()
        assert not subscription.ready
        # Cancelled, its connection is closed: no subscriber is left.
        for _ in range(50):  # bounded: the server sees the close within a few calls
            if await _subscribers(client, "a") == 0:
                break
        assert await _subscribers(client, "a") == 0


async def test_no_server_is_a_clear_connection_error() -> None:
    port = free_port()
    client = RedisClient(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(RedisConnectionError, match=f"127.0.0.1:{port}/0: cannot connect"):
        await client.execute("PING")


async def test_a_server_that_dies_mid_crawl_is_a_connection_error_then_recovers(
    tmp_path: Path,
) -> None:
    port = free_port()
    with run_redis(tmp_path / "a", port=port) as server:
        client = RedisClient(server.url)
        await client.execute("SET", "x", "1")
    with pytest.raises(RedisConnectionError):
        await client.execute("GET", "x")
    with run_redis(tmp_path / "b", port=port):
        assert await client.execute("PING") == b"PONG"
    await client.aclose()


async def test_password_from_url_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_redis(tmp_path / "r", password="pw-123") as server:
        async with RedisClient(server.url) as client:
            assert await client.execute("PING") == b"PONG"
        bare = f"redis://127.0.0.1:{server.port}/0"
        with pytest.raises(RedisCommandError, match="PING failed: NOAUTH"):
            async with RedisClient(bare):
                pass
        monkeypatch.setenv("REDIS_PASSWORD", "pw-123")
        async with RedisClient(bare) as client:
            assert await client.execute("PING") == b"PONG"


def test_urls_parse_and_errors_hide_credentials() -> None:
    target = RedisTarget.from_url("rediss://user:p%40ss@redis.example:6380/3")
    assert (target.host, target.port, target.db, target.tls) == ("redis.example", 6380, 3, True)
    assert (target.username, target.password) == ("user", "p@ss")
    assert "p@ss" not in str(target)
    assert "p@ss" not in repr(target)  # a log line or a traceback's locals may show it
    with pytest.raises(RedisError, match=r"\*\*\*@host:1/x: bad port or database") as err:
        RedisTarget.from_url("redis://u:hidden@host:1/x")
    assert "hidden" not in str(err.value)
    with pytest.raises(RedisError, match="starts with redis://"):
        RedisTarget.from_url("http://host/0")


async def test_a_server_that_is_not_redis_is_a_clear_error() -> None:
    async def http_server(stream: trio.SocketStream) -> None:
        await stream.receive_some(1000)
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await stream.aclose()

    async with serve_tcp(http_server) as port:
        client = RedisClient(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(RedisConnectionError, match=f"127.0.0.1:{port}/0: not a Redis reply"):
            await client.execute("PING")
        await client.aclose()


async def test_a_connection_that_breaks_while_logging_in_is_closed() -> None:
    # The server accepts, then hangs up before answering AUTH and SCRIPT LOAD: the
    # socket must be closed, not left for the garbage collector (a ResourceWarning,
    # an error in this suite, once collected).
    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.aclose()

    async with serve_tcp(hang_up) as port:
        client = RedisClient(f"redis://:pw@127.0.0.1:{port}/0", scripts=[INCR_BY])
        for _ in range(3):
            with pytest.raises(RedisConnectionError, match=f"127.0.0.1:{port}/0"):
                await client.execute("PING")
        await client.aclose()
    gc.collect()


async def test_a_connection_to_itself_is_refused_not_taken_for_a_server() -> None:
    # What a reconnecting client can get from a loopback port nobody listens on when
    # the kernel picks that very port as the source: made here on purpose.
    sock = trio.socket.socket()
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
    await sock.bind(("127.0.0.1", 0))
    await sock.connect(sock.getsockname())
    stream = trio.SocketStream(sock)
    target = RedisTarget.from_url(f"redis://127.0.0.1:{sock.getsockname()[1]}/0")
    with pytest.raises(RedisConnectionError, match="connected to itself"):
        _refuse_self_connection(stream, target)
    await stream.aclose()


async def test_a_write_refused_by_a_replica_is_an_outage_not_a_command_error(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # A server demoted to a replica (a failover) refuses writes with READONLY without
    # running them: a worker must back off and retry, as after a lost connection, not
    # stop the crawl on a command error.
    with run_redis(tmp_path / "replica") as replica:
        async with RedisClient(f"redis://127.0.0.1:{replica.port}/0") as client:
            assert await client.execute("REPLICAOF", "127.0.0.1", redis_server.port) == b"OK"
            with trio.fail_after(30), pytest.raises(RedisConnectionError, match="READONLY"):
                await client.execute("SET", "k", "v")
            with pytest.raises(RedisCommandError):  # a real command error stays one
                await client.execute("GET", "k", "one argument too many")
