"""Request bodies and responses of the HTTP API, as pydantic models (they make the OpenAPI
schema at ``/openapi.json``; hot endpoints render their JSON directly, in this shape)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from shopsearch.catalog.limits import ID_RULE, LIMITS, id_problem
from shopsearch.events.models import InteractionKind


def checked_id(value: str) -> str:
    """``value`` if it is an id by the rule ingest applies too; else a validation error.

    Raises:
        PydanticCustomError: ``invalid_id``, with the problem (see
            :func:`~shopsearch.catalog.limits.id_problem`).
    """
    problem = id_problem(value)
    if problem is not None:
        raise PydanticCustomError("invalid_id", "not an id: {problem}", {"problem": problem})
    return value


#: An id of a product, domain, user or event.
Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=LIMITS.max_id_chars),
    AfterValidator(checked_id),
    Field(description=f"Rule: {ID_RULE}."),
]
#: Longest request id accepted by ``POST /events`` (issued ids are shorter; see request_ids).
MAX_REQUEST_ID_CHARS = 2048
#: Most events in one ``POST /events``.
MAX_EVENTS = 1000


class ErrorDetail(BaseModel):
    """What is wrong and how to fix it."""

    parameter: str = Field(description="The parameter or body field to fix.")
    message: str = Field(description="The value, the limit and the fix.")


class ErrorOut(BaseModel):
    """Every error answer."""

    error: ErrorDetail


class ItemOut(BaseModel):
    """One shown product."""

    domain: str
    product_id: str
    title: str
    brand: str
    category: list[str]
    price: float | None
    in_stock: bool
    score: float
    position: int = Field(description="1-based position over all pages.")
    stages: dict[str, float | None] = Field(
        description="Each stage's score (with explain=1; else empty): retrieve.<source>, "
        "retrieve.fused, rank.click, rank.cart, rank.purchase, rank.value ..."
    )


class StageOut(BaseModel):
    """One pipeline stage of one search."""

    name: str = Field(description="query, retrieve, prerank, rank, rerank, ...")
    status: Literal["ran", "identity", "skipped"] = Field(
        description="ran; identity (no model for it in the bundle: candidates passed on "
        "unchanged); skipped (not in this bundle or switched off; see detail)"
    )
    ms: float
    candidates: int = Field(description="Candidates it passed on.")
    detail: str


class IntentOut(BaseModel):
    """A category the query is predicted to be after."""

    category: str = Field(description='The category path, "A > B > C".')
    probability: float


class SuggestionOut(BaseModel):
    """A search that has results when this one has none."""

    query: str
    dropped: list[str] = Field(description="Filters to leave out: category, brand, price, ...")
    total: int = Field(description="How many products that search matches.")


class SearchOut(BaseModel):
    """One search's results (:func:`shopsearch.pipeline.payload.search_payload` shapes them;
    ``shopsearch search --json`` prints the same)."""

    request_id: str = Field(description="Quote it in POST /events.")
    query: str
    domain: str | None
    total: int = Field(
        description="How many products match: those with the query's words (typo-tolerant) "
        "within the filters, plus those a vector source found closer to the query than its "
        "match threshold (its fitted noise level, or [retrieval] min_similarity). The same on "
        "every page; 0 means no results."
    )
    page: int
    size: int
    pages: int = Field(description="Pages of this size that can be asked for (at most max_page).")
    items: list[ItemOut]
    facets: dict[str, dict[str, int]] = Field(
        description='Counts over the same matched products as total: "category" (each path '
        'prefix), "brand", "price" bucket; a value with no product is left out.'
    )
    timings_ms: dict[str, float] = Field(
        description="Milliseconds per stage, per retrieval source (retrieve.<source>), render "
        "and total."
    )
    pipeline: list[StageOut] = Field(description="Each stage of this search, in order.")
    notice: str | None = Field(
        description='What to know about the results, e.g. "no results for ..."'
    )
    suggestion: SuggestionOut | None = Field(
        description="When nothing matched because of the filters: the same words without them."
    )
    correction: str | None = Field(
        description="The corrected query searched instead of q (spelling correction; "
        "correct=false searches q as typed)."
    )
    intents: list[IntentOut] = Field(
        description="Categories the query is after, most likely first (query understanding)."
    )


class SuggestionItemOut(BaseModel):
    """One completion of the typed prefix."""

    query: str = Field(description="The completed query, as the log has it (lower-case).")
    score: float = Field(
        description="How well it led users to products: searches followed by a click, plus "
        "purchases weighted (times the typo penalty for a typo completion)."
    )
    typo: bool = Field(description="It completes the prefix read with one typo.")


class SuggestOut(BaseModel):
    """Completions of what the user has typed, best first."""

    q: str
    domain: str | None = Field(description="The market whose queries were suggested (null: all).")
    suggestions: list[SuggestionItemOut]
    notice: str | None = Field(
        description="Why there can be no suggestions (the bundle has no suggester), else null."
    )


class DomainOut(BaseModel):
    """A market or storefront."""

    domain_id: str
    name: str
    language: str
    currency: str


class DomainsOut(BaseModel):
    """Every domain of the workspace."""

    domains: list[DomainOut]


class EventIn(BaseModel):
    """A click, add-to-cart or purchase on a product shown by a search.

    An event is stored once: one with an ``event_id`` is the one event of that id for its
    search (sending it again is acknowledged as a duplicate; the id with other fields is a 409),
    one without repeats a recorded event when all its fields but ``timestamp`` are equal.
    """

    model_config = ConfigDict(extra="forbid")

    request_id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_REQUEST_ID_CHARS)] = (
        Field(description="The request_id of the /search answer that showed the product.")
    )
    product_id: Id = Field(description="A product_id of that answer's items.")
    kind: InteractionKind
    domain: Id | None = Field(
        None,
        description="The market of the product; needed only when the search showed the same "
        "product_id in several markets.",
    )
    user_id: Id | None = Field(None, description="Default: the user of the search.")
    value: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = Field(
        0.0, description="Money value (purchases), >= 0."
    )
    timestamp: datetime | None = Field(
        None,
        description="ISO-8601; default: now (UTC). Not before the search nor after now, give or "
        "take [serve] event_time_tolerance_s (300 s).",
    )
    event_id: Id | None = Field(
        None,
        description="Idempotency key, unique per search: an event sent again with it is "
        "stored once. Without one, an event equal to a recorded one but for timestamp is a "
        "duplicate; give ids to store such repeats (two purchases of one product).",
    )


class EventsIn(BaseModel):
    """A batch of events, stored all or none."""

    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_EVENTS)]


class EventsOut(BaseModel):
    """The batch is durably recorded: new events stored, duplicates recognised."""

    accepted: int = Field(description="Events of the batch now on disk (new or recorded before).")
    duplicates: int = Field(
        description="Of those, events recorded before (or earlier in the batch): not stored again."
    )


CategoryList = Annotated[
    list[Annotated[str, StringConstraints(max_length=LIMITS.max_name_chars)]],
    Field(max_length=32),
]
CategoryPath = Annotated[str, StringConstraints(max_length=LIMITS.max_text_chars)]


class ProductIn(BaseModel):
    """A product's fields for ``PUT /products/{domain}/{product_id}``."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=LIMITS.max_title_chars),
    ]
    description: Annotated[str, StringConstraints(max_length=LIMITS.max_text_chars)] = ""
    brand: Annotated[str, StringConstraints(max_length=LIMITS.max_name_chars)] = ""
    category: CategoryList | CategoryPath = Field(
        default_factory=list, description='A path: ["Furniture", "Sofas"] or "Furniture > Sofas".'
    )
    price: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None
    attributes: Annotated[
        dict[Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.max_id_chars)], str],
        Field(max_length=LIMITS.max_attributes),
    ] = Field(default_factory=dict)
    in_stock: bool = True


class ProductOut(BaseModel):
    """A stored product."""

    domain: str
    product_id: str
    title: str
    description: str
    brand: str
    category: list[str]
    price: float | None
    attributes: dict[str, Any]
    created_at: datetime
    in_stock: bool


class ProductKeyOut(BaseModel):
    """A product's identity."""

    domain: str
    product_id: str


class DeletedOut(BaseModel):
    """The product that was deleted."""

    deleted: ProductKeyOut


class HealthOut(BaseModel):
    """The server is up and serves this bundle."""

    status: str
    bundle: str
    products: int


class ReloadIn(BaseModel):
    """Which bundle to load (default: the one ``W/models/CURRENT`` names)."""

    model_config = ConfigDict(extra="forbid")

    bundle: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None


class ReloadOut(BaseModel):
    """The bundle now served."""

    bundle: str
    previous: str
    products: int
    load_ms: float
