"""Generative retrieval with semantic IDs (issue 17): a model that *generates* product
identifiers, served as a retrieval source beside the lexical, dense and two-tower ones.

- **Semantic IDs**: residual k-means codes of product vectors (:mod:`.quantize`).
  ``baseline/rq-fixed`` IDs are fixed-length codes with a collision suffix (:mod:`.ids`,
  TIGER-style). **SA²CRQ** IDs (:mod:`.adaptive_ids`, :mod:`.sarq`) take their length from
  traffic: head products get long, distinct IDs; tail and cold products share shorter ones (our
  reading of "path entropy", [U1]). Anchored curriculum quantization
  (:meth:`.ResidualKMeans.fit_anchored`, simplified, [U2]) is built but off: it lost on Home
  Depot.
- **Decoding**: the prefix trie of valid IDs (:mod:`.trie`) and beam search constrained to it
  (:mod:`.decode`), so no ID that no product has is ever emitted; the generator decodes
  incrementally with a key/value cache (:mod:`.incremental`).
- **The generator** (:mod:`.model`): a small transformer decoder from a query vector to an ID,
  trained by SFT (:mod:`.train`), aligned by DPO or **RAD-DPO** (:mod:`.preference`,
  :mod:`.pairs`, :mod:`.align_train`).
- **Serving** (:mod:`.retriever`, :mod:`.trained`): the ``generative`` source. New products get
  IDs from their text without retraining.
- **GenRec** (:mod:`.pages`, :mod:`.genrec`, :mod:`.grpo`, :mod:`.reward`): page-wise training
  with a query + user-history prompt, the asymmetric Token Merger and GRPO-SR, measured on the
  simulator (``eval retrieval --dataset sim --genrec all``). Served as the ``genrec`` source
  (:mod:`.genrec_train`, :mod:`.genrec_retriever`): the retrieve stage puts the searching user's
  history from the log into the query plan.
"""
