"""Ground truth for evaluation: true relevance and purchase propensity of any (request, product).

Each logged request has a row in ``W/ground_truth/requests/*.parquet`` with the need behind it:

    request_id, session_id, user_id, domain, request_number   which request
    category, leaf                                             the wanted leaf category
    brand, brand_code                                          insisted-on brand (null / -1)
    attribute_codes                                            insisted-on value per slot (-1)
    intent                                                     the need as readable JSON
    target_product_id                                          the product the need came from
    query, query_clean                                         as typed; as meant (no
                                                               abbreviation, no typo)
    typo, abbreviated                                          how the typed form differs

Together with the saved world (products' attributes and quality, users' tastes and price
sensitivities, market prices and stock) this answers, for every pair, not only shown ones:

* ``relevance``: grade 0-3 (:func:`shopsearch.simulate.behaviour.grades`);
* ``appetite``: the requesting user's appetite for variety in [0, 1] (0: focused, 1:
  browsing; the satiation of :mod:`shopsearch.simulate.behaviour`);
* ``purchase_propensity``: P(purchase | examined) = P(click) P(cart | click) P(purchase | cart)
  for that user at that product's price in its domain; 0 for a product of another domain than
  the request's (the user cannot buy it there) and for out-of-stock products.

Models must never read this folder; evaluations do, through :class:`GroundTruth`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.simulate.behaviour import Funnel, funnel
from shopsearch.simulate.common import F64, I8, I32, I64
from shopsearch.simulate.persist import load_world
from shopsearch.simulate.sessions import SessionChunk
from shopsearch.simulate.vocab import MAX_SLOTS
from shopsearch.simulate.world import World
from shopsearch.store.workspace import Workspace

#: Sub-folder of the ground truth with one Parquet file per chunk of requests.
REQUESTS_DIR = "requests"

#: Columns of a ground-truth request file.
TRUTH_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("request_number", pa.int32(), nullable=False),
        pa.field("category", pa.list_(pa.string()), nullable=False),
        pa.field("leaf", pa.int32(), nullable=False),
        pa.field("brand", pa.string()),
        pa.field("brand_code", pa.int32(), nullable=False),
        pa.field("attribute_codes", pa.list_(pa.int16(), MAX_SLOTS), nullable=False),
        pa.field("intent", pa.string(), nullable=False),
        pa.field("target_product_id", pa.string(), nullable=False),
        # null in workspaces simulated before the query forms were kept
        pa.field("query", pa.string()),
        pa.field("query_clean", pa.string()),
        pa.field("typo", pa.bool_()),
        pa.field("abbreviated", pa.bool_()),
    ]
)

#: ``(domain, product_id)`` pairs, as a sequence of tuples or an ``(n, 2)`` array.
ProductKeys = Sequence[tuple[str, str]] | npt.NDArray[np.str_] | npt.NDArray[np.object_]


def truth_table(
    world: World, plan: SessionChunk, rows: I64, slot: int, request_ids: pa.Array
) -> pa.Table:
    """Ground-truth rows of request ``slot`` (0-based) of the sessions ``rows`` of a chunk."""
    lex = world.lexicon
    forms = plan.query_forms(world, slot, rows)
    leaf = plan.leaf[rows]
    brand = plan.brand[rows]
    attrs = plan.attrs[rows]
    intents = []
    for lf, br, codes in zip(leaf.tolist(), brand.tolist(), attrs.tolist(), strict=True):
        info = lex.leaves[lf]
        intent: dict[str, str] = {"category": " > ".join(info.path)}
        if br >= 0:
            intent["brand"] = world.brands.names[br]
        for s, code in enumerate(codes[: len(info.slot_names)]):
            if code >= 0:
                intent[info.slot_names[s]] = lex.variants[info.slot_values[s][code]][0]
        intents.append(orjson.dumps(intent).decode())
    paths = pa.array([list(leaf_info.path) for leaf_info in lex.leaves])
    table = pa.table(
        {
            "request_id": request_ids,
            "session_id": pa.array([plan.session_ids[i] for i in rows.tolist()]),
            "user_id": pa.array([world.users.ids[u] for u in plan.user[rows].tolist()]),
            "domain": pa.array([world.domain_ids[m] for m in plan.market[rows].tolist()]),
            "request_number": pa.array(np.full(rows.size, slot + 1, dtype=np.int32)),
            "category": paths.take(pa.array(leaf)),
            "leaf": pa.array(leaf),
            "brand": pa.array(
                [world.brands.names[b] if b >= 0 else None for b in brand.tolist()], pa.string()
            ),
            "brand_code": pa.array(brand),
            "attribute_codes": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(attrs).ravel()), MAX_SLOTS
            ),
            "intent": pa.array(intents, pa.string()),
            "target_product_id": pa.array(world.products.ids).take(pa.array(plan.target[rows])),
            "query": pa.array(forms.typed, pa.string()),
            "query_clean": pa.array(forms.clean, pa.string()),
            "typo": pa.array(forms.typo),
            "abbreviated": pa.array(forms.abbreviated),
        }
    )
    return table.cast(TRUTH_SCHEMA)


class GroundTruth:
    """True relevance and purchase propensity for requests of a simulated world.

    Args:
        world: the simulated world.
        requests: ground-truth request rows (see the module docstring).

    Use :meth:`load` for a simulated workspace.
    """

    def __init__(self, world: World, requests: pa.Table) -> None:
        self.world = world
        self.requests = requests
        self._index = pd.Index(requests.column("request_id").to_pylist())
        users = world.users.index.get_indexer(requests.column("user_id").to_pylist())
        self._user = users.astype(np.int32)
        self._market = np.array(
            [world.market_index[d] for d in requests.column("domain").to_pylist()], dtype=np.int32
        )
        self._leaf = requests.column("leaf").to_numpy().astype(np.int32)
        self._brand = requests.column("brand_code").to_numpy().astype(np.int32)
        codes = requests.column("attribute_codes").combine_chunks()
        self._attrs = np.asarray(codes.flatten()).reshape(-1, codes.type.list_size).astype(np.int16)

    @classmethod
    def load(cls, workspace: Workspace) -> GroundTruth:
        """The ground truth of a simulated workspace (world and every logged request).

        Raises:
            WorkspaceError: the workspace was not made by the simulator.
        """
        folder = workspace.root / "ground_truth"
        if not folder.is_dir():
            raise WorkspaceError(
                f"workspace {workspace.root} has no simulator ground truth; evaluations on "
                "simulated truth need a workspace made by 'shopsearch simulate'"
            )
        world = load_world(folder)
        return cls(world, read_requests(folder))

    @property
    def request_ids(self) -> list[str]:
        """Ids of every request this truth knows."""
        return list(self._index)

    def relevance(self, request_ids: Sequence[str], product_keys: ProductKeys) -> I8:
        """True grade 0-3 of each (request, product) pair (pairs are zipped)."""
        return self.funnel(request_ids, product_keys).grade

    def appetite(self, request_ids: Sequence[str]) -> F64:
        """The requesting user's appetite for variety (0: focused, 1: browsing) per request."""
        out: F64 = self.world.users.variety[self._user[self._requests(request_ids)]]
        return out

    def purchase_propensity(self, request_ids: Sequence[str], product_keys: ProductKeys) -> F64:
        """P(purchase | examined) of each (request, product) pair (pairs are zipped)."""
        return self.funnel(request_ids, product_keys).purchase_propensity

    def funnel(self, request_ids: Sequence[str], product_keys: ProductKeys) -> Funnel:
        """Grade and click / cart / purchase probabilities given examination, per pair.

        Raises:
            InvalidInputError: for an unknown request id or product key, or unequal lengths.
        """
        requests = self._requests(request_ids)
        market, items = self._products(product_keys)
        if market.size != requests.size:
            raise InvalidInputError(
                f"got {requests.size} request ids and {market.size} product keys; "
                "give one product key per request id"
            )
        out = funnel(
            self.world,
            self._user[requests],
            market,
            self._leaf[requests],
            self._brand[requests],
            self._attrs[requests],
            items,
        )
        same = market == self._market[requests]
        return Funnel(
            grade=out.grade,
            click=out.click,
            cart=np.where(same, out.cart, 0.0),
            purchase=np.where(same, out.purchase, 0.0),
        )

    def _requests(self, request_ids: Sequence[str]) -> I64:
        found = self._index.get_indexer(pd.Index(list(request_ids), dtype=object))
        if (found < 0).any():
            missing = list(request_ids)[int(np.flatnonzero(found < 0)[0])]
            raise InvalidInputError(
                f"request {missing!r} is not in the ground truth ({self._index.size} requests); "
                "use request ids of the simulated logs"
            )
        out: I64 = found.astype(np.int64)
        return out

    def _products(self, product_keys: ProductKeys) -> tuple[I32, I32]:
        keys = np.asarray(product_keys, dtype=object)
        if keys.size == 0:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
        if keys.ndim != 2 or keys.shape[1] != 2:
            raise InvalidInputError(
                f"product keys of shape {keys.shape} are not (domain, product_id) pairs"
            )
        index = self.world.market_index
        try:
            market = np.array([index[d] for d in keys[:, 0].tolist()], dtype=np.int32)
        except KeyError as exc:
            raise InvalidInputError(
                f"domain {exc.args[0]!r} is not simulated; domains are "
                f"{', '.join(self.world.domain_ids)}"
            ) from None
        items = self.world.products.index.get_indexer(pd.Index(keys[:, 1].tolist(), dtype=object))
        carried = items >= 0
        carried[carried] = self.world.catalog.carried[market[carried], items[carried]]
        if not carried.all():
            bad = int(np.flatnonzero(~carried)[0])
            raise InvalidInputError(
                f"product key ({keys[bad, 0]!r}, {keys[bad, 1]!r}) is not in the simulated "
                "catalog; use (domain, product_id) pairs of the products table"
            )
        return market, items.astype(np.int32)


def read_requests(folder: Path) -> pa.Table:
    """Every ground-truth request row stored under ``folder``."""
    parts = sorted((folder / REQUESTS_DIR).glob("*.parquet"))
    tables = [_conform(pq.read_table(p)) for p in parts]
    return pa.concat_tables([TRUTH_SCHEMA.empty_table(), *tables])


def _conform(table: pa.Table) -> pa.Table:
    """``table`` with every column of :data:`TRUTH_SCHEMA` (missing ones null: older files)."""
    for field in TRUTH_SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(TRUTH_SCHEMA.names).cast(TRUTH_SCHEMA)
