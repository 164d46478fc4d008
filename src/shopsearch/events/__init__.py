"""Search-log data model: requests, impressions, interactions and relevance judgments."""

from __future__ import annotations

from shopsearch.events.models import (
    INTERACTION_KINDS,
    Impression,
    Interaction,
    InteractionKind,
    Judgment,
    SearchRequest,
)

__all__ = [
    "INTERACTION_KINDS",
    "Impression",
    "Interaction",
    "InteractionKind",
    "Judgment",
    "SearchRequest",
]
