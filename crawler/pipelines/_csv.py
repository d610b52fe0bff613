"""CSV export: one row per item, columns fixed by the first item (or the ``fields`` option).

CSV has one header, so the columns cannot grow once rows are written: keys that
later items add are left out, with one warning per key naming it. Missing keys
give empty cells. ``None`` is an empty cell, strings and numbers are written as
they are, lists and dicts as JSON text, and other values as their JSON-friendly
text (datetimes in ISO 8601, decimals in full).

A quoted cell may hold newlines, so the end of the last whole record is the last
newline outside quotes: on open the file's quotes are counted (fast, in C) and
only a file that does not end cleanly is walked to find where to cut.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from ._encode import ENCODE_ERRORS, encode_error, json_default, make_encoder, to_mapping
from ._file import FileExporter

__all__ = ["CsvExporter"]

logger = logging.getLogger("crawler.pipeline")

_SCAN_CHUNK = 1 << 20
_HEADER_READ = 1 << 20


class CsvExporter(FileExporter):
    """Options: ``path`` (``{spider}`` is replaced by the spider's name), ``fields``
    (the columns, default: the first item's keys), ``delimiter`` (","),
    ``batch_size`` (1000), ``batch_seconds`` (1.0), ``overwrite`` (False: append
    under the existing header), ``resume_offset`` (cut back to a checkpointed size).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fields: Sequence[str] | None = None,
        delimiter: str = ",",
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
        if isinstance(fields, str):
            raise ValueError(f"fields must be a list of column names, got the string {fields!r}")
        self.configured_fields: tuple[str, ...] | None = tuple(fields) if fields else None
        self.fields: tuple[str, ...] | None = None
        self._field_set: frozenset[str] = frozenset()
        self._warned: set[str] = set()
        self._encode = make_encoder()
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, delimiter=delimiter)
        self._delimiter = delimiter

    def _opened(self, kept: int) -> None:
        existing = self._read_header() if kept else None
        if existing and self.configured_fields and existing != self.configured_fields:
            raise ValueError(
                f"{self.path} has the columns {list(existing)} but the fields option asks "
                f"for {list(self.configured_fields)}: set overwrite or use another file"
            )
        self._buffer.seek(0)
        self._buffer.truncate()
        self._warned.clear()
        self.fields = None
        if existing:
            self._set_fields(existing)
        elif self.configured_fields:
            self._set_fields(self.configured_fields)
            self._writer.writerow(self.configured_fields)
            self._write_header()

    def _write_header(self) -> None:
        """A new file gets its header at once, so even a crawl without items leaves a valid CSV."""
        assert self._file is not None
        self._file.write(self._take().encode("utf-8", "backslashreplace"))

    def _read_header(self) -> tuple[str, ...] | None:
        assert self._file is not None
        head = self._file.read(0, _HEADER_READ).decode("utf-8", "replace")
        row = next(csv.reader(io.StringIO(head, newline=""), delimiter=self._delimiter), None)
        return tuple(row) if row else None

    def _set_fields(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self._field_set = frozenset(fields)

    def _add(self, item: Any) -> None:
        row = to_mapping(item)
        try:
            fields = self.fields
            header = fields is None
            if fields is None:
                fields = tuple(row)
            cells = [self._cell(row.get(name)) for name in fields]
        except ENCODE_ERRORS as exc:
            raise encode_error(item, exc, self._encode) from exc
        if header:
            self._set_fields(fields)
            self._writer.writerow(fields)
        elif not self._field_set.issuperset(row):
            self._warn_extra(row)
        self._writer.writerow(cells)

    def _cell(self, value: Any) -> Any:
        kind = type(value)
        if kind is str or kind is int or kind is float or kind is bool:
            return value
        if value is None:
            return ""
        if kind is not list and kind is not dict and kind is not tuple:
            value = json_default(value)
            if isinstance(value, str):
                return value
        return self._encode(value)

    def _warn_extra(self, row: Any) -> None:
        extra = [key for key in row if key not in self._field_set and key not in self._warned]
        if extra:
            self._warned.update(extra)
            logger.warning(
                "%s: fields %s are not CSV columns %s and are left out "
                "(the columns come from the first item unless the fields option sets them)",
                self.path,
                extra,
                list(self.fields or ()),
            )

    def _take(self) -> str:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text

    def _find_whole_end(self, fd: int, size: int) -> int:
        if size == 0:
            return 0
        quotes = 0
        for _, chunk in _chunks(fd, size):
            quotes += chunk.count(b'"')
        if quotes % 2 == 0 and os.pread(fd, 1, size - 1) == b"\n":
            return size
        inside = False
        end = 0
        for start, chunk in _chunks(fd, size):
            offset = start
            for index, part in enumerate(chunk.split(b'"')):
                if index:
                    inside = not inside
                    offset += 1
                if not inside:
                    newline = part.rfind(b"\n")
                    if newline >= 0:
                        end = offset + newline + 1
                offset += len(part)
        return end


def _chunks(fd: int, size: int) -> Iterator[tuple[int, bytes]]:
    start = 0
    while start < size:
        chunk = os.pread(fd, min(_SCAN_CHUNK, size - start), start)
        if not chunk:
            return
        yield start, chunk
        start += len(chunk)
