"""The ranking value: one score per candidate from the funnel probabilities.

* ``ctr``: ``p_click``;
* ``gmv``: expected GMV ``p_purchase * price`` (``p_purchase`` is the unconditional
  ``p(click) p(cart | click) p(buy | cart)``);
* ``linear``: ``w_click p_click + w_cart p_cart + w_purchase p_purchase``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError

ValueKind = Literal["ctr", "gmv", "linear"]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RankingValue:
    """Combines task outputs into one value (see the module docstring).

    Attributes:
        kind: ``ctr``, ``gmv`` or ``linear``.
        w_click, w_cart, w_purchase: the weights of ``linear``.
    """

    kind: ValueKind = "linear"
    w_click: float = 1.0
    w_cart: float = 2.0
    w_purchase: float = 4.0

    def __post_init__(self) -> None:
        if self.kind not in ("ctr", "gmv", "linear"):
            raise InvalidInputError(
                f"ranking value {self.kind!r} is not known; use ctr, gmv or linear"
            )

    def score(
        self,
        p_click: npt.ArrayLike,
        p_cart: npt.ArrayLike,
        p_purchase: npt.ArrayLike,
        price: npt.ArrayLike | None = None,
    ) -> F64:
        """The value of each candidate (``price`` is needed for ``gmv``)."""
        click = np.asarray(p_click, np.float64)
        if self.kind == "ctr":
            return click
        purchase = np.asarray(p_purchase, np.float64)
        if self.kind == "gmv":
            if price is None:
                raise InvalidInputError("the gmv ranking value needs each candidate's price")
            out: F64 = purchase * np.nan_to_num(np.asarray(price, np.float64))
            return out
        cart = np.asarray(p_cart, np.float64)
        linear: F64 = self.w_click * click + self.w_cart * cart + self.w_purchase * purchase
        return linear


__all__ = ["RankingValue", "ValueKind"]
