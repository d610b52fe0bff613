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
)
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
