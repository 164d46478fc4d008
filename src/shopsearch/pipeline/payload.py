"""The JSON of one search: what ``GET /search`` answers and ``shopsearch search --json`` prints.

:func:`search_payload` shapes both, so the two never differ;
:class:`shopsearch.serve.models.SearchOut` describes the shape in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from shopsearch.pipeline.request import SearchResponse

#: The facets every payload has (empty when the search counted none).
FACETS = ("category", "brand", "price")


def search_payload(
    request_id: str,
    query: str,
    domain: str | None,
    page: int,
    size: int,
    response: SearchResponse,
    explain: bool,
    max_page: int,
) -> dict[str, Any]:
    """One search's response as JSON-ready data, in the order of ``SearchOut``'s fields.

    Args:
        request_id: the id to quote when logging events about this search.
        query: what the user typed.
        domain: the market searched (``None``: every market).
        page: the 1-based page number asked for.
        size: results per page asked for.
        response: what the engine answered.
        explain: keep each item's per-stage scores (else ``stages`` is empty).
        max_page: the highest page a search may ask for (``[search] max_page``).
    """
    offset = (page - 1) * size
    items = [
        {
            "domain": item.domain,
            "product_id": item.product_id,
            "title": item.title,
            "brand": item.brand,
            "category": item.category,
            "price": item.price,
            "in_stock": item.in_stock,
            "score": item.score,
            "position": offset + i + 1,
            "stages": item.stages,
        }
        for i, item in enumerate(response.items)
    ]
    payload = {
        "request_id": request_id,
        "query": query,
        "domain": domain,
        "total": response.total,
        "page": page,
        "size": size,
        "pages": min(-(-response.total // size), max_page),
        "items": items,
        "facets": {name: response.facets.get(name, {}) for name in FACETS},
        "timings_ms": response.timings_ms,
        "pipeline": [
            {
                "name": s.name,
                "status": s.status,
                "ms": s.ms,
                "candidates": s.candidates,
                "detail": s.detail,
            }
            for s in response.pipeline
        ],
        "notice": response.notice,
        "suggestion": None
        if response.suggestion is None
        else {
            "query": response.suggestion.query,
            "dropped": list(response.suggestion.dropped),
            "total": response.suggestion.total,
        },
        "correction": response.correction,
        "intents": [
            {"category": category, "probability": probability}
            for category, probability in response.intents
        ],
    }
    if not explain:
        payload["items"] = [{**item, "stages": {}} for item in items]
    return payload


__all__ = ["FACETS", "search_payload"]
