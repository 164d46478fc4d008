"""Judged query sets read from public relevance formats: the catalog and the graded qrels.

Grades are shifted so that the format's lowest grade ("irrelevant") has gain 0, which is what
NDCG's graded gains should mean; the relevance threshold is shifted with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from shopsearch.catalog.candidates import ProductKey
from shopsearch.datasets import get_loader
from shopsearch.errors import DataFormatError, InvalidInputError
from shopsearch.ingest.validate import validate_frame


@dataclass(frozen=True)
class GradeScale:
    """How a format's grades map to gains: ``gain = grade - offset``; relevant if grade >= t."""

    offset: float
    relevant_at: float


#: Grade scales of the judged formats (Home Depot 1-3 with relevant >= 2.33, CrowdFlower 1-4).
SCALES: dict[str, GradeScale] = {
    "homedepot": GradeScale(offset=1.0, relevant_at=2.33),
    "crowdflower": GradeScale(offset=1.0, relevant_at=3.0),
    "generic": GradeScale(offset=0.0, relevant_at=1.0),
    "wands": GradeScale(offset=0.0, relevant_at=2.0),
    "esci": GradeScale(offset=0.0, relevant_at=2.0),
}

Qrels = dict[str, dict[ProductKey, float]]


@dataclass
class JudgedSet:
    """Queries with graded judgments, and the products they came with."""

    products: pd.DataFrame
    qrels: Qrels
    scale: GradeScale

    @property
    def relevant_threshold(self) -> float:
        """The relevance threshold on shifted grades."""
        return round(self.scale.relevant_at - self.scale.offset, 6)


def read_judged(dataset: str, paths: Sequence[Path], rel_threshold: float | None) -> JudgedSet:
    """Read judgments (and their products) of a judged format."""
    if dataset not in SCALES:
        raise InvalidInputError(
            f"dataset {dataset!r} has no judgments; use one of {', '.join(sorted(SCALES))}"
        )
    data = get_loader(dataset)(list(paths))
    if data.judgments is None or data.judgments.empty:
        raise DataFormatError(f"{', '.join(map(str, paths))} holds no judgments")
    scale = SCALES[dataset]
    if rel_threshold is not None:
        scale = GradeScale(scale.offset, rel_threshold)
    domains = set(data.judgments["domain"].astype(str))
    checked = validate_frame("judgments", data.judgments, domains)
    if checked.rejects:
        first = checked.rejects[0]
        raise DataFormatError(
            f"{len(checked.rejects)} judgment row(s) are invalid; first: {first['file']} row "
            f"{first['row']} field {first['field']}: {first['reason']}"
        )
    qrels: Qrels = {}
    for row in checked.table.to_pylist():
        gain = round(max(float(row["grade"]) - scale.offset, 0.0), 6)
        qrels.setdefault(str(row["query"]), {})[(row["domain"], row["product_id"])] = gain
    products = data.products if data.products is not None else pd.DataFrame()
    return JudgedSet(products, qrels, scale)


def catalog_table(frames: Sequence[pd.DataFrame]) -> pa.Table:
    """One validated products table from several frames (the first row of a key wins)."""
    frame = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    if frame.empty:
        raise DataFormatError("the given files contain no products")
    frame = frame.drop_duplicates(subset=["domain", "product_id"], keep="first")
    domains = set(frame["domain"].astype(str))
    checked = validate_frame("products", frame, domains)
    return checked.table
