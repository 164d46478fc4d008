"""The search log: its data model (requests, impressions, interactions, judgments), the
durable event log that a server appends to (:mod:`.log`, lines in :mod:`.records`), and the
compaction of that log into the workspace tables (:mod:`.compaction`)."""

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
