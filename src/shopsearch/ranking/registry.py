"""The ranking model registry: name → class, for configs and the CLI.

Torch models (:class:`~shopsearch.ranking.base.RankingModel` subclasses) come from
:mod:`shopsearch.ranking.models.baselines` and the papers' models in
:mod:`shopsearch.ranking.models.paper`; ``lightgbm`` is the gradient-boosted LambdaMART baseline
(:class:`~shopsearch.ranking.lightgbm_ranker.LightGBMRanker`), which is not a torch model.
"""

from __future__ import annotations

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.base import RankingModel
from shopsearch.ranking.models.baselines import BASELINE_MODELS
from shopsearch.ranking.models.paper import PAPER_MODELS

#: Torch ranking models by name (with the transfer models of issue 7, e.g. ``cdan-w``).
TORCH_MODELS: dict[str, type[RankingModel]] = {**BASELINE_MODELS, **PAPER_MODELS}


def _add_transfer_models() -> None:
    from shopsearch.transfer.registry import MODELS  # the transfer package builds on ranking

    TORCH_MODELS.update(MODELS)


_add_transfer_models()

#: The gradient-boosted baseline's name.
LIGHTGBM = "lightgbm"

#: Every model name, torch models first.
MODEL_NAMES: tuple[str, ...] = (*TORCH_MODELS, LIGHTGBM)


def check_model_name(name: str) -> str:
    """``name`` if it is a registered model, else a clear error listing the names."""
    if name not in MODEL_NAMES:
        raise InvalidInputError(
            f"ranking model {name!r} is not known; use one of {', '.join(MODEL_NAMES)}"
        )
    return name


def torch_model_class(name: str) -> type[RankingModel]:
    """The torch model class registered as ``name``."""
    check_model_name(name)
    if name not in TORCH_MODELS:
        raise InvalidInputError(f"{name!r} is not a torch model; it has its own trainer")
    return TORCH_MODELS[name]


__all__ = ["LIGHTGBM", "MODEL_NAMES", "TORCH_MODELS", "check_model_name", "torch_model_class"]
