"""What the allocator knows: items' logged history, and what a position is worth.

**Objectives** (:data:`OBJECTIVES`): ``clicks`` and ``purchases`` of an item in a request, and
``exposure``: 1 when a *new* item is shown on the page. An item is new when the products table
shows it was created less than ``new_days`` days before the logs begin (a shop knows its launch
dates; the simulator's products table carries ``created_at``). Merchants are not an objective:
the simulated catalog has brands but no merchants.

**State** of an item in a request (:func:`state_features`, ``D`` columns): a constant, whether
it is new, where the ranking put it (``1 / log2(2 + position)``), and its logged history up to
then — impressions, click rate (smoothed towards 4%), sales, and sales of a new item (its
early sales are what makes a new item more attractive later).

**Position** (:class:`PositionModel`): the examination of each position relative to the first,
estimated from the logs as the click rate per position over the first position's (the
position-based click model), and whether it is on the page at all (``page`` positions shown).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopsearch.errors import InvalidInputError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

#: The objectives, in the order of every ``(n, 3)`` reward or weight array.
OBJECTIVES: tuple[str, str, str] = ("clicks", "purchases", "exposure")

#: Names of the state features (columns of :func:`state_features`).
STATE_FEATURES: tuple[str, ...] = (
    "bias",
    "new",
    "ranked",
    "log_impressions",
    "ctr",
    "log_sales",
    "new_log_sales",
)

#: Prior of the smoothed click rate: ``(clicks + PRIOR_CTR * PRIOR_N) / (impressions + PRIOR_N)``.
PRIOR_CTR = 0.04
PRIOR_N = 20.0


def state_features(
    new: Bool, position: npt.ArrayLike, impressions: F64, clicks: F64, sales: F64
) -> F64:
    """``(n, D)`` state features (see the module docstring); ``position`` is 0-based."""
    pos = np.asarray(position, dtype=np.float64)
    log_sales = np.log1p(sales)
    isnew = new.astype(np.float64)
    ctr = (clicks + PRIOR_CTR * PRIOR_N) / (impressions + PRIOR_N)
    return np.column_stack(
        [
            np.ones(pos.size),
            isnew,
            1.0 / np.log2(2.0 + pos),
            np.log1p(impressions) / 5.0,
            ctr / PRIOR_CTR,
            log_sales,
            isnew * log_sales,
        ]
    )


@dataclass
class PositionModel:
    """Relative examination of positions ``0..page-1`` (0 past the page).

    Attributes:
        examination: ``(page,)`` examination relative to position 0, non-increasing.
    """

    examination: F64

    @property
    def page(self) -> int:
        """Positions shown."""
        return int(self.examination.size)

    @classmethod
    def fit(cls, position: I64, clicked: Bool) -> PositionModel:
        """Estimate from logged impressions (0-based positions) and whether each was clicked.

        Raises:
            InvalidInputError: without impressions or clicks.
        """
        if position.size == 0 or not clicked.any():
            raise InvalidInputError(
                "the logs have no clicked impressions; the position model needs some"
            )
        page = int(position.max()) + 1
        shown = np.bincount(position, minlength=page).astype(np.float64)
        clicks = np.bincount(position, weights=clicked.astype(np.float64), minlength=page)
        ctr = (clicks + 1.0) / (shown + 1.0 / max(float(clicked.mean()), 1e-6))
        exam = np.minimum.accumulate(ctr / ctr[0])
        return cls(np.clip(exam, 1e-4, 1.0))

    def features(self, position: npt.ArrayLike) -> tuple[F64, F64]:
        """Examination and on-the-page indicator of 0-based ``position``."""
        pos = np.asarray(position, dtype=np.int64)
        on = (pos >= 0) & (pos < self.page)
        exam = np.where(on, self.examination[np.clip(pos, 0, self.page - 1)], 0.0)
        return exam, on.astype(np.float64)


def phi(x: F64, exam: F64, on: F64) -> F64:
    """Q features of states ``x`` placed where examination is ``exam`` and on-page is ``on``:
    ``[x, x * exam, x * on]``, so ``Q = A(x) + B(x) exam + C(x) on``."""
    return np.concatenate([x, x * exam[:, None], x * on[:, None]], axis=1)


class ItemStats:
    """Per ``(domain, product_id)``: new or not, and logged impressions, clicks and sales.

    Args:
        keys: the items.
        new: whether each is new.
        impressions, clicks, sales: their logged counts.
    """

    def __init__(
        self,
        keys: list[tuple[str, str]],
        new: Bool,
        impressions: F64 | None = None,
        clicks: F64 | None = None,
        sales: F64 | None = None,
    ) -> None:
        n = len(keys)
        self.keys = keys
        self.new = np.asarray(new, dtype=bool)
        self.impressions = np.zeros(n) if impressions is None else impressions.astype(np.float64)
        self.clicks = np.zeros(n) if clicks is None else clicks.astype(np.float64)
        self.sales = np.zeros(n) if sales is None else sales.astype(np.float64)
        self._index = {key: i for i, key in enumerate(keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, keys: list[tuple[str, str]]) -> I64:
        """Row of each key (``-1`` for an unknown item)."""
        return np.array([self._index.get(k, -1) for k in keys], dtype=np.int64)

    def features(self, keys: list[tuple[str, str]], position: npt.ArrayLike) -> F64:
        """State features of ``keys`` ranked at ``position`` (unknown items: established,
        without history)."""
        rows = self.rows(keys)
        known = rows >= 0
        safe = np.maximum(rows, 0)

        def take(values: F64) -> F64:
            out: F64 = np.where(known, values[safe], 0.0)
            return out

        return state_features(
            known & self.new[safe],
            position,
            take(self.impressions),
            take(self.clicks),
            take(self.sales),
        )

    def add(self, keys: list[tuple[str, str]], impressions: F64, clicks: F64, sales: F64) -> None:
        """Add logged counts (unknown keys are ignored)."""
        rows = self.rows(keys)
        ok = rows >= 0
        np.add.at(self.impressions, rows[ok], impressions[ok])
        np.add.at(self.clicks, rows[ok], clicks[ok])
        np.add.at(self.sales, rows[ok], sales[ok])

    def frame(self) -> pd.DataFrame:
        """The stats as a table (columns ``domain, product_id, new, impressions, clicks,
        sales``)."""
        return pd.DataFrame(
            {
                "domain": [k[0] for k in self.keys],
                "product_id": [k[1] for k in self.keys],
                "new": self.new,
                "impressions": self.impressions,
                "clicks": self.clicks,
                "sales": self.sales,
            }
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ItemStats:
        """Read :meth:`frame`'s table."""
        keys = list(zip(frame["domain"].astype(str), frame["product_id"].astype(str), strict=True))
        return cls(
            keys,
            frame["new"].to_numpy(dtype=bool),
            frame["impressions"].to_numpy(dtype=np.float64),
            frame["clicks"].to_numpy(dtype=np.float64),
            frame["sales"].to_numpy(dtype=np.float64),
        )

    def save(self, path: Path) -> None:
        """Write the stats to ``path`` (Parquet)."""
        pq.write_table(pa.Table.from_pandas(self.frame(), preserve_index=False), path)

    @classmethod
    def load(cls, path: Path) -> ItemStats:
        """Read what :meth:`save` wrote."""
        return cls.from_frame(pq.read_table(path).to_pandas())


def save_json(path: Path, data: dict[str, object]) -> None:
    """Write ``data`` as JSON."""
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


__all__ = [
    "OBJECTIVES",
    "STATE_FEATURES",
    "ItemStats",
    "PositionModel",
    "phi",
    "save_json",
    "state_features",
]
