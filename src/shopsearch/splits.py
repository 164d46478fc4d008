"""Group-wise train/test splits of a data file: by query or session, never by row.

A group goes to the test side when a seeded hash of its value falls below the test fraction, so
the split is deterministic, needs no state, and keeps every row of a group on one side.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from shopsearch.errors import DataFormatError, InvalidInputError
from shopsearch.store.atomic import atomic_path


def in_test(values: pd.Series, test_fraction: float, seed: int) -> pd.Series:
    """Boolean mask: which rows' groups fall on the test side."""
    if not 0.0 < test_fraction < 1.0:
        raise InvalidInputError(
            f"test_fraction={test_fraction} is not allowed; use 0 < test_fraction < 1"
        )
    unique = pd.Series(values.astype(str).unique())
    salt = str(seed).encode()
    draws = unique.map(
        lambda v: (
            int.from_bytes(hashlib.sha1(salt + b"\x00" + v.encode()).digest()[:8], "big") / 2**64
        )
    )
    test_groups = set(unique[draws < test_fraction])
    return values.astype(str).isin(test_groups)


def split_file(
    path: Path,
    by: str,
    train_out: Path,
    test_out: Path,
    test_fraction: float = 0.2,
    seed: int = 0,
    encoding: str = "utf-8",
) -> tuple[int, int]:
    """Split a CSV or Parquet file by the groups of column ``by``; returns (train, test) rows.

    The outputs keep the input's format, columns and encoding.
    """
    if not path.exists():
        raise InvalidInputError(f"{path} does not exist")
    parquet = path.suffix == ".parquet"
    try:
        frame = (
            pq.read_table(path).to_pandas()
            if parquet
            else pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
        )
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path} is not {encoding} text ({exc.reason}); pass --encoding (e.g. latin-1)"
        ) from exc
    if by not in frame.columns:
        raise DataFormatError(
            f"{path} has no column {by!r}; columns are {', '.join(map(str, frame.columns))}"
        )
    mask = in_test(frame[by], test_fraction, seed)
    for part, out in ((frame[~mask], train_out), (frame[mask], test_out)):
        with atomic_path(out) as tmp:
            if parquet:
                part.to_parquet(tmp, index=False)
            else:
                part.to_csv(tmp, index=False, encoding=encoding)
    return int((~mask).sum()), int(mask.sum())
