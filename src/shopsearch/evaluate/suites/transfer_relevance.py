"""``shopsearch eval transfer --dataset relevance``: relevance transfer from a judged source shop
to a judged target shop with little target data.

Protocol
--------
* **Data.** The source is every judgment of ``--source`` (``--source-format``); the target's
  distinct queries are shuffled (seeded) and split *by query*: the first ``round(f * n)`` are the
  target training part of fraction ``f`` (nested across fractions), every query after the
  largest fraction's is the test part (:func:`~shopsearch.transfer.relevance_data.split_queries`).
* **Samples.** One request per (shop, query), one row per judged product, text-match features
  computed within each shop (:mod:`shopsearch.transfer.relevance_data`: BM25, field matches,
  character 3-gram overlap, MiniLM cosine through the embedding cache), the grade normalised to
  ``[0, 1]`` over the shop's grade range as a soft click label; ``domain`` is ``source`` or
  ``target``.
* **Methods.** Every method of :data:`~shopsearch.transfer.registry.METHODS` is trained by
  :func:`~shopsearch.transfer.protocol.train_transfer` on the source rows plus the target
  training rows (``zero-shot``: source rows only; ``target-only``: target rows only), click loss
  only, no position term (the judged pairs have no position).
* **Metrics on the target test queries.** ``ndcg@10``: each test query's judged products
  re-ranked by the method's score, gains = grade minus the format's lowest grade (as in the
  relevance suite), 95% bootstrap CI over queries. ``rmse``: predicted vs true grade on the
  target's grade scale. A score becomes a grade through an isotonic regression from score to
  normalised grade, fitted on the target training rows the method was trained on (``zero-shot``:
  on the source rows, which is all it sees), then scaled to the target's range ``low + u * (high
  - low)`` (``homedepot`` 1-3, ``crowdflower`` 1-4, ``generic``: the range of the target
  training grades). CI by bootstrap over test queries.
* **Baselines.** ``baseline/bm25s``: the judged products in bm25s order (default parameters,
  English stopwords, titles of the whole target catalog indexed); its rmse mapping is fitted on
  the smallest fraction's target training rows. ``baseline/random``: the judged products in a
  seeded random order (the floor of ``ndcg@10`` on these short judged lists; its rmse is about
  that of predicting the mean training grade). ``baseline/zero-shot`` (no fraction suffix: it
  sees no target label), ``baseline/target-only``, ``baseline/pooled``, ``baseline/fine-tune``
  (the zero-shot DNN trained further on the target rows), ``baseline/lightgbm-pooled``
  (LambdaMART on the pooled rows with the domain as a feature) and the multi-domain baselines,
  suffixed ``@f``.

Every system reports ``by_domain`` (the single ``target`` domain); each ``shopsearch/`` system
also reports ``vs``: its paired bootstrap difference in ``ndcg@10`` against zero-shot,
target-only, pooled, fine-tune, LightGBM-pooled and bm25s (:func:`add_comparisons`).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.evaluate.suites.click_samples import ranked_lists
from shopsearch.evaluate.suites.judged import SCALES
from shopsearch.evaluate.suites.transfer_select import (
    CANDIDATES,
    REGULARISERS,
    Candidate,
    Trainer,
    select,
    select_on_source,
)
from shopsearch.progress import Say
from shopsearch.ranking.click_samples import click_only_config
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import TrainConfig
from shopsearch.text.encoders import Encoder
from shopsearch.transfer.relevance_data import (
    LINK_COSINE,
    grade_range,
    labelled,
    link_products,
    pair_features,
    read_pairs,
    relevance_samples,
    split_queries,
)

if TYPE_CHECKING:  # torch only when a method trains
    from shopsearch.transfer.protocol import TransferScorer

F64 = npt.NDArray[np.float64]

SOURCE, TARGET = "source", "target"
#: Share of the source's queries (at most 1,000) held out to choose regularisers on.
SOURCE_HOLDOUT = 0.1
METRICS = ("ndcg@10",)


@dataclass(kw_only=True)
class TransferRelevanceConfig:
    """Inputs of the relevance transfer protocol.

    Attributes:
        source_format: judged format of the source (``homedepot``, ``crowdflower``, ``generic``).
        source: the source judgment files.
        target_format: judged format of the target.
        target: the target judgment files.
        target_products: products files giving the target's titles (generic format).
        fractions: target training fractions (each in (0, 1)).
        methods: transfer methods to train (default: every method).
        epochs: most epochs per model (early stopping on a by-request validation split).
        batch_size: rows (judged pairs, the impressions here) per training step.
        patience: epochs without validation improvement before stopping.
        cache_dir: embedding cache root (``None``: no cache).
        link_cosine: least MiniLM title cosine that links a target product to its nearest
            source product (see :func:`~shopsearch.transfer.relevance_data.link_products`).
        plot: write a learning-curve PNG here: NDCG@10 against the target fraction for every
            method (zero-shot and bm25s as flat lines).
        warm_start: train the joint models (CDAN-W, PGTL, ...) on the source rows first.
        select_folds: with 2 or more, CDAN-W's and PGTL's regularisers are chosen on held-out
            source queries (:func:`~.transfer_select.select_on_source`) and their warm start by
            cross-validation over this many folds of the target's training queries
            (:func:`~.transfer_select.select`); 0: their defaults.
        model_kwargs: per method, constructor arguments of its model (ablations, e.g.
            ``{"cdan-w": {"wasserstein_weight": 0.0}}``).
        encoder: the sentence encoder (default MiniLM, loaded offline).
        n_resamples: bootstrap resamples of the CIs.
        seed: seed of the query split, training and bootstraps.
    """

    source_format: Annotated[
        str, option("Judged format of --source: homedepot, crowdflower or generic")
    ] = "homedepot"
    source: Annotated[list[Path], option("Source judgments file")]
    target_format: Annotated[
        str, option("Judged format of --target: crowdflower, generic or homedepot")
    ] = "generic"
    target: Annotated[list[Path], option("Target judgments file")]
    target_products: Annotated[list[Path], option("Target products file, generic format")] = field(
        default_factory=list
    )
    fractions: Annotated[
        tuple[float, ...],
        option("Comma list of target training fractions", flags=("--target-train-fraction",)),
    ] = (0.1,)
    methods: Annotated[
        tuple[str, ...], option("Comma list of transfer methods", default_text="every method")
    ] = ()
    epochs: Annotated[int, option("Most training epochs per model")] = 20
    batch_size: Annotated[int, option("Impressions per training step")] = 256
    patience: int = 3
    cache_dir: Annotated[Path | None, option("Embedding cache, content-hashed and reused")] = Path(
        ".shopsearch-cache"
    )
    link_cosine: Annotated[
        float,
        option(
            "Least MiniLM title cosine linking a target product to its nearest source product, "
            "after id and normalised-title links",
            low=-1.0,
            high=1.0,
        ),
    ] = LINK_COSINE
    plot: Annotated[Path | None, option("Learning-curve PNG of NDCG@10 per target fraction")] = None
    warm_start: bool = False
    select_folds: Annotated[
        int,
        option(
            "Choose CDAN-W's and PGTL's regularisers on held-out source queries and their warm "
            "start by cross-validation over this many folds of the target's training queries "
            "(0: their defaults)",
            low=0,
        ),
    ] = 0
    model_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    encoder: Encoder | None = None
    n_resamples: int = 1000
    seed: Annotated[int, option("Seed of subsampling, training and bootstrap")] = 0


def _qrels(rows: pd.DataFrame, offset: float) -> dict[str, dict[str, float]]:
    """``{request_id: {product_id: grade - offset}}`` of the rows (gains floored at 0)."""
    qrels: dict[str, dict[str, float]] = {}
    for request, product, grade in zip(rows["request_id"], rows["pid"], rows["grade"], strict=True):
        qrels.setdefault(str(request), {})[product] = round(max(float(grade) - offset, 0.0), 6)
    return qrels


class GradeMapping:
    """Score → grade: isotonic regression to the normalised grade, scaled to ``low..high``."""

    def __init__(self, low: float, high: float) -> None:
        self.low = low
        self.high = high

    def fit(self, scores: F64, labels: F64) -> GradeMapping:
        """Fit on training scores and their normalised grades (``[0, 1]``)."""
        from sklearn.isotonic import IsotonicRegression

        if len(scores) == 0:
            raise InvalidInputError("no training rows to fit the score-to-grade mapping on")
        self.model_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self.model_.fit(scores, labels)
        return self

    def predict(self, scores: F64) -> F64:
        """Predicted grades on the ``low..high`` scale."""
        unit = np.asarray(self.model_.predict(scores), np.float64)
        out: F64 = self.low + unit * (self.high - self.low)
        return out


def rmse_with_ci(
    errors: F64, groups: npt.NDArray[Any], n_resamples: int, seed: int
) -> tuple[float, tuple[float, float] | None]:
    """RMSE of ``errors`` over all rows and its percentile bootstrap CI over ``groups``."""
    value = float(math.sqrt(np.mean(errors**2)))
    if not n_resamples:
        return value, None
    codes, uniques = pd.factorize(pd.Series(groups))
    sq = np.bincount(codes, weights=errors**2, minlength=len(uniques))
    count = np.bincount(codes, minlength=len(uniques)).astype(np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(uniques), size=(n_resamples, len(uniques)))
    boot = np.sqrt(sq[picks].sum(axis=1) / count[picks].sum(axis=1))
    low, high = np.percentile(boot, [2.5, 97.5])
    return value, (float(low), float(high))


def bm25s_scores(catalog: pd.DataFrame, rows: pd.DataFrame) -> F64:
    """bm25s scores (default parameters, English stopwords) of each row's (query, product).

    ``catalog`` (``product_id, title``) is indexed whole; a row (``query``, ``pid``) scores its
    product's score for its query (0 when the query has no indexed token).
    """
    import bm25s

    products = catalog.drop_duplicates("product_id").reset_index(drop=True)
    position = pd.Index(products["product_id"].astype(str))
    tokens = bm25s.tokenize(
        products["title"].astype(str).tolist(),
        stopwords="en",
        return_ids=False,
        show_progress=False,
    )
    model = bm25s.BM25()
    with contextlib.redirect_stderr(io.StringIO()):
        model.index(tokens, show_progress=False)
    vocab = set(model.vocab_dict)
    out = np.zeros(len(rows))
    doc = position.get_indexer(pd.Index(rows["pid"].astype(str)))
    for query, idx in rows.groupby("query", sort=False).indices.items():
        words = bm25s.tokenize([str(query)], stopwords="en", return_ids=False, show_progress=False)
        known = [w for w in words[0] if w in vocab]
        if known:
            out[idx] = model.get_scores(known)[doc[idx]]
    return out


@dataclass
class _Setting:
    """Everything one fraction's training needs."""

    fraction: float
    train: Samples
    test: Samples
    target_rows: npt.NDArray[np.bool_]
    low: float
    high: float


def run_transfer_relevance(cfg: TransferRelevanceConfig, say: Say | None = None) -> Report:
    """Run the protocol of the module docstring and return its report."""
    from shopsearch.transfer.protocol import train_transfer
    from shopsearch.transfer.registry import METHODS, check_method, report_name

    tell = say or (lambda _message: None)
    methods = tuple(check_method(m) for m in (cfg.methods or METHODS))
    if cfg.target_format not in SCALES:
        raise InvalidInputError(f"--target-format {cfg.target_format!r} has no grade scale")
    offset = SCALES[cfg.target_format].offset
    source_scale = SCALES.get(cfg.source_format)
    fractions = tuple(sorted(set(cfg.fractions)))
    report = Report(
        suite="transfer",
        primary_metric=TransferRelevanceSuite.primary_metric,
        config={
            "dataset": "relevance",
            "source_format": cfg.source_format,
            "source": cfg.source,
            "target_format": cfg.target_format,
            "target": cfg.target,
            "target_products": cfg.target_products,
            "target_train_fractions": list(fractions),
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "patience": cfg.patience,
            "seed": cfg.seed,
            "labels": "grade normalised to [0, 1] over the shop's range, as a soft click label",
            "gain": f"target grade - {offset:g}",
            "rmse_mapping": "isotonic score -> normalised grade on the method's target training "
            "rows (zero-shot: source rows), scaled to the target range",
            "position_bias": "none",
            "warm_start": cfg.warm_start,
            "select_folds": cfg.select_folds,
            "model_kwargs": cfg.model_kwargs,
        },
    )
    with report.timer("read"):
        tell("reading judgments")
        source = read_pairs(cfg.source_format, cfg.source)
        target = read_pairs(cfg.target_format, cfg.target, cfg.target_products)
        train_queries, test_queries = split_queries(target["query"].tolist(), fractions, cfg.seed)
    encoder = cfg.encoder
    if encoder is None:
        from shopsearch.text.encoders import MiniLMEncoder

        encoder = MiniLMEncoder()
    with report.timer("features"):
        tell(f"features of {len(source)} source and {len(target)} target pairs")
        source_f = pair_features(source, encoder, cfg.cache_dir)
        target_f = pair_features(target, encoder, cfg.cache_dir)
    src_low, src_high = grade_range(cfg.source_format, source["grade"])
    source_offset = source_scale.offset if source_scale is not None else src_low
    source_rows = labelled(source_f, SOURCE, src_low, src_high)
    with report.timer("links"):
        links = link_products(source, target, encoder, cfg.cache_dir, cfg.link_cosine)
    is_test = target_f["query"].isin(set(test_queries)).to_numpy()
    test_pairs = target_f[is_test]
    settings: list[_Setting] = []
    for fraction in fractions:
        chosen = target_f["query"].isin(set(train_queries[fraction])).to_numpy()
        low, high = grade_range(cfg.target_format, target_f.loc[chosen, "grade"])
        train = relevance_samples(
            [source_rows, labelled(target_f[chosen], TARGET, low, high)], links.links, SOURCE
        )
        test = relevance_samples([labelled(test_pairs, TARGET, low, high)], links.links, SOURCE)
        is_target = (train.rows["domain"] == TARGET).to_numpy()
        settings.append(_Setting(fraction, train, test, is_target, low, high))
    test_rows = settings[0].test.rows
    qrels = _qrels(test_rows, offset)
    groups = test_rows["request_id"].to_numpy(object)
    true_grade = test_rows["grade"].to_numpy(np.float64)
    report.dataset = {
        "source_queries": int(source["query"].nunique()),
        "source_pairs": len(source),
        "source_products": int(source["product_id"].nunique()),
        "target_queries": int(target["query"].nunique()),
        "target_pairs": len(target),
        "target_products": int(target["product_id"].nunique()),
        "target_train_queries": {f"{f:g}": len(train_queries[f]) for f in fractions},
        "target_train_pairs": {f"{s.fraction:g}": int(s.target_rows.sum()) for s in settings},
        "target_test_queries": len(test_queries),
        "target_test_pairs": len(test_rows),
        "shared_queries": len(set(source["query"]) & set(target["query"])),
        "shared_products": links.by_id,
        "linked_products": {
            "by_id": links.by_id,
            "by_title": links.by_title,
            "by_embedding": links.by_embedding,
            "min_cosine": cfg.link_cosine,
        },
        "target_grade_range": [settings[0].low, settings[0].high],
    }

    per_query: dict[str, F64] = {}

    def add(name: str, score: F64, mapping: GradeMapping, extra: Mapping[str, Any]) -> None:
        evaluation = evaluate_run(
            ranked_lists(test_rows.assign(product_id=test_rows["pid"]), score),
            qrels,
            metrics=METRICS,
            n_resamples=cfg.n_resamples,
            seed=cfg.seed,
        )
        rmse, ci = rmse_with_ci(
            mapping.predict(score) - true_grade, groups, cfg.n_resamples, cfg.seed
        )
        per_query[name] = evaluation.per_query["ndcg@10"]
        metrics = {**evaluation.metrics, "rmse": rmse}
        intervals = dict(evaluation.ci)
        if ci is not None:
            intervals["rmse"] = ci
        report.add_system(
            name, metrics, intervals or None, {"by_domain": {TARGET: metrics}, **extra}
        )
        tell(f"{name}: ndcg@10={metrics['ndcg@10']:.4f} rmse={rmse:.4f}")

    with report.timer("baseline/bm25s"):
        catalog = target[["product_id", "title"]]
        first = settings[0]
        train_target = first.train.rows[first.target_rows]
        mapping = GradeMapping(first.low, first.high).fit(
            bm25s_scores(catalog, train_target), train_target["click"].to_numpy(np.float64)
        )
        add("baseline/bm25s", bm25s_scores(catalog, test_rows), mapping, {})
    with report.timer("baseline/random"):
        rng = np.random.default_rng(cfg.seed)
        mapping = GradeMapping(first.low, first.high).fit(
            rng.random(len(train_target)), train_target["click"].to_numpy(np.float64)
        )
        add("baseline/random", rng.random(len(test_rows)), mapping, {})

    for setting in settings:
        train_cfg = replace(
            click_only_config(cfg.epochs, cfg.seed),
            batch_size=cfg.batch_size,
            patience=cfg.patience,
        )
        feature_encoder = FeatureEncoder(setting.train.seq_kinds.shape[1]).fit(setting.train)
        encoded = (feature_encoder, feature_encoder.transform(setting.train))
        for method in methods:
            if method == "zero-shot" and setting is not settings[0]:
                continue  # sees no target label: trained once
            name = report_name(method, None if method == "zero-shot" else setting.fraction)
            setting_of = Candidate("given", cfg.warm_start, cfg.model_kwargs.get(method, {}))
            extra: dict[str, Any] = {}
            if cfg.select_folds and method in CANDIDATES:
                trainer = _trainer(method, feature_encoder, train_cfg)
                from_source = ~setting.target_rows
                tell(f"choosing {name}'s regularisers on held-out source queries")
                with report.timer(f"select/{name}"):
                    regularised = select_on_source(
                        setting.train,
                        from_source,
                        REGULARISERS[method],
                        trainer,
                        _qrels(setting.train.rows[from_source], source_offset),
                        SOURCE_HOLDOUT,
                        cfg.seed,
                    ).chosen
                    tell(f"cross-validating {name} over {cfg.select_folds} folds of target queries")
                    candidates = [
                        replace(c, name=f"{regularised.name}+{c.name}",
                                model_kwargs={**regularised.model_kwargs, **c.model_kwargs})
                        for c in CANDIDATES[method]
                    ]  # fmt: skip
                    selection = select(
                        setting.train,
                        setting.target_rows,
                        candidates,
                        trainer,
                        _qrels(setting.train.rows[setting.target_rows], offset),
                        cfg.select_folds,
                        cfg.seed,
                    )
                setting_of = selection.chosen
                extra["selection"] = {
                    "regularisers": regularised.name,
                    "chosen": setting_of.name,
                    "cv_ndcg@10": selection.scores,
                }
            tell(f"training {name}")
            with report.timer(f"train/{name}"):
                scorer = train_transfer(
                    method,
                    setting.train,
                    [SOURCE],
                    [TARGET],
                    train_cfg,
                    model_kwargs=setting_of.model_kwargs,
                    position_bias="none",
                    encoded=encoded,
                    warm_start=setting_of.warm_start,
                )
            fit_rows = ~setting.target_rows if method == "zero-shot" else setting.target_rows
            fit_samples = setting.train.subset(fit_rows)
            mapping = GradeMapping(setting.low, setting.high).fit(
                scorer.score(fit_samples), fit_samples.rows["click"].to_numpy(np.float64)
            )
            add(name, scorer.score(setting.test), mapping, {**diagnostics(scorer), **extra})
    add_comparisons(report, per_query, "ndcg@10", cfg.n_resamples, cfg.seed)
    if cfg.plot is not None:
        report.config["plot"] = str(learning_curves(report, cfg.plot))
    return report


def learning_curves(report: Report, path: Path) -> Path:
    """A PNG of each method's NDCG@10 (95% CI bars) against the target's training fraction;
    systems without a fraction (zero-shot, bm25s, random) are flat lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[tuple[float, float, float, float]]] = {}
    flat: dict[str, float] = {}
    for name, entry in report.systems.items():
        value = float(entry["ndcg@10"])
        if "@" not in name:
            flat[name] = value
            continue
        method, fraction = name.rsplit("@", 1)
        low, high = entry.get("ci95", {}).get("ndcg@10", (value, value))
        curves.setdefault(method, []).append((float(fraction), value, low, high))
    fig, ax = plt.subplots(figsize=(8, 5))
    for method, points in sorted(curves.items()):
        points.sort()
        x, y = [p[0] for p in points], [p[1] for p in points]
        errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ours = method.startswith("shopsearch/")
        ax.errorbar(x, y, yerr=errors, marker="*" if ours else "o", capsize=2,
                    linewidth=2 if ours else 1, label=method.split("/", 1)[1])  # fmt: skip
    for name, value in flat.items():
        ax.axhline(value, linestyle="--", linewidth=1, color="grey")
        ax.annotate(name.split("/", 1)[1], (0, value), xycoords=("axes fraction", "data"),
                    textcoords="offset points", xytext=(4, 2), fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("share of the target's queries trained on")
    ax.set_ylabel("NDCG@10 on the target's test queries (95% CI)")
    ax.set_title("Transfer learning curves")
    ax.legend(fontsize=7, ncol=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _trainer(method: str, encoder: FeatureEncoder, cfg: TrainConfig) -> Trainer:
    """Cross-validation's trainer: ``method`` with a candidate's settings on some rows."""
    from shopsearch.transfer.protocol import train_transfer

    def train(samples: Samples, candidate: Candidate) -> Callable[[Samples], F64]:
        scorer = train_transfer(
            method,
            samples,
            [SOURCE],
            [TARGET],
            cfg,
            model_kwargs=candidate.model_kwargs,
            position_bias="none",
            encoded=(encoder, encoder.transform(samples)),
            warm_start=candidate.warm_start,
        )
        return scorer.score

    return train


def diagnostics(scorer: TransferScorer) -> dict[str, Any]:
    """What a trained method reports beside its metrics: the kept epoch and the per-epoch
    losses of each training phase, and CDAN-W's mean attention per feature group per domain."""
    out: dict[str, Any] = {
        "best_epoch": {k: v.get("best_epoch") for k, v in scorer.info.items()},
        "history": {k: v.get("history") for k, v in scorer.info.items()},
    }
    inner = getattr(scorer.model, "inner", scorer.model)
    importances = getattr(inner, "domain_importances", None)
    if callable(importances):
        names = scorer.encoder.sparse_vocab_["domain"]
        out["attention"] = {
            names[d - 1] if 0 < d <= len(names) else "(unknown)": weights
            for d, weights in importances().items()
        }
    return out


def add_comparisons(
    report: Report, per_query: Mapping[str, F64], metric: str, n_resamples: int, seed: int
) -> None:
    """Add ``vs`` to each ``shopsearch/`` system: its paired bootstrap difference in ``metric``
    against ``baseline/zero-shot``, ``baseline/target-only``, ``baseline/pooled``,
    ``baseline/fine-tune`` and ``baseline/lightgbm-pooled`` at the same fraction, and against
    ``baseline/bm25s`` (``{"diff", "low", "high", "p_value"}`` per baseline; queries resampled
    jointly)."""
    from shopsearch.evaluate.metrics import paired_bootstrap_diff

    for name in per_query:
        if not name.startswith("shopsearch/"):
            continue
        suffix = name[name.index("@") :] if "@" in name else ""
        versus: dict[str, dict[str, float]] = {}
        for other in (
            "baseline/zero-shot",
            "baseline/zero-shot" + suffix,
            "baseline/target-only" + suffix,
            "baseline/pooled" + suffix,
            "baseline/fine-tune" + suffix,
            "baseline/lightgbm-pooled" + suffix,
            "baseline/bm25s",
        ):
            if other in per_query and other not in versus:
                test = paired_bootstrap_diff(
                    per_query[name], per_query[other], n_resamples=max(n_resamples, 1), seed=seed
                )
                versus[other] = {
                    f"{metric}_diff": test.mean_diff,
                    "low": test.low,
                    "high": test.high,
                    "p_value": test.p_value,
                }
        if versus:
            report.systems[name]["vs"] = versus


@SUITES.register()
class TransferRelevanceSuite(Suite[TransferRelevanceConfig]):
    """Relevance transfer between two judged shops: NDCG@10 and RMSE on the target's test
    queries for every transfer method, bm25s and zero-shot.

    Example: shopsearch eval transfer --dataset relevance --source-format homedepot --source
    hd.csv --target-format generic --target t.csv --target-products p.csv
    --target-train-fraction 0.1 --report r.json
    """

    name = "transfer/relevance"
    config_type = TransferRelevanceConfig
    primary_metric = "ndcg@10"

    def run(self, config: TransferRelevanceConfig, say: Say) -> Report:
        """:func:`run_transfer_relevance`."""
        return run_transfer_relevance(config, say)


__all__ = [
    "GradeMapping",
    "TransferRelevanceConfig",
    "TransferRelevanceSuite",
    "add_comparisons",
    "bm25s_scores",
    "diagnostics",
    "learning_curves",
    "rmse_with_ci",
    "run_transfer_relevance",
]
