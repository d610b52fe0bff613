"""Shared-crawl benchmark (not a test): 1, 2, 3... workers on one Redis beside one in-memory crawl.

    .venv/bin/python bench/shared_bench.py [--workers 1,2,3] [--timeout 900]
        [--hosts 1] [--per-host-cap 64] [--concurrency 64] [--max-pages 0]

Crawls the shared benchmark site (``../shared/bench``: nginx on 127.0.0.1:8081,
started here with its ``serve.sh`` if it is not running, and stopped at the end
only then) with the bench spider: once in memory, then with each number of
worker processes sharing one crawl through a redis-server of this script's own
(a free loopback port, no persistence, stopped by its PID at the end). Each
shared crawl has its own crawl id; its items are then exported with ``crawl
export`` and checked: every page of the site exactly once.

``--hosts N`` (1 to 4) crawls the site on N hosts at once (nginx serves it on
127.0.0.1 to 127.0.0.4), with start URLs on each, so that scaling over hosts
shows: each host has its own per-host cap (``--per-host-cap``, the
``max_connections_per_host`` of every worker, shared by all of them through
Redis). ``--max-pages`` stops each crawl after that many pages (a quick
check that everything runs, on the full site).

Prints, per run: pages, wall seconds, pages/s, the workers' CPU seconds, and for
shared runs the Redis commands per page (``INFO commandstats``: commands sent by
the workers plus those run inside the Lua scripts, and ``EVALSHA`` calls alone),
the bytes per page to and from Redis (``INFO stats``), and Redis's own CPU time
per page (``INFO cpu``), which bounds what any number of workers can do on one
Redis. Nothing is pinned: on a small machine the workers, nginx and Redis share
the cores, so read the figures as what this machine can show, not as scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("BENCH_DIR", ROOT.parent / "shared" / "bench"))
START_URL = "http://127.0.0.1:8081/index.html"
CRAWL = str(ROOT / ".venv" / "bin" / "crawl")


def spider_args(concurrency: int, per_host_cap: int, max_pages: int) -> list[str]:
    """The ``crawl`` arguments of every run, in memory or shared."""
    settings = {
        "spider_modules": '["bench"]',
        "concurrency": concurrency,
        "max_connections_per_host": per_host_cap,
        "max_connections": max(concurrency, per_host_cap),
        "obey_robots": "false",
        "max_pages": max_pages,
    }
    args = ["bench"]
    for name, value in settings.items():
        args += ["-s", f"{name}={value}"]
    return [*args, "--log-level", "WARNING"]


SPIDER_ARGS = spider_args(64, 64, 0)


def _site_up() -> bool:
    # Imported here: the spider loader of `crawl bench` imports this module too, and
    # urllib.request would add most of a megabyte to the crawl being measured.
    import urllib.request

    try:
        with urllib.request.urlopen("http://127.0.0.1:8081/robots.txt", timeout=2):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _unique_urls(path: Path) -> tuple[int, int]:
    lines = path.read_text().splitlines()
    return len(lines), len({json.loads(line)["url"] for line in lines})


def _redis_info(port: int, section: str) -> dict[str, str]:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", section],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def _commands(port: int) -> tuple[int, int]:
    """All commands run (Lua's included) and EVALSHA calls, INFO's own left out."""
    total = evalsha = 0
    for name, value in _redis_info(port, "commandstats").items():
        calls = int(value.split(",")[0].split("=")[1])
        if name == "cmdstat_info":
            continue
        total += calls
        if name == "cmdstat_evalsha":
            evalsha = calls
    return total, evalsha


def _redis_cpu(port: int) -> float:
    """Seconds of CPU the Redis server has used (its main thread and the others)."""
    info = _redis_info(port, "cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _net_bytes(port: int) -> int:
    info = _redis_info(port, "stats")
    return int(info["total_net_input_bytes"]) + int(info["total_net_output_bytes"])


def in_memory(work: Path, timeout: float) -> dict[str, object]:
    out = work / "memory.jsonl"
    cpu, started = _children_cpu(), time.perf_counter()
    subprocess.run([CRAWL, *SPIDER_ARGS, "-O", str(out)], cwd=ROOT, check=True, timeout=timeout)
    wall = time.perf_counter() - started
    items, unique = _unique_urls(out)
    return {
        "run": "in memory",
        "pages": unique,
        "items": items,
        "wall_s": round(wall, 2),
        "pages_per_s": round(unique / wall, 1),
        "cpu_s": round(_children_cpu() - cpu, 2),
    }


def shared(workers: int, port: int, work: Path, timeout: float) -> dict[str, object]:
    url = f"redis://127.0.0.1:{port}/0"
    crawl_id = f"bench-{workers}"
    commands_before, evalsha_before = _commands(port)
    bytes_before = _net_bytes(port)
    redis_cpu_before = _redis_cpu(port)
    cpu, started = _children_cpu(), time.perf_counter()
    procs = [
        subprocess.Popen(
            [CRAWL, *SPIDER_ARGS, "--frontier", url, "-s", f"crawl_id={crawl_id}"], cwd=ROOT
        )
        for _ in range(workers)
    ]
    deadline = started + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            for other in procs:
                if other.poll() is None:
                    other.kill()
            raise SystemExit(f"{workers} workers did not finish within {timeout:g} s") from None
        if proc.returncode != 0:
            raise SystemExit(f"a worker exited with {proc.returncode}")
    wall = time.perf_counter() - started
    worker_cpu = _children_cpu() - cpu
    commands, evalsha = _commands(port)
    moved = _net_bytes(port) - bytes_before
    redis_cpu = _redis_cpu(port) - redis_cpu_before
    out = work / f"shared-{workers}.jsonl"
    subprocess.run(
        [CRAWL, "export", url, "--spider", "bench", "--crawl-id", crawl_id, "-O", str(out)],
        cwd=ROOT,
        check=True,
        timeout=timeout,
    )
    items, unique = _unique_urls(out)
    return {
        "run": f"{workers} worker{'s' if workers > 1 else ''}",
        "pages": unique,
        "items": items,
        "wall_s": round(wall, 2),
        "pages_per_s": round(unique / wall, 1),
        "cpu_s": round(worker_cpu, 2),
        "redis_commands_per_page": round((commands - commands_before) / unique, 2),
        "redis_calls_per_page": round((evalsha - evalsha_before) / unique, 3),
        "redis_bytes_per_page": round(moved / unique),
        # Redis serves every worker from one core: 1e6 / this projects the pages/s at
        # which it would be busy (it grows with the workers: measure at the count meant).
        "redis_cpu_us_per_page": round(redis_cpu * 1e6 / unique, 1),
    }


def _check(run: dict[str, object], expected: object) -> None:
    """Every page exported exactly once, and as many as the in-memory crawl found."""
    if run["items"] != run["pages"] or run["pages"] != expected:
        raise SystemExit(
            f"{run['run']}: {run['items']} items for {run['pages']} pages, "
            f"expected {expected} pages each exported once"
        )


def main() -> None:
    global SPIDER_ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,3", help="comma-separated worker counts")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument(
        "--hosts", type=int, default=1, choices=range(1, 5), help="hosts crawled at once (1-4)"
    )
    parser.add_argument(
        "--per-host-cap",
        type=int,
        default=64,
        help="max_connections_per_host: connections to each host, all workers together",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight per worker")
    parser.add_argument("--max-pages", type=int, default=0, help="stop each crawl after this many")
    args = parser.parse_args()
    if args.per_host_cap < 1 or args.concurrency < 1 or args.max_pages < 0:
        parser.error("--per-host-cap and --concurrency must be >= 1, --max-pages >= 0")
    counts = [int(n) for n in args.workers.split(",") if n]
    SPIDER_ARGS = spider_args(args.concurrency, args.per_host_cap, args.max_pages)
    # The spider reads it in each crawl process: start URLs and allowed hosts.
    os.environ["BENCH_HOSTS"] = str(args.hosts)
    print(
        json.dumps(
            {
                "hosts": args.hosts,
                "per_host_cap": args.per_host_cap,
                "concurrency": args.concurrency,
                "max_pages": args.max_pages,
            }
        ),
        flush=True,
    )
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        raise SystemExit("needs redis-server and redis-cli: apt-get install -y redis-server")
    started_site = False
    if not _site_up():
        subprocess.run([str(BENCH_DIR / "serve.sh"), "start"], check=True, timeout=120)
        started_site = True
    work = Path(tempfile.mkdtemp(prefix="shared-bench-"))
    port = _free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            *("--bind", "127.0.0.1", "--port", str(port), "--save", ""),
            *("--appendonly", "no", "--dir", str(work), "--daemonize", "no"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):  # bounded: redis-server listens within milliseconds
            ready = subprocess.run(
                ["redis-cli", "-p", str(port), "PING"], capture_output=True, text=True, check=False
            )
            if ready.stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        alone = in_memory(work, args.timeout)
        print(json.dumps(alone), flush=True)
        _check(alone, alone["pages"])
        for workers in counts:
            run = shared(workers, port, work, args.timeout)
            print(json.dumps(run), flush=True)
            _check(run, alone["pages"])
    finally:
        redis.send_signal(signal.SIGTERM)
        redis.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
        if started_site:
            subprocess.run([str(BENCH_DIR / "serve.sh"), "stop"], check=False, timeout=60)


if __name__ == "__main__":
    main()
