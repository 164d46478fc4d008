"""Query understanding: what the shop's users mean by what they type, learned from its logs.

Components (each a :class:`~.base.QueryComponent` in :data:`~.base.QUERY_COMPONENTS`) run in a
fixed order on a :class:`~.base.QueryAnalysis` — normalisation (units, the head product type),
spelling correction, intent (categories), rewriting — and are trained together from one
:class:`~.data.QueryData` (``shopsearch train --stage query``). The pipeline's ``query`` stage
runs the bundle's components; retrieval reads the analysis as a
:class:`~shopsearch.retrieval.base.QueryPlan`.
"""
