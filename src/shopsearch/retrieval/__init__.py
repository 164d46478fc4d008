"""Retrieval: lexical (tantivy), dense (faiss), fusion and hybrid candidate generation."""
