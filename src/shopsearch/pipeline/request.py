"""What a search takes (:class:`SearchParams`) and what it gives back (:class:`SearchResponse`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shopsearch.catalog.candidates import Facets, Filters

#: The ``domain`` of a user's search that searches every market.
ALL_DOMAINS = "*"


@dataclass(frozen=True)
class SearchParams:
    """One search request as the engine takes it."""

    query: str
    domain: str | None = None
    user_id: str | None = None
    filters: Filters = field(default_factory=Filters)
    page: int = 1
    size: int = 10
    explain: bool = False
    #: Let spelling correction change the query (``False``: search it as typed; the web
    #: page's "search instead for ..." link).
    correct: bool = True
    #: Record the stream of this search (``None``: as ``[pipeline] stream_sample`` draws).
    record_stream: bool | None = None


@dataclass
class ResultItem:
    """One shown product with its final score and, with ``explain``, each stage's score."""

    domain: str
    product_id: str
    title: str
    brand: str
    category: list[str]
    price: float | None
    in_stock: bool
    score: float
    stages: dict[str, float | None] = field(default_factory=dict)


#: How a stage took part in a search: it ``ran``, passed the candidates on unchanged
#: (``identity``: no model for it in the bundle), or was left out (``skipped``).
StageStatus = Literal["ran", "identity", "skipped"]


@dataclass
class StageReport:
    """One stage of one search, for ``--explain`` and the response's ``pipeline``.

    Attributes:
        name: the stage (``query``, ``retrieve``, ``prerank``, ``rank``, ``rerank`` ...).
        status: see :data:`StageStatus`.
        ms: milliseconds it took.
        candidates: how many candidates it passed on.
        detail: what it did or why it was skipped, in words.
    """

    name: str
    status: StageStatus
    ms: float
    candidates: int
    detail: str = ""


@dataclass(frozen=True)
class Suggestion:
    """A search to try instead: the same words without the filters that left nothing.

    Attributes:
        query: the words.
        dropped: the filters left out (``category``, ``brand``, ``price``, ``in_stock``).
        total: how many products that search matches.
    """

    query: str
    dropped: tuple[str, ...]
    total: int


@dataclass(frozen=True)
class StreamEntry:
    """The candidates one stage passed on, best first, with the stage's score of each.

    Attributes:
        stage: the stage (``retrieve``, ``prerank``, ``rank`` ...).
        keys: ``(domain, product_id)`` of each candidate, in the stage's order.
        scores: the stage's score of each (the ranking value for ``rank``; for a stage that
            did not score, the score the candidate carried).
    """

    stage: str
    keys: list[tuple[str, str]]
    scores: list[float]


@dataclass
class SearchResponse:
    """What one search returns.

    Attributes:
        request_id: a fresh id of this search.
        items: the requested page.
        total: how many products matched (see :mod:`shopsearch.pipeline.engine`).
        facets: counts of the matched products by category, brand and price bucket.
        timings_ms: milliseconds per stage (``retrieve.<source>`` per retrieval source),
            ``render`` and ``total`` (the whole search, measured once).
        pipeline: each stage's report, in order.
        query: the query the stages searched for (the query stage may change it).
        notice: what the user should know about the results (``no results for ...``).
        suggestion: a search that has results when this one has none.
        correction: the corrected query searched instead of the typed one (``None``: none).
        intents: the categories the query was predicted to be after, with probabilities.
        stream: for a search whose stream was recorded, what each stage passed on
            (``None``: not recorded).
    """

    request_id: str
    items: list[ResultItem]
    total: int
    facets: Facets
    timings_ms: dict[str, float]
    pipeline: list[StageReport] = field(default_factory=list)
    query: str = ""
    notice: str | None = None
    suggestion: Suggestion | None = None
    correction: str | None = None
    intents: list[tuple[str, float]] = field(default_factory=list)
    stream: list[StreamEntry] | None = None


__all__ = [
    "ALL_DOMAINS",
    "ResultItem",
    "SearchParams",
    "SearchResponse",
    "StageReport",
    "StageStatus",
    "StreamEntry",
    "Suggestion",
]
