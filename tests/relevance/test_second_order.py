"""First- and second-order graph relevance on tiny data: the neighbours carry what the pair's
own words cannot, the pair is never its own neighbour, pruning and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.relevance.distill import LabelledPairs
from shopsearch.relevance.second_order import GraphRelevance, GraphRelevanceConfig, prune_edges

SMALL = dict(buckets=2**12, dim=16, hidden=32, epochs=60, batch_size=16, lr=1e-2)
#: Product titles name brands only; which brand sells which kind of thing is only in the graph.
TEXTS = {("d", str(i)): f"{brand} model {i}" for i, brand in enumerate(
    ["zorbex", "quil", "mavrin", "tessup", "plonk", "vadri"])}  # fmt: skip
KIND = {"0": "kettle", "1": "kettle", "2": "kettle", "3": "drill", "4": "drill", "5": "drill"}


def _data() -> tuple[LabelledPairs, list[tuple[str, tuple[str, str]]]]:
    """Queries "<kind> <n>" judged on every product; graph edges link each kind's queries to
    that kind's products."""
    queries, keys, grades = [], [], []
    edges = []
    for kind in ("kettle", "drill"):
        for n in range(6):
            query = f"{kind} {n}"
            for key in TEXTS:
                relevant = KIND[key[1]] == kind
                queries.append(query)
                keys.append(key)
                grades.append(1.0 if relevant else 0.0)
                if relevant:
                    edges.append((query, key))
    # logged but never judged: only the graph says what these queries want
    edges += [(f"teapot {c}", k) for c in "ab" for k in TEXTS if KIND[k[1]] == "kettle"]
    edges += [(f"hammerdrill {c}", k) for c in "ab" for k in TEXTS if KIND[k[1]] == "drill"]
    return LabelledPairs(queries, keys, grades, relevant_at=0.5), edges


def test_second_order_learns_from_the_neighbours_first_order_cannot() -> None:
    labelled, edges = _data()
    second = GraphRelevance(GraphRelevanceConfig(order=2, **SMALL)).fit(labelled, TEXTS, edges)
    first = GraphRelevance(GraphRelevanceConfig(order=1, **SMALL)).fit(labelled, TEXTS, edges)
    # a query never judged, with no word of a judged query: only its graph neighbours (the
    # logged "teapot a/b") say it wants kettles
    keys = list(TEXTS)
    s2 = second.score(["teapot c"] * 6, keys)
    s1 = first.score(["teapot c"] * 6, keys)
    assert s2[:3].min() > s2[3:].max()  # kettles above drills
    assert s2[:3].mean() - s2[3:].mean() > s1[:3].mean() - s1[3:].mean()
    assert second.graph_size() == {"queries": 16, "products": 6, "edges": 48}
    assert second.steps_ == second.planned_steps_


def test_a_pair_is_never_its_own_neighbour() -> None:
    labelled, edges = _data()
    model = GraphRelevance(GraphRelevanceConfig(order=2, **{**SMALL, "epochs": 1}))
    model.fit(labelled, TEXTS, edges)
    similar = model._similar(["kettle 0"])
    assert "kettle 0" not in similar["kettle 0"]
    assert similar["kettle 0"]
    sides = model._sides(["kettle 0"], [("d", "0")], similar)
    others = [q for q in model.queries_of_[("d", "0")] if q != "kettle 0"]
    expected = [i for q in others for i in model._features(q)]
    assert sides[3][0] == expected


def test_prune_edges_and_bad_input() -> None:
    edges = [("a", ("d", "1")), ("b", ("d", "2"))]
    assert prune_edges(edges, [0.9, 0.1], 0.5) == [("a", ("d", "1"))]
    with pytest.raises(InvalidInputError):
        prune_edges(edges, [0.9], 0.5)
    with pytest.raises(InvalidInputError):
        GraphRelevanceConfig(order=3)
    labelled = LabelledPairs(["q"], [("d", "missing")], [1.0], 0.5)
    with pytest.raises(InvalidInputError, match="without text"):
        GraphRelevance().fit(labelled, TEXTS)
    model = GraphRelevance(GraphRelevanceConfig(order=2, **{**SMALL, "epochs": 1}))
    model.fit(LabelledPairs(["q"], [("d", "0")], [1.0], 0.5), TEXTS)  # no graph at all
    assert np.isfinite(model.score(["q"], [("d", "1")])).all()
    with pytest.raises(InvalidInputError):
        model.score(["q"], [])
