"""Transfer methods by name: cross-domain models and single-model training regimes.

=================  ===========================  =========================================
name               report name                  what
=================  ===========================  =========================================
``cdan-w``         ``shopsearch/cdan-w``        cross-domain attention network with
                                                Wasserstein regularisers (Qiu et al.,
                                                CIKM 2019), :mod:`.cdan_w`
``pgtl``           ``shopsearch/pgtl``          prior-guided transfer learning (Li et al.,
                                                AAAI 2022), :mod:`.pgtl`
``shared-bottom``  ``baseline/shared-bottom``   shared MLP + per-domain towers
``star``           ``baseline/star``            STAR (Sheng et al., CIKM 2021)
``mmoe-domain``    ``baseline/mmoe-domain``     MMoE with per-domain gates
``seq-md``         ``shopsearch/seq-md``        SEQ+MD with its market mask (the funnel as a
                                                GRU sequence; market-driven features masked
                                                per market), :mod:`~shopsearch.ranking.
                                                models.seq_md`
``seq-md-nomask``  ``shopsearch/seq-md-nomask`` the same without the market mask (ablation)
``target-only``    ``baseline/target-only``     a DNN per target domain, target rows only
``pooled``         ``baseline/pooled``          one DNN on all rows, domain not an input
``zero-shot``      ``baseline/zero-shot``       one DNN on source rows, domain not an input
``fine-tune``      ``baseline/fine-tune``       the zero-shot DNN trained further on the
                                                target rows (a tenth of the learning rate)
``lightgbm-        ``baseline/lightgbm-pooled`` LightGBM LambdaMART on all rows, the domain
pooled``                                        a categorical feature
=================  ===========================  =========================================

The joint models are :class:`~shopsearch.ranking.base.RankingModel` classes trained jointly on
every domain (``JOINT_MODELS``, and ``ABLATIONS``: ``seq-md-nomask`` is ``seq-md`` with
``use_market_mask=False``); they are in the ranking model registry, so ``shopsearch train
--stage ranking --model cdan-w`` serves them. The others are *regimes* (``REGIMES``): the
``dnn`` baseline trained on chosen rows, and LightGBM on the pooled rows.
"""

from __future__ import annotations

from shopsearch.errors import InvalidInputError

#: Joint multi-domain models (names in :data:`~shopsearch.ranking.registry.RANKING_MODELS`).
JOINT_MODELS: tuple[str, ...] = (
    "cdan-w",
    "pgtl",
    "shared-bottom",
    "star",
    "mmoe-domain",
    "seq-md",
)

#: Method name → (joint model, constructor arguments) of the joint models' ablations.
ABLATIONS: dict[str, tuple[str, dict[str, bool]]] = {
    "seq-md-nomask": ("seq-md", {"use_market_mask": False}),
}

#: Training regimes of a plain DNN (what data it sees, whether the domain is an input).
REGIMES: tuple[str, ...] = ("target-only", "pooled", "zero-shot", "fine-tune", "lightgbm-pooled")

#: Every method, in report order.
METHODS: tuple[str, ...] = (
    "cdan-w",
    "pgtl",
    *REGIMES,
    "shared-bottom",
    "star",
    "mmoe-domain",
    "seq-md",
    "seq-md-nomask",
)

_OURS = ("cdan-w", "pgtl", "seq-md", "seq-md-nomask")


def check_method(name: str) -> str:
    """``name`` if it is a transfer method, else a clear error listing them."""
    if name not in METHODS:
        raise InvalidInputError(
            f"transfer method {name!r} is not known; use one of {', '.join(METHODS)}"
        )
    return name


def report_name(method: str, fraction: float | None = None) -> str:
    """``shopsearch/cdan-w`` / ``baseline/pooled``, with ``@fraction`` when given."""
    check_method(method)
    base = f"{'shopsearch' if method in _OURS else 'baseline'}/{method}"
    return base if fraction is None else f"{base}@{fraction:g}"


__all__ = ["ABLATIONS", "JOINT_MODELS", "METHODS", "REGIMES", "check_method", "report_name"]
