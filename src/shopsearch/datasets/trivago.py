"""trivago RecSys Challenge 2019 session logs (``train.csv``/``test.csv`` or a Parquet copy).

Columns: ``user_id, session_id, timestamp`` (Unix seconds)``, step, action_type, reference,
platform`` (country site, e.g. ``DE``)``, city, device, current_filters`` ('|'-separated)``,
impressions`` ('|'-separated item ids as shown, top first)``, prices`` (same order). A
``clickout item`` row carries the list shown to the user and the clicked item in ``reference``;
the other rows (item image/info/rating/deals interactions, searches, filters, sort changes) are
the user's actions between clickouts.

Mapping:

- domains: one per platform, ``trivago-<platform>`` (``trivago-de``), language the country
  site's main language (``en`` if unknown). Prices are in one currency across all platforms (a
  hotel costs about the same on the JP and the US site); the challenge does not name it, so it is
  taken as EUR, trivago's reporting currency.
- requests: one per clickout, ``request_id`` = ``trivago:<session_id>:<step>``; user, session,
  timestamp (as ISO UTC) from the row; filters ``{"current_filters": ...}`` when filters are
  active. The query is the reference of the session's latest ``search for poi`` / ``search for
  destination`` row while the city stays the same, else the city (hotel search is by place).
- impressions: the shown items at positions 1..n with their shown prices.
- interactions: one click on ``reference`` when it is among the shown items (a clickout is the
  redirect to a booking site; bookings are not logged, so there are no carts or purchases).
- products: one per (platform, item) shown, titled ``item <id>`` (names are not in the data),
  priced at the median of its shown prices on that platform.

Only clickout-derived data is mapped: the other session actions are not tied to a shown list,
and mapping them to clicks would invent clicks. Session history is in the raw file for the
stages that use it. ``device`` is not kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from shopsearch.datasets._cells import json_objects, seconds_to_iso
from shopsearch.datasets._read import CSV, Kind, load_single_kind
from shopsearch.datasets._rows import explode_shown, first_rows, objects
from shopsearch.datasets._schema import DomainRow, domains_frame, finish
from shopsearch.datasets.base import LoadedData
from shopsearch.datasets.registry import LOADERS

FORMAT = "trivago"
CURRENCY = "EUR"
CLICKOUT = "clickout item"
SEARCHES = ("search for poi", "search for destination")
EVENTS = Kind(
    "events",
    (
        "user_id", "session_id", "timestamp", "step", "action_type", "reference",
        "platform", "city", "impressions", "prices",
    ),
    "train.csv, test.csv or events.parquet",
)  # fmt: skip

#: Main language of each trivago country platform (``AA`` is the Arabic-language site).
LANGUAGES = {
    "AA": "ar", "AE": "ar", "AR": "es", "AT": "de", "AU": "en", "BE": "nl", "BG": "bg",
    "BR": "pt", "CA": "en", "CH": "de", "CL": "es", "CN": "zh", "CO": "es", "CZ": "cs",
    "DE": "de", "DK": "da", "EC": "es", "ES": "es", "FI": "fi", "FR": "fr", "GR": "el",
    "HK": "zh", "HR": "hr", "HU": "hu", "ID": "id", "IE": "en", "IL": "he", "IN": "en",
    "IT": "it", "JP": "ja", "KR": "ko", "MX": "es", "MY": "en", "NL": "nl", "NO": "no",
    "NZ": "en", "PE": "es", "PH": "en", "PL": "pl", "PT": "pt", "RO": "ro", "RS": "sr",
    "RU": "ru", "SE": "sv", "SG": "en", "SI": "sl", "SK": "sk", "TH": "th", "TR": "tr",
    "TW": "zh", "UK": "en", "US": "en", "UY": "es", "VN": "vi", "ZA": "en",
}  # fmt: skip


def domain_id(platform: str) -> str:
    """The domain id of a trivago platform code (``DE`` → ``trivago-de``; blank → ``""``)."""
    code = platform.strip().lower()
    return f"trivago-{code}" if code and code != "nan" else ""


@LOADERS.register("trivago")
def load(paths: Sequence[Path]) -> LoadedData:
    """Read trivago session logs into requests, impressions, clicks and products.

    Args:
        paths: One or more trivago session files (CSV or Parquet).

    Returns:
        Domains, products, requests, impressions and interactions.

    Raises:
        DataFormatError: A file is missing, unreadable or lacks the trivago columns.
    """
    _, rows = load_single_kind(paths, FORMAT, EVENTS, CSV)
    rows = rows.assign(domain=rows["platform"].fillna("").astype(str).map(domain_id))
    rows = rows.assign(query=_queries(rows))
    clickouts = rows[rows["action_type"] == CLICKOUT]
    session, step = clickouts["session_id"].astype(str), clickouts["step"].astype(str)
    clickouts = clickouts.assign(
        request_id="trivago:" + session + ":" + step,
        timestamp=seconds_to_iso(clickouts["timestamp"]),
        filters=_filters(clickouts),
    )
    shown = _impressions(clickouts)
    clicked = shown[shown["product_id"] == shown["reference"]].drop_duplicates("request_id")
    products = _products(shown)

    notes = [
        f"{len(clickouts)} clickouts → requests with {len(shown)} impressions and "
        f"{len(clicked)} clicks; query = latest POI/destination search of the session in the "
        "same city, else the city",
        f"{len(rows) - len(clickouts)} other session actions (item interactions, searches, "
        "filters, sort changes) are not mapped: they are not tied to a shown list; read the raw "
        "file for session history",
        f"products are titled 'item <id>' (no names in the data) and priced at the median shown "
        f"price; prices are taken as {CURRENCY} on every platform; device is not kept",
    ]
    referenced = clickouts["reference"].fillna("").astype(str).str.strip() != ""
    missed = int(referenced.sum()) - len(clicked)
    if missed:
        notes.append(f"{missed} clickout(s) on an item not in its shown list got no click")

    platforms = first_rows(rows[rows["domain"] != ""], "platform")
    domains = [
        _domain(str(p), str(f), int(r))
        for p, f, r in zip(
            platforms["platform"], platforms["_file"], platforms["_row"], strict=True
        )
    ]
    return LoadedData(
        format=FORMAT,
        domains=domains_frame(domains),
        products=finish(products, "products"),
        requests=finish(clickouts, "requests"),
        impressions=finish(shown, "impressions"),
        interactions=finish(clicked.assign(kind="click"), "interactions"),
        notes=notes,
    )


def _domain(platform: str, file: str, row: int) -> DomainRow:
    code = platform.strip().upper()
    return DomainRow(
        domain_id(code), f"trivago {code}", LANGUAGES.get(code, "en"), CURRENCY, file, row
    )


def _queries(rows: pd.DataFrame) -> pd.Series:
    """Per row: the latest search reference since the session entered its current city (a run
    of consecutive steps in one city), else the city."""
    step = pd.to_numeric(rows["step"], errors="coerce")
    order = rows.assign(_step=step).sort_values(["session_id", "_step", "_row"], kind="stable")
    session, city = order["session_id"], order["city"].fillna("")
    run = ((session != session.shift()) | (city != city.shift())).cumsum()
    term = order["reference"].where(order["action_type"].isin(SEARCHES))
    term = term.groupby(run, sort=False).ffill()
    return term.fillna(order["city"]).reindex(rows.index)


def _filters(clickouts: pd.DataFrame) -> list[str]:
    if "current_filters" not in clickouts.columns:
        return ["{}"] * len(clickouts)
    values = clickouts["current_filters"].to_numpy(dtype=object)
    return json_objects({"current_filters": v} for v in values)


def _impressions(clickouts: pd.DataFrame) -> pd.DataFrame:
    """One row per shown item of each clickout, with position and shown price."""
    keep = ["request_id", "user_id", "domain", "reference", "timestamp", "_file", "_row"]
    return explode_shown(clickouts, keep, "impressions", "prices", "price", "|")


def _products(shown: pd.DataFrame) -> pd.DataFrame:
    """One product per (domain, item) shown, priced at its median shown price."""
    numeric = shown.assign(_price=pd.to_numeric(shown["price"], errors="coerce"))
    median = numeric.groupby(["domain", "product_id"], sort=False)["_price"].median()
    first = first_rows(shown, ["domain", "product_id"])
    keys = pd.MultiIndex.from_frame(first[["domain", "product_id"]])
    price = median.reindex(keys).to_numpy()
    return first.assign(
        title="item " + first["product_id"].astype(str),
        price=objects((None if pd.isna(p) else float(p) for p in price), first.index),
    )
