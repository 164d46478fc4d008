"""Query forms: word order, abbreviations and typos."""

from __future__ import annotations

import itertools

from shopsearch.simulate.queries import abbreviate, add_typo, compose


def test_compose_orders_words() -> None:
    assert compose("Norvik", ["Grey", "Linen"], "Sofa", ["3-Seater"], False) == (
        "norvik grey linen sofa 3-seater"
    )
    assert compose(None, ["Grey"], "Sofa", [], True) == "sofa grey"
    assert compose("Norvik", [], None, ["Black"], False) == "norvik black"


def test_abbreviate_shortens_known_phrases() -> None:
    assert abbreviate("wireless noise-cancelling headphones") == "wireless anc headphones"
    assert abbreviate("grey sofa") == "grey sofa"


def test_typos_change_one_long_word_by_one_edit() -> None:
    query = "grey linen sofa"
    for u in itertools.product([0.0, 0.4, 0.99], repeat=3):
        typo, changed = add_typo(query, *u)
        words, original = typo.split(" "), query.split(" ")
        assert len(words) == 3
        differing = [i for i in range(3) if words[i] != original[i]]
        assert len(differing) == int(changed) <= 1
        if changed:
            i = differing[0]
            assert len(original[i]) >= 4
            assert abs(len(words[i]) - len(original[i])) <= 1
    assert add_typo("tv 4k", 0.5, 0.5, 0.5) == ("tv 4k", False)
