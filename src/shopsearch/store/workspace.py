"""The workspace: a directory of Parquet tables with DuckDB for SQL over them.

Layout::

    W/workspace.json                 schema version and creation time
    W/tables/<table>/manifest.json   the table's live Parquet parts, in order
    W/tables/<table>/part-*.parquet  immutable parts
    W/rejects/                       ingest reports of rejected rows
    W/ground_truth/                  simulator truth (never read by models)
    W/models/, W/cache/              trained bundles, embedding caches

Every write makes a new part file atomically and then atomically replaces the manifest, under an
exclusive lock. A crash at any point leaves the previous manifest, so readers see either all of a
write or none of it; part files no manifest names are orphans and are removed on the next write.
"""

from __future__ import annotations

import contextlib
import fcntl
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shopsearch.catalog.models import UNKNOWN_CURRENCY, UNKNOWN_LANGUAGE, Domain
from shopsearch.errors import SchemaVersionError, WorkspaceError
from shopsearch.store.atomic import write_json, write_parquet
from shopsearch.store.schema import SCHEMA_VERSION, TABLES, UPSERT_KEYS, empty_table

_META = "workspace.json"


class Workspace:
    """A shop's data on disk. Use :meth:`create` or :meth:`open`, not the constructor."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path) -> Workspace:
        """Create a workspace at ``root``, or open the one already there."""
        path = Path(root)
        if (path / _META).exists():
            return cls.open(path)
        if path.exists() and not path.is_dir():
            raise WorkspaceError(f"{path} is a file; give a directory for the workspace")
        if path.exists() and any(path.iterdir()):
            raise WorkspaceError(
                f"{path} is a non-empty directory that is not a shopsearch workspace "
                f"(no {_META}); give a new or empty directory"
            )
        path.mkdir(parents=True, exist_ok=True)
        write_json(
            path / _META,
            {
                "format": "shopsearch-workspace",
                "schema_version": SCHEMA_VERSION,
                "created": datetime.now(UTC).isoformat(),
            },
        )
        return cls(path)

    @classmethod
    def open(cls, root: str | Path) -> Workspace:
        """Open an existing workspace; fails clearly if missing or of another schema version."""
        path = Path(root)
        meta_path = path / _META
        if not meta_path.exists():
            raise WorkspaceError(
                f"no shopsearch workspace at {path} (missing {_META}); create one with "
                f"'shopsearch ingest ... --workspace {path}' or 'shopsearch simulate'"
            )
        try:
            meta = orjson.loads(meta_path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise WorkspaceError(f"{meta_path} is not valid JSON: {exc}") from exc
        version = meta.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"workspace {path} has schema version {version}, this shopsearch reads version "
                f"{SCHEMA_VERSION}; re-create it with this version (re-run ingest / simulate into "
                "a new directory) or use the shopsearch release that wrote it"
            )
        return cls(path)

    # -- folders -------------------------------------------------------------------------------
    def dir(self, name: str) -> Path:
        """A sub-folder of the workspace (``models``, ``cache``, ``ground_truth``, ...), created."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _table_dir(self, name: str) -> Path:
        if name not in TABLES:
            raise WorkspaceError(f"unknown table {name!r}; tables are {', '.join(TABLES)}")
        return self.root / "tables" / name

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the workspace's exclusive write lock (blocks other writers, not readers)."""
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- reading -------------------------------------------------------------------------------
    def parts(self, name: str) -> list[Path]:
        """The live Parquet parts of a table, oldest first."""
        manifest = self._table_dir(name) / "manifest.json"
        if not manifest.exists():
            return []
        names: list[str] = orjson.loads(manifest.read_bytes())["parts"]
        return [manifest.parent / part for part in names]

    def table(self, name: str, columns: Sequence[str] | None = None) -> pa.Table:
        """Read a whole table (optionally only some columns) as one Arrow table."""
        parts = self.parts(name)
        cols = list(columns) if columns else None
        if not parts:
            empty = empty_table(name)
            return empty.select(cols) if cols else empty
        return pa.concat_tables([pq.read_table(p, columns=cols) for p in parts])

    def count(self, name: str) -> int:
        """Number of rows in a table, from Parquet metadata."""
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.parts(name))

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one view per table, for SQL over the Parquet parts."""
        con = duckdb.connect()
        for name in TABLES:
            parts = self.parts(name)
            if parts:
                files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in parts)
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{files}])")
            else:
                con.register(f"_{name}_empty", empty_table(name))
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM _{name}_empty")
        return con

    def domains(self) -> list[Domain]:
        """The workspace's domains.

        An empty language or currency, as ``ingest --add-domains`` stored them before issue
        13 was fixed, reads as unknown (:data:`~shopsearch.catalog.models.UNKNOWN_LANGUAGE`,
        :data:`~shopsearch.catalog.models.UNKNOWN_CURRENCY`); the next ingest writes that back.
        """
        return [Domain(**with_unknowns(row)) for row in self.table("domains").to_pylist()]

    # -- writing -------------------------------------------------------------------------------
    def append(self, name: str, table: pa.Table) -> None:
        """Append rows to a table as a new part (atomic, durable once this returns)."""
        table = _conform(name, table)
        if table.num_rows == 0:
            return
        with self.lock():
            self._commit(name, self._manifest_names(name), [table])

    def replace(self, name: str, table: pa.Table) -> None:
        """Replace a table's whole content atomically."""
        table = _conform(name, table)
        with self.lock():
            self._commit(name, [], [table] if table.num_rows else [])

    def upsert(self, name: str, table: pa.Table) -> int:
        """Insert rows, replacing stored rows with the same key; returns rows written.

        Within ``table`` the last row of a key wins.
        """
        keys = UPSERT_KEYS[name]
        table = _dedupe_last(_conform(name, table), keys)
        if table.num_rows == 0:
            return 0
        with self.lock():
            parts = self.parts(name)
            old = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None
            if old is not None and old.num_rows:
                old = _anti_join(old, table, keys)
                merged = pa.concat_tables([old, table])
            else:
                merged = table
            self._commit(name, [], [merged])
        return int(table.num_rows)

    def _manifest_names(self, name: str) -> list[str]:
        return [p.name for p in self.parts(name)]

    def _commit(self, name: str, keep: list[str], new_tables: list[pa.Table]) -> None:
        folder = self._table_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        new_names = []
        for table in new_tables:
            part = f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
            write_parquet(folder / part, table)
            new_names.append(part)
        live = [*keep, *new_names]
        write_json(folder / "manifest.json", {"parts": live})
        live_set = set(live)
        for path in folder.glob("part-*.parquet"):
            if path.name not in live_set:
                path.unlink(missing_ok=True)


def with_unknowns(domain: dict[str, str]) -> dict[str, str]:
    """A stored domain row with an empty language or currency set to the unknown markers."""
    return {
        **domain,
        "language": domain["language"] or UNKNOWN_LANGUAGE,
        "currency": domain["currency"] or UNKNOWN_CURRENCY,
    }


def _conform(name: str, table: pa.Table) -> pa.Table:
    """Cast ``table`` to the table schema (columns in order); missing columns fail clearly."""
    schema = TABLES[name]
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise WorkspaceError(f"table {name!r} rows lack column(s) {', '.join(missing)}")
    return table.select(schema.names).cast(schema)


def _key_strings(table: pa.Table, keys: tuple[str, ...]) -> pa.Array:
    cols = [pc.cast(table[k], pa.string()) for k in keys]
    if len(cols) == 1:
        return cols[0].combine_chunks() if isinstance(cols[0], pa.ChunkedArray) else cols[0]
    joined = pc.binary_join_element_wise(*cols, "\x1f")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def _dedupe_last(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    key = _key_strings(table, keys).to_pylist()
    last: dict[str, int] = {}
    for i, k in enumerate(key):
        last[k] = i
    if len(last) == table.num_rows:
        return table
    return table.take(sorted(last.values()))


def _anti_join(old: pa.Table, new: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    mask = pc.is_in(_key_strings(old, keys), value_set=_key_strings(new, keys))
    return old.filter(pc.invert(mask))
