"""Which proxy a spider's request goes through.

Precedence, most specific first: the request's own ``proxy``, the nearest
``[domains."HOST"] proxy``, the ``proxy`` setting or the rotation through the
``proxies`` list (``_rotation``: chosen per request, not per origin), then the environment
(``HTTP_PROXY``... when ``trust_env`` is true). An empty string at any level
means "no proxy" and stops the search; ``NO_PROXY`` (with ``trust_env``)
exempts hosts from the setting's proxy and the environment's.

The choice depends on the origin alone, so it is made once per origin and
cached; a spider that configures no proxy anywhere gets no chooser at all,
and its requests pay nothing.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING

from ..http import InvalidURL, NoProxy, Proxy, ProxyRoutes
from ..settings import SettingsError
from ._rotation import ProxyRotation

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["ProxyChooser", "proxy_of"]

_MAX_CACHED = 100_000


@lru_cache(maxsize=256)
def proxy_of(url: str) -> Proxy | None:
    """A request's ``proxy`` string, parsed once per distinct value ("" is None)."""
    return Proxy(url) if url else None


class ProxyChooser:
    """The proxy of each origin a spider reaches, from its settings and the environment."""

    __slots__ = ("_cache", "_domains", "_env", "_no_proxy", "_setting", "_settings")

    def __init__(
        self,
        settings: Settings,
        env: ProxyRoutes | None,
        no_proxy: NoProxy | None,
        counters: dict[str, Counter[str]] | None = None,
    ) -> None:
        self._setting: Proxy | ProxyRotation | None = proxy_of(settings.proxy)
        if settings.proxies:
            self._setting = ProxyRotation(
                [Proxy(url) for url in settings.proxies],
                rotation=settings.proxy_rotation,
                ban_statuses=settings.proxy_ban_statuses,
                bench_after=settings.proxy_bench_after,
                bench_seconds=settings.proxy_bench_seconds,
                bench_max_seconds=settings.proxy_bench_max_seconds,
                counters={} if counters is None else counters,
            )
        self._env = env
        self._no_proxy = no_proxy
        self._settings = settings
        self._domains = any("proxy" in entry for entry in settings.domains.values())
        self._cache: dict[tuple[str, str, int | None], Proxy | ProxyRotation | None] = {}

    @classmethod
    def for_spider(
        cls, settings: Settings, counters: dict[str, Counter[str]] | None = None
    ) -> ProxyChooser | None:
        """The spider's chooser; None when no level names a proxy (all direct).

        ``counters`` receives the rotation's per-proxy counts (requests, failures,
        benched), keyed by the proxy's redacted URL.
        """
        _check("proxy", settings.proxy)
        if settings.proxy and settings.proxies:
            raise SettingsError(
                "Settings 'proxy' and 'proxies' are both set: set one (a single proxy, "
                "or a list to rotate through)"
            )
        for index, url in enumerate(settings.proxies):
            if not url:
                raise SettingsError(f"Setting 'proxies'[{index}] is empty: give a proxy URL")
            _check(f"proxies[{index}]", url)
        for host, entry in settings.domains.items():
            if "proxy" in entry:
                _check(f'domains."{host}".proxy', str(entry["proxy"]))
        try:
            env = ProxyRoutes.from_environment() if settings.trust_env else None
        except ValueError as exc:
            raise SettingsError(f"{exc} (or set trust_env = false)") from None
        no_proxy = NoProxy.from_environment() if settings.trust_env else None
        if (
            not settings.proxy
            and not settings.proxies
            and env is None
            and not any("proxy" in entry for entry in settings.domains.values())
        ):
            return None
        return cls(settings, env, no_proxy, counters)

    def choose(self, scheme: str, host: str, port: int | None) -> Proxy | ProxyRotation | None:
        """The origin's proxy, or the rotation that picks one for each request."""
        key = (scheme, host, port)
        try:
            return self._cache[key]
        except KeyError:
            pass
        proxy = self._resolve(scheme, host, port)
        if len(self._cache) < _MAX_CACHED:
            self._cache[key] = proxy
        return proxy

    def _resolve(self, scheme: str, host: str, port: int | None) -> Proxy | ProxyRotation | None:
        if self._domains:
            given = self._settings.domain_proxy(host)
            if given is not None:
                return proxy_of(given)
        effective = port if port is not None else (443 if scheme == "https" else 80)
        if self._no_proxy is not None and self._no_proxy.matches(host, effective):
            return None
        if self._setting is not None:
            return self._setting
        if self._env is not None:
            return self._env.proxy_for(scheme, host, port)
        return None


def _check(key: str, value: str) -> None:
    """Refuse a proxy setting that is not a usable proxy URL, naming the setting."""
    try:
        proxy_of(value)
    except (ValueError, InvalidURL) as exc:
        raise SettingsError(f"Setting {key!r}: {exc}") from None
