"""Typed, validated catalog records.

These pydantic models validate single records (HTTP API, hand-written code). Bulk data never goes
through them row by row: ingest validates whole Arrow tables against the same limits in
:mod:`shopsearch.ingest.validate`, and :mod:`shopsearch.store.schema` holds the columnar schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shopsearch.catalog.limits import LIMITS

#: Separator used when a category path is shown or matched as one string ("Home > Sofas").
CATEGORY_SEPARATOR = " > "

#: Language of a domain nobody has described yet: BCP 47 "undetermined".
UNKNOWN_LANGUAGE = "und"
#: Currency of a domain nobody has described yet: ISO 4217 "no currency".
UNKNOWN_CURRENCY = "XXX"

Id = Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.max_id_chars)]


class Domain(BaseModel):
    """A storefront or market: a country site, a brand, a platform.

    A domain registered from the rows that name it (``ingest --add-domains``) has language
    :data:`UNKNOWN_LANGUAGE` and currency :data:`UNKNOWN_CURRENCY` until a domains file sets them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    domain_id: Id
    name: Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.max_name_chars)]
    language: Annotated[str, StringConstraints(min_length=2, max_length=16)] = "en"
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)] = "USD"


class Product(BaseModel):
    """A product as sold in one domain; identified by ``(domain, product_id)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: Id
    domain: Id
    title: Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.max_title_chars)]
    description: Annotated[str, StringConstraints(max_length=LIMITS.max_text_chars)] = ""
    brand: Annotated[str, StringConstraints(max_length=LIMITS.max_name_chars)] = ""
    category: tuple[str, ...] = ()
    price: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    in_stock: bool = True

    @property
    def category_path(self) -> str:
        """The category path as one string, e.g. ``"Furniture > Sofas"``."""
        return CATEGORY_SEPARATOR.join(self.category)
