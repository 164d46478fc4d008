"""shopsearch: a learning e-commerce search engine.

Index a product catalog, learn every stage of a multi-stage search stack from the shop's own
search logs, transfer what a large storefront learned to small ones, and serve search over HTTP.
"""

from __future__ import annotations

from shopsearch.errors import ShopSearchError

__all__ = ["ShopSearchError", "__version__"]
__version__ = "0.1.0"
