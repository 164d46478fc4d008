"""A torch ranking model exported to ONNX and scored by ONNX Runtime at serving.

:func:`export_onnx` exports a trained :class:`~shopsearch.ranking.position_bias.PositionBiasModel`
with ``torch.onnx.export`` (the ``torch.export``-based exporter; the batch dimension dynamic) and
checks the exported graph against torch on a random batch of the model's feature spec before
keeping it: a model whose export fails or disagrees is served by torch instead
(:class:`OnnxExportError`). :class:`OnnxScorer` scores a :class:`RankingBatch` with it: the same
``click``/``cart``/``purchase`` probabilities as :func:`~shopsearch.ranking.train.predict`
(positions 0, as at serving), within float32 rounding.

A served request's rows share one user's behaviour sequence (one row expanded). The models embed
such a sequence once (:func:`~shopsearch.ranking.models.layers.shared_rows`), but a graph traced
on rows of their own embeds it for every row: about half of the DNN's graph time at 180 rows.
So a second graph is exported beside the first (:func:`shared_graph_path`) whose sequence
inputs are the one row, expanded inside, so that the shared path is what is traced;
:class:`OnnxScorer` runs it on a batch whose sequence tensors are one row expanded, and the
first graph on any other batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from shopsearch.errors import ShopSearchError
from shopsearch.ranking.base import FeatureSpec, RankingBatch, RankingModel
from shopsearch.ranking.models.layers import shared_rows
from shopsearch.ranking.train import predict

#: The batch tensors the exported graph reads, in order (the rest are labels and weights).
INPUTS: tuple[str, ...] = (
    "dense",
    "sparse",
    "item",
    "item_category",
    "query_category",
    "domain",
    "seq_items",
    "seq_categories",
    "seq_kinds",
    "seq_age",
)
TASKS: tuple[str, ...] = ("click", "cart", "purchase")
#: The inputs of the behaviour sequence: one row in the shared-sequence graph.
SEQUENCE_INPUTS: tuple[str, ...] = ("seq_items", "seq_categories", "seq_kinds", "seq_age")
#: Largest difference from torch an exported graph may have on the check batch.
TOLERANCE = 1e-5
_CHECK_ROWS = 16
log = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]


class OnnxExportError(ShopSearchError):
    """The model could not be exported to ONNX, or the export disagrees with torch."""


class _TensorInputs(nn.Module):
    """The model as a function of the serving tensors (positions 0, no labels).

    ``shared_sequence``: the sequence tensors are given as one row (``[1, L]``) and expanded
    over the rows inside, so the models' shared-sequence path is what is traced.
    """

    def __init__(self, model: RankingModel, shared_sequence: bool = False) -> None:
        super().__init__()
        self.model = model
        self.shared_sequence = shared_sequence

    def forward(
        self,
        dense: Tensor,
        sparse: Tensor,
        item: Tensor,
        item_category: Tensor,
        query_category: Tensor,
        domain: Tensor,
        seq_items: Tensor,
        seq_categories: Tensor,
        seq_kinds: Tensor,
        seq_age: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``p_click``, ``p_cart``, ``p_purchase`` of each row."""
        if self.shared_sequence:
            rows = dense.shape[0]
            seq_items, seq_categories, seq_kinds, seq_age = (
                t.expand(rows, -1) for t in (seq_items, seq_categories, seq_kinds, seq_age)
            )
        zeros = torch.zeros_like(domain)
        labels = torch.zeros_like(seq_age[:, 0])
        batch = RankingBatch(
            dense, sparse, item, item_category, query_category, domain, zeros, seq_items,
            seq_categories, seq_kinds, seq_age, zeros, labels, labels, labels, labels,
        )  # fmt: skip
        out = self.model(batch)
        return out.p_click, out.p_cart, out.p_purchase


def check_batch(spec: FeatureSpec, rows: int = _CHECK_ROWS, seed: int = 0) -> RankingBatch:
    """A random batch of ``spec``'s shapes and vocabularies (ids in range, some padding)."""
    gen = torch.Generator().manual_seed(seed)

    def ids(high: int, *shape: int) -> Tensor:
        return torch.randint(0, max(high, 1), shape, generator=gen)

    length, depth = spec.seq_len, spec.category_depth
    sparse = torch.stack([ids(c, rows) for c in spec.sparse_cardinalities], dim=1)
    labels = torch.zeros(rows)
    return RankingBatch(
        dense=torch.randn(rows, len(spec.dense_names), generator=gen),
        sparse=sparse.reshape(rows, len(spec.sparse_cardinalities)),
        item=ids(spec.n_items, rows),
        item_category=ids(spec.n_categories, rows, depth),
        query_category=ids(spec.n_categories, rows, depth),
        domain=ids(spec.n_domains, rows),
        position=torch.zeros(rows, dtype=torch.int64),
        seq_items=ids(spec.n_items, rows, length),
        seq_categories=ids(spec.n_categories, rows, length),
        seq_kinds=ids(spec.n_kinds, rows, length),
        seq_age=torch.rand(rows, length, generator=gen),
        group=torch.zeros(rows, dtype=torch.int64),
        click=labels,
        cart=labels,
        purchase=labels,
        weight=torch.ones(rows),
    )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's deprecation warnings and progress lines off (pytest makes warnings
    errors; the server's log is no place for them)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def shared_graph_path(path: Path) -> Path:
    """Where the shared-sequence graph of the graph at ``path`` is (``model.shared.onnx``)."""
    return path.with_suffix(".shared.onnx")


def export_onnx(model: RankingModel, spec: FeatureSpec, path: Path) -> Path:
    """Export ``model`` to ``path`` and check it against torch on :func:`check_batch`; then the
    shared-sequence graph to :func:`shared_graph_path`, kept only when it exports and agrees.

    Raises:
        OnnxExportError: the exporter failed, or the graph's probabilities differ from
            torch's by more than :data:`TOLERANCE` (nothing is left at ``path``).
    """
    model.eval()
    shared = shared_graph_path(path)
    shared.unlink(missing_ok=True)  # never beside a graph of another model
    # Two sizes: the exporter falls back to fixed shapes when the rows cannot stay dynamic.
    checks = [check_batch(spec), check_batch(spec, rows=3, seed=1)]
    _export(_TensorInputs(model), checks, path, min_rows=1)
    try:
        # At least 2 rows: one row is not "shared", and the models' test of it is traced.
        _export(_TensorInputs(model, True), [_one_sequence(b) for b in checks], shared, 2)
    except OnnxExportError as exc:
        log.info("no shared-sequence graph for %s (%s); one graph serves every batch", path, exc)
    return path


def _one_sequence(batch: RankingBatch) -> RankingBatch:
    """``batch`` with its first row's sequence expanded over every row (a served request)."""
    one = {
        name: getattr(batch, name)[:1].expand_as(getattr(batch, name)) for name in SEQUENCE_INPUTS
    }
    return dataclasses.replace(batch, **one)


def _export(module: _TensorInputs, checks: list[RankingBatch], path: Path, min_rows: int) -> None:
    """Export ``module`` to ``path`` (rows dynamic from ``min_rows``; for a shared-sequence
    module the sequence inputs are one row) and compare it with torch on ``checks``."""
    model = module.model
    shared = module.shared_sequence
    rows = torch.export.Dim("rows", min=min_rows, max=1_000_000)
    dynamic = {name: None if shared and name in SEQUENCE_INPUTS else {0: rows} for name in INPUTS}
    args = tuple(_feed_tensor(checks[0], name, shared) for name in INPUTS)
    try:
        # Traced with autograd on: the models' inference fast paths (cached fused weights,
        # keyed by data pointers) stay out of the graph; the check below compares the graph
        # with them.
        with _quiet_exporter(), torch.enable_grad():
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=list(INPUTS),
                output_names=list(TASKS),
                dynamic_shapes=dynamic,
                dynamo=True,
                external_data=False,  # one file: the weights are small
                verbose=False,
            )
        session = _session(path, threads=1)
        got = [_run(session, batch, shared) for batch in checks]
    except Exception as exc:  # the exporter raises many kinds; any means "serve with torch"
        path.unlink(missing_ok=True)
        raise OnnxExportError(f"ONNX export of {_name(model)} failed: {exc}") from exc
    want = [predict(model, batch) for batch in checks]
    diff = max(
        float(np.abs(g[t] - w[t]).max()) for g, w in zip(got, want, strict=True) for t in TASKS
    )
    if not diff <= TOLERANCE:
        path.unlink(missing_ok=True)
        raise OnnxExportError(
            f"ONNX export of {_name(model)} differs from torch by {diff:.2e} (> {TOLERANCE})"
        )


def _feed_tensor(batch: RankingBatch, name: str, shared: bool) -> Tensor:
    tensor: Tensor = getattr(batch, name)
    return tensor[:1] if shared and name in SEQUENCE_INPUTS else tensor


def _session(path: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session: Any, batch: RankingBatch, shared: bool) -> dict[str, F64]:
    feed = {name: _feed_tensor(batch, name, shared).contiguous().numpy() for name in INPUTS}
    outputs = session.run(list(TASKS), feed)
    return {task: np.asarray(out, np.float64) for task, out in zip(TASKS, outputs, strict=True)}


class OnnxScorer:
    """An exported ranking model in ONNX Runtime sessions: the graph at ``path``, and its
    shared-sequence graph when one was exported beside it (:func:`shared_graph_path`).

    Args:
        path: the ``.onnx`` file of :func:`export_onnx`.
        threads: intra-op threads (the server's compute threads; 0: ONNX Runtime's default).

    Attributes:
        path, threads: as given. ``path`` may be gone once the sessions are built (a graph
            exported to a temporary folder at load, when the ranker had none saved).
        session: the graph's session, for any batch.
        shared_session: the shared-sequence graph's session, or ``None`` when none was
            exported.
    """

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = path
        self.threads = threads
        self.session = _session(path, threads)
        shared = shared_graph_path(path)
        self.shared_session = _session(shared, threads) if shared.is_file() else None

    def score(self, batch: RankingBatch) -> dict[str, F64]:
        """``{"click", "cart", "purchase"}`` probabilities per row, as float64."""
        if len(batch) == 0:
            return {task: np.zeros(0) for task in TASKS}
        sequence = [getattr(batch, name) for name in SEQUENCE_INPUTS]
        if self.shared_session is not None and shared_rows(*sequence):
            return _run(self.shared_session, batch, shared=True)
        return _run(self.session, batch, shared=False)


__all__ = [
    "INPUTS",
    "TASKS",
    "TOLERANCE",
    "OnnxExportError",
    "OnnxScorer",
    "check_batch",
    "export_onnx",
    "shared_graph_path",
]


def _name(model: RankingModel) -> str:
    """The registry name of ``model`` (inside its position-bias wrapper)."""
    inner = getattr(model, "inner", model)
    return str(inner.name)
