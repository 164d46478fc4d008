"""The search pipeline: ``Engine.search`` runs the configured stages in order.

Modules: :mod:`.request` (what a search takes and returns), :mod:`.state` (what a search carries
from stage to stage), :mod:`.stage` (the stage contract and registry), :mod:`.stages` (the
built-in stages: query, retrieve, prerank, rank, rerank) and :mod:`.engine` (the engine of one
bundle). Import from those modules; this package's ``__init__`` stays empty so that importing
:mod:`.request` stays light.
"""
