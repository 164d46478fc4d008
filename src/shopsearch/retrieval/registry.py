"""Retriever name → class: the explicit registry a config names its retrievers from."""

from __future__ import annotations

from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.base import Retriever


def _registry() -> dict[str, type[Retriever]]:
    from shopsearch.retrieval.dense import DenseRetriever
    from shopsearch.retrieval.hybrid import HybridRetriever
    from shopsearch.retrieval.learned import LearnedDenseRetriever, LearnedPQRetriever
    from shopsearch.retrieval.lexical import LexicalRetriever

    classes: tuple[type[Retriever], ...] = (
        LexicalRetriever,
        DenseRetriever,
        HybridRetriever,
        LearnedDenseRetriever,
        LearnedPQRetriever,
    )
    return {cls.name: cls for cls in classes}


def get_retriever_class(name: str) -> type[Retriever]:
    """The retriever class registered under ``name``."""
    registry = _registry()
    if name not in registry:
        raise InvalidInputError(
            f"unknown retriever {name!r}; retrievers are {', '.join(sorted(registry))}"
        )
    return registry[name]


def registry_name(retriever: Retriever) -> str:
    """The registry name of a retriever instance."""
    return type(retriever).name
