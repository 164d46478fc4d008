"""The query components of a bundle, run in order on every search (``W/models/<id>/query/``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from shopsearch.errors import WorkspaceError
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis, QueryComponent
from shopsearch.store.atomic import write_json

_CONFIG = "config.json"


class QueryModels:
    """Fitted query components, applied in their ``order``.

    Args:
        components: fitted components (any order; sorted by their ``order``).
    """

    def __init__(self, components: Sequence[QueryComponent]) -> None:
        self.components = sorted(components, key=lambda c: c.order)

    @property
    def names(self) -> list[str]:
        """The components' registry names, in the order they run."""
        return [QUERY_COMPONENTS.name_of(c) for c in self.components]

    def analyze(
        self, query: str, domain: str | None = None, skip: frozenset[str] = frozenset()
    ) -> QueryAnalysis:
        """Run every component but those named in ``skip`` on ``query`` (searched in
        ``domain``)."""
        analysis = QueryAnalysis(original=query, text=query, domain=domain)
        for name, component in zip(self.names, self.components, strict=True):
            if name not in skip:
                component.apply(analysis)
        return analysis

    def save(self, folder: Path) -> None:
        """Each component in ``folder/<name>/`` and the list in ``folder/config.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, component in zip(self.names, self.components, strict=True):
            component.save(folder / _folder(name))
        write_json(folder / _CONFIG, {"components": self.names})

    @classmethod
    def load(cls, folder: Path) -> QueryModels:
        """The components saved by :meth:`save`.

        Raises:
            WorkspaceError: the folder is not a saved set of query components.
        """
        try:
            names = orjson.loads((folder / _CONFIG).read_bytes())["components"]
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise WorkspaceError(
                f"{folder} holds no query components ({type(exc).__name__}: {exc}); train them "
                "with 'shopsearch train --stage query'"
            ) from exc
        return cls([QUERY_COMPONENTS.get(n).load(folder / _folder(n)) for n in names])


def _folder(name: str) -> str:
    """A folder name for a component name (a dotted path becomes a plain name)."""
    return name.replace(":", "_").replace("/", "_")


__all__ = ["QueryModels"]
