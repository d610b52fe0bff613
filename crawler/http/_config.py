"""Limits and timeouts: small immutable value objects shared by client and pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

__all__ = ["DEFAULT_LIMITS", "DEFAULT_TIMEOUT", "Limits", "Timeout"]

# A unique object, compared by identity: any float, even a negative one that
# must be refused, is something the caller said.
_UNSET: float = cast(float, object())


@dataclass(frozen=True, slots=True)
class Limits:
    """Connection pool limits.

    ``max_connections_per_host`` is the politeness cap httpx lacks: no code path can
    hold more connections than this to one origin, however many requests wait.
    ``None`` means unlimited for the first three.
    """

    max_connections: int | None = 100
    max_keepalive_connections: int | None = 20
    keepalive_expiry: float | None = 5.0
    max_connections_per_host: int = 8
    #: Connections through any one proxy (None: unlimited); the per-host cap still
    #: counts per site, whatever the route.
    max_connections_per_proxy: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_keepalive_connections"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"Limits.{name} must be a non-negative int or None, got {value!r}")
        if not isinstance(self.max_connections_per_host, int) or self.max_connections_per_host < 1:
            raise ValueError(
                "Limits.max_connections_per_host must be an int >= 1, "
                f"got {self.max_connections_per_host!r}"
            )
        per_proxy = self.max_connections_per_proxy
        if per_proxy is not None and (
            not isinstance(per_proxy, int) or isinstance(per_proxy, bool) or per_proxy < 1
        ):
            raise ValueError(
                f"Limits.max_connections_per_proxy must be an int >= 1 or None, got {per_proxy!r}"
            )
        if self.keepalive_expiry is not None and self.keepalive_expiry < 0:
            raise ValueError(f"Limits.keepalive_expiry must be >= 0, got {self.keepalive_expiry!r}")


class Timeout:
    """Connect, read, write and pool timeouts in seconds (``None`` = wait forever).

    ``Timeout(5.0)`` sets all four; keyword arguments override single ones, so
    ``Timeout(10.0, connect=2.0)`` is a 2 s connect timeout and 10 s for the rest.

    ``total`` is separate and off unless given: the four above bound each wait,
    so a server that trickles one byte just inside the read timeout keeps a
    request alive forever; ``total`` bounds the whole request, from asking the
    pool for a connection until the last byte of the body has been read.
    """

    __slots__ = ("connect", "pool", "read", "total", "write")

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None
    total: float | None

    def __init__(
        self,
        timeout: float | Timeout | None = None,
        *,
        connect: float | None = _UNSET,
        read: float | None = _UNSET,
        write: float | None = _UNSET,
        pool: float | None = _UNSET,
        total: float | None = _UNSET,
    ) -> None:
        if total is _UNSET:
            total = timeout.total if isinstance(timeout, Timeout) else None
        if total is not None and total < 0:
            raise ValueError(f"Timeout total must be >= 0 or None, got {total!r}")
        self.total = total
        if isinstance(timeout, Timeout):
            base: tuple[float | None, ...] = (
                timeout.connect,
                timeout.read,
                timeout.write,
                timeout.pool,
            )
        else:
            if timeout is not None and timeout < 0:
                raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
            base = (timeout,) * 4
        given = (connect, read, write, pool)
        values = [b if g is _UNSET else g for b, g in zip(base, given, strict=True)]
        for name, value in zip(("connect", "read", "write", "pool"), values, strict=True):
            if value is not None and value < 0:
                raise ValueError(f"Timeout {name} must be >= 0 or None, got {value!r}")
        self.connect, self.read, self.write, self.pool = values

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Timeout)
            and self.as_tuple() == other.as_tuple()
            and self.total == other.total
        )

    def __hash__(self) -> int:
        return hash((*self.as_tuple(), self.total))

    def as_tuple(self) -> tuple[float | None, float | None, float | None, float | None]:
        return (self.connect, self.read, self.write, self.pool)

    def __repr__(self) -> str:
        total = "" if self.total is None else f", total={self.total}"
        if len(set(self.as_tuple())) == 1:
            return f"Timeout(timeout={self.connect}{total})"
        return (
            f"Timeout(connect={self.connect}, read={self.read}, "
            f"write={self.write}, pool={self.pool}{total})"
        )


DEFAULT_TIMEOUT = Timeout(5.0)
DEFAULT_LIMITS = Limits()
