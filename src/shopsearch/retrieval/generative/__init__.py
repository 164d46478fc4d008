"""Generative retrieval with semantic IDs (issue 17; in progress).

Built so far: semantic IDs by residual quantization of product vectors (:mod:`.quantize`,
:mod:`.ids`) with the fixed-length, collision-suffixed codes of ``baseline/rq-fixed``
(TIGER-style), the prefix trie of valid IDs (:mod:`.trie`), the beam search constrained to it
(:mod:`.decode`; model-agnostic: it takes the next-token log-probabilities), and the generator
(:mod:`.model`: a small transformer decoder from a query vector to an ID, trained by SFT).
GenRec (:mod:`.pages`: pages and user histories from the search log; :mod:`.genrec`: the
generator with a query + history prompt, the asymmetric Token Merger and page-wise NTP;
:mod:`.grpo`: GRPO-SR; :mod:`.reward`: the logged reward model and relevance gate) is measured
on the simulator (``eval retrieval --dataset sim --genrec all``). SA²CRQ's adaptive lengths,
RAD-DPO, SCI and the retrieval source that serves it come next; nothing here is served yet.
"""
