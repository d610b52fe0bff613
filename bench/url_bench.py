#!/usr/bin/env python3
"""CPU cost of building URLs and requests, per call, on distinct URL strings.

    taskset -c 1 .venv/bin/python bench/url_bench.py [--n 100000] [--rounds 7]

Every request the engine sends starts with ``URL(str)``. This times it on
URL shapes a crawl sees, beside the general parsing path alone (what every
URL cost before the fast path existed) and ``urllib.parse.urlsplit``, and
times a whole ``Request("GET", url, headers=..., timeout=...)``. Strings
are distinct because ``urlsplit`` caches its last results. Best of
``--rounds``, in microseconds per call. No network.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from crawler.http import URL, Request, Timeout

SHAPES: dict[str, Callable[[int], str]] = {
    "bench site: http, port, path": lambda i: f"http://127.0.0.1:8081/p/{i // 1000:03d}/{i}.html",
    "https, query": lambda i: f"https://www.example.com/item-{i}?page={i % 50}&sort=asc",
    "general path: uppercase host": lambda i: f"http://Example.COM/p/{i}",
}
HEADERS = [("User-Agent", "crawler/0.1"), ("Accept", "*/*"), ("Accept-Encoding", "gzip")]


def slow_url(text: str) -> URL:
    url = URL.__new__(URL)
    url._parse_slow(text)
    return url


def best(fn: Callable[[str], object], urls: list[str], rounds: int) -> float:
    fastest = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for url in urls:
            fn(url)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest / len(urls) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    timeout = Timeout(10.0)
    print(f"{'URL shape':30s} {'URL()':>8s} {'general':>8s} {'urlsplit':>8s}  us/call")
    for name, make in SHAPES.items():
        urls = [make(i) for i in range(args.n)]
        ours = best(URL, urls, args.rounds)
        general = best(slow_url, urls, args.rounds)
        split = best(urlsplit, urls, args.rounds)
        print(f"{name:30s} {ours:8.2f} {general:8.2f} {split:8.2f}")
    urls = [SHAPES["bench site: http, port, path"](i) for i in range(args.n)]
    build = best(
        lambda u: Request("GET", URL(u), headers=HEADERS, timeout=timeout), urls, args.rounds
    )
    general = best(
        lambda u: Request("GET", slow_url(u), headers=HEADERS, timeout=timeout), urls, args.rounds
    )
    print(f"Request('GET', URL(u), ...): {build:.2f} us; with the general path: {general:.2f} us")


if __name__ == "__main__":
    main()
