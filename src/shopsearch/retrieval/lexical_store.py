"""Where a lexical index lives, and how it is opened, written and copied.

A bundle directory holds::

    config.json       constructor parameters and the format version
    rows.parquet      row id → (domain, product_id) of every live product
    tantivy/          the tantivy index (segment files, meta.json)

The tantivy index is built directly inside its bundle directory, so saving it where it already
is writes only the two small files. An index given no directory lives in a private temporary
directory that is deleted with its owner; saving it copies the (immutable) segment files.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import tantivy

from shopsearch.catalog.candidates import ProductKey, product_keys
from shopsearch.errors import WorkspaceError
from shopsearch.retrieval.lexical_schema import ANALYZER, index_analyzer
from shopsearch.store.atomic import write_parquet

TANTIVY_DIR = "tantivy"
ROWS_FILE = "rows.parquet"
CONFIG_FILE = "config.json"
#: Indexing memory of the single writer thread (tantivy needs at least 15 MB per thread).
WRITER_HEAP_BYTES = 64_000_000


class IndexHome:
    """A tantivy index in ``root/tantivy``, opened with a manually reloaded reader.

    Use :meth:`create` or :meth:`open`, not the constructor.
    """

    def __init__(self, root: Path, index: tantivy.Index, temporary: bool) -> None:
        self.root = root
        self.index = index
        self.temporary = temporary

    @classmethod
    def create(cls, root: Path | None, schema: tantivy.Schema) -> IndexHome:
        """A new empty index in ``root`` (replacing one there), or in a temporary directory."""
        temporary = root is None
        base = Path(tempfile.mkdtemp(prefix="shopsearch-lexical-")) if root is None else root
        target = base / TANTIVY_DIR
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        home = cls(
            base, _configure(tantivy.Index(schema, path=str(target), reuse=False)), temporary
        )
        if temporary:
            weakref.finalize(home, shutil.rmtree, base, True)
        return home

    @classmethod
    def open(cls, root: Path) -> IndexHome:
        """The index saved in bundle directory ``root``."""
        target = root / TANTIVY_DIR
        if not target.is_dir() or not tantivy.Index.exists(str(target)):
            raise WorkspaceError(
                f"{root} holds no lexical index ({target} is missing); "
                "give a directory written by save()"
            )
        return cls(root, _configure(tantivy.Index.open(str(target))), temporary=False)

    def searcher(self) -> tantivy.Searcher:
        """A searcher over the last commit."""
        return self.index.searcher()

    @contextlib.contextmanager
    def writer(self) -> Iterator[tantivy.IndexWriter]:
        """A writer whose changes are committed and made visible on exit (rolled back on error).

        The writer's lock is released on exit, so another process may write the index later.
        """
        writer = self.index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
        try:
            yield writer
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        finally:
            writer.wait_merging_threads()
            self.index.reload()

    def copy_to(self, root: Path) -> None:
        """Copy the committed index files into bundle directory ``root``."""
        target = root / TANTIVY_DIR
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(
            self.root / TANTIVY_DIR, target, ignore=shutil.ignore_patterns(".tantivy-*.lock")
        )


def _configure(index: tantivy.Index) -> tantivy.Index:
    index.register_tokenizer(ANALYZER, index_analyzer())
    index.config_reader(reload_policy="Manual")
    return index


def write_rows(path: Path, rows: Mapping[ProductKey, int]) -> None:
    """Atomically write the row id of every live product key."""
    table = pa.table(
        {
            "row": pa.array(list(rows.values()), pa.uint64()),
            "domain": pa.array([key[0] for key in rows], pa.string()),
            "product_id": pa.array([key[1] for key in rows], pa.string()),
        }
    )
    write_parquet(path, table)


def read_rows(path: Path) -> dict[ProductKey, int]:
    """The product key → row id map written by :func:`write_rows`."""
    if not path.exists():
        raise WorkspaceError(f"{path} is missing; give a directory written by save()")
    table = pq.read_table(path)
    keys = product_keys(table["domain"].to_pylist(), table["product_id"].to_pylist())
    return dict(zip(keys, table["row"].to_pylist(), strict=True))
