"""Evaluation suites: each builds its systems and baselines in one run and writes one report.

Each module registers its :class:`~shopsearch.evaluate.suite.Suite` in
:data:`~shopsearch.evaluate.suite.SUITES`; ``click_samples`` and ``judged`` are shared helpers.
"""
