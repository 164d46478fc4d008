"""Typed, validated search-log records.

A served search is one :class:`SearchRequest` plus one :class:`Impression` per shown product; what
the user did afterwards is an :class:`Interaction`. Offline relevance labels are
:class:`Judgment` rows. The engine logs in exactly the format training reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shopsearch.catalog.limits import LIMITS

Id = Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.max_id_chars)]
InteractionKind = Literal["click", "add_to_cart", "purchase"]
#: The funnel, in order.
INTERACTION_KINDS: tuple[str, ...] = get_args(InteractionKind)


class SearchRequest(BaseModel):
    """One query typed by one user in one domain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: Id
    user_id: Id
    domain: Id
    query: Annotated[str, StringConstraints(max_length=LIMITS.max_query_chars)]
    timestamp: datetime
    filters: dict[str, str] = Field(default_factory=dict)
    session_id: Id | None = None


class Impression(BaseModel):
    """A product shown at a 1-based position for a request, with each stage's score."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: Id
    product_id: Id
    position: Annotated[int, Field(ge=1)]
    scores: dict[str, float] = Field(default_factory=dict)
    price: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None


class Interaction(BaseModel):
    """A click, add-to-cart or purchase on a shown product."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: Id
    user_id: Id
    product_id: Id
    kind: InteractionKind
    timestamp: datetime
    value: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0


class Judgment(BaseModel):
    """A graded relevance label of a product for a query (higher is more relevant)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query: Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.max_query_chars)]
    product_id: Id
    grade: Annotated[float, Field(allow_inf_nan=False)]
    domain: Id
