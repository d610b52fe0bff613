"""The demo site's port when the HTTP cache is on: the same from run to run, so that
the cache's keys (URLs, port included) still match."""

from __future__ import annotations

import socket
from pathlib import Path

from crawler import Settings, Spider
from crawler.cli._demo import _cacheable_port


class Demo(Spider):
    name = "demo"


def spiders(tmp_path: Path, *, http_cache: bool = False) -> list[tuple[type[Spider], Settings]]:
    return [(Demo, Settings(project_dir=tmp_path, http_cache=http_cache))]


def test_with_the_cache_the_demo_site_has_the_projects_own_port(tmp_path: Path) -> None:
    port = _cacheable_port(spiders(tmp_path, http_cache=True))
    assert 20000 <= port < 32000
    assert _cacheable_port(spiders(tmp_path, http_cache=True)) == port


def test_without_the_cache_any_free_port_will_do(tmp_path: Path) -> None:
    assert _cacheable_port(spiders(tmp_path)) == 0


def test_a_taken_port_falls_back_to_any(tmp_path: Path) -> None:
    port = _cacheable_port(spiders(tmp_path, http_cache=True))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert _cacheable_port(spiders(tmp_path, http_cache=True)) == 0
