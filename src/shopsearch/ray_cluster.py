"""Joining a Ray cluster (``pip install "shopsearch[ray]"``; issue 19), for every layer that
spreads work over one: catalog encoding (:mod:`shopsearch.training.distributed`) and evaluation
(:mod:`shopsearch.evaluate.parallel`).

``address``: ``None`` starts a local Ray instance on 127.0.0.1 with ``workers`` CPUs, ``"auto"``
joins the cluster this machine belongs to, ``HOST:PORT`` a given one. On the command line
``local`` stands for ``None`` (:func:`cluster_address`).
"""

from __future__ import annotations

from typing import Any

from shopsearch.errors import InvalidInputError

__all__ = ["cluster_address", "connect", "ray_module"]


def ray_module() -> Any:
    """The ``ray`` package, or a clear error when the extra is not installed."""
    try:
        import ray
    except ImportError as exc:  # the default install is Ray-free
        raise InvalidInputError(
            'Ray is not installed; install the extra: pip install "shopsearch[ray]"'
        ) from exc
    return ray


def cluster_address(text: str) -> str | None:
    """The address of a ``--ray-address`` value: ``local`` is ``None`` (start one here)."""
    return None if text == "local" else text


def connect(address: str | None, workers: int) -> None:
    """Join (or start) the Ray cluster once per process (see the module docstring)."""
    ray = ray_module()
    if ray.is_initialized():
        return
    if address is None:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1")  # fmt: skip
    else:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
