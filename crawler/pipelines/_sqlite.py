"""SQLite export: one row per item in one table, the item as JSON plus chosen columns.

The whole item is kept in the ``item`` column as JSON (query it with SQLite's
``->>`` operator); fields named in ``columns`` are also copied into columns of
their own so they can be indexed and queried directly. Rows are inserted and
committed a batch at a time in WAL mode, so readers can watch the table fill
while the crawl runs and a crash loses at most the batch in progress.

A resumable crawl's checkpoint inserts the pending rows on the event loop
(``stage_checkpoint()``) but commits them, with its fsync, in the job's commit
thread. The connection is therefore shared between two threads
(``check_same_thread=False``), never at the same time: while a staged
transaction waits for its commit, batches stay in memory instead of touching
the connection, and the commit holds a lock that closing waits for.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ._encode import ENCODE_ERRORS, encode_error, json_default, make_encoder, to_mapping
from ._file import resolve_path

if TYPE_CHECKING:
    # Imported when the exporter opens: crawls exporting elsewhere never load sqlite3.
    import sqlite3
    from pathlib import Path

    from ..spider import Spider

__all__ = ["SqliteExporter"]

logger = logging.getLogger("crawler.pipeline")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COLUMN_TYPES = frozenset({"", "TEXT", "INTEGER", "REAL", "NUMERIC", "BLOB"})
_RESERVED = frozenset({"id", "item"})
_Row = tuple[Any, ...]


def _identifier(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"sqlite {kind} name {name!r} must be letters, digits and underscores")
    return f'"{name}"'


class SqliteExporter:
    """Options: ``path`` (``{spider}`` is replaced by the spider's name), ``table``
    ("items"), ``columns`` (a list of field names, or a mapping of field name to
    SQLite type such as ``{"price": "REAL"}``), ``batch_size`` (1000),
    ``batch_seconds`` (1.0), ``resume_last_id`` (delete rows after this id on open:
    the ``last_id`` a checkpoint returned).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = "items",
        columns: Sequence[str] | Mapping[str, str] = (),
        batch_size: int = 1000,
        batch_seconds: float = 1.0,
        resume_last_id: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(columns, str):
            raise ValueError(f"columns must be a list of field names, got the string {columns!r}")
        typed = dict(columns) if isinstance(columns, Mapping) else dict.fromkeys(columns, "")
        for name, kind in typed.items():
            _identifier("column", name)
            if name in _RESERVED:
                raise ValueError(f"sqlite column name {name!r} is reserved for the exporter")
            if kind.upper() not in _COLUMN_TYPES:
                known = ", ".join(sorted(t for t in _COLUMN_TYPES if t))
                raise ValueError(f"sqlite column {name!r}: unknown type {kind!r} (use {known})")
        self.path_template = path
        self.path: Path | None = None
        self.table = table
        self._table_sql = _identifier("table", table)
        self.columns: dict[str, str] = {name: kind.upper() for name, kind in typed.items()}
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.resume_last_id = resume_last_id
        self.rows_written = 0
        self._column_names = tuple(self.columns)
        self._encode = make_encoder()
        self._rows: list[_Row] = []
        self._deadline = 0.0
        self._db: sqlite3.Connection | None = None
        # A staged checkpoint's transaction is open until its commit step has run;
        # the lock is held while that step uses the connection in the job's thread.
        self._staged = False
        self._commit_lock = threading.Lock()
        names = ", ".join(["item", *(f'"{c}"' for c in self._column_names)])
        marks = ", ".join("?" * (1 + len(self._column_names)))
        self._insert_sql = f"INSERT INTO {self._table_sql} ({names}) VALUES ({marks})"

    def open(self, spider: Spider) -> None:
        import sqlite3

        self.path = resolve_path(self.path_template, spider)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun and committed explicitly, one per batch.
        # Shared with the job's commit thread, one at a time (see the module's docstring).
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._create_table(db)
            if self.resume_last_id is not None:
                db.execute(f"DELETE FROM {self._table_sql} WHERE id > ?", (self.resume_last_id,))
        except BaseException:
            db.close()
            raise
        self._db = db
        self._deadline = time.monotonic() + self.batch_seconds

    def _create_table(self, db: sqlite3.Connection) -> None:
        declared = "".join(f', "{name}" {kind}'.rstrip() for name, kind in self.columns.items())
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table_sql} "
            f"(id INTEGER PRIMARY KEY, item TEXT NOT NULL{declared})"
        )
        existing = {row[1] for row in db.execute(f"PRAGMA table_info({self._table_sql})")}
        if "item" not in existing:
            raise ValueError(f"{self.path}: table {self.table!r} exists without an item column")
        for name, kind in self.columns.items():
            if name not in existing:
                db.execute(f'ALTER TABLE {self._table_sql} ADD COLUMN "{name}" {kind}'.rstrip())

    def process_item(self, item: Any, spider: Spider) -> Any:
        try:
            text = self._encode(item)
            if self._column_names:
                fields = to_mapping(item)
                row: _Row = (text, *[self._cell(fields.get(name)) for name in self._column_names])
            else:
                row = (text,)
        except ENCODE_ERRORS as exc:
            raise encode_error(item, exc, self._encode) from exc
        self._rows.append(row)
        if len(self._rows) >= self.batch_size or time.monotonic() >= self._deadline:
            self.flush()
        return item

    def _cell(self, value: Any) -> Any:
        kind = type(value)
        if value is None or kind is str or kind is int or kind is float or kind is bytes:
            return value
        if kind is bool:
            return int(value)
        if kind is not list and kind is not dict and kind is not tuple:
            value = json_default(value)
            if isinstance(value, str):
                return value
        return self._encode(value)

    def flush(self) -> None:
        """Insert and commit the pending rows as one transaction.

        While a staged checkpoint waits for its commit, the rows stay pending: the
        connection may be in use by the job's commit thread."""
        db = self._connection()
        if not self._staged:
            self._write(db)
        self._deadline = time.monotonic() + self.batch_seconds

    def _connection(self) -> sqlite3.Connection:
        db = self._db
        if db is None:
            raise RuntimeError(f"SqliteExporter for {self.path_template} is not open")
        return db

    def _write(self, db: sqlite3.Connection) -> None:
        """Insert the pending rows: committed at once, or part of the open transaction."""
        rows = self._rows
        if rows:
            self._rows = []
            try:
                self._insert(db, rows)
            except UnicodeEncodeError:
                # A lone surrogate (from a badly decoded page) cannot be stored as UTF-8;
                # escape it the way JSON would rather than lose the batch.
                self._insert(db, [tuple(map(_escape_surrogates, row)) for row in rows])
            self.rows_written += len(rows)

    def _insert(self, db: sqlite3.Connection, rows: list[_Row]) -> None:
        # A savepoint commits on release when no transaction is open, and only nests
        # inside a staged one, whose earlier rows a failed batch must not roll back.
        db.execute("SAVEPOINT batch")
        try:
            db.executemany(self._insert_sql, rows)
        except BaseException:
            db.execute("ROLLBACK TO batch")
            db.execute("RELEASE batch")
            raise
        db.execute("RELEASE batch")

    async def checkpoint(self) -> dict[str, Any]:
        """Commit everything so far (in a worker thread); a resumed crawl passes
        ``last_id`` as resume_last_id."""
        state, commit = self.stage_checkpoint()
        await trio.to_thread.run_sync(commit)
        return state

    def stage_checkpoint(self) -> tuple[dict[str, Any], Callable[[], None]]:
        """Insert everything so far in a transaction left open, and return the state a
        resumed crawl cuts the table back to, with the blocking commit (and fsync) that
        must run before that state is committed: the job runs it in its commit thread,
        so callbacks do not wait for the disk."""
        db = self._connection()
        with self._commit_lock:  # free unless a commit step runs outside the job's order
            if not db.in_transaction:
                db.execute("BEGIN")
            self._staged = True
            self._write(db)
            (last_id,) = db.execute(f"SELECT max(id) FROM {self._table_sql}").fetchone()
        self._deadline = time.monotonic() + self.batch_seconds
        state = {"path": str(self.path), "table": self.table, "last_id": last_id or 0}
        return state, self._commit_staged

    def _commit_staged(self) -> None:
        """Commit the staged transaction, from whichever thread; nothing if it is gone."""
        with self._commit_lock:
            db = self._db
            if db is None or not self._staged:
                return
            if db.in_transaction:
                db.execute("COMMIT")
            self._staged = False

    def close(self, spider: Spider) -> None:
        db = self._db
        if db is None:
            return
        try:
            # A staged transaction whose commit step never ran (the checkpoint failed)
            # is committed with the rest: rows past the last checkpoint are cut on resume.
            self._commit_staged()
            self.flush()
        finally:
            self._db = None
            db.close()

    def __repr__(self) -> str:
        return f"<SqliteExporter {self.path or self.path_template} table={self.table}>"


def _escape_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value
