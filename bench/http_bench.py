#!/usr/bin/env python3
"""HTTP client benchmark: keep-alive GETs against the nginx-served bench site.

    .venv/bin/python bench/http_bench.py [--n 30000] [--concurrency 64] [--cpu 1]
        [--clients pool,client,trio_h11,aiohttp,httpx]
    .venv/bin/python bench/http_bench.py --clients pool,pool_h2,client_h2,httpx_h2

Each client runs in its own process pinned to one core (``taskset -c CPU``) and
fetches the same N page URLs at concurrency C over keep-alive connections;
the table shows requests/s, CPU seconds (user+sys) and peak RSS of each.
``pool`` is our ConnectionPool used directly, ``client`` our Client;
``trio_h11``, ``aiohttp`` and ``httpx`` are run by the shared harness
(../shared/bench/peer_clients.py) with the bench venv's Python.

HTTP/2: ``pool_h2`` and ``client_h2`` are ours and ``httpx_h2`` is httpx with
http2=True, all over cleartext HTTP/2 with prior knowledge (h2c) to the same
nginx on 127.0.0.1:8082: one connection multiplexing C streams.

nginx (127.0.0.1:8081) is started if it is not running, after generating the
site if it is missing, and stopped at the end only if this script started it.
Every run is bounded by --timeout seconds. Only loopback traffic.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(os.environ.get("BENCH_DIR", Path(__file__).resolve().parents[2] / "shared" / "bench"))
BENCH_PY = BENCH / ".venv" / "bin" / "python"
MANIFEST = BENCH / ".data" / "manifest.tsv"
PEERS = ("trio_h11", "aiohttp", "httpx", "httpx_h2")
OURS = ("pool", "client", "pool_h2", "client_h2")
H2_PORT = "127.0.0.1:8082"


def load_urls(n: int) -> list[str]:
    with MANIFEST.open(encoding="utf-8") as f:
        next(f)
        urls = [line.split("\t", 1)[0] for line in f]
    out: list[str] = []
    while len(out) < n:
        out.extend(urls[: n - len(out)])
    return out


# -- one of our clients, inside its own process -----------------------------------------


def run_ours(kind: str, n: int, concurrency: int, timeout: float) -> dict[str, object]:
    import trio

    from crawler.http import ConnectionPool, Limits, Request

    urls = load_urls(n)
    http2 = kind.endswith("_h2")
    if http2:
        urls = [u.replace("127.0.0.1:8081", H2_PORT, 1) for u in urls]
    limits = Limits(
        max_connections=concurrency,
        max_keepalive_connections=concurrency,
        max_connections_per_host=concurrency,
    )
    ok = errors = size = 0
    timed_out = False

    async def with_pool() -> None:
        nonlocal ok, errors, size
        it = iter(urls)
        pool = ConnectionPool(limits=limits, http2_prior_knowledge=http2)

        async def worker() -> None:
            nonlocal ok, errors, size
            for url in it:
                try:
                    response = await pool.handle_request(Request("GET", url))
                    body = await response.aread()
                except Exception:
                    errors += 1
                    continue
                if response.status_code == 200:
                    ok += 1
                    size += len(body)
                else:
                    errors += 1

        try:
            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(worker)
        finally:
            await pool.aclose()

    async def with_client() -> None:
        nonlocal ok, errors, size
        from crawler.http import Client

        it = iter(urls)
        async with Client(limits=limits, http2_prior_knowledge=http2) as client:

            async def worker() -> None:
                nonlocal ok, errors, size
                for url in it:
                    try:
                        response = await client.get(url)
                        body = response.content
                    except Exception:
                        errors += 1
                        continue
                    if response.status_code == 200:
                        ok += 1
                        size += len(body)
                    else:
                        errors += 1

            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(worker)

    async def bounded() -> None:
        nonlocal timed_out
        with trio.move_on_after(timeout) as scope:
            await (with_pool() if kind.startswith("pool") else with_client())
        timed_out = scope.cancelled_caught

    c0 = os.times()
    t0 = time.perf_counter()
    trio.run(bounded)
    seconds = time.perf_counter() - t0
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {
        "client": kind,
        "requests": n,
        "ok": ok,
        "errors": errors,
        "bytes": size,
        "seconds": round(seconds, 3),
        "rps": round(ok / seconds, 1),
        "cpu_s": round(cpu, 2),
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "timed_out": timed_out,
    }


# -- the driver -----------------------------------------------------------------------


def nginx_running() -> bool:
    status = subprocess.run([str(BENCH / "serve.sh"), "status"], capture_output=True)
    return status.returncode == 0


def ensure_site(pages: int) -> None:
    marker = BENCH / ".data" / "site.pages"
    have = marker.read_text().split()[0] if marker.exists() else ""
    if have != str(pages) or not (BENCH / ".data" / "site" / "index.html").exists():
        subprocess.run(
            [str(BENCH_PY), str(BENCH / "gen_site.py"), "--pages", str(pages)], check=True
        )


def run_one(name: str, args: argparse.Namespace) -> dict[str, object]:
    pin = ["taskset", "-c", str(args.cpu)] if args.cpu >= 0 else []
    if name in OURS:
        cmd = [
            *pin,
            sys.executable,
            __file__,
            "--worker",
            name,
            "--n",
            str(args.n),
            "--concurrency",
            str(args.concurrency),
            "--timeout",
            str(args.timeout),
        ]
    else:
        cmd = [
            *pin,
            str(BENCH_PY),
            str(BENCH / "peer_clients.py"),
            "--client",
            name,
            "--n",
            str(args.n),
            "--concurrency",
            str(args.concurrency),
            "--timeout",
            str(args.timeout),
        ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"client": name, "error": (done.stderr or done.stdout).strip()[-300:]}
    result: dict[str, object] = json.loads(lines[-1])
    result["client"] = name
    return result


def print_table(results: list[dict[str, object]], n: int, concurrency: int) -> None:
    print(
        f"\n{n} keep-alive GETs at concurrency {concurrency}, one process per client, "
        f"pinned to one core; nginx on 127.0.0.1:8081 (HTTP/1.1) and {H2_PORT} (h2c)\n"
    )
    header = (
        f"| {'client':<10} | {'req/s':>8} | {'CPU s':>6} | {'req/CPU-s':>9} | "
        f"{'peak RSS MiB':>12} | {'ok':>6} | {'errors':>6} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in results:
        if "error" in r:
            print(f"| {r['client']:<10} | failed: {r['error']}")
            continue
        cpu = float(r["cpu_s"])  # type: ignore[arg-type]
        ok = int(r["ok"])  # type: ignore[call-overload]
        print(
            f"| {r['client']:<10} | {float(r['rps']):>8.0f} | {cpu:>6.2f} | "  # type: ignore[arg-type]
            f"{ok / cpu if cpu else 0:>9.0f} | {int(r['peak_rss_kb']) / 1024:>12.1f} | "  # type: ignore[call-overload]
            f"{ok:>6} | {r['errors']!s:>6} |"
        )
    by = {str(r["client"]): r for r in results if float(r.get("rps", 0) or 0)}  # type: ignore[arg-type]
    for ours in OURS:
        if ours not in by:
            continue
        mine = float(by[ours]["rps"])  # type: ignore[arg-type]
        others = [p for p in (*OURS, *PEERS) if p != ours]
        ratios = [f"{mine / float(by[p]['rps']):.2f}x {p}" for p in others if p in by]  # type: ignore[arg-type]
        print(f"{ours}: " + ", ".join(ratios))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=30000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--cpu", type=int, default=1, help="core to pin clients to (-1: none)")
    ap.add_argument("--pages", type=int, default=10000, help="site size if it must be built")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--clients", default="pool,client,trio_h11,aiohttp,httpx")
    ap.add_argument("--worker", choices=OURS, help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(run_ours(args.worker, args.n, args.concurrency, args.timeout)))
        return 0

    started = False
    if not nginx_running():
        ensure_site(args.pages)
        subprocess.run([str(BENCH / "serve.sh"), "start"], check=True)
        started = True
    try:
        results = []
        for name in args.clients.split(","):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results.append(run_one(name.strip(), args))
    finally:
        if started:
            subprocess.run([str(BENCH / "serve.sh"), "stop"], check=False)
    print_table(results, args.n, args.concurrency)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
