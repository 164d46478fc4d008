"""Format name → loader: the explicit registry of every loader module."""

from __future__ import annotations

from shopsearch.datasets.base import Loader
from shopsearch.errors import InvalidInputError

LOADERS: dict[str, Loader] = {}


def get_loader(name: str) -> Loader:
    """The loader for a format name, or a clear error listing the known formats."""
    try:
        return LOADERS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown format {name!r}; formats are {', '.join(sorted(LOADERS))}"
        ) from None
