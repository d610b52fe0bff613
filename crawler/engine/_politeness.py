"""Per-host politeness: request spacing, jitter and adaptive throttling.

Everything here is bookkeeping on numbers; time comes from an injectable
``now`` (trio's clock by default), so the rules are tested without sleeping
and the engine decides how to wait.  State is per host name: a site's
slowness or its 429s never slow another host down.

The delay of a host is ``max(configured, robots crawl-delay, throttle)``:

* configured: ``download_delay``, or ``delay_for(host)`` when given;
* robots: the ``Crawl-delay`` its robots.txt asks for (see ``_robots.py``);
* throttle: grows multiplicatively on 429/503 (honouring ``Retry-After``),
  shrinks additively on each success until it is back to the configured
  delay (AIMD, the scheme TCP uses to share a link without oscillating).

See docs/politeness.md for the reasoning and the settings.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import trio

from ._robots import RobotsCache

__all__ = ["THROTTLE_STATUSES", "Politeness", "RobotsCache", "parse_retry_after"]

THROTTLE_STATUSES = frozenset({429, 503})


def parse_retry_after(value: str | None, now_wall: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta or HTTP-date).

    Returns None when the header is absent or unreadable; a date in the past
    gives 0.  ``now_wall`` is the current Unix time (the header's dates are
    wall-clock time, unlike the monotonic clock used elsewhere here).
    """
    if not value:
        return None
    value = value.strip()
    # isascii: "²".isdigit() is true, but float() cannot read it.
    if value.isascii() and value.isdigit():
        return float(value)
    import email.utils  # here: a date in Retry-After is rare, email costs every crawl

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    if now_wall is None:
        import time

        now_wall = time.time()
    return max(0.0, when.timestamp() - now_wall)


class _Host:
    """Mutable per-host state; one small object per host the crawl touches."""

    __slots__ = ("base", "crawl_delay", "next_time", "throttle")

    def __init__(self, base: float) -> None:
        self.base = base  # configured delay (download_delay or delay_for)
        self.crawl_delay = 0.0  # from robots.txt
        self.throttle = 0.0  # adaptive part, 0 when the host behaves
        self.next_time = -float("inf")  # earliest time of the next request


class Politeness:
    """Per-host request spacing with jitter and AIMD throttling.

    ``jitter`` j draws each gap from uniform(1-j, 1+j) times the delay, so
    requests do not arrive on a fixed beat.  ``backoff`` multiplies the delay
    on 429/503, starting from at least ``min_backoff`` seconds, capped at
    ``max_delay``; each successful response takes ``recovery_step`` seconds
    off again. ``on_pause(host, seconds)`` hears of each ``Retry-After``, and
    ``on_throttle(host, raised)`` of each response that raised (a 429/503) or
    lowered a host's throttle: a crawl shared by several processes keeps the
    throttle in Redis, and ``share_throttle``/``learn_throttle`` bring it back.
    """

    def __init__(
        self,
        download_delay: float = 0.0,
        *,
        delay_for: Callable[[str], float] | None = None,
        jitter: float = 0.0,
        backoff: float = 2.0,
        min_backoff: float = 1.0,
        recovery_step: float = 0.25,
        max_delay: float = 60.0,
        now: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        on_pause: Callable[[str, float], None] | None = None,
        on_throttle: Callable[[str, bool], None] | None = None,
    ) -> None:
        if download_delay < 0:
            raise ValueError(f"download_delay must be >= 0, got {download_delay}")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {jitter}")
        if backoff < 1.0:
            raise ValueError(f"backoff must be >= 1, got {backoff}")
        if recovery_step <= 0:
            raise ValueError(f"recovery_step must be > 0, got {recovery_step}")
        self.download_delay = download_delay
        self.jitter = jitter
        self.backoff = backoff
        self.min_backoff = min_backoff
        self.recovery_step = recovery_step
        self.max_delay = max_delay
        self._delay_for = delay_for
        self._now = now if now is not None else trio.current_time
        self._uniform = (rng if rng is not None else random.Random()).uniform
        self._hosts: dict[str, _Host] = {}
        # Told of every Retry-After pause, so other processes of the crawl pause too.
        self._on_pause = on_pause
        # Told of every change of a throttle, so other processes of the crawl follow it.
        self._on_throttle = on_throttle

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            base = self._delay_for(host) if self._delay_for is not None else self.download_delay
            if base < 0:
                raise ValueError(f"delay_for({host!r}) returned a negative delay: {base}")
            state = self._hosts[host] = _Host(base)
        return state

    def delay(self, host: str) -> float:
        """The current (un-jittered) delay between two requests to ``host``."""
        state = self._host(host)
        return max(state.base, state.crawl_delay, state.throttle)

    def next_allowed_time(self, host: str) -> float:
        """Clock time from which the next request to ``host`` may start."""
        return self._host(host).next_time

    def record_request(self, host: str) -> None:
        """A request to ``host`` starts now: book the gap before the next one."""
        state = self._host(host)
        state.next_time = self._now() + self._gap(state)

    def reserve(self, host: str) -> float:
        """Book the next free slot for ``host`` and return its start time.

        Unlike checking next_allowed_time then calling record_request, two
        callers can never get the same slot: the second one is booked a gap
        after the first.  The caller sleeps until the returned time.
        """
        state = self._host(host)
        start = max(self._now(), state.next_time)
        state.next_time = start + self._gap(state)
        return start

    def shared_gap(self, host: str) -> float:
        """The (jittered) gap to book after a request to ``host`` in a slot shared with
        other processes; 0 when the host has no delay, so nothing needs booking."""
        state = self._hosts.get(host)
        if state is None:
            return 0.0
        return self._gap(state)

    async def wait(self, host: str) -> None:
        """Reserve a slot for ``host`` and sleep until it starts."""
        await trio.sleep_until(self.reserve(host))

    def _gap(self, state: _Host) -> float:
        delay = max(state.base, state.crawl_delay, state.throttle)
        if delay and self.jitter:
            delay *= self._uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return delay

    def record_response(self, host: str, status: int, retry_after: str | None = None) -> None:
        """Adapt ``host``'s delay to how it answered.

        429 and 503 multiply the throttle; a ``Retry-After`` (capped at
        ``max_delay``) also pushes the host's next slot out to at least that
        far from now.  Any other answer below 500 counts as a success and
        lowers the throttle by ``recovery_step``; other 5xx leave it alone.
        """
        state = self._host(host)
        if status in THROTTLE_STATUSES:
            current = max(state.base, state.crawl_delay, state.throttle)
            state.throttle = min(self.max_delay, max(self.min_backoff, current * self.backoff))
            wait = parse_retry_after(retry_after)
            if wait is not None:
                wait = min(wait, self.max_delay)
                state.next_time = max(state.next_time, self._now() + wait)
                if self._on_pause is not None:
                    self._on_pause(host, wait)
            if self._on_throttle is not None:
                self._on_throttle(host, True)
        elif status < 500 and state.throttle:
            state.throttle = max(0.0, state.throttle - self.recovery_step)
            if state.throttle <= max(state.base, state.crawl_delay):
                state.throttle = 0.0
            if self._on_throttle is not None:
                self._on_throttle(host, False)

    def base_delay(self, host: str) -> float:
        """The delay of ``host`` without its throttle (configured, or robots.txt's)."""
        state = self._host(host)
        return max(state.base, state.crawl_delay)

    def share_throttle(self, host: str, seconds: float) -> None:
        """Take the throttle of ``host`` that the crawl's processes share (from a booking):
        it replaces this process's own view, which the booking brought to Redis."""
        state = self._host(host)
        throttle = min(max(0.0, seconds), self.max_delay)
        state.throttle = 0.0 if throttle <= max(state.base, state.crawl_delay) else throttle

    def learn_throttle(self, host: str, seconds: float) -> None:
        """Another process throttles ``host``: from now on this one books its slots too
        (the bookings then tell the throttle as it moves)."""
        state = self._host(host)
        if not state.throttle:
            self.share_throttle(host, seconds)

    def set_crawl_delay(self, host: str, seconds: float | None) -> None:
        """Apply a robots.txt ``Crawl-delay`` (capped at ``max_delay``)."""
        state = self._host(host)
        state.crawl_delay = min(max(0.0, seconds or 0.0), self.max_delay)

    def hosts(self) -> list[str]:
        return list(self._hosts)

    def throttles(self) -> dict[str, float]:
        """The hosts currently slowed down by throttling and by how much, for a checkpoint."""
        return {host: state.throttle for host, state in self._hosts.items() if state.throttle}

    def restore_throttles(self, throttles: dict[str, float]) -> None:
        """Slow hosts down again after a resume, as they were at the checkpoint."""
        for host, throttle in throttles.items():
            self._host(host).throttle = min(max(0.0, float(throttle)), self.max_delay)
