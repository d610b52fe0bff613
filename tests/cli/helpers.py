"""Running the ``crawl`` command as a subprocess, for the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

CRAWL = [sys.executable, "-m", "crawler.cli"]
TIME_LIMIT = 30  # seconds for one crawl: a safety net, never reached when things work

# Crawls run quickly and deterministically: no jitter, near-zero retry backoff.
FAST = """\
download_delay_jitter = 0
retry_backoff = 0.01
retry_backoff_max = 0.05
"""


async def crawl(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(TIME_LIMIT):
        return await trio.run_process(
            [*CRAWL, *args], cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
        )


async def crawl_with_input(
    cwd: Path, stdin: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``crawl ARGS`` with ``stdin`` as its standard input (a pipe, so not a terminal)."""
    with trio.fail_after(TIME_LIMIT):
        return await trio.run_process(
            [*CRAWL, *args],
            cwd=cwd,
            stdin=stdin.encode(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    return stderr


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line must be a whole JSON object: a torn record fails here."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), f"{path} ends in a partial line"
    return [json.loads(line) for line in text.splitlines()]


# A spider with an option, for the command's settings and listing tests.
BOOKS = """\
from crawler import Spider


class Books(Spider):
    name = "books"
    options = {"site_url": "http://books/"}
"""


def crawl_sync(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``crawl`` to completion from a test that is not async."""
    return subprocess.run(
        [sys.executable, "-m", "crawler.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


REPO = Path(__file__).resolve().parents[2]


async def type_check(root: Path, target: str, cache: Path, limit: float = TIME_LIMIT) -> None:
    """``mypy --strict`` on ``target`` (a path under ``root``) against this repository's
    package: what a scaffolded spider must pass as written."""
    with trio.fail_after(limit):
        checked = await trio.run_process(
            [
                *(sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent"),
                *("--cache-dir", str(cache), target),
            ],
            cwd=root,
            env={**os.environ, "MYPYPATH": str(REPO)},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert checked.returncode == 0, checked.stdout.decode()


# Libraries only some crawls need: importing the package must not load them (each
# costs megabytes of memory in every crawl, and memory is one of the engine's measures).
# Standard modules too: importlib.metadata (with email and zipfile), urllib.request
# (with http.client) and sqlite3 cost about a megabyte each. h2 and hpack (HTTP/2) and
# certifi (https) wait for the first connection that needs them, brotli and zstd for the
# first response compressed with them; tenacity for the first failure to retry; difflib,
# decimal, uuid, html and email for the rare value or message that needs them.
LAZY_LIBRARIES = (
    "itemadapter",
    "pydantic",
    "python_socks",
    "lxml",
    "hiredis",
    "importlib.metadata",
    "urllib.request",
    "sqlite3",
    "h2",
    "hpack",
    "certifi",
    "brotli",
    "backports.zstd",
    "tenacity",
    "difflib",
    "decimal",
    "uuid",
    "html",
    "email",
)
