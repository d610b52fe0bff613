"""Crawling past one process: what several workers share through Redis.

Everything here talks to Redis through the small client in ``_redis``, built on
trio with hiredis parsing the replies, because a shared crawl calls Redis for
every batch of pages and a general client cost more than ten times as much per
call on loopback.
"""

from ._delays import RedisDelays as RedisDelays
from ._permits import RedisPermits as RedisPermits
from ._redis import RedisClient as RedisClient
from ._redis import RedisCommandError as RedisCommandError
from ._redis import RedisConnectionError as RedisConnectionError
from ._redis import RedisError as RedisError
from ._redis import RedisTarget as RedisTarget
from ._redis import Script as Script
from ._shared import SharedPoliteness as SharedPoliteness

__all__ = [
    "RedisClient",
    "RedisCommandError",
    "RedisConnectionError",
    "RedisDelays",
    "RedisError",
    "RedisPermits",
    "RedisTarget",
    "Script",
    "SharedPoliteness",
]
