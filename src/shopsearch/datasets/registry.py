"""Format name → loader: the explicit registry of every loader module.

``products``, ``events`` and ``judgments`` are the generic loader restricted to one kind of file
(``shopsearch ingest products my_catalog.parquet``); ``generic`` takes any mix of the user's own
files. The others read one public dataset each; see each module's docstring for its mapping.
"""

from __future__ import annotations

from shopsearch.datasets import (
    aliccp,
    aliexpress,
    bestbuy,
    crowdflower,
    esci,
    generic,
    homedepot,
    jdsearch,
    trivago,
    wands,
)
from shopsearch.datasets.base import Loader
from shopsearch.errors import InvalidInputError

LOADERS: dict[str, Loader] = {
    "generic": generic.load,
    "products": generic.load_products,
    "events": generic.load_events,
    "judgments": generic.load_judgments,
    "homedepot": homedepot.load,
    "crowdflower": crowdflower.load,
    "bestbuy": bestbuy.load,
    "trivago": trivago.load,
    "esci": esci.load,
    "wands": wands.load,
    "aliccp": aliccp.load,
    "aliexpress": aliexpress.load,
    "jdsearch": jdsearch.load,
}


def get_loader(name: str) -> Loader:
    """The loader for a format name, or a clear error listing the known formats."""
    try:
        return LOADERS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown format {name!r}; formats are {', '.join(sorted(LOADERS))}"
        ) from None
