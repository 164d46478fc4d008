"""The built-in pipeline stages, one module each: query → retrieve → prerank → rank → rerank."""
