"""Format name → loader: the registry of every loader (:mod:`shopsearch.registry`).

``products``, ``events`` and ``judgments`` are the generic loader restricted to one kind of file
(``shopsearch ingest products my_catalog.parquet``); ``generic`` takes any mix of the user's own
files. The others read one public dataset each; see each module's docstring for its mapping.
A loader module registers its function with ``@LOADERS.register("name")``.
"""

from __future__ import annotations

from typing import Any

from shopsearch.datasets.base import Loader
from shopsearch.registry import Registry


def _check(item: Any) -> None:
    if not callable(item):
        raise TypeError(f"{item!r} is not a function of the file paths")


#: Format name → loader function.
LOADERS: Registry[Loader] = Registry(
    "formats",
    modules=tuple(
        f"shopsearch.datasets.{m}"
        for m in (
            "generic",
            "homedepot",
            "crowdflower",
            "bestbuy",
            "trivago",
            "esci",
            "wands",
            "aliccp",
            "aliexpress",
            "jdsearch",
        )
    ),
    check=_check,
)


def get_loader(name: str) -> Loader:
    """The loader for a format name, or a clear error listing the known formats."""
    return LOADERS.get(name)
