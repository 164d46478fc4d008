"""Reshaping the loaders' rows: first rows per key, concatenation, one row per flag or shown item.

Interactions come from label columns (:func:`flagged`), impressions from lists of shown items
in one cell (:func:`explode_shown`), with 1-based positions per request (:func:`positions`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from shopsearch.datasets._cells import split_list


def objects(values: Iterable[object], index: pd.Index) -> pd.Series:
    """Values of any kind (lists, dicts, None) as an object column aligned with ``index``."""
    return pd.Series(list(values), index=index, dtype=object)


def first_rows(frame: pd.DataFrame, key: str | list[str]) -> pd.DataFrame:
    """The first row of each distinct ``key`` value, in file order."""
    return frame.drop_duplicates(subset=key, keep="first").reset_index(drop=True)


def concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame | None:
    """Concatenate non-empty lists of frames, or ``None`` when there are none."""
    if not frames:
        return None
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    return pd.concat(list(frames), ignore_index=True)


def flagged(
    rows: pd.DataFrame,
    flags: Sequence[tuple[str, pd.Series]],
    values: Mapping[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """Interaction rows from label masks: for each ``(kind, mask)`` the rows where it is set.

    ``value`` is taken from ``values`` for the kinds it names and left missing (the default 0.0)
    for the others.

    Args:
        rows: Source rows (aligned with the masks) carrying the interaction's other columns.
        flags: ``(interaction kind, boolean mask)`` pairs in funnel order.
        values: Optional ``{kind: value column}``, e.g. the purchase value.

    Returns:
        The rows with ``kind`` and ``value`` set, in the order of ``rows``, then funnel order.
    """
    parts = []
    rows = rows.reset_index(drop=True)
    for order, (kind, mask) in enumerate(flags):
        keep = mask.to_numpy(dtype=bool)
        hit = rows[keep].assign(kind=kind, _order=order, _source=rows.index[keep])
        given = values is not None and kind in values
        hit["value"] = values[kind][keep].to_numpy() if values is not None and given else None
        parts.append(hit)
    if not parts:
        return rows.iloc[:0].assign(kind=[], value=[])
    merged = pd.concat(parts, ignore_index=True).sort_values(["_source", "_order"], kind="stable")
    return merged.drop(columns=["_source", "_order"]).reset_index(drop=True)


def positions(request_ids: pd.Series) -> pd.Series:
    """1-based position of each row within its request, in row order."""
    return request_ids.groupby(request_ids, sort=False).cumcount() + 1


def explode_shown(
    rows: pd.DataFrame,
    keep: Sequence[str],
    items: str,
    values: str,
    value_name: str,
    sep: str,
) -> pd.DataFrame:
    """One row per shown item: the ``sep``-separated lists ``items`` and ``values`` of each row
    side by side, as ``product_id`` and ``value_name``, with a 1-based ``position`` per request.

    ``values`` is cut or padded with ``""`` to the length of ``items``; ``keep`` columns (which
    must include ``request_id``, ``_file`` and ``_row``) are repeated on every item.
    """
    shown_items = [split_list(v, sep) for v in rows[items].to_numpy(dtype=object)]
    shown_values = [split_list(v, sep) for v in rows[values].to_numpy(dtype=object)]
    shown_values = [
        vals[: len(its)] + [""] * (len(its) - len(vals))
        for its, vals in zip(shown_items, shown_values, strict=True)
    ]
    lists = rows[list(keep)].copy()
    lists["product_id"] = objects(shown_items, lists.index)
    lists[value_name] = objects(shown_values, lists.index)
    shown = lists.explode(["product_id", value_name], ignore_index=True)
    shown = shown[shown["product_id"].notna()].reset_index(drop=True)
    shown["position"] = positions(shown["request_id"])
    return shown
