"""Text for retrieval: sentence encoders, hashed n-gram features, product text, embedding and
query-vector caches."""
