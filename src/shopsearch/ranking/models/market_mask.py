"""The MD (multi-distribution) module of SEQ+MD as a plug-in layer for any ranking model.

Paper: Siqi Wang, Audrey Zhijiao Chen, Austin Clapp, Sheng-Min Shih, Xiaoting Zhao,
"SEQ+MD: Learning Multi-Task as a SEQuence with Multi-Distribution Data" (Etsy, arXiv
2408.13357, 2024). The MD module splits the input features into *market-driven* features
(whose distribution or meaning depends on the buyer's market/region: price level, popularity,
CTR/CVR priors ...) and *market-invariant* ones, and applies a market-conditioned,
feature-generated mask to the market-driven group; the paper reports it as "plug-and-play" for
other multi-task models.

What is implemented here (:class:`MarketMask`): for the dense columns named in
``FeatureSpec.market_driven`` (``x_d``), a mask ``m = 2 * sigmoid(E[domain] + W x_d)`` is
generated from the domain (market) id and the market-driven features themselves, and the
layer returns the dense vector with ``x_d`` replaced by ``m * x_d``; market-invariant columns
pass through unchanged. ``E`` and ``W`` start at zero, so a fresh mask is exactly the identity
(``m = 1``) and plugging it into a trained model changes nothing until it learns.
Simplification, stated honestly: the paper's exact mask network (depth, activation, whether it
also masks embedding fields) is not reproduced from its text; this is the smallest layer with
the described behaviour (market-conditioned, feature-generated, applied to the market-driven
group only).

:func:`with_market_mask` wraps any :class:`RankingModel` class so that its ``forward`` sees the
masked dense features — the "MD plugs into the baselines" part of the issue.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeVar, cast

import torch
from torch import Tensor, nn

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.base import FeatureSpec, RankingBatch, RankingModel, TaskOutputs

M = TypeVar("M", bound=RankingModel)


def market_driven_columns(spec: FeatureSpec) -> list[int]:
    """Column indices of ``spec.market_driven`` in ``spec.dense_names``.

    Raises:
        InvalidInputError: a market-driven name is not a dense feature.
    """
    unknown = [name for name in spec.market_driven if name not in spec.dense_names]
    if unknown:
        raise InvalidInputError(
            f"market_driven features {unknown} are not among the {len(spec.dense_names)} dense "
            f"features {list(spec.dense_names)}; name only dense features in market_driven"
        )
    return [spec.dense_names.index(name) for name in spec.market_driven]


class MarketMask(nn.Module):
    """Market-conditioned mask over the market-driven dense features: ``(dense, domain) -> dense``.

    Args:
        spec: gives the dense column names, which of them are market-driven and the number
            of domains (markets).
    """

    columns: Tensor

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        columns = market_driven_columns(spec)
        self.n_driven = len(columns)
        self.register_buffer("columns", torch.tensor(columns, dtype=torch.long), persistent=False)
        # E[domain] and W, b of the mask logits; all zero = identity mask.
        self.domain_logits = nn.Parameter(torch.zeros(max(1, spec.n_domains), self.n_driven))
        self.feature_weight = nn.Parameter(torch.zeros(self.n_driven, self.n_driven))
        self.feature_bias = nn.Parameter(torch.zeros(self.n_driven))

    def mask(self, dense: Tensor, domain: Tensor) -> Tensor:
        """``[B, n_market_driven]`` mask values in ``(0, 2)`` (1 = pass through)."""
        driven = dense.index_select(1, self.columns)
        feature_logits = nn.functional.linear(driven, self.feature_weight, self.feature_bias)
        return 2.0 * torch.sigmoid(self.domain_logits[domain] + feature_logits)

    def forward(self, dense: Tensor, domain: Tensor) -> Tensor:
        """``dense`` with its market-driven columns multiplied by the domain's mask."""
        if self.n_driven == 0:
            return dense
        driven = dense.index_select(1, self.columns)
        masked = driven * self.mask(dense, domain)
        return dense.index_copy(1, self.columns, masked)


def with_market_mask(model_class: type[M]) -> type[M]:
    """A subclass of ``model_class`` whose ``forward`` first applies a :class:`MarketMask`.

    The new class is named ``<Class>MD``, its ``name`` is ``<name>+md`` and it takes the same
    constructor arguments. Usage: ``MMoEMD = with_market_mask(MMoE); MMoEMD(spec, ...)``.
    """

    def init(self: Any, spec: FeatureSpec, *args: Any, **kwargs: Any) -> None:
        model_class.__init__(self, spec, *args, **kwargs)
        self.market_mask = MarketMask(spec)

    def forward(self: Any, batch: RankingBatch) -> TaskOutputs:
        dense = self.market_mask(batch.dense, batch.domain)
        outputs: TaskOutputs = model_class.forward(self, replace(batch, dense=dense))
        return outputs

    namespace: dict[str, Any] = {
        "__init__": init,
        "forward": forward,
        "name": f"{model_class.name}+md",
        "__doc__": f"{model_class.__name__} with the SEQ+MD market mask on its dense input.",
        "__module__": model_class.__module__,
    }
    return cast(type[M], type(f"{model_class.__name__}MD", (model_class,), namespace))


__all__ = ["MarketMask", "market_driven_columns", "with_market_mask"]
