"""The bundled offline demo site: a quotes site to practise crawling on.

A newcomer's first ``crawl myspider`` must work on a machine with no network,
so the engine can start this site on a free loopback port
(``serve_demo_site = true`` in a spider's settings). Its structure mirrors the
public sandbox quotes.toscrape.com, so a spider written here also scrapes
that one. See docs/demo-site.md for the pages and the demo login.
"""

from __future__ import annotations

from functools import partial
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ._app import DEMO_PASSWORD as DEMO_PASSWORD
from ._app import DEMO_USERNAME as DEMO_USERNAME
from ._app import SESSION_COOKIE as SESSION_COOKIE
from ._app import DemoApp as DemoApp
from ._app import demo_app as demo_app

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_USERNAME",
    "SESSION_COOKIE",
    "DemoApp",
    "demo_app",
    "serve_demo_site",
]


def _bind(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


async def serve_demo_site(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    app: DemoApp | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the demo site until cancelled; report its base URL to ``nursery.start``.

    Run it as ``base_url = await nursery.start(serve_demo_site)``. Port 0 picks
    a free port, which is why the URL is reported rather than known in
    advance. Shutdown is by cancelling the nursery: the site holds nothing
    that needs a graceful goodbye. ``app`` defaults to the process-wide
    ``demo_app``; tests pass a fresh ``DemoApp`` to reset its state.
    """
    config = Config()
    config.bind = [_bind(host, port)]
    config.accesslog = None
    config.errorlog = None
    # Outlive the client pool's idle expiry, so the server never closes a
    # keep-alive connection at the very moment the crawler reuses it.
    config.keep_alive_timeout = 75
    async with trio.open_nursery() as nursery:
        # hypercorn types apps with its own TypedDict scopes; ours are plain mappings.
        asgi = cast(Any, app or demo_app)
        binds: list[str] = await nursery.start(partial(serve, asgi, config))
        task_status.started(binds[0].rstrip("/"))
