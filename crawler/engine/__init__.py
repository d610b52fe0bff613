"""The crawl engine: runs spiders over one shared connection pool.

``Engine`` owns the pool and runs one ``Crawler`` per spider; a ``Crawler``
drives its spider's workers through the scheduler (priorities, dedup, depth,
per-host politeness), the fetch step, the callbacks and the item pipelines.
``crawl`` and ``run_crawl`` are the one-call entry points the CLI uses.
"""

from ._components import ComponentError as ComponentError
from ._components import Extension as Extension
from ._crawler import Crawler as Crawler
from ._engine import Engine as Engine
from ._engine import crawl as crawl
from ._engine import run_crawl as run_crawl
from ._http_cache import HttpCache as HttpCache
from ._http_cache import HttpCacheError as HttpCacheError
from ._middlewares import DropRequest as DropRequest
from ._middlewares import Middleware as Middleware
from ._signals import SignalName as SignalName
from ._signals import Signals as Signals
from ._stats import CustomStats as CustomStats
from ._stats import Stats as Stats

__all__ = [
    "ComponentError",
    "Crawler",
    "CustomStats",
    "DropRequest",
    "Engine",
    "Extension",
    "HttpCache",
    "HttpCacheError",
    "Middleware",
    "SignalName",
    "Signals",
    "Stats",
    "crawl",
    "run_crawl",
]
