"""JSON export: the items as one JSON array, for small crawls and tools that want a document.

A JSON array is only valid once it is closed, so it cannot stream safely: the
array is written to a hidden ``.NAME.partial`` file next to the target and
renamed over the target at close, atomically. A crash therefore leaves the
previous file (or none), never a broken array, and a crawl's items appear in
the file only when it ends. Prefer JSON Lines for long or resumable crawls.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ._encode import ENCODE_ERRORS, encode_error, make_encoder
from ._file import FileExporter

if TYPE_CHECKING:
    from ..spider import Spider

__all__ = ["JsonArrayExporter"]


class JsonArrayExporter(FileExporter):
    """Options: ``path`` (``{spider}`` is replaced by the spider's name), ``batch_size``
    and ``batch_seconds`` (how often records go to the partial file). Each run
    replaces the file; it cannot append or resume.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 1000,
        batch_seconds: float = 1.0,
    ) -> None:
        super().__init__(path, batch_size=batch_size, batch_seconds=batch_seconds, overwrite=True)
        self._encode = make_encoder()
        self._records: list[str] = []
        self._separator = "[\n"

    def _write_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.partial")

    def _find_whole_end(self, fd: int, size: int) -> int:
        return 0  # the partial file is always started afresh

    def _add(self, item: Any) -> None:
        try:
            record = self._encode(item)
        except ENCODE_ERRORS as exc:
            raise encode_error(item, exc, self._encode) from exc
        self._records.append(record)

    def _take(self) -> str:
        text = self._separator + ",\n".join(self._records)
        self._records = []
        self._separator = ",\n"
        return text

    def _opened(self, kept: int) -> None:
        self._separator = "[\n"

    async def checkpoint(self) -> dict[str, Any]:
        """Records so far go to the partial file; there is no committed offset to resume from."""
        self.flush()
        return {"path": str(self.path), "records": self.records_written, "resumable": False}

    async def close(self, spider: Spider) -> None:
        file = self._file
        if file is None:
            return
        try:
            self.flush()
            file.write(b"\n]\n" if self.records_written else b"[]\n")
            await file.sync()
        except BaseException:
            file.close()
            self._file = None
            raise
        file.close()
        self._file = None
        if self.to_stdout:  # written as it came: nothing to rename
            self.records_committed = self.records_written
            return
        os.replace(file.path, self.path)
        await trio.to_thread.run_sync(_sync_directory, self.path.parent)
        self.records_committed = self.records_written


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX keeps it in the directory's metadata)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
