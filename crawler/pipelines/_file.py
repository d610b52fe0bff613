"""The machinery shared by file exporters: batching, whole-record appends and recovery.

The guarantee every file exporter gives is that a crash, even SIGKILL, leaves
whole records only. Records are buffered and appended in batches, one
``write()`` per batch of whole records, through an ``O_APPEND`` descriptor. A
write cut short by a kill can still leave a partial record at the end, so on
open the file is cut back to the end of its last whole record (each format
says where that is). A resumed crawl may instead ask to cut back to the offset
recorded at its last checkpoint, which also drops records written after it.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from .._paths import for_spider
from ._runner import PipelineConfigError

if TYPE_CHECKING:
    from ..spider import Spider

__all__ = ["STDOUT", "AppendFile", "FileExporter", "PathParamError", "resolve_path"]

logger = logging.getLogger("crawler.pipeline")

#: Where the last whole record of a file ends, given its descriptor and size.
FindWholeEnd = Callable[[int, int], int]


#: The path that means standard output (``crawl -o -:jsonl``).
STDOUT = "-"


class PathParamError(PipelineConfigError):
    """A ``%(key)s`` of an export path names nothing the spider has."""


@functools.cache
def _start_time() -> str:
    """``%(time)s``: when the first export of this process opened, in UTC, as Scrapy
    writes it (no colons, which some file systems refuse), the same for every feed."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0, tzinfo=None)
    return now.isoformat().replace(":", "-")


class _PathParams:
    """What ``%(key)s`` in an export path may name, looked up only when used: ``name``,
    ``time``, any public attribute of the spider, or one of its options."""

    __slots__ = ("name", "path", "spider")

    def __init__(self, spider: Spider, name: str, path: str) -> None:
        self.spider = spider
        self.name = name
        self.path = path

    def __getitem__(self, key: str) -> object:
        if key == "name":
            return self.name
        if key == "time":
            return _start_time()
        if not key.startswith("_"):
            value = getattr(self.spider, key, None)
            if value is not None:
                return value
            options = getattr(self.spider, "settings", None)
            if options is not None and key in options:
                return options[key]
        raise PathParamError(
            f"export path {self.path!r}: %({key})s is not name, time, an attribute of "
            f"spider {self.name} nor one of its options"
        )


def resolve_path(path: str | os.PathLike[str], spider: Spider) -> Path:
    """Fill ``{spider}`` and Scrapy's ``%(name)s``, ``%(time)s`` and ``%(attribute)s`` in
    the configured path, so one setting serves every spider and every run."""
    name = spider.name or type(spider).__name__
    text = os.fspath(path)
    if "%(" in text:
        try:
            text = text % _PathParams(spider, name, text)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, PathParamError):
                raise
            raise PathParamError(f"export path {text!r}: {exc}") from None
    return for_spider(text, name)


class AppendFile:
    """An append-only file that grows by whole batches and knows how much of it is durable.

    ``offset`` is how many bytes have been handed to the OS (they survive a
    killed process); ``committed`` how many have been fsynced (they survive a
    power cut too). The committed offset is what a checkpoint records.
    """

    __slots__ = ("committed", "fd", "offset", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self.offset = 0
        self.committed = 0

    def open(
        self, find_whole_end: FindWholeEnd, *, overwrite: bool, resume_offset: int | None
    ) -> int:
        """Open for appending, cut off any partial tail; return the size kept."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if overwrite else 0)
        fd = os.open(self.path, flags, 0o666)
        try:
            size = os.fstat(fd).st_size
            if resume_offset is not None:
                if resume_offset > size:
                    raise ValueError(
                        f"{self.path} has {size} bytes, fewer than the {resume_offset} recorded "
                        "at the last checkpoint: it was changed outside the crawl"
                    )
                keep = resume_offset
            else:
                keep = find_whole_end(fd, size)
            if keep < size:
                logger.warning(
                    "%s: cut %d bytes after the last whole record (left by an interrupted run)",
                    self.path,
                    size - keep,
                )
                os.ftruncate(fd, keep)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.offset = self.committed = keep
        return keep

    def write(self, data: bytes) -> None:
        """Append ``data`` with as few ``write()`` calls as the OS allows (one, normally)."""
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.offset += len(data)

    def durable_up_to(self, offset: int) -> Callable[[], None]:
        """A blocking call that makes the first ``offset`` bytes durable, for a checkpoint
        to run in the same worker thread as its own commit (one step, not two)."""
        fd = self.fd

        def sync() -> None:
            os.fsync(fd)
            self.committed = offset

        return sync

    async def sync(self) -> int:
        """fsync in a worker thread, so a slow disk does not stall the crawl; the committed size."""
        offset = self.offset
        await trio.to_thread.run_sync(os.fsync, self.fd)
        self.committed = offset
        return offset

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def read(self, start: int, size: int) -> bytes:
        return os.pread(self.fd, size, start)


class StreamFile(AppendFile):
    """Standard output as an export target (``-o -:jsonl``): written in the same whole
    batches as a file, but never cut back, read or fsynced (a pipe has no such thing)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(Path(STDOUT))

    def open(
        self, find_whole_end: FindWholeEnd, *, overwrite: bool, resume_offset: int | None
    ) -> int:
        self.fd = os.dup(1)
        return 0

    def durable_up_to(self, offset: int) -> Callable[[], None]:
        def sync() -> None:
            self.committed = offset

        return sync

    async def sync(self) -> int:
        self.committed = self.offset
        return self.offset

    def read(self, start: int, size: int) -> bytes:
        return b""


class FileExporter:
    """Base of the file exporters: buffers encoded records and appends them in batches.

    A batch is written when it holds ``batch_size`` records, or when a record
    arrives ``batch_seconds`` or more after the previous write, and always at
    ``flush()``, ``checkpoint()`` and ``close()``. Subclasses encode records into
    their pending buffer and say where a file's last whole record ends.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 1000,
        batch_seconds: float = 1.0,
        overwrite: bool = False,
        resume_offset: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if batch_seconds < 0:
            raise ValueError(f"batch_seconds must not be negative, got {batch_seconds}")
        self.path_template = path
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.overwrite = overwrite
        self.resume_offset = resume_offset
        self.path: Path = Path(path)
        self.records_written = 0
        self.records_committed = 0
        self._file: AppendFile | None = None
        self._pending = 0
        self._deadline = 0.0

    # -- what subclasses provide -------------------------------------------------

    def _find_whole_end(self, fd: int, size: int) -> int:
        raise NotImplementedError

    def _add(self, item: Any) -> None:
        """Encode one record into the pending buffer (raise to refuse the item)."""
        raise NotImplementedError

    def _take(self) -> str:
        """The pending records as text, emptying the buffer."""
        raise NotImplementedError

    def _opened(self, kept: int) -> None:
        """Called after open with the size of the existing file that was kept."""

    def _write_path(self) -> Path:
        return self.path

    # -- the pipeline protocol ----------------------------------------------------

    @property
    def to_stdout(self) -> bool:
        return os.fspath(self.path_template) == STDOUT

    def open(self, spider: Spider) -> None:
        self.path = resolve_path(self.path_template, spider)
        self._file = StreamFile() if self.to_stdout else AppendFile(self._write_path())
        kept = self._file.open(
            self._find_whole_end, overwrite=self.overwrite, resume_offset=self.resume_offset
        )
        self._deadline = time.monotonic() + self.batch_seconds
        self._opened(kept)

    def process_item(self, item: Any, spider: Spider) -> Any:
        self._add(item)
        self._pending += 1
        if self._pending >= self.batch_size or time.monotonic() >= self._deadline:
            self.flush()
        return item

    def flush(self) -> None:
        """Hand every pending record to the OS: from now on they survive a killed process."""
        if self._file is None:
            raise RuntimeError(f"{type(self).__name__} for {self.path} is not open")
        if self._pending:
            # backslashreplace turns a lone surrogate (from badly decoded pages) into the
            # \\uXXXX escape JSON would have used, instead of failing the whole batch.
            self._file.write(self._take().encode("utf-8", "backslashreplace"))
            self.records_written += self._pending
            self._pending = 0
        self._deadline = time.monotonic() + self.batch_seconds

    async def checkpoint(self) -> dict[str, Any]:
        """Write and fsync everything so far; the state a resumed crawl cuts the file back to."""
        self.flush()
        assert self._file is not None
        records = self.records_written
        offset = await self._file.sync()
        self.records_committed = records
        return {"path": str(self.path), "offset": offset, "records": records}

    def stage_checkpoint(self) -> tuple[dict[str, Any], Callable[[], None]]:
        """Write everything so far and return the state a resumed crawl cuts the file
        back to, with the blocking fsync that must run before that state is committed.

        The engine prefers this to ``checkpoint()``: it runs the fsync in the thread that
        commits the job's store, right before the commit, so callbacks are not paused
        for it."""
        self.flush()
        file = self._file
        assert file is not None
        records = self.records_written
        offset = file.offset
        make_durable = file.durable_up_to(offset)

        def sync() -> None:
            make_durable()
            self.records_committed = records

        return {"path": str(self.path), "offset": offset, "records": records}, sync

    async def close(self, spider: Spider) -> None:
        if self._file is None:
            return
        try:
            self.flush()
            await self._file.sync()
            self.records_committed = self.records_written
        finally:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} records={self.records_written}>"
