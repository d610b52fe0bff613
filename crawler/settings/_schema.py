"""How one setting is declared, checked and converted.

Settings are declared once, as fields of the ``Settings`` dataclass, with
``setting()`` attaching the documentation and range limits. Everything else
(validation, ``docs/settings.md``, the ``settings.toml`` template) is derived
from those declarations, so a new setting cannot be half-documented.

The checks run once at start-up; after that the engine reads plain typed
attributes and never converts a string on a hot path.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "SettingsError",
    "Spec",
    "convert",
    "describe_value",
    "format_key",
    "option_spec",
    "scrapy_hint",
    "setting",
    "specs_of",
    "unknown_key_error",
]

T = TypeVar("T")
Key = str | tuple[str, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ENV_REF = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WHOLE_ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


class SettingsError(Exception):
    """A setting is unknown, mistyped, out of range or unreadable; the message says where."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One known setting: its TOML name, Python type and limits."""

    name: str
    hint: Any
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    item_range: tuple[int, int] | None = None
    project_wide: bool = False


def setting(
    default: T,
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    item_range: tuple[int, int] | None = None,
    project_wide: bool = False,
) -> T:
    """Declare a settings field; ``project_wide`` ones cannot be set per spider."""
    meta = {
        "doc": doc,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "item_range": item_range,
        "project_wide": project_wide,
    }
    return dataclasses.field(default=default, metadata=meta)


def specs_of(cls: type[Any]) -> dict[str, Spec]:
    """The settings declared on a dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    specs: dict[str, Spec] = {}
    for f in dataclasses.fields(cls):
        if "doc" not in f.metadata:
            continue
        meta = f.metadata
        specs[f.name] = Spec(
            f.name,
            hints[f.name],
            f.default,
            meta["doc"],
            meta["minimum"],
            meta["maximum"],
            meta["choices"],
            meta["item_range"],
            meta["project_wide"],
        )
    return specs


def option_spec(name: str, default: Any, owner: str) -> Spec:
    """A spider option is typed by its default (``None`` accepts anything)."""
    hint: Any = Any if default is None else type(default)
    return Spec(name, hint, default, f"Option of spider {owner}.")


# -- conversion -------------------------------------------------------------

_TOML_TYPE_NAMES: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
    list: "an array",
    tuple: "an array",
    dict: "a table",
}

_EXPECTED: dict[Any, str] = {
    int: "an integer",
    float: "a number",
    bool: "a boolean (true or false)",
    str: "a string",
    list: "an array",
    tuple: "an array",
    dict: "a table",
    tuple[int, ...]: "an array of integers",
    tuple[str, ...]: "an array of strings",
}


def expected_name(hint: Any) -> str:
    return _EXPECTED.get(hint, "a value")


def describe_value(value: Any) -> str:
    """``'abc' (a string)``: the value as written and its TOML type."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = repr(value)
        if len(text) > 60:
            text = text[:57] + "..."
    kind = _TOML_TYPE_NAMES.get(type(value), f"a {type(value).__name__}")
    return f"{text} ({kind})"


class _Mismatch(Exception):
    pass


def _as_int(value: Any) -> int:
    if type(value) is not int:
        raise _Mismatch
    return value


def _as_float(value: Any) -> float:
    if type(value) not in (int, float):
        raise _Mismatch
    return float(value)


def _as_bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _Mismatch
    return value


def _as_str(value: Any) -> str:
    if type(value) is not str:
        raise _Mismatch
    return value


def _as_array_of(item: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    def convert_array(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _Mismatch
        return tuple(item(v) for v in value)

    return convert_array


def _as_type(kind: type) -> Callable[[Any], Any]:
    def convert_type(value: Any) -> Any:
        if kind is float:
            return _as_float(value)
        if type(value) is not kind:
            raise _Mismatch
        return value

    return convert_type


_CONVERTERS: dict[Any, Callable[[Any], Any]] = {
    int: _as_int,
    float: _as_float,
    bool: _as_bool,
    str: _as_str,
    tuple[int, ...]: _as_array_of(_as_int),
    tuple[str, ...]: _as_array_of(_as_str),
}


def expand_env(value: Any, key: Key, where: str) -> Any:
    """Replace ``${NAME}`` with the environment variable (``$${NAME}`` stays literal)."""
    if isinstance(value, str):
        if "${" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            if match.group(1):
                return match.group(0)[1:]
            var = match.group(2)
            env = os.environ.get(var)
            if env is None:
                raise SettingsError(
                    f"Setting {format_key(key)!r} {where} refers to environment variable "
                    f"{var!r}, which is not set"
                )
            return env

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, list):
        return [expand_env(v, key, where) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, key, where) for k, v in value.items()}
    return value


def parse_toml_value(text: str) -> Any:
    """A TOML value from text; text that is not one stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def convert(spec: Spec, value: Any, key: Key, where: str) -> Any:
    """Check ``value`` against ``spec`` and return it in its Python type.

    ``key`` is the dotted name shown in messages, ``where`` says where the
    value came from ("in settings.toml", "from -s").
    """
    whole_ref = isinstance(value, str) and _WHOLE_ENV_REF.fullmatch(value) is not None
    value = expand_env(value, key, where)
    if whole_ref and spec.hint is not str:
        # "concurrency = "${CONC}"": the variable holds a TOML value, not text.
        value = parse_toml_value(value)
    if spec.hint is Any:
        return value
    converter = _CONVERTERS.get(spec.hint) or _as_type(spec.hint)
    try:
        result = converter(value)
    except _Mismatch:
        from .._redact import REDACTED, is_secret_key

        secret = is_secret_key(format_key(key))
        hint = ""
        if where == "from -s" and spec.hint is str:
            shown = REDACTED if secret else value
            hint = f" (quote it: -s '{format_key(key)}=\"{shown}\"')"
        got = f"a value of the wrong type ({REDACTED})" if secret else describe_value(value)
        raise SettingsError(
            f"Setting {format_key(key)!r} {where} must be {expected_name(spec.hint)}, "
            f"got {got}{hint}"
        ) from None
    if spec.choices and isinstance(result, str):
        result = next((c for c in spec.choices if c.lower() == result.lower()), result)
    _check_range(spec, result, key, where)
    return result


def _check_range(spec: Spec, value: Any, key: Key, where: str) -> None:
    problem = None
    if spec.minimum is not None and value < spec.minimum:
        problem = f"must be >= {spec.minimum}"
    elif spec.maximum is not None and value > spec.maximum:
        problem = f"must be <= {spec.maximum}"
    elif spec.choices and value not in spec.choices:
        problem = f"must be one of {', '.join(spec.choices)}"
    elif spec.item_range is not None:
        low, high = spec.item_range
        bad = [v for v in value if not low <= v <= high]
        if bad:
            problem = f"must hold values from {low} to {high}, not {bad[0]!r}"
    if problem is not None:
        raise SettingsError(f"Setting {format_key(key)!r} {where} {problem}, got {value!r}")


# -- keys ---------------------------------------------------------------------


def format_key(key: Key | Iterable[str]) -> str:
    """A dotted TOML key, quoting parts that are not bare keys."""
    parts = [key] if isinstance(key, str) else list(key)
    return ".".join(p if _BARE_KEY.fullmatch(p) else f'"{p}"' for p in parts)


#: Scrapy's setting names, each with ours (a name alone) or what to do instead (a
#: sentence). Someone moving a Scrapy project over writes these first; a near-name
#: guess ("did you mean 'depth_limit'?") would not say that the name is simply
#: spelled differently here, or that there is nothing to set.
SCRAPY_SETTINGS: dict[str, str] = {
    "AUTOTHROTTLE_ENABLED": "there is no latency-based throttling: a host answering 429 or "
    "503 is slowed down already (honouring Retry-After); to be gentler still, set "
    "download_delay and max_connections_per_host",
    "BOT_NAME": "user_agent",
    "CLOSESPIDER_ERRORCOUNT": "there is no stop on errors: raise CloseSpider from a callback",
    "CLOSESPIDER_ITEMCOUNT": "max_items",
    "CLOSESPIDER_PAGECOUNT": "max_pages",
    "CLOSESPIDER_TIMEOUT": "max_seconds",
    "CONCURRENT_ITEMS": "there is no such limit: items go through the pipelines one at a "
    "time per callback",
    "CONCURRENT_REQUESTS": "concurrency",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "max_connections_per_host",
    "CONCURRENT_REQUESTS_PER_IP": "max_connections_per_host",
    "COOKIES_ENABLED": "there is no switch: each session keeps its cookies; send a request "
    "in a session of its own (Request(session=NAME)) to keep its cookies apart",
    "DEFAULT_REQUEST_HEADERS": "there is no such setting: pass headers= to Request, or set "
    "them on a session (spider.session().headers)",
    "DEPTH_LIMIT": "depth_limit",
    "DEPTH_PRIORITY": "there is no such setting: each host's queue is ordered by "
    "Request(priority=...), then first in first out",
    "DNS_TIMEOUT": "connect_timeout",
    "DOWNLOADER_MIDDLEWARES": "middlewares (an array of import paths in the order "
    "process_request runs, not a table of priorities)",
    "DOWNLOAD_DELAY": "download_delay",
    "DOWNLOAD_MAXSIZE": "max_response_size",
    "DOWNLOAD_TIMEOUT": "download_timeout",
    "EXTENSIONS": "extensions (an array of import paths, not a table of priorities)",
    "FEEDS": "there is no such setting: export with crawl -o FILE (appends) or -O FILE "
    "(replaces), or name "
    "the exporters in pipelines (e.g. [pipeline.jsonl] path = ...)",
    "FEED_FORMAT": "there is no such setting: crawl -o FILE:FORMAT names the format "
    "(e.g. -o items.data:csv, -o -:jsonl), or the extension of FILE chooses it",
    "FEED_URI": "there is no such setting: export with crawl -o FILE or -O FILE",
    "HTTPCACHE_DIR": "http_cache_dir",
    "HTTPCACHE_ENABLED": "http_cache",
    "HTTPCACHE_EXPIRATION_SECS": "http_cache_expiration",
    "HTTPCACHE_IGNORE_HTTP_CODES": "http_cache_ignore_http_codes",
    "HTTPCACHE_POLICY": 'http_cache_policy ("dev" or "rfc9111")',
    "HTTPERROR_ALLOWED_CODES": "there is no such setting: pass handle_httpstatus_list=[...] "
    "(also named accept_statuses) to Request, or set the spider's handle_httpstatus_list",
    "ITEM_PIPELINES": "pipelines (an array of names in the order items pass through, not "
    "a table of priorities)",
    "JOBDIR": "job_dir",
    "LOG_FILE": "log_file",
    "LOG_FORMAT": "log_format",
    "LOG_LEVEL": "log_level",
    "RANDOMIZE_DOWNLOAD_DELAY": "download_delay_jitter",
    "REDIRECT_ENABLED": "max_redirects (0 follows none), or Request(dont_redirect=True)",
    "REDIRECT_MAX_TIMES": "max_redirects",
    "REFERER_ENABLED": "referer_policy (no-referrer sends none)",
    "REFERRER_POLICY": "referer_policy",
    "RETRY_ENABLED": "retry_times (0 disables retrying)",
    "RETRY_HTTP_CODES": "retry_http_codes",
    "RETRY_TIMES": "retry_times",
    "ROBOTSTXT_OBEY": "obey_robots",
    "SPIDER_MIDDLEWARES": "there are no spider middlewares: filter in the callbacks or in "
    "an item pipeline",
    "SPIDER_MODULES": "spider_modules",
    "URLLENGTH_LIMIT": "max_url_length",
    "USER_AGENT": "user_agent",
}


def scrapy_hint(name: str) -> str | None:
    """What to write instead of Scrapy's setting ``name``, or None if it is not one."""
    advice = SCRAPY_SETTINGS.get(name.upper())
    if advice is None:
        return None
    if advice.startswith("there "):
        return f"{name} is Scrapy's name and has no equivalent here: {advice}"
    return f"{name} is Scrapy's name: use {advice}"


def unknown_key_error(key: Key, where: str, known: Collection[str]) -> SettingsError:
    """``Unknown setting 'x' in settings.toml (did you mean 'y'?)``, or for one of
    Scrapy's names, ours."""
    parts = [key] if isinstance(key, str) else list(key)
    message = f"Unknown setting {format_key(parts)!r} {where}"
    hint = scrapy_hint(parts[-1])
    if hint is not None:
        return SettingsError(f"{message}: {hint}")
    import difflib  # for this message only

    close = difflib.get_close_matches(parts[-1], list(known), n=1)
    if close:
        message += f" (did you mean {format_key([*parts[:-1], close[0]])!r}?)"
    return SettingsError(message)
