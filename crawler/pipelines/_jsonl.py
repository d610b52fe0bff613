"""JSON Lines export: one JSON object per line, appended in whole-line batches.

This is the format for long and resumable crawls: it streams, it appends, and
the end of the last whole record is simply the last newline, so a file left by
a killed run is repaired on open by cutting back to it.
"""

from __future__ import annotations

import os
from typing import Any

from ._encode import ENCODE_ERRORS, encode_error, make_encoder
from ._file import FileExporter

__all__ = ["JsonLinesExporter"]

_SCAN_CHUNK = 1 << 16


class JsonLinesExporter(FileExporter):
    """Options: ``path`` (``{spider}`` is replaced by the spider's name), ``batch_size``
    (records per write, 1000), ``batch_seconds`` (1.0), ``overwrite`` (False: append),
    ``resume_offset`` (cut the file back to this checkpointed size on open).
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
        super().__init__(
            path,
            batch_size=batch_size,
            batch_seconds=batch_seconds,
            overwrite=overwrite,
            resume_offset=resume_offset,
        )
        self._encode = make_encoder()
        self._lines: list[str] = []

    def _add(self, item: Any) -> None:
        try:
            line = self._encode(item)
        except ENCODE_ERRORS as exc:
            raise encode_error(item, exc, self._encode) from exc
        self._lines.append(line)

    def _take(self) -> str:
        lines = self._lines
        self._lines = []
        lines.append("")  # so the join ends the last record with its newline
        return "\n".join(lines)

    def _find_whole_end(self, fd: int, size: int) -> int:
        end = size
        while end > 0:
            start = max(0, end - _SCAN_CHUNK)
            chunk = os.pread(fd, end - start, start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            end = start
        return 0
