"""The ``--genrec`` choice of the simulated retrieval suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import SYSTEM_PREFIXES
from shopsearch.evaluate.suites.retrieval_sim import RetrievalSimConfig
from shopsearch.evaluate.suites.retrieval_sim_genrec import (
    GENREC_SYSTEMS,
    REFERENCE,
    genrec_systems,
)


def test_genrec_choices() -> None:
    assert RetrievalSimConfig(workspace=Path("W")).genrec == ("none",)
    assert genrec_systems(("none",)) == []
    assert genrec_systems(()) == []
    assert genrec_systems(("all",)) == list(GENREC_SYSTEMS)
    assert genrec_systems(("shopsearch/genrec", "shopsearch/genrec")) == ["shopsearch/genrec"]
    with pytest.raises(InvalidInputError, match="unknown GenRec"):
        genrec_systems(("shopsearch/genrecx",))


def test_system_names_are_report_names() -> None:
    for name in (*GENREC_SYSTEMS, REFERENCE):
        assert name.startswith(SYSTEM_PREFIXES)
