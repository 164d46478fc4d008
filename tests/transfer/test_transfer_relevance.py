"""The relevance transfer protocol on a tiny two-shop judged set written here (hashed encoder)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsearch.cli import main
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.options import suite_options
from shopsearch.evaluate.suites.transfer_relevance import (
    GradeMapping,
    TransferRelevanceConfig,
    rmse_with_ci,
    run_transfer_relevance,
)
from shopsearch.progress import Progress
from shopsearch.text.encoders import Encoder, FloatMatrix
from shopsearch.transfer.registry import METHODS, report_name
from shopsearch.transfer.relevance_data import (
    labelled,
    link_products,
    pair_features,
    read_pairs,
    relevance_samples,
    split_queries,
    split_two_shops,
    tokens,
)


class HashWordEncoder(Encoder):
    """Bag of hashed words, L2-normalised: texts sharing words get a high cosine."""

    name = "test-hash-words"

    @property
    def dim(self) -> int:
        return 32

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        return self.encode_items(texts)

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        out = np.full((len(texts), self.dim), 1e-3, np.float32)
        for row, text in enumerate(texts):
            for word in tokens(text):
                out[row, sum(word.encode()) % self.dim] += 1.0
        unit: FloatMatrix = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit


NOUNS = ["lamp", "bulb", "switch", "drill", "saw", "hammer", "paint", "brush", "tile", "shelf"]
COLOURS = ["white", "black", "red", "blue", "steel", "brass"]


def _shop(
    rng: np.random.Generator, nouns: list[str], n_queries: int, first_uid: int
) -> pd.DataFrame:
    """Queries "<colour> <noun>", each with 5 judged products; exact matches graded high."""
    rows = []
    uid = first_uid
    for q in range(n_queries):
        colour, noun = COLOURS[q % len(COLOURS)], nouns[q % len(nouns)]
        for k in range(5):
            match = k % 3  # 0: both words, 1: the noun only, 2: neither
            title_noun = noun if match < 2 else nouns[(q + 1) % len(nouns)]
            title_colour = colour if match == 0 else COLOURS[(q + 2) % len(COLOURS)]
            grade = float(np.clip([3.0, 2.2, 1.2][match] + rng.normal(0, 0.2), 1, 3))
            rows.append(
                {
                    "id": uid,
                    "product_uid": str(uid),
                    "product_title": f"Acme {title_colour} {title_noun} model {uid}",
                    "search_term": f"{colour} {noun} {q}",
                    "relevance": round(grade, 2),
                }
            )
            uid += 1
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def shops(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A Home Depot source file and a generic target (judgments + products, grades 0-2)."""
    root = tmp_path_factory.mktemp("rel-transfer")
    rng = np.random.default_rng(0)
    source = _shop(rng, NOUNS[3:], 60, 1000)
    target = _shop(rng, NOUNS[:3], 40, 5000)
    source.to_csv(root / "source.csv", index=False)
    pd.DataFrame(
        {
            "query": target["search_term"],
            "product_id": target["product_uid"],
            "grade": target["relevance"] - 1.0,
        }
    ).to_csv(root / "judgments.csv", index=False)
    pd.DataFrame({"product_id": target["product_uid"], "title": target["product_title"]}).to_csv(
        root / "products.csv", index=False
    )
    return root / "source.csv", root / "judgments.csv", root / "products.csv"


def test_tokens_strip_plurals() -> None:
    assert tokens("LED Bulbs, 2-pack glass") == ["led", "bulb", "2", "pack", "glass"]


def test_pair_features_match_signals(shops: tuple[Path, Path, Path]) -> None:
    pairs = read_pairs("homedepot", [shops[0]])
    featured = pair_features(pairs, HashWordEncoder(), None)
    exact = featured["grade"] >= 2.6
    assert (
        featured.loc[exact, "matched_share"] > featured.loc[~exact, "matched_share"].mean()
    ).all()
    assert featured["bm25"].ge(0).all()
    by_query = featured.groupby("query")
    assert np.allclose(by_query["price_rel_category"].max(), 0.0)
    assert np.allclose(by_query["price_rel_user"].max(), 0.0)
    assert featured["leaf_match"].between(-1.0001, 1.0001).all()
    # the cosine ranks titles sharing the query's words higher
    assert featured.loc[exact, "leaf_match"].mean() > featured.loc[~exact, "leaf_match"].mean()


def test_features_use_the_cache(shops: tuple[Path, Path, Path], tmp_path: Path) -> None:
    pairs = read_pairs("homedepot", [shops[0]]).head(20)
    first = pair_features(pairs, HashWordEncoder(), tmp_path)
    assert any((tmp_path / HashWordEncoder.name).glob("shard-*.npy"))
    again = pair_features(pairs, HashWordEncoder(), tmp_path)
    np.testing.assert_allclose(first["leaf_match"], again["leaf_match"], rtol=1e-6)


def test_split_queries_is_nested_disjoint_and_seeded() -> None:
    queries = [f"q{i}" for i in range(50)] * 2
    train, test = split_queries(queries, (0.1, 0.2), seed=3)
    assert (len(train[0.1]), len(train[0.2]), len(test)) == (5, 10, 40)
    assert set(train[0.1]) <= set(train[0.2])
    assert not set(train[0.2]) & set(test)
    assert split_queries(queries, (0.1, 0.2), seed=3) == (train, test)
    with pytest.raises(InvalidInputError, match="fraction"):
        split_queries(queries, (1.0,), seed=0)


def test_two_shops_split_by_query_majority() -> None:
    frame = pd.DataFrame(
        {
            "product_uid": ["1", "2", "3", "4", "5", "1"],
            "product_title": [
                "LED bulb",
                "Wood saw",
                "Ceiling fan",
                "Drill",
                "Lamp shade",
                "LED bulb",
            ],
            "search_term": ["bulb", "bulb", "fan", "fan", "lamp", "light"],
            "relevance": [3.0, 1.0, 3.0, 2.0, 2.5, 2.0],
        }
    )
    shops = split_two_shops(frame, "lighting-electrical")
    # "bulb": 1 of 2 in the family (not a strict majority) -> source; "fan": 1 of 2 -> source;
    # "lamp": 1 of 1 -> target; "light": 1 of 1 -> target
    assert set(shops.target["search_term"]) == {"lamp", "light"}
    assert set(shops.source["search_term"]) == {"bulb", "fan"}
    assert shops.summary["products_in_both"] == 1  # product 1 is judged in both shops
    with pytest.raises(InvalidInputError, match="family"):
        split_two_shops(frame, "toys")


def test_samples_label_and_link(shops: tuple[Path, Path, Path]) -> None:
    pairs = read_pairs("homedepot", [shops[0]])
    featured = pair_features(pairs, HashWordEncoder(), None)
    first = str(pairs["product_id"].iloc[0])
    target = labelled(featured.head(3).assign(product_id=["t1", "t2", "t3"]), "target", 1.0, 3.0)
    links = {"t1": first, "t2": "t2"}
    samples = relevance_samples(
        [labelled(featured, "source", 1.0, 3.0), target], links, source="source"
    )
    rows = samples.rows
    assert rows["click"].between(0, 1).all()
    np.testing.assert_allclose(rows["click"], ((rows["grade"] - 1) / 2).clip(0, 1))
    in_source = rows["domain"] == "source"
    assert set(rows.loc[in_source, "product_id"]) == {first, ""}  # linked to: keeps its id
    by_pid = dict(zip(rows.loc[~in_source, "pid"], rows.loc[~in_source, "product_id"], strict=True))
    assert by_pid == {"t1": first, "t2": "t2", "t3": ""}  # a target product takes its link's id
    assert rows["request_id"].nunique() == pairs["query"].nunique() + 1
    assert samples.seq_items.shape == (rows["req"].max() + 1, 1)


def test_products_link_by_id_then_title_then_nearest_title() -> None:
    source = pd.DataFrame(
        {
            "product_id": ["s1", "s2", "s3"],
            "title": ["Brass floor lamp", "LED bulbs, 4-pack", "Cordless drill kit"],
        }
    )
    target = pd.DataFrame(
        {
            "product_id": ["s1", "t2", "t3", "t4"],
            "title": ["Brass floor lamp", "led bulb 4 pack", "Cordless drill kit", "Oak shelf"],
        }
    )
    encoder = HashWordEncoder()
    found = link_products(source, target, encoder, None, min_cosine=0.99)
    # s1: same id; t2: same normalised title (plural s, punctuation); t3: the same title
    # words as s3 after normalising too; t4: nothing near enough
    assert found.links == {"s1": "s1", "t2": "s2", "t3": "s3"}
    assert (found.by_id, found.by_title, found.by_embedding) == (1, 2, 0)
    near = link_products(
        source,
        target.assign(title=[*target["title"][:2], "cordless drill kits set", "Oak shelf"]),
        encoder,
        None,
        min_cosine=0.8,
    )
    assert near.links["t3"] == "s3"
    assert near.by_embedding == 1
    assert "t4" not in near.links


def test_grade_mapping_and_rmse() -> None:
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    mapping = GradeMapping(1.0, 4.0).fit(scores, np.array([0.0, 0.0, 1.0, 1.0]))
    np.testing.assert_allclose(mapping.predict(np.array([0.0, 0.95])), [1.0, 4.0])
    value, ci = rmse_with_ci(
        np.array([1.0, -1.0, 0.0, 0.0]), np.array(["a", "a", "b", "b"]), 200, 0
    )
    assert value == pytest.approx(np.sqrt(0.5))
    assert ci is not None
    assert ci[0] <= value <= ci[1]
    options = {o.flag: o for o in suite_options(TransferRelevanceConfig)}
    fractions = options["--target-train-fraction"]
    assert fractions.parse("0.05, 0.1") == (0.05, 0.1)
    with pytest.raises(InvalidInputError, match="comma list"):
        fractions.parse("ten")


def test_protocol_reports_every_method(shops: tuple[Path, Path, Path]) -> None:
    source, judgments, products = shops
    cfg = TransferRelevanceConfig(
        source_format="homedepot",
        source=[source],
        target_format="generic",
        target=[judgments],
        target_products=[products],
        fractions=(0.25,),
        epochs=2,
        batch_size=64,
        cache_dir=None,
        encoder=HashWordEncoder(),
        n_resamples=50,
    )
    report = run_transfer_relevance(cfg)
    assert (report.suite, report.primary_metric) == ("transfer", "ndcg@10")
    expected = {"baseline/bm25s", "baseline/random", "baseline/zero-shot"} | {
        report_name(m, 0.25) for m in METHODS if m != "zero-shot"
    }
    assert set(report.systems) == expected
    for entry in report.systems.values():
        assert 0.0 < entry["ndcg@10"] <= 1.0
        assert 0.0 <= entry["rmse"] <= 2.0  # target grades 0..2
        assert entry["by_domain"]["target"]["ndcg@10"] == entry["ndcg@10"]
        assert set(entry["ci95"]) == {"ndcg@10", "rmse"}
    versus = report.systems["shopsearch/cdan-w@0.25"]["vs"]
    assert set(versus) == {
        "baseline/zero-shot",
        "baseline/target-only@0.25",
        "baseline/pooled@0.25",
        "baseline/fine-tune@0.25",
        "baseline/lightgbm-pooled@0.25",
        "baseline/bm25s",
    }
    cdan = report.systems["shopsearch/cdan-w@0.25"]
    assert set(cdan["attention"]) == {"source", "target"}  # feature-group attention per shop
    assert sum(cdan["attention"]["target"].values()) == pytest.approx(1.0)
    assert cdan["history"]["all"]  # per-epoch losses
    diff = versus["baseline/pooled@0.25"]
    assert diff["low"] <= diff["ndcg@10_diff"] <= diff["high"]
    assert report.dataset["target_train_queries"] == {"0.25": 10}
    assert report.dataset["target_test_queries"] == 30
    assert report.dataset["shared_queries"] == 0
    # the exact-match signal is easy: BM25 order is far better than random on this data
    assert report.systems["baseline/bm25s"]["ndcg@10"] > 0.8
    assert (
        report.systems["baseline/bm25s"]["ndcg@10"] > report.systems["baseline/random"]["ndcg@10"]
    )


def test_cli_needs_source_and_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "transfer", "--dataset", "relevance", "--report", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    assert "--source FILE and --target FILE" in capsys.readouterr().err


def test_source_holdout_selection_holds_out_only_source_queries() -> None:
    from shopsearch.evaluate.suites.transfer_select import Candidate, select_on_source
    from shopsearch.ranking.samples import Samples

    rows = pd.DataFrame(
        {
            "request_id": [f"s{i // 2}" for i in range(40)] + ["t0", "t0"],
            "pid": [f"p{i % 2}" for i in range(42)],
        }
    )
    is_source = rows["request_id"].str.startswith("s").to_numpy()
    gains = {r: {"p0": 1.0, "p1": 0.0} for r in rows["request_id"]}
    seen: list[set[str]] = []

    def trainer(samples: Samples, candidate: Candidate):  # type: ignore[no-untyped-def]
        seen.append(set(samples.rows["request_id"]))
        flip = candidate.name == "good"
        return lambda held: (held.rows["pid"] == "p0").to_numpy(float) * (1 if flip else -1)

    empty = np.zeros((1, 0))
    samples = Samples(rows, empty.astype(object), empty.astype(object), empty.astype(np.int8),
                      empty.astype(np.float32))  # fmt: skip
    chosen = select_on_source(samples, is_source, [Candidate("bad"), Candidate("good")],
                              trainer, gains, 0.2, seed=0)  # fmt: skip
    assert chosen.chosen.name == "good"
    assert chosen.scores["good"] == pytest.approx(1.0)
    assert "t0" in seen[0]  # target rows always train
    assert len({r for r in rows["request_id"] if r.startswith("s")} - seen[0]) == 4  # 20% held
    with pytest.raises(InvalidInputError, match="share in"):
        select_on_source(samples, is_source, [Candidate("x")], trainer, gains, 1.5, seed=0)


def test_settings_are_chosen_by_cross_validation_over_target_queries(
    shops: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from shopsearch.evaluate.suites.transfer_select import CANDIDATES, REGULARISERS

    source, judgments, products = shops
    cfg = TransferRelevanceConfig(
        source_format="homedepot",
        source=[source],
        target_format="generic",
        target=[judgments],
        target_products=[products],
        fractions=(0.25,),
        methods=("cdan-w", "pgtl"),
        epochs=2,
        batch_size=64,
        cache_dir=None,
        encoder=HashWordEncoder(),
        n_resamples=20,
        select_folds=2,
        plot=tmp_path / "curves.png",
    )
    report = run_transfer_relevance(cfg)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    for method in ("cdan-w", "pgtl"):
        selection = report.systems[f"shopsearch/{method}@0.25"]["selection"]
        assert selection["regularisers"] in [c.name for c in REGULARISERS[method]]
        names = [f"{selection['regularisers']}+{c.name}" for c in CANDIDATES[method]]
        assert list(selection["cv_ndcg@10"]) == names
        assert all(0.0 < v <= 1.0 for v in selection["cv_ndcg@10"].values())
        best = max(selection["cv_ndcg@10"].values())
        assert selection["cv_ndcg@10"][selection["chosen"]] == best
    with pytest.raises(InvalidInputError, match="no more folds than queries"):
        run_transfer_relevance(replace(cfg, select_folds=11))
