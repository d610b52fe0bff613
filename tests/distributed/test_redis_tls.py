"""rediss:// against a real redis-server serving TLS on loopback (certificates from a test
CA): the URL's ssl_* parameters, SSL_CERT_FILE, client certificates, and the errors for
a refused certificate or a port that speaks the other protocol."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from crawler.distributed import RedisClient, RedisConnectionError, RedisError, RedisTarget
from crawler.distributed._admin import crawl_status
from crawler.engine._stats import Stats
from tests.distributed.helpers import TwoHostSite, serve_two_hosts
from tests.distributed.workers import collect, page_hits, shared_settings, stream_urls
from tests.redis_server import RedisServer, TlsFiles, run_redis


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return TlsFiles.make(tmp_path / "certs")


@pytest.fixture
def tls_server(tmp_path: Path, tls_files: TlsFiles) -> Iterator[RedisServer]:
    with run_redis(tmp_path / "redis", tls=tls_files, password="s3cret-pw") as server:
        yield server


def _bare(server: RedisServer, query: str = "") -> str:
    """The server's URL with its password, and ``query`` instead of the CA parameter."""
    return f"rediss://:s3cret-pw@127.0.0.1:{server.port}/0" + (f"?{query}" if query else "")


async def test_commands_and_scripts_over_tls_with_the_ca_from_the_url(
    tls_server: RedisServer,
) -> None:
    assert "?ssl_ca_certs=" in tls_server.url
    async with RedisClient(tls_server.url) as client:
        replies = await client.pipeline([["SET", "k", "v"], ["GET", "k"]])
        assert replies == [b"OK", b"v"]
        assert await client.execute("EVAL", "return redis.call('GET', KEYS[1])", 1, "k") == b"v"


async def test_status_over_tls_never_shows_the_password(tls_server: RedisServer) -> None:
    async with RedisClient(tls_server.url) as client:
        await client.execute("HSET", "crawl:{books/run1}:meta", "spider", "books")
    status = await trio.to_thread.run_sync(crawl_status, tls_server.url, None, "default")
    assert "shared crawl:  spider books, crawl id run1" in status
    empty = await trio.to_thread.run_sync(crawl_status, tls_server.url, "none", "x")
    assert "s3cret-pw" not in status + empty


async def test_two_workers_share_a_crawl_over_tls(tls_server: RedisServer) -> None:
    async with serve_two_hosts(TwoHostSite(40)) as site:
        s = shared_settings(site, tls_server.url)
        results: list[Stats] = []
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for agent in ("w1", "w2"):
                    nursery.start_soon(collect, results, s, agent)
    assert page_hits(site) == dict.fromkeys(site.all_urls(), 1)
    assert sorted(await stream_urls(tls_server.url)) == sorted(site.all_urls())
    assert [stats.finish_reason for stats in results] == ["finished", "finished"]


async def test_an_unknown_ca_is_refused_naming_the_server_and_the_reason(
    tls_server: RedisServer,
) -> None:
    client = RedisClient(_bare(tls_server))
    with pytest.raises(RedisConnectionError) as err:
        await client.execute("PING")
    message = str(err.value)
    assert f"TLS certificate of 127.0.0.1:{tls_server.port} was refused" in message
    assert "(certificate verify failed: self-signed certificate in certificate chain)" in message
    assert "ssl_ca_certs" in message
    assert "s3cret-pw" not in message
    await client.aclose()


async def test_ssl_cert_file_from_the_environment_is_trusted(
    tls_server: RedisServer, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca))
    async with RedisClient(_bare(tls_server)) as client:
        assert await client.execute("PING") == b"PONG"


async def test_the_hostname_is_checked_unless_turned_off(tmp_path: Path) -> None:
    files = TlsFiles.make(tmp_path / "certs", "redis.example")
    with run_redis(tmp_path / "redis", tls=files) as server:
        client = RedisClient(server.url)
        with pytest.raises(RedisConnectionError, match="IP address mismatch"):
            await client.execute("PING")
        await client.aclose()
        async with RedisClient(server.url + "&ssl_check_hostname=false") as client:
            assert await client.execute("PING") == b"PONG"
        no_check = f"rediss://127.0.0.1:{server.port}/0?ssl_cert_reqs=none"
        async with RedisClient(no_check) as client:
            assert await client.execute("PING") == b"PONG"


async def test_client_certificates_for_a_server_that_asks_for_them(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    cert, key = tls_files.client_cert(tmp_path)
    with run_redis(tmp_path / "redis", tls=tls_files, client_certs=True) as server:
        client = RedisClient(server.url)
        with pytest.raises(RedisConnectionError, match=f"127.0.0.1:{server.port}") as err:
            await client.execute("PING")
        assert "wants a client certificate, give ssl_certfile and ssl_keyfile" in str(err.value)
        await client.aclose()
        with_cert = f"{server.url}&ssl_certfile={cert}&ssl_keyfile={key}"
        async with RedisClient(with_cert) as client:
            assert await client.execute("PING") == b"PONG"


async def test_tls_to_a_plain_port_is_a_clear_error(redis_server: RedisServer) -> None:
    client = RedisClient(f"rediss://127.0.0.1:{redis_server.port}/0", connect_timeout=5)
    with pytest.raises(RedisConnectionError, match=f"127.0.0.1:{redis_server.port}") as err:
        await client.execute("PING")
    assert "use a redis:// URL" in str(err.value)
    await client.aclose()


async def test_plain_to_a_tls_port_is_a_clear_error(tls_server: RedisServer) -> None:
    client = RedisClient(f"redis://127.0.0.1:{tls_server.port}/0")
    with pytest.raises(RedisConnectionError, match="if that port serves TLS, use a rediss:// URL"):
        await client.execute("PING")
    await client.aclose()


def test_tls_parameters_parse_and_bad_ones_are_named(tmp_path: Path) -> None:
    options = RedisTarget.from_url(
        "rediss://h:1/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=Optional&ssl_check_hostname=no"
        "&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
    ).tls_options
    assert (options.ca_certs, options.cert_reqs, options.check_hostname) == (
        "/ca.pem",
        "optional",
        False,
    )
    assert (options.certfile, options.keyfile) == ("/c.pem", "/k.pem")
    cases = {
        "rediss://:pw@h:1/0?ssl_ca_cert=x": "unknown URL parameter 'ssl_ca_cert'",
        "rediss://h:1/0?ssl_cert_reqs=maybe": "ssl_cert_reqs='maybe': use required",
        "rediss://h:1/0?ssl_check_hostname=perhaps": "ssl_check_hostname='perhaps'",
        "rediss://h:1/0?ssl_keyfile=/k.pem": "ssl_keyfile needs ssl_certfile",
        "rediss://h:1/0?ssl_ca_certs=": "ssl_ca_certs has no value",
        "redis://h:1/0?ssl_ca_certs=/ca.pem": "the ssl_\\* parameters need a rediss:// URL",
    }
    for url, message in cases.items():
        with pytest.raises(RedisError, match=message) as err:
            RedisTarget.from_url(url)
        assert "pw" not in str(err.value)
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(RedisError, match=f"cannot load the TLS files ssl_ca_certs={missing}"):
        RedisClient(f"rediss://h:1/0?ssl_ca_certs={missing}")
