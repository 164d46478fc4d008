"""``GET /suggest``: query completions while the user types (autocomplete).

The completions come from the served bundle's ``suggest`` query component
(:class:`~shopsearch.query.suggest.QuerySuggester`, trained with ``shopsearch train --stage
query``), loaded with the bundle and swapped with it on reload. Answering is a few binary
searches in memory (well under a millisecond), so the route neither waits for a search slot nor
takes the catalog lock.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from shopsearch.catalog.limits import LIMITS
from shopsearch.pipeline.engine import Engine
from shopsearch.pipeline.request import ALL_DOMAINS
from shopsearch.pipeline.stages.query import QueryStage
from shopsearch.query.suggest import MAX_SUGGESTIONS, QuerySuggester
from shopsearch.serve.errors import ApiError
from shopsearch.serve.models import SuggestOut
from shopsearch.serve.responses import error_responses, json_response
from shopsearch.serve.routes_search import with_local_annotations
from shopsearch.serve.state import ServerState

#: Suggestions of a request that gives no ``size``.
DEFAULT_SUGGESTIONS = 8
#: Why a bundle without a suggester answers no suggestions.
NO_SUGGESTER = (
    "this bundle has no query suggestions; train them from the search log with 'shopsearch "
    "train --stage query --workspace W'"
)


def suggester_of(engine: Engine) -> QuerySuggester | None:
    """The ``suggest`` component of ``engine``'s query stage (``None`` if it has none)."""
    for _, stage in engine.stages:
        if isinstance(stage, QueryStage) and stage.models is not None:
            for component in stage.models.components:
                if isinstance(component, QuerySuggester):
                    return component
    return None


def suggest_router(state: ServerState) -> APIRouter:
    """The autocomplete endpoint, with the query length limit of ``state.settings``."""
    limits = state.settings.search
    router = APIRouter()

    def suggest(
        q: Annotated[
            str,
            Query(
                max_length=limits.max_query_chars,
                description="What the user has typed so far (a prefix; a trailing space means "
                "a finished word). Empty: no suggestions.",
            ),
        ] = "",
        domain: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=LIMITS.max_id_chars,
                description="Market whose users' queries are suggested (default: as /search); "
                "* merges every market.",
            ),
        ] = None,
        size: Annotated[
            int, Query(ge=1, le=MAX_SUGGESTIONS, description="Most suggestions.")
        ] = DEFAULT_SUGGESTIONS,
    ) -> Response:
        served = state.live.current
        if domain not in (ALL_DOMAINS, None) and domain not in served.domains:
            raise ApiError(
                400,
                "domain",
                f"unknown domain {domain!r}; domains are "
                f"{', '.join(sorted(served.domains))} (see /domains), or * for all",
            )
        market = served.engine.resolve_domain(domain)
        suggester = suggester_of(served.engine)
        suggestions = []
        if suggester is not None:
            found = suggester.complete(q, market, min(size, suggester.max_size))
            suggestions = [{"query": s.query, "score": s.score, "typo": s.typo} for s in found]
        return json_response(
            {
                "q": q,
                "domain": market,
                "suggestions": suggestions,
                "notice": NO_SUGGESTER if suggester is None else None,
            }
        )

    router.get(
        "/suggest",
        response_model=SuggestOut,
        responses=error_responses(400, 422),
        summary="Complete a query as it is typed",
    )(with_local_annotations(suggest, locals()))

    return router


__all__ = ["DEFAULT_SUGGESTIONS", "NO_SUGGESTER", "suggest_router", "suggester_of"]
