"""What a dataset loader returns: raw rows in the workspace's column names, not yet validated.

A loader reads one public format and maps it onto the data model; it does not judge values.
Ingest (:mod:`shopsearch.ingest.workspace`) validates every row, stores the good ones and
reports the bad ones with the source file and row given in the ``_file`` and ``_row`` columns.
``_row`` is the 1-based line number in a text file (the header is line 1) or the 1-based row of
a Parquet file. Records of a text file that cannot be read as rows at all (more fields than the
header, a quote never closed) are :class:`Malformed`; ingest reports them like bad rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: Tables a loader may fill, in the order ingest stores them (domains first, events last).
LOADED_TABLES = ("domains", "products", "judgments", "requests", "impressions", "interactions")


@dataclass(frozen=True)
class Malformed:
    """A record of a text file that cannot be read as a row.

    Attributes:
        file: The path as given.
        row: The 1-based line on which the record starts.
        text: The start of that line as written.
        reason: What is wrong and how to fix it.
    """

    file: str
    row: int
    text: str
    reason: str


@dataclass
class LoadedData:
    """Rows read by a loader, one DataFrame per workspace table (absent tables are ``None``).

    Column names are the workspace's (see :mod:`shopsearch.store.schema`) plus ``_file`` and
    ``_row``. Values may still be raw strings; ingest coerces and validates them. A product's
    ``category`` may be a list of strings or one string with levels separated by ``" > "``;
    ``attributes``, ``filters`` and ``scores`` may be dicts or JSON object strings. A domains
    row whose ``_implied`` column is true is a domain the format implies (``default``,
    ``homedepot``, ...), not one a domains file declares: ingest adds it only when it is missing.
    ``malformed`` lists the records that could not be read as rows (filled by
    :func:`~shopsearch.datasets.registry.load`; a loader called directly raises on them).
    """

    format: str
    domains: pd.DataFrame | None = None
    products: pd.DataFrame | None = None
    judgments: pd.DataFrame | None = None
    requests: pd.DataFrame | None = None
    impressions: pd.DataFrame | None = None
    interactions: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables present, in ingest order."""
        present = {name: getattr(self, name) for name in LOADED_TABLES}
        return {name: frame for name, frame in present.items() if frame is not None}


#: A loader takes the paths the user gave and returns the rows it read.
Loader = Callable[[Sequence[Path]], LoadedData]
