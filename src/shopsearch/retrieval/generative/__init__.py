"""Generative retrieval with semantic IDs (issue 17; in progress).

Built so far: semantic IDs by residual quantization of product vectors (:mod:`.quantize`,
:mod:`.ids`) with the fixed-length, collision-suffixed codes of ``baseline/rq-fixed``
(TIGER-style), the prefix trie of valid IDs (:mod:`.trie`), the beam search constrained to it
(:mod:`.decode`; model-agnostic: it takes the next-token log-probabilities), and the generator
(:mod:`.model`: a small transformer decoder from a query vector to an ID, trained by SFT).
SA²CRQ: adaptive, traffic-driven ID lengths with shared tail buckets (:mod:`.adaptive_ids`,
:mod:`.sarq`; our reading of "path entropy", [U1]) and anchored curriculum residual
quantization (:meth:`.ResidualKMeans.fit_anchored`, simplified, [U2]). RAD-DPO, GenRec, SCI
and the retrieval source that serves it come next; nothing here is served yet.
"""
