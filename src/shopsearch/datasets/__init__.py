"""Loaders for public dataset formats, one module per format, found by name in :data:`LOADERS`."""

from __future__ import annotations

from shopsearch.datasets.base import LOADED_TABLES, LoadedData, Loader, Malformed
from shopsearch.datasets.registry import LOADERS, get_loader, load

__all__ = ["LOADED_TABLES", "LOADERS", "LoadedData", "Loader", "Malformed", "get_loader", "load"]
