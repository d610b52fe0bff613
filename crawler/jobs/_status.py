"""``crawl status DIR``: what a job directory holds, read without changing anything.

It reads the last committed checkpoint through a read-only SQLite connection,
so it may run while the crawl does (it sees the state as of the last
checkpoint, never a half-written one).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

__all__ = ["JobStatusError", "job_status"]

_TOP_HOSTS = 20


class JobStatusError(Exception):
    """DIR is not a readable job directory."""


def job_status(
    directory: Path,
    *,
    now: float | None = None,
    cache_dir: Callable[[str], Path | None] | None = None,
) -> str:
    """A job directory's progress as text, read without locking or changing it, so
    ``crawl status`` works while the crawl runs.

    ``cache_dir(spider)``: where that spider's HTTP cache would be; its size is shown
    when there is one.
    """
    store = directory / "job.db"
    info_path = directory / "job.json"
    if not info_path.exists() or not store.exists():
        raise JobStatusError(f"{directory} is not a crawl job directory (no job.json or job.db)")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        db = sqlite3.connect(f"file:{quote(str(store.resolve()))}?mode=ro", uri=True)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            (pending,) = db.execute("SELECT count(*) FROM requests").fetchone()
            per_host = {
                host: [count, 0]
                for host, count in db.execute("SELECT host, count(*) FROM requests GROUP BY host")
            }
            for host, done in db.execute("SELECT host, done FROM hosts"):
                per_host.setdefault(host, [0, 0])[1] = done
            (seen,) = db.execute("SELECT count(*) FROM seen").fetchone()
        finally:
            db.close()
    except (OSError, ValueError, sqlite3.DatabaseError) as exc:
        raise JobStatusError(f"cannot read the job in {directory}: {exc}") from None
    stats = json.loads(meta.get("stats", "{}"))
    when = float(meta.get("checkpoint_time", "0") or 0)
    now = time.time() if now is None else now
    reason = meta.get("finish_reason", "")
    if not when:
        state = "no checkpoint yet"
    elif reason == "finished":
        state = "finished"
    elif reason:
        state = f"stopped ({reason}); run the same crawl command to resume"
    else:
        state = "running, or killed: run the same crawl command to resume"
    lines = [
        f"job:              {directory}",
        f"spider:           {info.get('spider', meta.get('spider', '?'))}",
        f"state:            {state}",
        f"last checkpoint:  {_when(when, now)} (#{meta.get('checkpoints', '0')})",
        f"pages done:       {stats.get('pages', 0)}",
        f"pending:          {pending}",
        f"failed:           {stats.get('failed', 0)}",
        f"items exported:   {stats.get('items', 0)}",
        f"requests sent:    {stats.get('requests', 0)}",
        f"seen:             {seen}",
    ]
    spider = info.get("spider", meta.get("spider"))
    if cache_dir is not None and spider:
        lines.extend(_cache_line(cache_dir(str(spider))))
    for entry in json.loads(meta.get("pipelines", "[]")):
        state_of = entry.get("state")
        if isinstance(state_of, dict) and "path" in state_of:
            position = (
                f"{state_of['offset']} bytes"
                if "offset" in state_of
                else f"row {state_of.get('last_id', '?')}"
            )
            lines.append(f"export:           {state_of['path']} ({entry['pipeline']}, {position})")
    custom = stats.get("custom") or {}
    if isinstance(custom, dict) and custom:
        lines.append("custom stats:")
        lines.extend(f"  {key}: {value}" for key, value in sorted(custom.items()))
    if per_host:
        lines.append("hosts:            done  pending")
        ranked = sorted(per_host.items(), key=lambda kv: (-kv[1][0] - kv[1][1], kv[0]))
        width = max(len(host) for host, _ in ranked[:_TOP_HOSTS])
        for host, (waiting, done) in ranked[:_TOP_HOSTS]:
            lines.append(f"  {host:<{width}}  {done:>8}  {waiting:>8}")
        if len(ranked) > _TOP_HOSTS:
            lines.append(f"  ... and {len(ranked) - _TOP_HOSTS} more hosts")
    return "\n".join(lines)


def _cache_line(directory: Path | None) -> list[str]:
    from ..engine._cache_store import cache_size

    found = cache_size(directory) if directory is not None else None
    if directory is None or found is None:
        return []
    count, size = found
    return [f"http cache:       {directory} ({count} responses, {size / 1e6:.1f} MB)"]


def _when(timestamp: float, now: float) -> str:
    if not timestamp:
        return "never"
    text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    return f"{text}, {max(0.0, now - timestamp):.0f}s ago"
