"""Torch ranking models: baselines (:mod:`.baselines`) and the papers' models (:mod:`.paper`)."""
