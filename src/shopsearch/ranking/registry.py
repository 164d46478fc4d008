"""The ranking model registry: name → class, for configs, bundles and the CLI.

Torch models (:class:`~shopsearch.ranking.base.RankingModel` subclasses) come from
:mod:`shopsearch.ranking.models.baselines`, the papers' models in
:mod:`shopsearch.ranking.models` and the multi-domain transfer models of
:mod:`shopsearch.transfer` (which register themselves here); ``lightgbm`` is the gradient-boosted
LambdaMART baseline (:class:`~shopsearch.ranking.lightgbm_ranker.LightGBMRanker`), which is not
a torch model. :mod:`shopsearch.registry` explains built-ins, entry points and dotted paths.
"""

from __future__ import annotations

from typing import Any

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.base import RankingModel
from shopsearch.registry import Registry

#: The gradient-boosted baseline's name.
LIGHTGBM = "lightgbm"


def _check(item: Any) -> None:
    if not isinstance(item, type):
        raise TypeError(f"{item!r} is not a class")
    if not issubclass(item, RankingModel) and getattr(item, "name", None) != LIGHTGBM:
        raise TypeError(f"{item.__qualname__} is not a subclass of RankingModel")


#: Ranking model name → class, torch models first, in report order.
RANKING_MODELS: Registry[type[Any]] = Registry(
    "ranking models",
    modules=(
        "shopsearch.ranking.models.baselines",
        "shopsearch.ranking.models.seq_md",
        "shopsearch.ranking.models.aw_moe",
        "shopsearch.ranking.models.category_moe",
        "shopsearch.ranking.models.kfatt",
        "shopsearch.transfer.cdan_w",
        "shopsearch.transfer.pgtl",
        "shopsearch.transfer.baselines",
        "shopsearch.ranking.lightgbm_ranker",
    ),
    check=_check,
)


def model_names() -> list[str]:
    """Every model name, torch models first."""
    return RANKING_MODELS.names()


def check_model_name(name: str) -> str:
    """``name`` if it is a registered model, else a clear error listing the names."""
    RANKING_MODELS.get(name)
    return name


def is_torch_model(name: str) -> bool:
    """Whether the model ``name`` is a torch :class:`RankingModel` (LightGBM is not)."""
    return issubclass(RANKING_MODELS.get(name), RankingModel)


def torch_model_class(name: str) -> type[RankingModel]:
    """The torch model class registered as ``name``."""
    cls = RANKING_MODELS.get(name)
    if not issubclass(cls, RankingModel):
        raise InvalidInputError(f"{name!r} is not a torch model; it has its own trainer")
    return cls


__all__ = [
    "LIGHTGBM",
    "RANKING_MODELS",
    "check_model_name",
    "is_torch_model",
    "model_names",
    "torch_model_class",
]
