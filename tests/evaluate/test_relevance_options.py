"""The system choices of ``eval relevance``: ``--learned`` and ``--generative`` names."""

from __future__ import annotations

import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.suites.relevance import LEARNED_SYSTEMS, learned_systems
from shopsearch.evaluate.suites.relevance_generative import GENERATIVE_SYSTEMS, chosen_systems


def test_learned_names() -> None:
    assert learned_systems(()) == list(LEARNED_SYSTEMS)
    assert learned_systems(("all",)) == list(LEARNED_SYSTEMS)
    assert learned_systems(("two-tower",)) == []  # two-tower and fused always run
    assert learned_systems(("gcn", "two-tower")) == ["gcn"]
    with pytest.raises(InvalidInputError, match="unknown learned system"):
        learned_systems(("bert",))


def test_generative_names() -> None:
    assert chosen_systems(("all",)) == list(GENERATIVE_SYSTEMS)
    assert chosen_systems(("gen-sft", "gen-sft")) == ["gen-sft"]
    with pytest.raises(InvalidInputError, match="unknown generative system"):
        chosen_systems(("tiger",))
