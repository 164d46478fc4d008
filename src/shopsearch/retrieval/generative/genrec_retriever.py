"""The ``genrec`` retrieval source: GenRec's generator served like the ``generative`` one, with
the searching user's history in its prompt.

Everything but the prompt is :class:`~.retriever.GenerativeRetriever`'s: the IDs of the catalog
(new products get theirs from their text, without retraining), the trie, filters, the in-bucket
order, saving and loading. The history comes from :attr:`~shopsearch.retrieval.base.QueryPlan.
history`, which the pipeline's retrieve stage fills from the workspace's log for the request's
``user_id``; a product of the history the model was not trained on is left out of the prompt
(it has no row in the model's ID table), and a search without a user has an empty history.
"""

from __future__ import annotations

from typing import ClassVar

from shopsearch.catalog.candidates import ProductKey
from shopsearch.retrieval.base import Capability, QueryPlan
from shopsearch.retrieval.generative.decode import StepScores
from shopsearch.retrieval.generative.retriever import F32, GenerativeRetriever
from shopsearch.retrieval.registry import RETRIEVERS


@RETRIEVERS.register()
class GenRecRetriever(GenerativeRetriever):
    """GenRec's constrained decoding of the first item of the page (see the module docstring).

    Args:
        model: a model of :func:`~.genrec_train.train_genrec`; ``None`` only for :meth:`load`.
        beam: open prefixes kept per depth.
        cache_dir: embedding cache for new products' vectors.
    """

    name = "genrec"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({"updates", "history"})

    def _steps(self, vector: F32, plan: QueryPlan | None) -> StepScores:
        """GenRec's scorer with the prompt of the query and the plan's history."""
        from shopsearch.retrieval.generative.genrec import GenRec, history_rows

        generator = self.model.generator
        if not isinstance(generator, GenRec):
            raise self._wrong_generator(generator)
        history = plan.history if plan is not None else ()
        stages = plan.history_stages if plan is not None else ()
        if len(stages) != len(history):
            stages = (2.0,) * len(history)  # a history without stages: clicks
        trained = len(generator.tokens)
        row_of: dict[ProductKey, int] = {}
        for key in history:
            row = self._row_of_id.get(key, trained)
            if row < trained:  # a product the model was trained on
                row_of[key] = row
        rows, index = history_rows([history], [stages], row_of, generator.genrec.history)
        return generator.step_scores(vector, rows[0], index[0])


__all__ = ["GenRecRetriever"]
