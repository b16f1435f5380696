"""The DuckDB results store.

Why it is shaped this way:

- **Crash safety.** Each finished measurement is written in its own transaction,
  so a crash or Ctrl-C keeps everything that finished and nothing half-written.
- **Two processes, one file.** DuckDB lets one process hold a file for writing.
  The store therefore opens the file only for the moment of a write and closes it
  again; a second ``bench score`` on the same file waits for the lock (up to
  ``lock_timeout`` seconds) and then fails with a clear message, never corrupting it.
- **Read-only queries.** ``bench query`` opens the file read-only, so no SQL typed
  there can change the data.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow as pa

from bench.errors import StoreError
from bench.store import rows as _rows
from bench.store.schema import IDENTITY_COLUMNS, TABLES, VIEWS, create_table_sql

DEFAULT_DB = "bench.duckdb"


def default_path() -> Path:
    """``$BENCH_DB``, else ``bench.duckdb`` in the working directory."""
    return Path(os.environ.get("BENCH_DB", DEFAULT_DB))


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


class Store:
    """A DuckDB file holding the ``runs``, ``models`` and ``measurements`` tables."""

    def __init__(self, path: str | os.PathLike | None = None, lock_timeout: float = 60.0):
        self.path = Path(path) if path is not None else default_path()
        self.lock_timeout = lock_timeout

    # -- connections -------------------------------------------------------------------
    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file, waiting while another process holds its lock."""
        if read_only and not self.path.exists():
            raise StoreError(f"no results database at {self.path}",
                             "run `bench score` first, or point --db / BENCH_DB at an existing file")
        if not read_only:
            self._check_writable()
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.Error as exc:
                if _is_lock_error(exc) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                raise self._translate(exc) from exc
        try:
            if not read_only:
                self._ensure_schema(con)
            yield con
        finally:
            con.close()

    def _check_writable(self) -> None:
        parent = self.path.resolve().parent
        if not parent.exists():
            raise StoreError(f"the folder of the database {self.path} does not exist",
                             "create it, or choose another file with --db / BENCH_DB")
        target = self.path if self.path.exists() else parent
        if not os.access(target, os.W_OK):
            raise StoreError(f"cannot write the database {self.path} (permission denied)",
                             "choose a writable file with --db or BENCH_DB")

    def _translate(self, exc: Exception) -> StoreError:
        text = str(exc)
        if _is_lock_error(exc):
            return StoreError(
                f"the database {self.path} is in use by another process "
                f"(waited {self.lock_timeout:.0f}s)",
                "wait for the other `bench` command to finish, or use another --db file")
        if "No space left" in text:
            return StoreError(f"the disk holding {self.path} is full; nothing was written",
                              "free space or choose another --db file, then run again")
        if "not a valid DuckDB database" in text or "Corrupt" in text or "corrupt" in text:
            return StoreError(f"{self.path} is not a readable DuckDB results file",
                              "point --db / BENCH_DB at a bench database or a new file")
        return StoreError(f"cannot open the database {self.path}: {text.splitlines()[0]}",
                          "check the path and permissions, or use another --db file")

    @staticmethod
    def _ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
        for name in TABLES:
            con.execute(create_table_sql(name))
        for name, sql in VIEWS.items():
            con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")

    def transaction(self, fn) -> Any:
        """Run ``fn(con)`` in one transaction; a failure leaves the file as it was."""
        with self.connect() as con:
            try:
                con.execute("BEGIN TRANSACTION")
                result = fn(con)
                con.execute("COMMIT")
                return result
            except BaseException as exc:
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                if isinstance(exc, duckdb.Error):
                    raise self._translate(exc) from exc
                raise

    # -- writes ------------------------------------------------------------------------
    @staticmethod
    def insert_arrow(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> int:
        """Append an Arrow table of the schema to ``table`` inside the caller's transaction."""
        data = data.select(TABLES[table].names).cast(TABLES[table])
        con.register("_incoming", data)
        try:
            con.execute(f"INSERT INTO {table} SELECT * FROM _incoming")
        finally:
            con.unregister("_incoming")
        return data.num_rows

    def insert(self, table: str, rows: list[dict[str, Any]] | pa.Table) -> int:
        """Insert rows (dicts or an Arrow table of the schema) in one transaction."""
        data = rows if isinstance(rows, pa.Table) else _rows.to_table(table, rows)
        if data.num_rows == 0:
            return 0
        return self.transaction(lambda con: self.insert_arrow(con, table, data))

    def upsert_model(self, row: dict[str, Any]) -> None:
        data = _rows.to_table("models", [row])

        def write(con):
            con.execute("DELETE FROM models WHERE model_id = ?", [row["model_id"]])
            self.insert_arrow(con, "models", data)

        self.transaction(write)

    def start_run(self, command: str, bench_version: str) -> str:
        run_id = _rows.new_id()
        self.insert("runs", [dict(run_id=run_id, started_at=_rows.now(), status="running",
                                  command=command, bench_version=bench_version)])
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        self.transaction(lambda con: con.execute(
            "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
            [status, _rows.now(), run_id]))

    # -- reads -------------------------------------------------------------------------
    def has_measurement(self, identity: dict[str, Any]) -> bool:
        """True when a row with this identity (see IDENTITY_COLUMNS) is already stored."""
        if not self.path.exists():
            return False
        clauses, args = [], []
        for col in IDENTITY_COLUMNS:
            if identity.get(col) is None:
                clauses.append(f"{col} IS NULL")
            else:
                clauses.append(f"{col} = ?")
                args.append(identity[col])
        with self.connect(read_only=True) as con:
            try:
                hit = con.execute(
                    f"SELECT 1 FROM measurements WHERE {' AND '.join(clauses)} LIMIT 1", args
                ).fetchone()
            except duckdb.CatalogException:
                return False
        return hit is not None

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        """Run SQL read-only and return an Arrow table."""
        with self.connect(read_only=True) as con:
            try:
                return con.sql(sql, params=params or None).to_arrow_table()
            except duckdb.Error as exc:
                raise StoreError(f"query failed: {str(exc).splitlines()[0]}",
                                 "check the SQL; tables are runs, models, measurements and the "
                                 "views leaderboard, architecture_leaderboard") from exc

    def table(self, name: str) -> pa.Table:
        return self.query(f"SELECT * FROM {name}")
