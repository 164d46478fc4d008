"""Generative retrieval with semantic IDs (issue 17; in progress).

Built so far: semantic IDs by residual quantization of product vectors
(:mod:`.quantize`, :mod:`.ids`) with the fixed-length, collision-suffixed codes of
``baseline/rq-fixed`` (TIGER-style), and the prefix trie of valid IDs that constrains decoding
(:mod:`.trie`). The generator, SA²CRQ's adaptive lengths, RAD-DPO, GenRec and SCI come next;
nothing here is served yet.
"""
