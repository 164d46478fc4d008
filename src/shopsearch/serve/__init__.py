"""The HTTP search API: ``shopsearch serve``.

Modules: :mod:`.app` (the FastAPI application and its life cycle), one ``routes_*`` module per
group of endpoints, :mod:`.event_log` (the durable write-ahead log of served searches and
events), :mod:`.compaction` (log segments → workspace tables), :mod:`.request_ids` (signed
request ids), :mod:`.engines` (the live engine, hot reload), :mod:`.metrics` and :mod:`.errors`.

This package's ``__init__`` stays light (no FastAPI import) so that commands which only need
:func:`compact_event_log` start fast.
"""

from __future__ import annotations

from shopsearch.serve.compaction import CompactionResult, compact_event_log

__all__ = ["CompactionResult", "compact_event_log"]
