"""Catalog reads and writes: the workspace ``products`` table and the live indexes together.

A write first changes the table (durable, atomic), then the served engine's indexes
incrementally (:meth:`Engine.upsert_products` / :meth:`Engine.delete_products`, which also update
the bundle on disk). A crash between the two leaves the table ahead of the indexes; repeating
the write (it is idempotent) or re-indexing brings them together. Writes are refused with 409
when several worker processes serve, since each has its own in-memory index that the others'
writes would not reach.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from shopsearch.catalog.models import CATEGORY_SEPARATOR
from shopsearch.serve.errors import ApiError
from shopsearch.serve.models import ProductIn
from shopsearch.serve.state import ServerState
from shopsearch.store.atomic import write_parquet
from shopsearch.store.schema import TABLES
from shopsearch.store.tables import new_part_name, table_folder, write_manifest
from shopsearch.store.workspace import Workspace

_READ_ATTEMPTS = 3


def read_product(workspace: Workspace, domain: str, product_id: str) -> dict[str, Any] | None:
    """One stored product with every field (``attributes`` as an object), or ``None``."""
    wanted = (pc.field("domain") == domain) & (pc.field("product_id") == product_id)
    for attempt in range(_READ_ATTEMPTS):
        parts = workspace.parts("products")
        if not parts:
            return None
        try:
            rows = ds.dataset([str(p) for p in parts], format="parquet").to_table(filter=wanted)
        except FileNotFoundError:  # a concurrent write replaced the parts; read the new ones
            if attempt == _READ_ATTEMPTS - 1:
                raise
            continue
        return _shown(rows.to_pylist()[-1]) if rows.num_rows else None
    return None


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "attributes": orjson.loads(row["attributes"] or "{}")}


def _check_writable(state: ServerState) -> None:
    if state.workers > 1:
        raise ApiError(
            409,
            "workers",
            f"catalog writes need a single server process; this server runs {state.workers} "
            "workers, each with its own in-memory index; restart it with --workers 1 to edit "
            "the catalog, or ingest and re-index offline",
        )


def _check_domain(state: ServerState, domain: str) -> None:
    known = {d.domain_id for d in state.domains}
    if domain not in known:
        known = {d.domain_id for d in state.refresh_domains()}
    if domain not in known:
        raise ApiError(
            400,
            "domain",
            f"unknown domain {domain!r}; domains are {', '.join(sorted(known)) or 'none'}; "
            "declare new domains with 'shopsearch ingest'",
        )


def put_product(
    state: ServerState, domain: str, product_id: str, body: ProductIn
) -> dict[str, Any]:
    """Create or replace a product in the table and the live indexes; returns it as stored."""
    _check_writable(state)
    _check_domain(state, domain)
    category = body.category
    if isinstance(category, str):
        category = [p.strip() for p in category.split(CATEGORY_SEPARATOR.strip()) if p.strip()]
    with state.live.changes:
        old = read_product(state.workspace, domain, product_id)
        row = {
            "domain": domain,
            "product_id": product_id,
            "title": body.title,
            "description": body.description,
            "brand": body.brand,
            "category": [c.strip() for c in category if c.strip()],
            "price": body.price,
            "attributes": orjson.dumps(body.attributes).decode(),
            "created_at": old["created_at"] if old else datetime.now(UTC),
            "in_stock": body.in_stock,
        }
        table = pa.Table.from_pylist([row], schema=TABLES["products"])
        state.workspace.upsert("products", table)
        with state.live.writing() as engine:
            engine.upsert_products(table)
    return _shown(row)


def delete_product(state: ServerState, domain: str, product_id: str) -> None:
    """Remove a product from the table and the live indexes.

    Raises:
        ApiError: 404 when there is no such product.
    """
    _check_writable(state)
    with state.live.changes:
        if not _delete_row(state.workspace, domain, product_id):
            raise ApiError(404, "product_id", f"no product {product_id!r} in domain {domain!r}")
        with state.live.writing() as engine:
            engine.delete_products([(domain, product_id)])


def _delete_row(workspace: Workspace, domain: str, product_id: str) -> bool:
    """Rewrite ``products`` without one key, atomically, under the workspace lock."""
    with workspace.lock():
        old_parts = workspace.parts("products")
        table = workspace.table("products")
        hit = pc.and_(pc.equal(table["domain"], domain), pc.equal(table["product_id"], product_id))
        if not pc.any(hit).as_py():
            return False
        rest = table.filter(pc.invert(hit))
        folder = table_folder(workspace, "products")
        parts = []
        if rest.num_rows:
            part = new_part_name()
            write_parquet(folder / part, rest)
            parts.append(part)
        write_manifest(workspace, "products", parts)
        for path in old_parts:
            path.unlink(missing_ok=True)
    return True
