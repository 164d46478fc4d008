"""Catalog data model: domains (storefronts / markets) and products."""

from __future__ import annotations

from shopsearch.catalog.models import CATEGORY_SEPARATOR, Domain, Product

__all__ = ["CATEGORY_SEPARATOR", "Domain", "Product"]
