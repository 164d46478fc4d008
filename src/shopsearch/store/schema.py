"""Columnar schema of every workspace table, and the schema version stored with a workspace.

Nested values that are free-form maps (product attributes, request filters, per-stage scores)
are stored as JSON object strings so every tool (DuckDB, pandas, Arrow) reads them the same way.
Timestamps are UTC microseconds. A category path is a list of strings, root first.
"""

from __future__ import annotations

import pyarrow as pa

#: Bump when a table's columns change; a workspace of another version refuses to open.
SCHEMA_VERSION = 1

TIMESTAMP = pa.timestamp("us", tz="UTC")

TABLES: dict[str, pa.Schema] = {
    "domains": pa.schema(
        [
            pa.field("domain_id", pa.string(), nullable=False),
            pa.field("name", pa.string(), nullable=False),
            pa.field("language", pa.string(), nullable=False),
            pa.field("currency", pa.string(), nullable=False),
        ]
    ),
    "products": pa.schema(
        [
            pa.field("domain", pa.string(), nullable=False),
            pa.field("product_id", pa.string(), nullable=False),
            pa.field("title", pa.string(), nullable=False),
            pa.field("description", pa.string(), nullable=False),
            pa.field("brand", pa.string(), nullable=False),
            pa.field("category", pa.list_(pa.string()), nullable=False),
            pa.field("price", pa.float64()),
            pa.field("attributes", pa.string(), nullable=False),
            pa.field("created_at", TIMESTAMP, nullable=False),
            pa.field("in_stock", pa.bool_(), nullable=False),
        ]
    ),
    "requests": pa.schema(
        [
            pa.field("request_id", pa.string(), nullable=False),
            pa.field("session_id", pa.string()),
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("domain", pa.string(), nullable=False),
            pa.field("query", pa.string(), nullable=False),
            pa.field("filters", pa.string(), nullable=False),
            pa.field("timestamp", TIMESTAMP, nullable=False),
        ]
    ),
    "impressions": pa.schema(
        [
            pa.field("request_id", pa.string(), nullable=False),
            pa.field("product_id", pa.string(), nullable=False),
            pa.field("position", pa.int32(), nullable=False),
            pa.field("price", pa.float64()),
            pa.field("scores", pa.string(), nullable=False),
        ]
    ),
    "interactions": pa.schema(
        [
            pa.field("request_id", pa.string(), nullable=False),
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("product_id", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("timestamp", TIMESTAMP, nullable=False),
            pa.field("value", pa.float64(), nullable=False),
        ]
    ),
    # The candidates each pipeline stage passed on, for a sample of searches (the stream:
    # what pre-ranking learns from, beside what was shown); ``position`` is 1-based.
    "stream": pa.schema(
        [
            pa.field("request_id", pa.string(), nullable=False),
            pa.field("domain", pa.string(), nullable=False),
            pa.field("stage", pa.string(), nullable=False),
            pa.field("product_id", pa.string(), nullable=False),
            pa.field("position", pa.int32(), nullable=False),
            pa.field("score", pa.float64(), nullable=False),
        ]
    ),
    "judgments": pa.schema(
        [
            pa.field("domain", pa.string(), nullable=False),
            pa.field("query", pa.string(), nullable=False),
            pa.field("product_id", pa.string(), nullable=False),
            pa.field("grade", pa.float64(), nullable=False),
        ]
    ),
}

#: Columns that identify a row; re-ingesting a row with the same key replaces it.
UPSERT_KEYS: dict[str, tuple[str, ...]] = {
    "domains": ("domain_id",),
    "products": ("domain", "product_id"),
    "judgments": ("domain", "query", "product_id"),
}


def empty_table(name: str) -> pa.Table:
    """An empty table with the schema of ``name``."""
    return TABLES[name].empty_table()
