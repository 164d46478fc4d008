"""The registry of candidate sources (:class:`~shopsearch.retrieval.base.Retriever` classes).

A hybrid retriever saves each source under its registry name and loads it back by that name;
:mod:`shopsearch.registry` explains built-ins, entry points and dotted paths.
"""

from __future__ import annotations

from shopsearch.registry import Registry, subclass_of
from shopsearch.retrieval.base import Retriever

#: Retriever name → class.
RETRIEVERS: Registry[type[Retriever]] = Registry(
    "retrievers",
    modules=(
        "shopsearch.retrieval.lexical",
        "shopsearch.retrieval.dense",
        "shopsearch.retrieval.learned",
        "shopsearch.retrieval.consistent_index",
        "shopsearch.retrieval.generative.retriever",
        "shopsearch.retrieval.generative.genrec_retriever",
        "shopsearch.retrieval.hybrid",
    ),
    check=subclass_of(Retriever),
)

__all__ = ["RETRIEVERS"]
