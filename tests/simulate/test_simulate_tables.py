"""simulate() writes schema-conforming tables, a funnel in order, and ground truth apart."""

from __future__ import annotations

import orjson
import pyarrow as pa

from shopsearch.simulate import SimulationConfig, SimulationSummary
from shopsearch.store.schema import TABLES
from shopsearch.store.workspace import Workspace


def test_tables_conform_to_the_schema(tiny: tuple[Workspace, SimulationSummary]) -> None:
    workspace, _ = tiny
    for name in ("domains", "products", "requests", "impressions", "interactions"):
        table = workspace.table(name)
        assert table.schema.equals(TABLES[name]), name
        assert table.num_rows > 0, name
        for field in table.schema:
            if not field.nullable:
                assert table.column(field.name).null_count == 0, (name, field.name)


def test_counts_match_the_summary(
    tiny: tuple[Workspace, SimulationSummary], tiny_config: SimulationConfig
) -> None:
    workspace, summary = tiny
    con = workspace.connect()
    assert con.execute("SELECT count(DISTINCT session_id) FROM requests").fetchone() == (
        tiny_config.sessions,
    )
    assert workspace.count("requests") == summary.total.requests
    assert workspace.count("impressions") == summary.total.impressions
    kinds = dict(con.execute("SELECT kind, count(*) FROM interactions GROUP BY kind").fetchall())
    assert kinds["click"] == summary.total.clicks
    assert kinds.get("add_to_cart", 0) == summary.total.carts
    assert kinds.get("purchase", 0) == summary.total.purchases
    assert [d.domain_id for d in workspace.domains()] == ["us", "gb"]


def test_products_are_attribute_rich_and_priced(tiny: tuple[Workspace, SimulationSummary]) -> None:
    workspace, _ = tiny
    products = workspace.table("products").to_pylist()
    assert all(len(p["category"]) == 3 for p in products)
    assert all(p["price"] > 0 for p in products)
    assert all(orjson.loads(p["attributes"]) for p in products)
    assert all(p["title"] and p["description"] and p["brand"] for p in products)
    in_stock = sum(p["in_stock"] for p in products) / len(products)
    assert 0.85 < in_stock < 1.0
    ids = {(p["domain"], p["product_id"]) for p in products}
    shared = {pid for d, pid in ids if d == "us"} & {pid for d, pid in ids if d == "gb"}
    assert len(shared) > 0.5 * len(products) / 2  # markets overlap: same product_id in both


def test_funnel_follows_clicks(tiny: tuple[Workspace, SimulationSummary]) -> None:
    workspace, summary = tiny
    con = workspace.connect()
    assert summary.total.clicks >= summary.total.carts >= summary.total.purchases
    orphans = con.execute(
        """
        SELECT count(*) FROM interactions a
        WHERE a.kind <> 'click' AND NOT EXISTS (
            SELECT 1 FROM interactions c
            WHERE c.kind = 'click' AND c.request_id = a.request_id
              AND c.product_id = a.product_id AND c.timestamp < a.timestamp)
        """
    ).fetchone()
    assert orphans == (0,)
    unshown = con.execute(
        """
        SELECT count(*) FROM interactions a ANTI JOIN impressions i
        ON a.request_id = i.request_id AND a.product_id = i.product_id
        """
    ).fetchone()
    assert unshown == (0,)
    early = con.execute(
        """
        SELECT count(*) FROM interactions a JOIN requests r USING (request_id)
        WHERE a.timestamp <= r.timestamp OR a.user_id <> r.user_id
        """
    ).fetchone()
    assert early == (0,)
    values = con.execute(
        """
        SELECT count(*) FROM interactions a JOIN impressions i USING (request_id, product_id)
        WHERE (a.kind = 'purchase' AND a.value <> i.price)
           OR (a.kind <> 'purchase' AND a.value <> 0)
        """
    ).fetchone()
    assert values == (0,)


def test_impressions_are_complete_lists(tiny: tuple[Workspace, SimulationSummary]) -> None:
    workspace, _ = tiny
    con = workspace.connect()
    bad = con.execute(
        """
        SELECT count(*) FROM (
            SELECT request_id, count(*) n, count(DISTINCT product_id) d, max(position) m
            FROM impressions GROUP BY request_id) WHERE n <> 20 OR d <> 20 OR m <> 20
        """
    ).fetchone()
    assert bad == (0,)
    scores = workspace.table("impressions", ["scores"]).column("scores").to_pylist()
    assert all("bm25" in orjson.loads(s) for s in scores[:500])
    foreign = con.execute(
        """
        SELECT count(*) FROM impressions i JOIN requests r USING (request_id)
        ANTI JOIN products p ON p.domain = r.domain AND p.product_id = i.product_id
        """
    ).fetchone()
    assert foreign == (0,)


def test_requests_spread_over_the_period(
    tiny: tuple[Workspace, SimulationSummary], tiny_config: SimulationConfig
) -> None:
    workspace, _ = tiny
    con = workspace.connect()
    row = con.execute(
        "SELECT epoch_us(min(timestamp)), epoch_us(max(timestamp)), "
        "avg((request_id LIKE '%-1')::int) FROM requests"
    ).fetchone()
    assert row is not None
    low, high, refined = row
    assert (high - low) / 86_400e6 >= tiny_config.days - 3
    assert 0.4 < refined < 0.95  # some sessions refine their query
    filters = set(workspace.table("requests", ["filters"]).column("filters").to_pylist())
    assert filters == {"{}"}


def test_ground_truth_is_kept_apart(tiny: tuple[Workspace, SimulationSummary]) -> None:
    workspace, summary = tiny
    folder = workspace.root / "ground_truth"
    config = orjson.loads((folder / "config.json").read_bytes())
    assert config["config"]["seed"] == 11
    assert config["config"]["behaviour"]["position_bias"]
    for name in ("world.json", "products.parquet", "users.parquet", "catalog.parquet"):
        assert (folder / name).exists(), name
    assert orjson.loads((folder / "summary.json").read_bytes())["total"]["requests"] == (
        summary.total.requests
    )
    assert not (workspace.root / "tables" / "ground_truth").exists()


def test_summary_describes_rates(tiny: tuple[Workspace, SimulationSummary]) -> None:
    _, summary = tiny
    text = summary.describe()
    assert "us" in text
    assert "gb" in text
    assert "CTR" in text
    data = summary.to_dict()
    assert set(data["domains"]) == {"us", "gb"}
    assert abs(sum(data["clicked_position_share"]) - 1.0) < 1e-9
    assert isinstance(pa.scalar(summary.elapsed_seconds).as_py(), float)


def test_the_logging_policy_logs_the_stream_of_a_sample(
    tiny: tuple[Workspace, SimulationSummary],
) -> None:
    """About ``stream_sample`` of the requests have their BM25 candidates in ``stream``, best
    first, and every shown BM25 match of such a request is among them."""
    workspace, _ = tiny
    stream = workspace.table("stream").to_pandas()
    requests = workspace.table("requests").num_rows
    logged = stream["request_id"].nunique()
    assert 0.02 * requests < logged < 0.1 * requests  # stream_sample = 0.05
    assert set(stream["stage"]) == {"retrieve"}
    for _, rows in stream.groupby("request_id"):
        assert rows["position"].tolist() == list(range(1, len(rows) + 1))
        assert rows["score"].is_monotonic_decreasing
    shown = workspace.table("impressions").to_pandas()
    shown = shown[shown["request_id"].isin(set(stream["request_id"]))]
    matched = shown[[orjson.loads(s)["bm25"] > 0 for s in shown["scores"]]]
    pairs = set(zip(stream["request_id"], stream["product_id"], strict=True))
    assert all(
        (r, p) in pairs for r, p in zip(matched["request_id"], matched["product_id"], strict=True)
    )
