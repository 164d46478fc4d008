"""The SymSpell baseline of spelling correction (``symspell``).

`symspellpy <https://github.com/mammothb/symspellpy>`_ (a port of Wolf Garbe's SymSpell) with a
dictionary of the words ``spell`` learns from: the catalog's words (titles, brands, category
names; :func:`~shopsearch.query.spell.catalog_counts`) and every word of the logged queries,
each counted once per occurrence, all markets together (SymSpell's default ``count_threshold``
of 1 keeps every one). Its default ``lookup_compound`` (edit distance 2, prefix length 7) is
applied word by word: each word of letters is replaced by what ``lookup_compound`` makes of it
(itself when in the dictionary, else the nearest dictionary word, the more frequent on ties,
or two words when that is nearer), with no error model, no confidence threshold and no
market. Tokens with digits, words longer than :data:`~shopsearch.query.spell.MAX_WORD`
characters and queries of more than :data:`~shopsearch.query.spell.MAX_WORDS` words are left
as typed, as ``spell`` does.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Self

import orjson
from symspellpy import SymSpell

from shopsearch.errors import NotFittedError, WorkspaceError
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis, QueryComponent
from shopsearch.query.data import QueryData
from shopsearch.query.spell import (
    MAX_EDITS,
    MAX_WORDS,
    PREFIX,
    TOKEN,
    cased,
    catalog_counts,
    is_word,
    tokens,
)
from shopsearch.store.atomic import write_json

_FILE = "symspell.json"


@QUERY_COMPONENTS.register()
class SymSpellBaseline(QueryComponent):
    """SymSpell's ``lookup_compound`` on every word (see the module docstring)."""

    name = "symspell"
    baseline = True
    order = 20

    def fit(self, data: QueryData) -> Self:
        """Count the catalog's and the logged queries' words into SymSpell's dictionary."""
        counts: Counter[str] = Counter()
        for market in catalog_counts(data.catalog)[0].values():
            counts.update(market)
        counts.update(w for q in data.queries["query"] for w in tokens(str(q)) if is_word(w))
        self.counts_ = dict(sorted(counts.items()))
        self._build()
        return self

    def _build(self) -> None:
        self.symspell_ = SymSpell(max_dictionary_edit_distance=MAX_EDITS, prefix_length=PREFIX)
        for word, count in self.counts_.items():
            self.symspell_.create_dictionary_entry(word, count)

    def correct(self, query: str) -> tuple[str, list[tuple[str, str]]]:
        """``query`` with each word replaced by SymSpell's suggestion; the changes.

        Raises:
            NotFittedError: before :meth:`fit` or :meth:`load`.
        """
        if not hasattr(self, "symspell_"):
            raise NotFittedError("the symspell baseline is not fitted; call fit(data) first")
        spans = list(TOKEN.finditer(query))
        if len(spans) > MAX_WORDS:
            return query, []
        out: list[str] = []
        changes: list[tuple[str, str]] = []
        last = 0
        for match in spans:
            typed = match.group()
            if not is_word(typed.lower()):
                continue
            found = self.symspell_.lookup_compound(typed.lower(), MAX_EDITS)
            meant = found[0].term if found else typed.lower()
            if meant != typed.lower():
                meant = cased(meant, typed)
                out.append(query[last : match.start()] + meant)
                changes.append((typed, meant))
                last = match.end()
        out.append(query[last:])
        return "".join(out), changes

    def apply(self, analysis: QueryAnalysis) -> None:
        """Replace ``analysis.text`` by SymSpell's correction (and note the changes)."""
        corrected, changes = self.correct(analysis.text)
        if changes:
            analysis.text = corrected
            analysis.correction = corrected
            analysis.notes[self.name] = ", ".join(f"{a}→{b}" for a, b in changes)

    def save(self, path: Path) -> None:
        """The dictionary (word → count) in ``symspell.json``."""
        if not hasattr(self, "counts_"):
            raise NotFittedError("the symspell baseline is not fitted; call fit(data) first")
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / _FILE, {"counts": self.counts_})

    @classmethod
    def load(cls, path: Path) -> Self:
        """The baseline :meth:`save` wrote to ``path``.

        Raises:
            WorkspaceError: ``path`` holds no saved symspell baseline.
        """
        try:
            counts = orjson.loads((path / _FILE).read_bytes())["counts"]
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise WorkspaceError(
                f"{path} holds no saved symspell baseline ({type(exc).__name__}: {exc}); train "
                "it again with 'shopsearch train --stage query --model symspell'"
            ) from exc
        component = cls()
        component.counts_ = {str(w): int(c) for w, c in counts.items()}
        component._build()
        return component


__all__ = ["SymSpellBaseline"]
