"""The evaluation-suite contract: one small protocol every suite implements, and its registry.

A suite builds its systems and baselines on one kind of data, evaluates them and returns one
:class:`~shopsearch.evaluate.report.Report`. Like a sentence-transformers ``SentenceEvaluator``
it declares the metric its report ranks the systems by (``primary_metric``) and is run by
calling it. It is a class registered in :data:`SUITES` under its ``name``, with a config
dataclass (``config_type``) that owns every default and whose annotated fields are its
command-line options (:mod:`shopsearch.evaluate.options`).

Names, as ``shopsearch eval`` addresses them:

* ``family``: the command ``shopsearch eval family``;
* ``family/dataset``: the suites of one family share the command ``shopsearch eval family
  --dataset dataset``, with the options of all of them; the family's first suite in registry
  order is the default ``--dataset``. Each is also ``shopsearch eval family/dataset``.

Adding a suite is one new module with a registered class, plus that module in
:data:`SUITES`' ``modules``; an outside package registers its suites with ``@SUITES.register()``
or the entry-point group ``shopsearch.suites``, or runs one by dotted path
(``shopsearch eval package.module:MySuite --report r.json``).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import Report
from shopsearch.progress import Say, silent
from shopsearch.registry import Registry, subclass_of

C = TypeVar("C")


class Suite(ABC, Generic[C]):
    """One evaluation suite; the first paragraph of its docstring is its summary, the rest (an
    ``Example:`` command line) completes its ``--help``."""

    #: The registry name: ``family`` or ``family/dataset`` (see the module docstring).
    name: ClassVar[str]
    #: The config dataclass: every default, and the command-line options.
    config_type: ClassVar[type[Any]]
    #: The metric every system of the report has, listed first.
    primary_metric: ClassVar[str]

    @abstractmethod
    def run(self, config: C, say: Say) -> Report:
        """Build, evaluate and report every system; ``say`` tells the user what runs."""

    def __call__(self, config: C, say: Say = silent) -> Report:
        """:meth:`run`, checking the config's type and the report's primary metric.

        Raises:
            InvalidInputError: for a config of another type, or a report whose primary metric
                is not the one the suite declares.
        """
        if not isinstance(config, self.config_type):
            raise InvalidInputError(
                f"suite {self.name!r} takes a {self.config_type.__name__}, not a "
                f"{type(config).__name__}; build its config with {self.config_type.__name__}(...)"
            )
        report = self.run(config, say)
        if report.primary_metric != self.primary_metric:
            raise InvalidInputError(
                f"suite {self.name!r} declares primary metric {self.primary_metric!r} but its "
                f"report's is {report.primary_metric!r}; make the two agree"
            )
        return report

    @classmethod
    def summary(cls) -> str:
        """The first paragraph of the class docstring, on one line."""
        first = inspect.cleandoc(cls.__doc__ or cls.name).split("\n\n")[0]
        return " ".join(first.split())


#: Suite name → class, in the order ``shopsearch eval --help`` lists them.
SUITES: Registry[type[Suite[Any]]] = Registry(
    "suites",
    modules=(
        "shopsearch.evaluate.suites.relevance",
        "shopsearch.evaluate.suites.retrieval_sim",
        "shopsearch.evaluate.suites.ranking_sim",
        "shopsearch.evaluate.suites.ranking_trivago",
        "shopsearch.evaluate.suites.ranking_bestbuy",
        "shopsearch.evaluate.suites.online",
        "shopsearch.evaluate.suites.transfer_sim",
        "shopsearch.evaluate.suites.transfer_relevance",
        "shopsearch.evaluate.suites.transfer_trivago",
        "shopsearch.evaluate.suites.query_sim",
        "shopsearch.evaluate.suites.suggest_sim",
        "shopsearch.evaluate.suites.suggest_bestbuy",
        "shopsearch.evaluate.suites.stages",
    ),
    check=subclass_of(Suite),
)

__all__ = ["SUITES", "Suite"]
