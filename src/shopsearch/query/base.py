"""The query-understanding contract: what an analysis holds, and one component's protocol."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

from shopsearch.registry import Registry, subclass_of

if TYPE_CHECKING:
    from shopsearch.query.data import QueryData


@dataclass
class QueryAnalysis:
    """What query understanding made of one query, component by component.

    Attributes:
        original: what the user typed.
        text: the query as later stages search for it (normalised, corrected).
        domain: the market searched (``None``: every market).
        correction: the corrected query when the speller changed it (``None``: unchanged).
        intents: ``(category path, probability)`` pairs, most likely first (``"A > B > C"``).
        rewrites: ``(extra query, weight)`` pairs retrieval also searches for.
        head: the words that name the product type (they must match; the others only boost).
        notes: what each component did, for ``--explain`` (component name → detail).
    """

    original: str
    text: str
    domain: str | None = None
    correction: str | None = None
    intents: list[tuple[str, float]] = field(default_factory=list)
    rewrites: list[tuple[str, float]] = field(default_factory=list)
    head: tuple[str, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)


class QueryComponent(ABC):
    """One step of query understanding: fitted on :class:`~.data.QueryData`, saved in the
    bundle's ``query/<name>/`` folder, applied to every search's :class:`QueryAnalysis`.

    Fitted state ends in ``_``; applying an unfitted component raises
    :class:`~shopsearch.errors.NotFittedError`.
    """

    #: The registry name (``normalize``, ``spell``, ``intent``, ``rewrite``).
    name: ClassVar[str]
    #: Where it runs among the components of a bundle (lower first).
    order: ClassVar[int]
    #: A baseline or ablation for evaluations, not trained by default.
    baseline: ClassVar[bool] = False
    #: Trained by ``train --stage query`` without ``--model`` (false for a baseline, and for
    #: a component measured not to help on its own, trained only when named).
    default: ClassVar[bool] = True

    @abstractmethod
    def fit(self, data: QueryData) -> Self:
        """Learn from a shop's logs (or judgments) and catalog; returns ``self``."""

    @abstractmethod
    def apply(self, analysis: QueryAnalysis) -> None:
        """Add what this component finds to ``analysis`` (in place), and a note."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the fitted component as plain files (json, npy, safetensors) to ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> Self:
        """Read a component written by :meth:`save`."""


def default_components() -> list[str]:
    """The registered components trained when none are named: not baselines, ``default``."""
    return [n for n, cls in QUERY_COMPONENTS.items() if cls.default and not cls.baseline]


#: Component name → class.
QUERY_COMPONENTS: Registry[type[QueryComponent]] = Registry(
    "query components",
    modules=(
        "shopsearch.query.spell",
        "shopsearch.query.symspell_baseline",
        "shopsearch.query.normalize",
        "shopsearch.query.suggest",
        "shopsearch.query.rewrite",
        "shopsearch.query.rm3",
        "shopsearch.query.mman",
        "shopsearch.query.intent_baselines",
    ),
    check=subclass_of(QueryComponent),
)

__all__ = ["QUERY_COMPONENTS", "QueryAnalysis", "QueryComponent", "default_components"]
