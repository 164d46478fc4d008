"""The exception tree. Every error a user can cause is a :class:`ShopSearchError`.

::

    ShopSearchError
    ├── InvalidInputError        a value given by the user is out of range or malformed
    ├── DataFormatError          an input file does not have the columns / encoding of its format
    ├── WorkspaceError           the workspace is missing, locked, or unreadable
    │   └── SchemaVersionError   the workspace was written by another schema version
    ├── NotFittedError           a model is used before ``fit``
    └── RejectedRowsError        ingest kept the good rows but some rows were rejected

Messages say the value, the limit and the fix, for example
``k=5000 is larger than the 1200 products in domain 'es'; use k <= 1200``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class ShopSearchError(Exception):
    """Root of every error shopsearch raises on purpose."""


class InvalidInputError(ShopSearchError, ValueError):
    """A value given by the user is out of range or malformed."""


class DataFormatError(ShopSearchError):
    """An input file does not match the format it was declared to be."""


class WorkspaceError(ShopSearchError):
    """The workspace is missing, locked or unreadable."""


class SchemaVersionError(WorkspaceError):
    """The workspace was written with a different schema version."""


class NotFittedError(ShopSearchError, RuntimeError):
    """A fitted component was used before ``fit`` was called."""


class ShardUnavailableError(ShopSearchError):
    """Every replica of a search shard failed to answer (the search is refused, not partial)."""


class RejectedRowsError(ShopSearchError):
    """Ingest stored the good rows but rejected some; the report lists each one.

    Attributes:
        rejected: rows rejected per table (or other kind of record), e.g. ``{"products": 2}``.
        stored: rows stored per table.
        report: the rejects report.
    """

    def __init__(
        self, rejected: Mapping[str, int], stored: Mapping[str, int], report: Path
    ) -> None:
        self.rejected = dict(rejected)
        self.stored = dict(stored)
        self.report = report
        super().__init__(
            f"rejected {describe_counts(rejected)} and stored {describe_counts(stored)}; see "
            f"{report} for the row number, field and reason of each"
        )


def describe_counts(per_table: Mapping[str, int]) -> str:
    """``{"domains": 1, "products": 2}`` as ``"1 domains, 2 products"`` (zeros left out)."""
    return ", ".join(f"{n} {what}" for what, n in per_table.items() if n) or "nothing"
