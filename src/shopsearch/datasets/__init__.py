"""Loaders for public dataset formats, one module per format, found by name in :data:`LOADERS`."""

from __future__ import annotations

from shopsearch.datasets.base import LOADED_TABLES, LoadedData, Loader
from shopsearch.datasets.registry import LOADERS, get_loader

__all__ = ["LOADED_TABLES", "LOADERS", "LoadedData", "Loader", "get_loader"]
