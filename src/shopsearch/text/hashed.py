"""Hashed bag-of-n-gram features: text → bucket ids for an ``EmbeddingBag``, with no vocabulary.

Text is lower-cased and split into alphanumeric words. Three *grains* of features are made,
each hashed (CRC-32 with a per-grain salt, so stable across processes and machines) into
``buckets`` ids:

- ``word``: the words;
- ``char``: character 3-grams of each word padded with ``#`` (``"#ha", "ham", "amm", ...``),
  which match misspellings, plurals and compounds;
- ``bigram``: adjacent word pairs (phrases).

A text with no feature in a grain (an empty text, or a one-word text for bigrams) gets the
reserved id ``0`` there, so every bag is non-empty.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError

#: The feature grains, in the order :meth:`HashedFeaturizer.featurize` returns them.
GRAINS: tuple[str, ...] = ("word", "char", "bigram")

_WORD = re.compile(r"[0-9a-z]+")

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Bags:
    """One grain's features for a batch of texts, in ``torch.nn.EmbeddingBag`` layout.

    Attributes:
        ids: all bucket ids, text after text.
        offsets: where each text's ids start in ``ids`` (length = number of texts).
    """

    ids: IntArray
    offsets: IntArray


class HashedFeaturizer:
    """Turns texts into hashed word, character 3-gram and word-bigram ids.

    Args:
        buckets: number of hash buckets (ids are in ``[1, buckets)``; ``0`` marks "no feature").
    """

    def __init__(self, buckets: int = 2**18) -> None:
        if buckets < 2:
            raise InvalidInputError(f"buckets={buckets} is not allowed; use buckets >= 2")
        self.buckets = buckets

    def _hash(self, feature: str, salt: bytes) -> int:
        return 1 + zlib.crc32(feature.encode(), zlib.crc32(salt)) % (self.buckets - 1)

    def features(self, text: str) -> tuple[list[int], list[int], list[int]]:
        """The word, character 3-gram and bigram ids of one text (each list non-empty)."""
        words = _WORD.findall(text.casefold())
        word_ids = [self._hash(w, b"w") for w in words]
        char_ids: list[int] = []
        for word in words:
            padded = f"#{word}#"
            char_ids.extend(self._hash(padded[i : i + 3], b"c") for i in range(len(padded) - 2))
        bigram_ids = [self._hash(f"{a} {b}", b"b") for a, b in itertools.pairwise(words)]
        return word_ids or [0], char_ids or [0], bigram_ids or [0]

    def featurize(self, texts: Sequence[str]) -> tuple[Bags, Bags, Bags]:
        """The three grains' :class:`Bags` for ``texts`` (order of :data:`GRAINS`)."""
        per_grain: tuple[list[int], list[int], list[int]] = ([], [], [])
        offsets: tuple[list[int], list[int], list[int]] = ([], [], [])
        for text in texts:
            for grain, ids in enumerate(self.features(text)):
                offsets[grain].append(len(per_grain[grain]))
                per_grain[grain].extend(ids)
        word, char, bigram = (
            Bags(np.asarray(per_grain[g], np.int64), np.asarray(offsets[g], np.int64))
            for g in range(3)
        )
        return word, char, bigram
