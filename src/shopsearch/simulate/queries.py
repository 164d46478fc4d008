"""Turn the words of a need into what a user types: word order, abbreviations and typos."""

from __future__ import annotations

from shopsearch.simulate.vocab import ABBREVIATIONS, KEY_NEIGHBOURS

#: Typo kinds, chosen uniformly.
TYPO_KINDS = ("drop", "swap", "double", "neighbour")


def compose(
    brand: str | None, pre: list[str], head: str | None, post: list[str], head_first: bool
) -> str:
    """Lower-cased query: ``[brand] [pre...] head [post...]``, or the head noun first."""
    words = ([brand] if brand else []) + pre
    if head is None:
        words += post
    elif head_first:
        words = [head, *words, *post]
    else:
        words = [*words, head, *post]
    return " ".join(words).lower()


def abbreviate(query: str) -> str:
    """Shorten the first abbreviable phrase of ``query``, if any."""
    for phrase, short in ABBREVIATIONS:
        if phrase in query:
            return query.replace(phrase, short, 1)
    return query


def add_typo(query: str, u_word: float, u_char: float, u_kind: float) -> tuple[str, bool]:
    """One typo in a word of 4+ letters picked by the uniforms; returns the query and whether
    a typo was made (queries without such a word stay as they are)."""
    words = query.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long:
        return query, False
    index = long[min(int(u_word * len(long)), len(long) - 1)]
    word = original = words[index]
    pos = min(int(u_char * (len(word) - 1)), len(word) - 2)
    kind_float = u_kind * len(TYPO_KINDS)
    kind = TYPO_KINDS[min(int(kind_float), len(TYPO_KINDS) - 1)]
    if kind == "drop":
        word = word[:pos] + word[pos + 1 :]
    elif kind == "swap":
        word = word[:pos] + word[pos + 1] + word[pos] + word[pos + 2 :]
    elif kind == "double":
        word = word[: pos + 1] + word[pos:]
    else:
        keys = KEY_NEIGHBOURS.get(word[pos], word[pos])
        key = keys[min(int((kind_float % 1.0) * len(keys)), len(keys) - 1)]
        word = word[:pos] + key + word[pos + 1 :]
    words[index] = word
    return " ".join(words), word != original
