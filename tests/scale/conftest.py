"""The local Ray cluster of the scale tests (started here on 127.0.0.1, 2 CPUs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray instance for the module's tests; skipped without Ray."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")  # fmt: skip
    yield
    ray.shutdown()
