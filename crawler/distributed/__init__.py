"""Crawling past one process: what several workers share through Redis.

``SharedCrawl`` is one worker's part in a shared crawl (the engine makes one
when ``frontier_url`` is set), ``RedisFrontier`` its local side of the shared
frontier; docs/distributed.md describes the design and its guarantee.

Everything here talks to Redis through the small client in ``_redis``, built on
trio with hiredis parsing the replies, because a shared crawl calls Redis for
every batch of pages and a general client cost more than ten times as much per
call on loopback.
"""

from ._delays import RedisDelays as RedisDelays
from ._delays import ThrottledHosts as ThrottledHosts
from ._delays import ThrottleRule as ThrottleRule
from ._frontier import RedisFrontier as RedisFrontier
from ._permits import RedisPermits as RedisPermits
from ._politeness import SharedPoliteness as SharedPoliteness
from ._redis import RedisClient as RedisClient
from ._redis import RedisCommandError as RedisCommandError
from ._redis import RedisConnectionError as RedisConnectionError
from ._redis import RedisError as RedisError
from ._redis import RedisTarget as RedisTarget
from ._redis import Script as Script
from ._redis import Subscription as Subscription
from ._redis import TlsOptions as TlsOptions
from ._redis import key_slot as key_slot
from ._shared import SharedCrawl as SharedCrawl
from ._shared import SharedCrawlError as SharedCrawlError

__all__ = [
    "RedisClient",
    "RedisCommandError",
    "RedisConnectionError",
    "RedisDelays",
    "RedisError",
    "RedisFrontier",
    "RedisPermits",
    "RedisTarget",
    "Script",
    "SharedCrawl",
    "SharedCrawlError",
    "SharedPoliteness",
    "Subscription",
    "ThrottleRule",
    "ThrottledHosts",
    "TlsOptions",
    "key_slot",
]
