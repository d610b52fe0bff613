"""The Settings object: one frozen, typed value per setting, resolved per spider.

Each engine setting is a dataclass field declared with ``setting()``, which
carries its documentation and limits; validation, docs/settings.md and the
settings.toml template are all derived from these declarations.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._schema import Spec, setting, specs_of

if TYPE_CHECKING:
    from ..http import Limits, Timeout

__all__ = ["ENGINE_SPECS", "SETTINGS_FILE", "DomainSettings", "Settings"]

SETTINGS_FILE = "settings.toml"
MiB = 1024 * 1024
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The W3C Referrer Policy values (crawler/_referer.py implements them).
REFERRER_POLICIES = (
    "no-referrer",
    "no-referrer-when-downgrade",
    "same-origin",
    "origin",
    "strict-origin",
    "origin-when-cross-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
)
DEFAULT_REFERRER_POLICY = "no-referrer-when-downgrade"
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def empty_mapping() -> Mapping[str, Any]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class DomainSettings:
    """Politeness for one host, resolved from ``[domains."HOST"]`` and the global settings."""

    max_connections: int
    download_delay: float


DOMAIN_SPECS = {
    "max_connections": Spec(
        "max_connections",
        int,
        None,
        "Open connections to this host (default: max_connections_per_host).",
        minimum=1,
    ),
    "download_delay": Spec(
        "download_delay",
        float,
        None,
        "Seconds between two requests to this host (default: download_delay).",
        minimum=0,
    ),
    "proxy": Spec(
        "proxy",
        str,
        None,
        'Proxy for this host, "http://", "socks5://" or "socks5h://[user:pass@]proxy:port"; '
        '"" for none (default: the proxy setting).',
    ),
}


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved settings of one spider (or of the project, outside any spider).

    Engine settings are typed attributes; ``settings["key"]`` also reaches the
    spider's own options. Build one with ``load_settings()``; constructing it
    directly (handy in tests) skips validation.
    """

    concurrency: int = setting(64, "Requests in flight at once, across all hosts.", minimum=1)
    max_connections: int = setting(
        100, "Open connections in the shared pool, across all hosts.", minimum=1
    )
    max_connections_per_host: int = setting(
        8,
        "Open connections to one host: the politeness cap, enforced by the pool. "
        '`[domains."HOST"] max_connections` overrides it for one host.',
        minimum=1,
    )
    max_keepalive_connections: int = setting(
        100, "Idle connections kept open for reuse, across all hosts.", minimum=0
    )
    keepalive_expiry: float = setting(
        5.0, "Seconds an idle connection is kept before it is closed.", minimum=0
    )
    connect_timeout: float = setting(
        10.0, "Seconds to open a connection, TLS included; 0 waits forever.", minimum=0
    )
    read_timeout: float = setting(
        30.0, "Seconds to wait for the next bytes of a response; 0 waits forever.", minimum=0
    )
    write_timeout: float = setting(
        30.0, "Seconds to wait while sending a request; 0 waits forever.", minimum=0
    )
    pool_timeout: float = setting(
        60.0, "Seconds a request may wait for a free connection; 0 waits forever.", minimum=0
    )
    download_timeout: float = setting(
        180.0,
        "Seconds one request may take in all, from waiting for a connection to the last "
        "byte of the body: the limit the other timeouts cannot set, since a server that "
        "trickles bytes never lets one of them expire. It fails (and is retried) like any "
        "timeout; 0 means no limit.",
        minimum=0,
    )
    download_delay: float = setting(
        0.0,
        'Seconds between two requests to one host. `[domains."HOST"] download_delay` '
        "overrides it for one host.",
        minimum=0,
    )
    download_delay_jitter: float = setting(
        0.5,
        "The delay is multiplied by a random factor between 1 - jitter and 1 + jitter, "
        "so requests do not arrive in lockstep; 0 keeps it exact.",
        minimum=0,
        maximum=1,
    )
    obey_robots: bool = setting(
        True, "Fetch each host's robots.txt first and skip the URLs it disallows."
    )
    user_agent: str = setting(
        "crawler/0.1",
        "The User-Agent header of every request; robots.txt rules are matched against it.",
    )
    referer_policy: str = setting(
        DEFAULT_REFERRER_POLICY,
        "The Referer header of the requests a page's callback yields, by W3C Referrer "
        "Policy: no-referrer-when-downgrade sends the page's URL (no fragment, no "
        "credentials) except from https to http; origin sends only scheme://host/; "
        "same-origin sends it only within the page's origin. Start requests have none; "
        "a Referer a spider sets is kept.",
        choices=REFERRER_POLICIES,
    )
    retry_times: int = setting(
        2,
        "Retries of a request that failed to connect, timed out or got one of "
        "retry_http_codes; 0 disables retrying.",
        minimum=0,
    )
    retry_http_codes: tuple[int, ...] = setting(
        (429, 500, 502, 503, 504),
        "HTTP status codes that are retried.",
        item_range=(100, 599),
    )
    retry_backoff: float = setting(
        0.5,
        "Seconds before the first retry; each further retry of the same request waits "
        "twice as long as the one before.",
        minimum=0,
    )
    retry_backoff_max: float = setting(30.0, "The longest wait between two retries.", minimum=0)
    max_relogins: int = setting(
        3,
        "Times a session may log in again, after responses came back logged out, "
        "without a single response coming back logged in; when they are used up "
        "the crawl stops with a failure. 0 never logs in again.",
        minimum=0,
    )
    depth_limit: int = setting(
        0, "Deepest link depth followed from the start requests; 0 = unlimited.", minimum=0
    )
    max_redirects: int = setting(
        20,
        "Redirects followed from one request before it fails as too many redirects; "
        "0 follows none.",
        minimum=0,
    )
    max_url_length: int = setting(
        2083,
        "URLs longer than this many characters are dropped before they are queued "
        "(counted under dropped as url_too_long); 0 = unlimited.",
        minimum=0,
    )
    max_pages: int = setting(
        0,
        "Stop the crawl after this many pages (first attempts; the retries of those pages "
        "still go out after the limit, until they succeed or run out); 0 = unlimited. "
        "A crawl shared through Redis counts the pages of every worker.",
        minimum=0,
    )
    max_items: int = setting(
        0,
        "Stop the crawl after this many items; 0 = unlimited. A crawl shared through Redis "
        "counts the items of every worker.",
        minimum=0,
    )
    max_seconds: float = setting(
        0.0, "Stop the crawl after this many seconds; 0 = unlimited.", minimum=0
    )
    http2: bool = setting(
        False, "Offer HTTP/2 on TLS connections; servers that decline it get HTTP/1.1."
    )
    http2_prior_knowledge: bool = setting(
        False,
        "Speak HTTP/2 to plain http:// origins from the first byte (h2c, no upgrade); "
        "only for servers known to accept it.",
    )
    proxy: str = setting(
        "",
        'Proxy for every request, "http://[user:pass@]proxy:port" (https:// URLs go '
        'through a CONNECT tunnel), or "socks5://" (names resolved here) / "socks5h://" '
        '(resolved by the proxy). `[domains."HOST"] proxy` and `Request(proxy=...)` '
        "override it; empty: the environment's, if trust_env.",
    )
    proxies: tuple[str, ...] = setting(
        (),
        "Proxy URLs to rotate requests through (http://, socks5://, socks5h://), in place "
        'of the proxy setting (set one or the other). `[domains."HOST"] proxy` and '
        "`Request(proxy=...)` still win. A proxy that fails proxy_bench_after times in a "
        "row (cannot connect, 407, or one of proxy_ban_statuses) is benched and the request "
        "retried through another.",
    )
    proxy_rotation: str = setting(
        "round-robin",
        'How proxies takes turns: "round-robin" in order; "least-recently-failed" the one '
        "whose last failure is oldest (never failed first).",
        choices=("round-robin", "least-recently-failed"),
    )
    proxy_ban_statuses: tuple[int, ...] = setting(
        (403, 429),
        "With proxies: response statuses that count as the proxy being refused (407 always "
        "does); such a response is retried through another proxy.",
        item_range=(100, 599),
    )
    proxy_bench_after: int = setting(
        3, "With proxies: failures in a row that bench a proxy.", minimum=1
    )
    proxy_bench_seconds: float = setting(
        60.0,
        "With proxies: how long a proxy is first benched; each bench after it without a "
        "success in between lasts twice as long, up to proxy_bench_max_seconds.",
        minimum=0,
    )
    proxy_bench_max_seconds: float = setting(900.0, "With proxies: the longest bench.", minimum=0)
    max_connections_per_proxy: int = setting(
        0,
        "Open connections through any one proxy, across the sites behind it; 0 = "
        "unlimited. Each site's own cap still holds.",
        minimum=0,
    )
    trust_env: bool = setting(
        True,
        "Take proxies from HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (and lower-case) when "
        "neither the request, its domain nor the proxy setting names one; NO_PROXY exempts "
        "hosts from those and from the proxy setting.",
    )
    tls_verify: bool = setting(
        True,
        "Check the certificates of https:// servers; false turns the check off (only for "
        "test servers you control).",
    )
    tls_ca_file: str = setting(
        "",
        "A PEM file of the certificate authorities to trust, relative to the project "
        "directory; empty trusts certifi's bundle.",
    )
    max_response_size: int = setting(
        64 * MiB, "The largest response body in bytes; a larger one fails its request.", minimum=1
    )
    sitemap_max_size: int = setting(
        50 * MiB,
        "The largest sitemap a SitemapSpider reads, in bytes once decompressed (the "
        "sitemaps.org limit): a gzipped sitemap that inflates past it (a gzip bomb) is "
        "reported as an error and the crawl goes on.",
        minimum=1,
    )
    pipelines: tuple[str, ...] = setting(
        (),
        "Item pipelines, by name, in the order items pass through them. Options of "
        'each go in a `[pipeline.NAME]` table, e.g. `[pipeline.jsonl] path = "items.jsonl"`.',
    )
    middlewares: tuple[str, ...] = setting(
        (),
        'Crawl middlewares, by import path ("module:ClassName"), from the engine\'s side '
        "to the network's: process_request runs in this order, process_response and "
        "process_exception in the reverse order (see docs/middlewares.md).",
    )
    extensions: tuple[str, ...] = setting(
        (),
        'Extensions, by import path ("module:ClassName"): objects built once per crawl by '
        "their from_crawler(crawler) class method (or with no arguments), which connect "
        "handlers to the crawl's signals (see docs/middlewares.md).",
    )
    fail_on_item_errors: bool = setting(
        True,
        "Exit with status 1 when items were lost to errors: an item a pipeline failed on "
        "(one an exporter cannot write names the field and its type in the log), or a "
        "pipeline returning None. false: such items are logged and counted in "
        "errors.pipeline, and the exit status does not change. Items dropped with "
        "DropItem are never errors.",
    )
    spider_modules: tuple[str, ...] = setting(
        ("spiders",),
        "Modules or packages holding the spiders, importable from the directory of "
        "settings.toml; a directory without `__init__.py` works too.",
        project_wide=True,
    )
    log_level: str = setting(
        "INFO",
        "Level of the log written to stderr: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
        choices=_LOG_LEVELS,
        project_wide=True,
    )
    log_file: str = setting(
        "",
        "Write the log to this file (appended to, relative to the project directory) "
        "instead of stderr; empty: stderr.",
        project_wide=True,
    )
    log_format: str = setting(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        "Format of each log line, in Python's logging %-style (fields such as %(asctime)s, "
        "%(levelname)s, %(name)s, %(message)s); checked at the start.",
        project_wide=True,
    )
    shutdown_grace: float = setting(
        10.0,
        "Seconds the requests in flight may take to finish after SIGINT or SIGTERM "
        "before they are cancelled.",
        minimum=0,
    )
    job_dir: str = setting(
        "",
        "Directory that makes the crawl durable and resumable (`crawl NAME --job DIR`): "
        "queue, seen set, cookies, stats and export positions are checkpointed there, and "
        "running the same command again resumes. `{spider}` is replaced by the spider's "
        "name. Empty: everything stays in memory. See docs/resume.md.",
    )
    checkpoint_every_pages: int = setting(
        1000,
        "With job_dir: take a checkpoint after this many pages, even before "
        "checkpoint_every_seconds is up (a crash redoes at most this many pages, plus those "
        "in flight).",
        minimum=1,
    )
    checkpoint_every_seconds: float = setting(
        1.0,
        "With job_dir: take a checkpoint at least this often, in seconds: a crash loses "
        "about this much work. A checkpoint writes only what changed since the last one "
        "and pauses callbacks for milliseconds; see docs/resume.md.",
        minimum=0.1,
    )
    http_cache: bool = setting(
        False,
        "Keep every response in an HTTP cache and answer the next runs from it (for "
        "development: a rerun asks the site nothing). See docs/http-cache.md.",
    )
    http_cache_dir: str = setting(
        ".crawl/httpcache/{spider}",
        "With http_cache: the directory of the cache (one SQLite file), relative to the "
        "project directory. `{spider}` is replaced by the spider's name.",
    )
    http_cache_expiration: float = setting(
        0.0,
        "With http_cache: seconds a stored response may be used; an older one is fetched "
        "again. 0 = never expires.",
        minimum=0,
    )
    http_cache_ignore_http_codes: tuple[int, ...] = setting(
        (),
        "With http_cache: responses with these status codes are never stored.",
        item_range=(100, 599),
    )
    http_cache_policy: str = setting(
        "dev",
        'With http_cache: "dev" replays every stored response until it expires, whatever '
        'its headers say; "rfc9111" follows Cache-Control, Expires, ETag and Last-Modified '
        "as a private browser cache does, revalidating stale responses.",
        choices=("dev", "rfc9111"),
    )
    frontier_url: str = setting(
        "",
        "Share the crawl through Redis (`crawl NAME --frontier redis://HOST:6379/0`, "
        "rediss:// for TLS): every worker started with the same URL, spider and crawl_id "
        "takes part in one crawl, and max_connections_per_host (each domain's "
        "max_connections too) and download_delay hold for all the workers together. The "
        "password comes from the URL or from the REDIS_PASSWORD environment variable. "
        "Empty: the crawl stays in this process. See docs/distributed.md.",
    )
    crawl_id: str = setting(
        "default",
        "With frontier_url: which shared crawl of the spider to join (several crawls of "
        "one spider can share a Redis).",
    )
    lease_ttl: float = setting(
        30.0,
        "With frontier_url: seconds a worker's leases outlive its last heartbeat; a worker "
        "silent for longer is taken for dead and its requests go to the others.",
        minimum=0.5,
    )
    redis_outage_limit: float = setting(
        300.0,
        "With frontier_url: seconds a worker keeps retrying an unreachable Redis (its "
        "pages in flight are kept) before it stops with an error.",
        minimum=0,
    )
    connection_lease_ttl: float = setting(
        30.0,
        "With frontier_url: seconds a worker's hold on one of a host's connections lasts "
        "in Redis unless renewed (every third of it). A worker killed without closing its "
        "connections keeps counting against the cap for at most this long.",
        minimum=0.1,
    )
    shared_sessions: bool = setting(
        True,
        "With frontier_url: the workers share each session's cookies and login through "
        "Redis, as one crawl shares one cookie jar: the first worker that needs a login "
        "makes it for all, a logged-out page makes one re-login whichever workers saw it, "
        "and cookies set by pages reach the other workers at their next Redis round. The "
        "Redis then holds the session cookies (never passwords): protect it. false: each "
        "worker keeps its own jar and logs in itself.",
    )
    shared_login_wait: float = setting(
        120.0,
        "With frontier_url and shared_sessions: seconds a worker waits for another worker's "
        "login of a session before it stops with an error naming the session.",
        minimum=0.1,
    )
    serve_demo_site: bool = setting(
        False,
        "With the crawl command: start the bundled demo site on a free loopback port "
        "before crawling, and give its URL to the spider's site_url option if it declares "
        "one left empty (see docs/demo-site.md).",
    )

    # Tables and spider options: not engine settings of their own.
    domains: Mapping[str, Mapping[str, Any]] = field(default_factory=empty_mapping)
    pipeline: Mapping[str, Mapping[str, Any]] = field(default_factory=empty_mapping)
    options: Mapping[str, Any] = field(default_factory=empty_mapping)
    project_dir: Path = field(default_factory=Path.cwd)
    sources: Mapping[str, str] = field(default_factory=empty_mapping, repr=False, compare=False)

    def __repr__(self) -> str:
        # Spider options may hold credentials: never print them.
        from .._redact import redact_mapping, redact_userinfo

        fields = [f"{name}={redact_userinfo(getattr(self, name))!r}" for name in ENGINE_SPECS]
        fields += [
            f"domains={redact_mapping(self.domains)!r}",
            f"pipeline={redact_mapping(self.pipeline)!r}",
            f"options={redact_mapping(self.options)!r}",
        ]
        return f"Settings({', '.join(fields)})"

    def __getitem__(self, key: str) -> Any:
        if key in ENGINE_SPECS:
            return getattr(self, key)
        try:
            return self.options[key]
        except KeyError:
            raise KeyError(f"no setting named {key!r}") from None

    def __contains__(self, key: object) -> bool:
        return key in ENGINE_SPECS or key in self.options

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def for_domain(self, host: str) -> DomainSettings:
        """The politeness of ``host``: its own table, then its parent domains', then global.

        Each field is taken from the nearest table that sets it, so
        ``[domains."example.com"] download_delay = 2`` also slows ``www.example.com``.
        """
        connections: int | None = None
        delay: float | None = None
        if self.domains:
            for name in _domain_chain(host):
                entry = self.domains.get(name)
                if entry is None:
                    continue
                if connections is None:
                    connections = entry.get("max_connections")
                if delay is None:
                    delay = entry.get("download_delay")
        return DomainSettings(
            self.max_connections_per_host if connections is None else connections,
            self.download_delay if delay is None else delay,
        )

    def domain_proxy(self, host: str) -> str | None:
        """The ``proxy`` of the nearest ``[domains."HOST"]`` table that sets one ("" means
        none), or None when no table for ``host`` or its parents does."""
        for name in _domain_chain(host):
            entry = self.domains.get(name)
            if entry is not None and "proxy" in entry:
                return str(entry["proxy"])
        return None

    def pipeline_options(self, name: str) -> dict[str, Any]:
        """The ``[pipeline.NAME]`` table (a copy; empty when there is none)."""
        return dict(self.pipeline.get(name, _EMPTY))

    def source_of(self, key: str) -> str:
        """Where a value came from: "default", "settings.toml", "-s", ...

        Table entries use their dotted key: ``'domains."example.com".download_delay'``.
        """
        try:
            return self.sources[key]
        except KeyError:
            if key in self:
                return "default"
            raise KeyError(f"no setting named {key!r}") from None

    def timeout(self) -> Timeout:
        """The HTTP client's timeouts (a 0 setting means no timeout)."""
        from ..http import Timeout

        return Timeout(
            connect=self.connect_timeout or None,
            read=self.read_timeout or None,
            write=self.write_timeout or None,
            pool=self.pool_timeout or None,
            total=self.download_timeout or None,
        )

    def limits(self) -> Limits:
        """The connection pool's limits."""
        from ..http import Limits

        return Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_keepalive_connections,
            keepalive_expiry=self.keepalive_expiry,
            max_connections_per_host=self.max_connections_per_host,
            max_connections_per_proxy=self.max_connections_per_proxy or None,
        )

    def tls(self) -> bool | str:
        """What the pool's ``verify`` takes: False, a CA file path, or True for certifi."""
        if not self.tls_verify:
            return False
        if self.tls_ca_file:
            return str(self.project_dir / Path(self.tls_ca_file).expanduser())
        return True

    def to_dict(self) -> dict[str, Any]:
        """Plain TOML/JSON-like data: every setting, the tables and the spider options."""
        data: dict[str, Any] = {}
        for name in ENGINE_SPECS:
            value = getattr(self, name)
            data[name] = list(value) if isinstance(value, tuple) else value
        data["domains"] = {host: dict(entry) for host, entry in self.domains.items()}
        data["pipeline"] = {name: dict(opts) for name, opts in self.pipeline.items()}
        data.update(self.options)
        return data


ENGINE_SPECS: dict[str, Spec] = specs_of(Settings)


def _domain_chain(host: str) -> Iterator[str]:
    """``a.b.com``, ``b.com``, ``com``; an IP address is only itself."""
    name = host.lower().rstrip(".")
    if name.startswith("["):
        name = name[1:-1]
    yield name
    if ":" in name or name.replace(".", "").isdigit():
        return
    dot = name.find(".")
    while dot >= 0:
        name = name[dot + 1 :]
        yield name
        dot = name.find(".")
