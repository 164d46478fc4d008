"""Relevance: models that judge whether a product is relevant to a query.

* :mod:`.cross_encoder` — the teacher: a pretrained MiniLM fine-tuned as a cross-encoder (query
  and product text in one sequence → graded relevance), trained on judgments within a time
  budget, with checkpoints that a stopped job resumes from.
"""
