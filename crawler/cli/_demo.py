"""The ``crawl`` command's side of the bundled demo site.

The demo site is there so that a first ``crawl myspider`` works offline; it
is no part of crawling. So the engine knows nothing of it: the command starts
it, inside the crawl's trio loop, when a spider's settings say
``serve_demo_site = true``, and hands its base URL to each such spider through
the ``site_url`` option (if the spider declares that option and it was left
empty). Python code that wants the site starts ``crawler.demo.serve_demo_site``
itself (docs/demo-site.md).

With ``http_cache`` on, the site is served on a port of the project's own
(derived from its directory) rather than any free one: the cache is keyed by
URL, port included, so a rerun from the cache needs the same address.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import socket
from collections.abc import Sequence
from functools import partial

import trio

from ..settings import Settings
from ..spider import Spider

__all__ = ["SITE_URL_OPTION", "start_demo_site", "wants_demo_site"]

log = logging.getLogger("crawler.cli")

#: The spider option that receives the demo site's base URL.
SITE_URL_OPTION = "site_url"


async def start_demo_site(
    nursery: trio.Nursery, spiders: Sequence[tuple[type[Spider], Settings]]
) -> list[Settings]:
    """Start the demo site in ``nursery`` if a spider asks for it; each spider's settings,
    with the site's URL as ``site_url`` for those that asked and declare an empty one."""
    if not any(settings.serve_demo_site for _, settings in spiders):
        return [settings for _, settings in spiders]
    from ..demo import serve_demo_site

    url: str = await nursery.start(partial(serve_demo_site, port=_cacheable_port(spiders)))
    log.debug("demo site served at %s", url)
    return [_with_site_url(cls, settings, url) for cls, settings in spiders]


# The range the project's own port is taken from: above the well-known ports, below
# the ephemeral range Linux hands out for port 0.
_PORTS_FROM, _PORTS = 20000, 12000


def _cacheable_port(spiders: Sequence[tuple[type[Spider], Settings]]) -> int:
    """The project's own port when a spider uses the HTTP cache and the port is free,
    else 0 (any free port: a cache made on another port is then not used)."""
    cached = [settings for _, settings in spiders if settings.http_cache]
    if not cached:
        return 0
    digest = hashlib.blake2b(str(cached[0].project_dir).encode(), digest_size=4).digest()
    port = _PORTS_FROM + int.from_bytes(digest, "big") % _PORTS
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            log.warning(
                "port %d is taken: the demo site is on another port, so the HTTP cache of "
                "earlier runs is not used",
                port,
            )
            return 0
    return port


def _with_site_url(spider: type[Spider], settings: Settings, url: str) -> Settings:
    if not settings.serve_demo_site or SITE_URL_OPTION not in spider.options:
        return settings
    if settings.options.get(SITE_URL_OPTION):
        return settings  # pointed at another copy of the site (-s site_url=...)
    return dataclasses.replace(settings, options={**settings.options, SITE_URL_OPTION: url})


def wants_demo_site(spider: type[Spider], settings: Settings) -> bool:
    """Whether a tool that looks at one spider (``shell``, ``check``) must start the demo
    site for it: it serves the site and was pointed at no other (``-s site_url=...``, or
    the origin of a URL given to the tool)."""
    return (
        settings.serve_demo_site
        and SITE_URL_OPTION in spider.options
        and not settings.options.get(SITE_URL_OPTION)
    )
