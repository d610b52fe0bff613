"""Durable-frontier benchmark (not a test): memory, resume time, and crawl speed.

    .venv/bin/python bench/frontier_bench.py memory [--urls 1000000] [--hosts 1000]
    .venv/bin/python bench/frontier_bench.py resume [--urls 1000000]
    .venv/bin/python bench/frontier_bench.py crawl
    .venv/bin/python bench/frontier_bench.py all

* memory: a SqliteFrontier gets ``--urls`` requests queued (spread over
  ``--hosts`` hosts) and ``--urls`` more URLs marked seen, with a checkpoint
  every 100,000; prints the process's peak RSS. ``--memory-frontier`` does the
  same with the in-memory frontier, for comparison.
* resume: opens the job store left by ``memory`` (its requests all pending)
  the way a resumed crawl does (read-only checks, then the frontier), and
  hands out the first request; prints the time taken. That is the resume
  after a clean stop; delete ``job.db.bloom`` first to time the one after a
  crash, which rebuilds the seen filter.
* crawl: crawls the shared benchmark site (../shared/bench/.data/site, 10,000
  pages, served by an nginx of this script's own on port 18181 and CPU 0, so
  other benchmarks cannot stop it) in memory and with ``--job``, alternating
  (``--rounds``), same settings, the crawler pinned to CPU 1; prints pages/s
  and pages per CPU-second of each (the latter is steadier on a machine
  shared with other work).

Each measurement runs in a fresh subprocess, so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(
    os.environ.get("BENCH_DIR", Path(__file__).resolve().parents[2] / "shared" / "bench")
)
WORK = Path(tempfile.gettempdir()) / "frontier-bench"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(urls: int, hosts: int, store: Path, in_memory: bool) -> None:
    sys.path.insert(0, str(ROOT))
    from crawler.frontier.memory import MemoryFrontier
    from crawler.frontier.sqlite import SqliteFrontier
    from crawler.request import Request

    base_rss = _peak_rss_mb()
    shutil.rmtree(store.parent, ignore_errors=True)
    store.parent.mkdir(parents=True)
    frontier: SqliteFrontier | MemoryFrontier
    frontier = MemoryFrontier() if in_memory else SqliteFrontier(store)
    started = time.perf_counter()
    for n in range(urls):
        host = f"host{n % hosts}.example"
        url = f"http://{host}/section/{n // hosts}/item?id={n}&ref=listing"
        frontier.add_seen("GET", url)
        frontier.push(Request(url, callback="parse", depth=3), host)
        # As many URLs again that were seen and already crawled.
        frontier.add_seen("GET", f"http://{host}/done/{n}")
        if not in_memory and n % 100_000 == 99_999:
            assert isinstance(frontier, SqliteFrontier)
            frontier.freeze({"format": "1", "spider": "bench"}, {})
            frontier.commit()
            frontier.thaw()
    if isinstance(frontier, SqliteFrontier):
        frontier.freeze({"format": "1", "spider": "bench", "checkpoint_time": "1"}, {})
        frontier.commit()
        frontier.thaw()
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "measure": "memory",
                "frontier": "memory" if in_memory else "sqlite",
                "queued": len(frontier),
                "seen": 2 * urls,
                "seconds": round(elapsed, 1),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "interpreter_rss_mb": round(base_rss, 1),
                "store_mb": round(store.stat().st_size / 2**20, 1) if store.exists() else 0,
            }
        )
    )
    frontier.close()


def resume(store: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from crawler.frontier.sqlite import SqliteFrontier
    from crawler.jobs._job import _inspect_store

    started = time.perf_counter()
    _meta, callbacks = _inspect_store(store, "bench")
    frontier = SqliteFrontier(store)
    deferred = frontier.take_deferred()
    hosts = list(frontier.hosts())
    first = frontier.pop(hosts[0])
    elapsed = time.perf_counter() - started
    assert first is not None and not deferred and callbacks == {"parse"}
    print(
        json.dumps(
            {
                "measure": "resume",
                "pending": len(frontier) + 1,
                "hosts": len(hosts),
                "seconds": round(elapsed, 2),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
            }
        )
    )
    frontier.close()


NGINX_CONF = """\
worker_processes 1;
daemon on;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; use epoll; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    keepalive_timeout 65s;
    open_file_cache max=8000 inactive=60s;
    open_file_cache_valid 300s;
    gzip off;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        root {site};
        location = /item {{
            if ($arg_id !~ "^[0-9]+$") {{ return 404; }}
            try_files /q/$arg_id.html =404;
        }}
        location / {{ try_files $uri =404; }}
    }}
}}
"""
PORT = 18181


def crawl(rounds: int) -> None:
    """Serve the shared site with an nginx of our own (same settings as the shared
    one, its own port and pid file), so other benchmarks cannot stop it mid-run."""
    site = BENCH_DIR / ".data" / "site"
    if not (site / "index.html").exists():
        raise SystemExit(f"no benchmark site in {site}: run {BENCH_DIR}/gen_site.py first")
    work = WORK / "nginx"
    shutil.rmtree(work, ignore_errors=True)
    (work / "tmp").mkdir(parents=True)
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, port=PORT, site=site))
    subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            "/usr/sbin/nginx",
            "-p",
            f"{work}/",
            "-e",
            str(work / "error.log"),
            "-c",
            str(conf),
        ],
        check=True,
    )
    pid = int((work / "nginx.pid").read_text())
    try:
        for _ in range(rounds):
            for mode in ("memory", "durable"):
                print(json.dumps(_crawl_once(mode)), flush=True)
    finally:
        os.kill(pid, signal.SIGQUIT)


def _crawl_once(mode: str) -> dict[str, object]:
    work = WORK / f"crawl-{mode}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out, stats = work / "items.jsonl", work / "stats.json"
    cmd = [
        "taskset",
        "-c",
        "1",
        str(ROOT / ".venv" / "bin" / "crawl"),
        "bench",
        "-s",
        'spider_modules=["bench"]',
        "-s",
        "concurrency=64",
        "-s",
        "max_connections_per_host=64",
        "-s",
        "obey_robots=false",
        "-o",
        str(out),
        "--stats-json",
        str(stats),
        "--log-level",
        "WARNING",
    ]
    if mode == "durable":
        cmd += ["--job", str(work / "job")]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    env = {**os.environ, "BENCH_START_URL": f"http://127.0.0.1:{PORT}/index.html"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, timeout=900)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    data = json.loads(stats.read_text())
    lines = out.read_text().splitlines()
    return {
        "measure": "crawl",
        "mode": mode,
        "pages": data["pages"],
        "items": len(lines),
        "unique_items": len({json.loads(line)["url"] for line in lines}),
        "crawl_seconds": data["elapsed_seconds"],
        "pages_per_second": data["pages_per_second"],
        "wall_seconds": round(wall, 2),
        "pages_per_wall_second": round(data["pages"] / wall, 1),
        "cpu_seconds": round(cpu, 2),
        "pages_per_cpu_second": round(data["pages"] / cpu, 1),
    }


def _child(args: list[str]) -> None:
    subprocess.run([sys.executable, __file__, *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["memory", "resume", "crawl", "all"])
    parser.add_argument("--urls", type=int, default=1_000_000)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--memory-frontier", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="crawl: runs of each mode")
    args = parser.parse_args()
    store = WORK / "store" / "job.db"
    if args.what == "memory":
        fill(args.urls, args.hosts, store, args.memory_frontier)
    elif args.what == "resume":
        resume(store)
    elif args.what == "crawl":
        crawl(args.rounds)
    else:
        _child(["memory", "--urls", str(args.urls), "--hosts", str(args.hosts)])
        _child(["resume"])
        _child(["crawl", "--rounds", str(args.rounds)])


if __name__ == "__main__":
    main()
