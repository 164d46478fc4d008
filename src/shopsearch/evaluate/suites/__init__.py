"""Evaluation suites: each builds its systems and baselines in one run and writes one report."""
