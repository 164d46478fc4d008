"""The HTTP search API: ``shopsearch serve``.

Modules: :mod:`.app` (the FastAPI application and its life cycle), one ``routes_*`` module per
group of endpoints, :mod:`.request_ids` (signed request ids), :mod:`.engines` (the live engine,
hot reload), :mod:`.metrics` and :mod:`.errors`. The durable event log that served searches
and events are written to, and its compaction into the workspace tables, are
:mod:`shopsearch.events.log` and :mod:`shopsearch.events.compaction`.
"""
