"""Format name → loader: the registry of every loader (:mod:`shopsearch.registry`).

``products``, ``events`` and ``judgments`` are the generic loader restricted to one kind of file
(``shopsearch ingest products my_catalog.parquet``); ``generic`` takes any mix of the user's own
files. The others read one public dataset each; see each module's docstring for its mapping.
A loader module registers its function with ``@LOADERS.register("name")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shopsearch.datasets._read import keeping_malformed
from shopsearch.datasets.base import LoadedData, Loader
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


def load(name: str, paths: Sequence[Path]) -> LoadedData:
    """Read ``paths`` with the loader of format ``name``, reading past malformed records.

    Where calling the loader raises ``DataFormatError`` on a text file's malformed record (more
    fields than the header, a quote never closed), this lists it in ``LoadedData.malformed``, for
    ingest to report like a bad row, and keeps the file's other rows. A file with no good record
    is still an error.
    """
    loader = get_loader(name)
    with keeping_malformed() as malformed:
        data = loader(paths)
    data.malformed.extend(malformed)
    return data
