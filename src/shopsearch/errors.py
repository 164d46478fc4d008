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


class RejectedRowsError(ShopSearchError):
    """Ingest stored the good rows but rejected some; the report lists each one."""

    def __init__(self, rejected: int, kept: int, report: Path) -> None:
        self.rejected = rejected
        self.kept = kept
        self.report = report
        super().__init__(
            f"{rejected} row(s) rejected and {kept} kept; see {report} "
            "for the row number, field and reason of each"
        )
