"""Item pipelines: the protocol, the runner that drives a chain of them, and name resolution.

Every item a spider yields goes through the chain in order. A stage returns the
item (or a changed one) to pass it on, or raises :class:`DropItem` to drop it.
Any other exception is a bug in that stage: it is logged and counted, the item
is dropped, and the crawl goes on, because one bad item must not end a crawl of
millions. Whether a stage is sync or async is decided once at set-up, so the
per-item cost of the chain is one call per stage.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._imports import ImportPathError, import_object
from .._paths import for_spider
from ._encode import ItemEncodeError

if TYPE_CHECKING:
    from ..spider import Spider

__all__ = [
    "BUILTIN_PIPELINES",
    "FEED_EXTENSIONS",
    "FEED_FORMATS",
    "DropItem",
    "Feed",
    "Pipeline",
    "PipelineConfigError",
    "PipelineRunner",
    "PipelineSettings",
    "feed_exporter_for",
    "load_pipeline",
    "load_pipelines",
]

logger = logging.getLogger("crawler.pipeline")

#: Built-in pipeline names and where they live. User pipelines are named by import path.
BUILTIN_PIPELINES: Mapping[str, str] = {
    "validate": "crawler.pipelines:ValidatePipeline",
    "jsonl": "crawler.pipelines:JsonLinesExporter",
    "csv": "crawler.pipelines:CsvExporter",
    "json": "crawler.pipelines:JsonArrayExporter",
    "sqlite": "crawler.pipelines:SqliteExporter",
}

#: File extensions that ``crawl -o FILE`` understands, and the built-in exporter for each.
FEED_EXTENSIONS: Mapping[str, str] = {
    ".jsonl": "jsonl",
    ".jl": "jsonl",
    ".csv": "csv",
    ".json": "json",
}

#: Format names of ``crawl -o FILE:FORMAT`` (Scrapy's included), and the exporter of each.
FEED_FORMATS: Mapping[str, str] = {
    "jsonl": "jsonl",
    "jl": "jsonl",
    "jsonlines": "jsonl",
    "csv": "csv",
    "json": "json",
}

# A misbehaving stage that puts item data into its drop reasons must not grow the
# counter without bound; past this many distinct reasons the rest are lumped together.
_MAX_DROP_REASONS = 1000
_OTHER_REASONS = "(other reasons)"


class DropItem(Exception):
    """Raised by a stage to drop the item; the message is the reason counted in the stats.

    Keep reasons short and stable (``missing field 'author'``, not the item's URL):
    items are counted by reason.
    """


class PipelineConfigError(ValueError):
    """A pipeline named in the settings cannot be found or built from its options."""


class Pipeline(Protocol):
    """One stage of the item chain: any object with ``process_item``, sync or ``async``.

    Only ``process_item`` is required, so the protocol names only it (a class
    with just that method type-checks as a pipeline). A stage may also define
    ``open(spider)`` and ``close(spider)``, called once at the start and end of
    the crawl, and exporters ``checkpoint()`` (or ``flush()``), called by the
    engine at checkpoints to make everything processed so far durable, or
    ``stage_checkpoint()``, which writes without waiting for the disk and returns
    its state with a blocking call that makes it durable (run by the job in the
    thread of its own commit, so callbacks do not wait for the fsync). Each of
    them may be sync or ``async`` too.
    """

    def process_item(self, item: Any, spider: Spider) -> Any | Awaitable[Any]: ...


class PipelineSettings(Protocol):
    """What :func:`load_pipelines` needs from the settings: the options of one pipeline."""

    def pipeline_options(self, name: str) -> Mapping[str, Any]: ...


class _Hook:
    """A bound method and whether it must be awaited, decided once."""

    __slots__ = ("call", "is_async")

    def __init__(self, call: Callable[..., Any]) -> None:
        self.call = call
        self.is_async = inspect.iscoroutinefunction(call)

    async def __call__(self, *args: Any) -> Any:
        if self.is_async:
            return await self.call(*args)
        return self.call(*args)


class _Stage:
    """One pipeline's optional lifecycle hooks, looked up once."""

    __slots__ = ("checkpoint", "close", "label", "open", "process", "stage_checkpoint")

    def __init__(self, pipeline: object) -> None:
        self.label = type(pipeline).__name__
        process = self._hook(pipeline, "process_item")
        if process is None:
            raise TypeError(f"pipeline {self.label} has no process_item(item, spider) method")
        self.process = process
        self.open = self._hook(pipeline, "open")
        self.close = self._hook(pipeline, "close")
        # checkpoint() is preferred: it may return the state a resumed crawl needs.
        self.checkpoint = self._hook(pipeline, "checkpoint") or self._hook(pipeline, "flush")
        self.stage_checkpoint = _staged(pipeline)

    def _hook(self, pipeline: object, name: str) -> _Hook | None:
        method = getattr(pipeline, name, None)
        if method is None:
            return None
        if not callable(method):
            raise TypeError(f"pipeline {self.label}: {name} is not a method")
        return _Hook(method)


def _staged(pipeline: object) -> Callable[[], tuple[Any, Callable[[], None]]] | None:
    """``stage_checkpoint``, unless a subclass overrides ``checkpoint()`` below the class
    that defines it: that override says what the subclass's state is."""
    stage = getattr(pipeline, "stage_checkpoint", None)
    if not callable(stage):
        return None
    for klass in type(pipeline).__mro__:
        if "stage_checkpoint" in vars(klass):
            break
        if "checkpoint" in vars(klass):
            return None
    return stage  # type: ignore[no-any-return]


class PipelineRunner:
    """Drives items through a chain of pipelines and counts what happened to them.

    Counters: ``items_scraped`` (items that passed the whole chain),
    ``items_dropped`` (by reason) and ``errors`` (stages that raised something
    other than :class:`DropItem`; the item is dropped for the rest of the chain).
    """

    def __init__(self, pipelines: Sequence[Pipeline]) -> None:
        self.pipelines: tuple[Pipeline, ...] = tuple(pipelines)
        self.items_scraped = 0
        self.items_dropped: dict[str, int] = {}
        self.errors = 0
        self._stages = tuple(_Stage(p) for p in self.pipelines)
        self._chain = tuple((s.label, s.process.call, s.process.is_async) for s in self._stages)
        self._opened: list[_Stage] = []
        #: Called with (item, reason) / (item, error) when a stage drops or breaks an item:
        #: set only when something listens, so that the path of a kept item is unchanged.
        self.on_drop: Callable[[Any, str], Awaitable[None]] | None = None
        self.on_error: Callable[[Any, Exception], Awaitable[None]] | None = None

    async def open(self, spider: Spider) -> None:
        """Open every stage in order; if one fails, close those already open and re-raise."""
        for stage in self._stages:
            try:
                if stage.open is not None:
                    await stage.open(spider)
            except BaseException:
                opened, self._opened = self._opened, []
                await self._close_all(spider, opened)
                raise
            self._opened.append(stage)

    async def process(self, item: Any, spider: Spider) -> Any | None:
        """Run ``item`` through the chain; the final item, or ``None`` if it was dropped."""
        for label, call, is_async in self._chain:
            try:
                result = (await call(item, spider)) if is_async else call(item, spider)
            except DropItem as exc:
                self._count_drop(str(exc) or label)
                if self.on_drop is not None:
                    await self.on_drop(item, str(exc) or label)
                return None
            except ItemEncodeError as exc:  # the message names the field: no traceback needed
                self.errors += 1
                logger.error(
                    "spider %s: pipeline %s: %s; the item is dropped", spider.name, label, exc
                )
                if self.on_error is not None:
                    await self.on_error(item, exc)
                return None
            except Exception as exc:
                self.errors += 1
                logger.exception(
                    "spider %s: pipeline %s failed on a %s item; the item is dropped",
                    spider.name,
                    label,
                    type(item).__name__,
                )
                if self.on_error is not None:
                    await self.on_error(item, exc)
                return None
            if result is None:
                self.errors += 1
                message = (
                    f"pipeline {label} returned None for a {type(item).__name__} item; "
                    "return the item to keep it or raise DropItem to drop it"
                )
                logger.error("spider %s: %s", spider.name, message)
                if self.on_error is not None:
                    await self.on_error(item, TypeError(message))
                return None
            item = result
        self.items_scraped += 1
        return item

    def _count_drop(self, reason: str) -> None:
        counts = self.items_dropped
        if reason not in counts and len(counts) >= _MAX_DROP_REASONS:
            reason = _OTHER_REASONS
        counts[reason] = counts.get(reason, 0) + 1

    async def checkpoint(self) -> list[Any]:
        """Make every stage durable; one state per pipeline, in chain order (None if none).

        The states (for exporters: the committed byte offset and record count) are
        what a resumed crawl hands back to cut files back to the last checkpoint.
        """
        states: list[Any] = []
        for stage in self._stages:
            states.append(None if stage.checkpoint is None else await stage.checkpoint())
        return states

    async def stage_checkpoint(self) -> tuple[list[Any], list[Callable[[], None]]]:
        """Like :meth:`checkpoint`, but a stage with ``stage_checkpoint()`` only writes
        here and hands back its blocking fsync: the states hold only once every one of
        those has run, which the job does in the thread of its commit, just before it."""
        states: list[Any] = []
        syncs: list[Callable[[], None]] = []
        for stage in self._stages:
            if stage.stage_checkpoint is not None:
                state, sync = stage.stage_checkpoint()
                states.append(state)
                syncs.append(sync)
            else:
                states.append(None if stage.checkpoint is None else await stage.checkpoint())
        return states, syncs

    async def close(self, spider: Spider) -> None:
        """Close every open stage, last first, even if some fail; re-raise the first failure."""
        opened, self._opened = self._opened, []
        first = await self._close_all(spider, opened)
        if first is not None:
            raise first

    async def _close_all(self, spider: Spider, opened: Sequence[_Stage]) -> BaseException | None:
        first: BaseException | None = None
        for stage in reversed(opened):
            if stage.close is None:
                continue
            try:
                await stage.close(spider)
            except BaseException as exc:
                logger.error(
                    "spider %s: pipeline %s failed to close", spider.name, stage.label, exc_info=exc
                )
                if first is None:
                    first = exc
        return first

    def __repr__(self) -> str:
        names = ", ".join(stage.label for stage in self._stages)
        return f"<PipelineRunner [{names}] scraped={self.items_scraped} errors={self.errors}>"


def _import_object(name: str, spec: str) -> Any:
    try:
        return import_object(spec)
    except ImportPathError as exc:
        if exc.not_a_path:
            raise PipelineConfigError(_unknown_message(name)) from None
        raise PipelineConfigError(f"pipeline {name!r}: {exc}") from exc.__cause__


def _unknown_message(name: str) -> str:
    known = ", ".join(sorted(BUILTIN_PIPELINES))
    return (
        f"unknown pipeline {name!r}: built-in pipelines are {known}; "
        "name your own as 'module:ClassName' or 'module.ClassName'"
    )


_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def load_pipeline(name: str, options: Mapping[str, Any] | None = None) -> Pipeline:
    """Build one pipeline from its name and options (passed to the constructor as keywords)."""
    spec = BUILTIN_PIPELINES.get(name)
    if spec is None:
        if ":" not in name and "." not in name:
            raise PipelineConfigError(_unknown_message(name))
        spec = name
    factory = _import_object(name, spec)
    if not callable(factory):
        raise PipelineConfigError(f"pipeline {name!r}: {spec} is not a class")
    kwargs = dict(options or {})
    try:
        signature = inspect.signature(factory)
    except ValueError:  # no signature to check (a builtin): let the call speak
        pass
    else:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            accepted = ", ".join(
                p.name for p in signature.parameters.values() if p.kind in _KEYWORD_KINDS
            )
            raise PipelineConfigError(
                f"pipeline {name!r}: {exc} (its options are: {accepted or 'none'})"
            ) from exc
    try:
        pipeline = factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PipelineConfigError(f"pipeline {name!r}: {exc}") from exc
    if not callable(getattr(pipeline, "process_item", None)):
        raise PipelineConfigError(f"pipeline {name!r}: {spec} has no process_item(item, spider)")
    return pipeline  # type: ignore[no-any-return]


def load_pipelines(
    names: Sequence[str], settings: PipelineSettings | None = None
) -> list[Pipeline]:
    """Build the chain named in the settings, each with ``settings.pipeline_options(name)``."""
    if isinstance(names, str):
        raise PipelineConfigError(f"pipelines must be a list of names, got the string {names!r}")
    return [
        load_pipeline(name, settings.pipeline_options(name) if settings is not None else None)
        for name in names
    ]


@dataclass(frozen=True, slots=True)
class Feed:
    """An export file of ``crawl -o FILE`` (``append``) or ``crawl -O FILE`` (not);
    ``format`` (a key of ``FEED_FORMATS``) when ``FILE:FORMAT`` named it, and ``-``
    as the path for standard output."""

    path: Path
    append: bool = False
    format: str | None = None

    @classmethod
    def parse(cls, value: str, *, append: bool = False) -> Feed:
        """``FILE``, ``FILE:FORMAT`` or ``-:FORMAT`` as Scrapy's ``-o`` takes them. Only a
        known format after the last colon is split off, so other paths keep theirs."""
        path, sep, name = value.rpartition(":")
        if sep and name.lower() in FEED_FORMATS:
            return cls(Path(path), append, name.lower())
        return cls(Path(value), append)

    def exporter_name(self) -> str:
        """The built-in exporter for this feed, or PipelineConfigError saying why none."""
        if self.format is not None:
            return FEED_FORMATS[self.format]
        shown = str(self.path)
        if shown == "-":
            raise PipelineConfigError(
                "cannot export items to standard output without a format: say which, "
                f"as in -o -:jsonl (formats: {', '.join(FEED_FORMATS)})"
            )
        suffix = self.path.suffix.lower()
        name = FEED_EXTENSIONS.get(suffix)
        if name is None:
            supported = ", ".join(sorted(FEED_EXTENSIONS))
            what = f"extension {suffix!r}" if suffix else "no extension"
            raise PipelineConfigError(
                f"cannot export items to {shown!r}: {what} is not supported; use one of "
                f"{supported}, or name the format as in {shown}:jsonl "
                f"(formats: {', '.join(FEED_FORMATS)})"
            )
        return name


def feed_exporter_for(
    path: str | Path | Feed, *, append: bool = False, spider: str = "", **options: Any
) -> Pipeline:
    """The built-in exporter for ``crawl -O PATH`` or ``-o PATH``, chosen by PATH's extension.

    By default (``-O``) the file starts afresh (``overwrite``); with ``append`` (``-o``,
    as in Scrapy) items are added after those already in it. A resumed ``--job`` turns
    overwriting off and cuts the file back to its last checkpoint instead. A JSON array
    cannot be appended to: appending to a JSON file that has content is refused
    (``spider``, the spider's name, fills ``{spider}`` in the path checked).
    """
    feed = path if isinstance(path, Feed) else Feed(Path(path), append)
    append = feed.append
    path = feed.path
    name = feed.exporter_name()
    if str(path) == "-":
        pass  # standard output: nothing to append to or replace
    elif name == "json":  # the JSON array exporter always writes a whole new file
        target = for_spider(path, spider) if spider else Path(path)
        if append and target.is_file() and target.stat().st_size > 0:
            raise PipelineConfigError(
                f"cannot append items to {str(target)!r}: a JSON array cannot grow; use "
                f"-O {target} to replace it, or export to .jsonl, which appends"
            )
    elif not append:
        options = {"overwrite": True, **options}
    return load_pipeline(name, {**options, "path": path})
