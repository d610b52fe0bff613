"""A real Redis Cluster of three redis-servers on loopback: the client follows MOVED and
ASK, the crawl's scripts stay in their crawl's slot, and a crawl shared by two workers
pointed at a node that does not serve it runs as on a single server."""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from crawler import distributed
from crawler.distributed import RedisClient, RedisConnectionError, Script, _sessions, key_slot
from crawler.distributed._admin import crawl_status, export_items, stop_crawl
from crawler.distributed._delays import PAUSE, RESERVE, THROTTLE, THROTTLED
from crawler.distributed._frontier import CrawlKeys
from crawler.distributed._permits import ACQUIRE, RENEW
from crawler.distributed._permits import RELEASE as PERMITS_RELEASE
from crawler.distributed._redis import Arg
from crawler.distributed._scripts import (
    COMMIT,
    LEASE,
    PUSH,
    RELEASE,
    ROBOTS_CLAIM,
    ROBOTS_DONE,
    TRIM,
)
from crawler.engine._stats import Stats
from tests.distributed.helpers import TwoHostSite, serve_two_hosts
from tests.distributed.workers import KEYS, collect, page_hits, shared_settings, stream_urls
from tests.redis_server import RedisCluster, cli, run_redis_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with run_redis_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def _commands(port: int, name: str) -> int:
    """How many ``name`` commands the node on ``port`` was sent since its stats were reset
    (run, or refused with a redirection)."""
    for line in cli(port, "INFO", "commandstats").splitlines():
        if line.startswith(f"cmdstat_{name}:"):
            fields = dict(part.split("=") for part in line.split(":", 1)[1].split(","))
            return int(fields["calls"]) + int(fields.get("rejected_calls", 0))
    return 0


def test_the_fixture_made_a_cluster_whose_nodes_split_the_slots(cluster: RedisCluster) -> None:
    for node in cluster.nodes:
        assert "cluster_state:ok" in cli(node.port, "CLUSTER", "INFO")
    assert sum(last - first + 1 for r in cluster.slots.values() for first, last in r) == 16384
    assert key_slot("crawl:{twohosts/default}:meta") == int(
        cli(cluster.nodes[0].port, "CLUSTER", "KEYSLOT", "crawl:{twohosts/default}:meta")
    )


async def test_moved_is_followed_and_the_slot_remembered(cluster: RedisCluster) -> None:
    key = "moved:{one}"
    elsewhere = cluster.not_owner(key_slot(key))
    cli(elsewhere, "CONFIG", "RESETSTAT")
    async with RedisClient(cluster.url(elsewhere)) as client:
        assert not client.cluster
        assert await client.execute("SET", key, "v") == b"OK"
        assert client.cluster
        for _ in range(5):
            assert await client.pipeline([["GET", key], ["STRLEN", key]]) == [b"v", 1]
    assert cli(cluster.owner(key_slot(key)), "GET", key).strip() == "v"
    # Only the first SET went to the node that does not serve the slot.
    assert _commands(elsewhere, "set") == 1 and _commands(elsewhere, "get") == 0


async def test_ask_is_followed_while_a_slot_migrates(cluster: RedisCluster) -> None:
    key = "ask:{migrating}"
    slot = key_slot(key)
    source = cluster.owner(slot)
    target = cluster.not_owner(slot)
    source_id, target_id = (cli(p, "CLUSTER", "MYID").strip() for p in (source, target))
    cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
    cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
    try:
        async with RedisClient(cluster.url(source)) as client:
            # The key is not on the source: it answers ASK, and the target takes it.
            assert await client.execute("SET", key, "moved-in") == b"OK"
        for port in (source, target):
            cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        assert cli(target, "GET", key).strip() == "moved-in"
    finally:
        cli(target, "DEL", key)
        for port in (source, target):
            cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", source_id)


async def test_redirections_are_bounded(cluster: RedisCluster) -> None:
    key = "loop:{bounded}"
    slot = key_slot(key)
    source = cluster.owner(slot)
    target = cluster.not_owner(slot)
    source_id = cli(source, "CLUSTER", "MYID").strip()
    # The target believes the source serves the slot, and the source says ASK target:
    # a loop a client must give up on, naming it.
    cli(
        source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", cli(target, "CLUSTER", "MYID").strip()
    )
    try:
        async with RedisClient(cluster.url(source)) as client:
            # A connection error, which a worker retries as it does an outage.
            with pytest.raises(RedisConnectionError, match="GET still redirected after 5 tries"):
                await client.execute("GET", key)
    finally:
        cli(source, "CLUSTER", "SETSLOT", str(slot), "NODE", source_id)


# Every script of the package: the test below must run each (a new one gets added there).
_SCRIPTS = {
    PUSH,
    LEASE,
    COMMIT,
    RELEASE,
    ROBOTS_CLAIM,
    ROBOTS_DONE,
    TRIM,
    ACQUIRE,
    RENEW,
    PERMITS_RELEASE,
    RESERVE,
    PAUSE,
    THROTTLE,
    THROTTLED,
    *_sessions.SESSION_SCRIPTS,
}


def test_every_script_of_the_package_is_checked_below() -> None:
    found = set()
    for module_info in pkgutil.iter_modules(distributed.__path__):
        module = importlib.import_module(f"crawler.distributed.{module_info.name}")
        found |= {value for value in vars(module).values() if isinstance(value, Script)}
    assert found == _SCRIPTS


async def test_the_scripts_declare_a_key_of_their_crawl_and_touch_only_its_slot(
    cluster: RedisCluster,
) -> None:
    # With a "#!lua" first line, Redis 7 refuses any key outside the declared keys' slot
    # (without it, a script may touch any key its node serves): the scripts run here in
    # that strict form, on a node reached through a redirection.
    keys = CrawlKeys("strict", "check")
    strict = {s.name: Script("#!lua\n" + s.source, s.name) for s in _SCRIPTS}
    prefix, meta = keys.prefix, keys.meta
    host = prefix + "host:example.org:"
    url = cluster.url(cluster.not_owner(key_slot(meta)))
    stored = "example.org\n0\nparse\n\n{}"
    async with RedisClient(url, scripts=list(strict.values())) as client:
        assert await client.run(strict["push"], [meta], [prefix, "fp1", stored]) == 1
        lease = await client.run(strict["lease"], [meta], [prefix, "w1", 10000, 4, "1", 4, 0, 0])
        assert isinstance(lease, list) and len(lease) == 6
        rid = lease[4]
        commit_args = [prefix, "w1", "1", rid, 1, 1, "0", "fp2", stored, '{"i": 1}']
        committed = await client.run(strict["commit"], [meta], commit_args)
        assert isinstance(committed, list) and committed[:2] == [1, 1]
        assert await client.run(strict["release"], [meta], [prefix, "w1", "leave"]) == 0
        conns, wanted = host + "conns", host + "wanted"
        acquire = strict["acquire_connection_permit"]
        tell: list[Arg] = [prefix + "wanted", "example.org"]
        assert await client.run(acquire, [conns, wanted], ["l1", 1, 5000, *tell]) == 1
        assert await client.run(acquire, [conns, wanted], ["l2", 1, 5000, *tell]) == 0  # full
        assert await client.run(strict["renew_connection_permits"], [conns], [5000, "l1"]) == 0
        freed: list[Arg] = [prefix + "freed", "example.org", 1, "l1"]
        assert await client.run(strict["release_connection_permits"], [conns, wanted], freed) == 0
        robots, lock = prefix + "robots:http://example.org/robots.txt", prefix + "robots-lock"
        assert await client.run(strict["robots_claim"], [robots, lock], ["t1", 5000]) == [2]
        assert await client.run(strict["robots_done"], [robots, lock], ["t1", "200\n", 60]) == 1
        assert await client.run(strict["robots_claim"], [robots, lock], ["t2", 5000]) == [
            1,
            b"200\n",
        ]
        slot = [host + "next", host + "throttle", prefix + "throttled"]
        raise_once: list[Arg] = ["example.org", 1, 0, 0, 1000, "2.0", 5000, 60000]
        assert await client.run(strict["throttle_host"], slot[1:], raise_once) == 1000
        assert await client.run(strict["reserve_request_slot"], slot, [0, *raise_once]) == [
            0,
            2000,
        ]
        throttled = await client.run(strict["throttled_hosts"], [prefix + "throttled"], [""])
        assert isinstance(throttled, list) and b"example.org" in throttled[1]
        assert await client.run(strict["pause_host"], [host + "next"], [1000]) == 0
        sessions, cookies = prefix + "sessions", prefix + "session:default:cookies"
        login_lock, failed = prefix + "session:default:lock", prefix + "session:default:failed"
        claim = [sessions, login_lock, failed]
        assert await client.run(strict["session claim"], claim, ["default", "t", 5000, 0]) == [0, 1]
        assert await client.run(strict["session renew"], [login_lock], ["t", 5000]) == 1
        stored_jar = [sessions, cookies, login_lock]
        jar = ["default", "t", "sid", '{"name": "sid"}']
        assert await client.run(strict["session publish"], stored_jar, jar) == [1, 1]
        change: list[Arg] = ["default", 1, 1, "lang", '{"name": "lang"}', "sid"]
        assert await client.run(strict["session change"], [sessions, cookies], change) == [1, 1, 2]
        loaded = await client.run(strict["session load"], [sessions, cookies], ["default"])
        assert loaded == [1, 2, b'{"name": "lang"}']
        assert await client.run(strict["session unlock"], [login_lock, failed], ["t", "", 1]) == 0
        assert await client.execute("XLEN", keys.items) == 1
        entries = await client.execute("XRANGE", keys.items, "-", "+")
        assert isinstance(entries, list)
        [[item_id, _]] = entries
        ms, seq = item_id.decode().split("-")
        trim = [keys.items, meta, keys.stats]
        after = f"{ms}-{int(seq) + 1}"
        assert await client.run(strict["trim"], trim, [item_id.decode(), after]) == 1
        assert await client.execute("XLEN", keys.items) == 0
    owner = cluster.owner(key_slot(meta))
    assert int(cli(owner, "CLUSTER", "COUNTKEYSINSLOT", str(key_slot(meta)))) > 5


async def test_two_workers_share_a_crawl_through_a_node_that_does_not_serve_it(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    slot = key_slot(KEYS.meta)
    url = cluster.url(cluster.not_owner(slot))
    async with serve_two_hosts(TwoHostSite(60)) as site:
        s = shared_settings(site, url)
        results: list[Stats] = []
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for agent in ("w1", "w2"):
                    nursery.start_soon(collect, results, s, agent)
    assert page_hits(site) == dict.fromkeys(site.all_urls(), 1)
    assert sorted(await stream_urls(url)) == sorted(site.all_urls())
    assert [stats.finish_reason for stats in results] == ["finished", "finished"]
    # Admin commands through the same node: status finds the crawl on its node (SCAN
    # runs on every primary), export reads its stream, stop sets its flag.
    status = await trio.to_thread.run_sync(crawl_status, url, None, "default")
    assert "shared crawl:  spider twohosts, crawl id default" in status
    assert "pages done:    60" in status and "state:         finished" in status
    out = tmp_path / "items.jsonl"
    exported = await trio.to_thread.run_sync(
        lambda: export_items(url, "twohosts", "default", out, append=False, follow=False)
    )
    assert exported.written == 60
    assert sorted(json.loads(line)["url"] for line in out.read_text().splitlines()) == sorted(
        site.all_urls()
    )
    said = await trio.to_thread.run_sync(stop_crawl, url, "twohosts", "default")
    assert "stop requested" in said
    assert cli(cluster.owner(slot), "EXISTS", KEYS.stop).strip() == "1"
