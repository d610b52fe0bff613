"""Crawl counters, the live progress line and the final summary.

Counters are plain attributes bumped on the hot path (an attribute increment
costs nanoseconds; a dict-of-strings or a metrics library would not), and are
turned into a dict only when someone looks: the progress line twice a second,
the summary and ``--stats-json`` once at the end.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import trio

__all__ = ["CustomStats", "Stats", "progress_line", "run_progress", "write_stats_json"]

log = logging.getLogger("crawler.stats")

ConnectionCounts = Callable[[], Mapping[str, tuple[int, int]]]

#: What a custom counter may hold: what JSON, the summary and ``crawl status`` can show.
StatValue = int | float | str


class CustomStats:
    """A spider's own counters (``spider.stats``), beside the engine's: in the summary,
    under ``custom`` in ``--stats-json``, and in ``crawl status`` (kept by a job).

    ``inc("pages/with_price")``, ``set("last_page", url)``, ``max("largest_page", n)``.
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, StatValue] | None = None) -> None:
        self._values = values if values is not None else {}

    def inc(self, key: str, count: int | float = 1) -> None:
        """Add ``count`` to ``key`` (which starts at 0)."""
        values = self._values
        current = values.get(key, 0)
        if isinstance(current, str) or not isinstance(count, int | float):
            raise TypeError(f"stats.inc({key!r}, {count!r}): {key!r} and count must be numbers")
        values[key] = current + count

    def set(self, key: str, value: StatValue) -> None:
        """Set ``key`` to ``value`` (a number or a string)."""
        if not isinstance(key, str):
            raise TypeError(f"stats keys are strings, not {type(key).__name__}: {key!r}")
        if not isinstance(value, int | float | str):
            raise TypeError(
                f"stats.set({key!r}, ...): a value is a number or a string, "
                f"not {type(value).__name__}"
            )
        self._values[key] = value

    def max(self, key: str, value: int | float) -> None:
        """Keep the largest ``value`` seen for ``key``."""
        current = self._values.get(key)
        if current is None or (not isinstance(current, str) and value > current):
            self.set(key, value)

    def get(self, key: str, default: StatValue | None = None) -> StatValue | None:
        return self._values.get(key, default)

    def to_dict(self) -> dict[str, StatValue]:
        return dict(sorted(self._values.items()))


class Stats:
    """Everything a crawl counts. ``dropped`` and ``errors`` are keyed by reason / kind."""

    def __init__(self, spider: str = "") -> None:
        self.spider = spider
        self.start_time = time.time()
        self._start_mono = time.monotonic()
        self.end_time: float | None = None
        self.end_time_mono = 0.0
        self.finish_reason = ""
        self.requests = 0  # HTTP exchanges sent (retries and robots.txt included)
        self.pages = 0  # responses handed to callbacks
        self.bytes = 0
        self.items = 0
        self.items_dropped = 0
        self.retries = 0
        self.redirects = 0
        self.failed = 0  # requests given up on after retries
        self.callback_errors = 0
        self.status: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()  # offsite, duplicate, robots, url_too_long...
        self.queued = 0  # kept current by the scheduler
        self.in_flight = 0
        self.connections: dict[str, tuple[int, int]] = {}
        self.custom: dict[str, StatValue] = {}  # the spider's own (CustomStats)
        # The HTTP cache's hit, miss, store, revalidate, uncacheable (empty without one).
        self.http_cache: Counter[str] = Counter()
        # With the proxies setting: requests, failures, benched per proxy (redacted URL).
        self.proxies: dict[str, Counter[str]] = {}

    @property
    def elapsed(self) -> float:
        end = self.end_time_mono if self.end_time is not None else time.monotonic()
        return max(end - self._start_mono, 1e-9)

    def finish(self, reason: str) -> None:
        if self.end_time is None:
            self.end_time = time.time()
            self.end_time_mono = time.monotonic()
            self.finish_reason = reason

    def to_dict(self) -> dict[str, Any]:
        elapsed = self.elapsed
        data = {
            "spider": self.spider,
            "finish_reason": self.finish_reason,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "elapsed_seconds": round(elapsed, 3),
            "requests": self.requests,
            "pages": self.pages,
            "pages_per_second": round(self.pages / elapsed, 1),
            "bytes": self.bytes,
            "items": self.items,
            "items_dropped": self.items_dropped,
            "retries": self.retries,
            "redirects": self.redirects,
            "failed": self.failed,
            "callback_errors": self.callback_errors,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "errors": dict(self.errors),
            "dropped": dict(self.dropped),
            "queued": self.queued,
            "in_flight": self.in_flight,
            "connections": {k: list(v) for k, v in self.connections.items()},
            "custom": dict(sorted(self.custom.items())),
        }
        if self.proxies:
            data["proxies"] = {
                label: {key: counts[key] for key in ("requests", "failures", "benched")}
                for label, counts in self.proxies.items()
            }
        for name, count in self.http_cache.items():
            data[f"httpcache/{name}"] = count
        return data


def progress_line(
    stats: list[Stats], connections: Mapping[str, tuple[int, int]], rate: float | None = None
) -> str:
    """One line for the terminal: totals, the current rate, the busiest hosts' connections."""
    pages = sum(s.pages for s in stats)
    items = sum(s.items for s in stats)
    elapsed = max(s.elapsed for s in stats) if stats else 1e-9
    queued = sum(s.queued for s in stats)
    in_flight = sum(s.in_flight for s in stats)
    errors = sum(sum(s.errors.values()) + s.callback_errors + s.failed for s in stats)
    retries = sum(s.retries for s in stats)
    dropped = sum(sum(s.dropped.values()) for s in stats)
    busiest = sorted(connections.items(), key=lambda kv: -kv[1][0])[:3]
    conns = " ".join(f"{origin.split('://')[-1]}={a}/{i}" for origin, (a, i) in busiest)
    shown_rate = pages / elapsed if rate is None else rate
    return (
        f"{elapsed:6.0f}s pages {pages} ({shown_rate:.0f}/s) items {items} "
        f"queue {queued} active {in_flight} retries {retries} errors {errors} "
        f"dropped {dropped} conns[active/idle] {conns}"
    )


async def run_progress(
    stats: Callable[[], list[Stats]],
    connections: ConnectionCounts,
    stream: TextIO | None = None,
    interval: float = 0.5,
) -> None:
    """Redraw the progress line until cancelled; does nothing unless ``stream`` is a TTY."""
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        return
    last_pages, last_time = 0, trio.current_time()
    # Log lines written meanwhile must not be glued to the progress line: clear it first.
    clear = _ClearLine(out)
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is out]
    for handler in handlers:
        handler.addFilter(clear)
    try:
        while True:
            await trio.sleep(interval)
            current = stats()
            now = trio.current_time()
            pages = sum(s.pages for s in current)
            rate = (pages - last_pages) / max(now - last_time, 1e-9)
            last_pages, last_time = pages, now
            line = progress_line(current, connections(), rate)
            out.write("\r\x1b[2K" + line[:200])
            out.flush()
    finally:
        for handler in handlers:
            handler.removeFilter(clear)
        out.write("\r\x1b[2K")
        out.flush()


class _ClearLine(logging.Filter):
    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def filter(self, record: logging.LogRecord) -> bool:
        self.stream.write("\r\x1b[2K")
        return True


def log_summary(stats: Stats) -> None:
    d = stats.to_dict()
    log.info(
        "spider %s finished (%s) in %.1fs: %d pages (%.1f/s), %d items, %d requests, "
        "%d retries, %d failed, %d callback errors, errors %s, dropped %s, status %s",
        d["spider"],
        d["finish_reason"],
        d["elapsed_seconds"],
        d["pages"],
        d["pages_per_second"],
        d["items"],
        d["requests"],
        d["retries"],
        d["failed"],
        d["callback_errors"],
        d["errors"],
        d["dropped"],
        d["status"],
    )
    if stats.custom:
        log.info("spider %s custom stats: %s", d["spider"], d["custom"])
    if stats.http_cache:
        log.info(
            "spider %s: http cache %s",
            d["spider"],
            ", ".join(f"{name} {count}" for name, count in stats.http_cache.items()),
        )


def write_stats_json(path: Path, stats: list[Stats]) -> None:
    """One spider: its dict; several: {"spiders": [...]}. Written atomically."""
    data: Any = stats[0].to_dict() if len(stats) == 1 else {"spiders": [s.to_dict() for s in stats]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
