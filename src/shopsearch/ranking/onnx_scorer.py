"""A torch ranking model exported to ONNX and scored by ONNX Runtime at serving.

:func:`export_onnx` exports a trained :class:`~shopsearch.ranking.position_bias.PositionBiasModel`
with ``torch.onnx.export`` (the ``torch.export``-based exporter; the batch dimension dynamic) and
checks the exported graph against torch on a random batch of the model's feature spec before
keeping it: a model whose export fails or disagrees is served by torch instead
(:class:`OnnxExportError`). :class:`OnnxScorer` scores a :class:`RankingBatch` with it: the same
``click``/``cart``/``purchase`` probabilities as :func:`~shopsearch.ranking.train.predict`
(positions 0, as at serving), within float32 rounding.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from shopsearch.errors import ShopSearchError
from shopsearch.ranking.base import FeatureSpec, RankingBatch, RankingModel
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
#: Largest difference from torch an exported graph may have on the check batch.
TOLERANCE = 1e-5
_CHECK_ROWS = 16
F64 = npt.NDArray[np.float64]


class OnnxExportError(ShopSearchError):
    """The model could not be exported to ONNX, or the export disagrees with torch."""


class _TensorInputs(nn.Module):
    """The model as a function of the serving tensors (positions 0, no labels)."""

    def __init__(self, model: RankingModel) -> None:
        super().__init__()
        self.model = model

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


def export_onnx(model: RankingModel, spec: FeatureSpec, path: Path) -> Path:
    """Export ``model`` to ``path`` and check it against torch on :func:`check_batch`.

    Raises:
        OnnxExportError: the exporter failed, or the graph's probabilities differ from
            torch's by more than :data:`TOLERANCE` (nothing is left at ``path``).
    """
    model.eval()
    example = check_batch(spec)
    args = tuple(getattr(example, name) for name in INPUTS)
    rows = torch.export.Dim("rows", min=1, max=1_000_000)
    try:
        # Traced with autograd on: the models' inference fast paths (cached fused weights,
        # keyed by data pointers) stay out of the graph; the check below compares the graph
        # with them.
        with _quiet_exporter(), torch.enable_grad():
            torch.onnx.export(
                _TensorInputs(model),
                args,
                str(path),
                input_names=list(INPUTS),
                output_names=list(TASKS),
                dynamic_shapes={name: {0: rows} for name in INPUTS},
                dynamo=True,
                external_data=False,  # one file: the weights are small
                verbose=False,
            )
        scorer = OnnxScorer(path, threads=1)
        # Two sizes: the exporter falls back to fixed shapes when the rows cannot stay dynamic.
        checks = [example, check_batch(spec, rows=3, seed=1)]
        got = [scorer.score(batch) for batch in checks]
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
    return path


class OnnxScorer:
    """An exported ranking model in an ONNX Runtime session.

    Args:
        path: the ``.onnx`` file of :func:`export_onnx`.
        threads: intra-op threads (the server's compute threads; 0: ONNX Runtime's default).
    """

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )

    def score(self, batch: RankingBatch) -> dict[str, F64]:
        """``{"click", "cart", "purchase"}`` probabilities per row, as float64."""
        if len(batch) == 0:
            return {task: np.zeros(0) for task in TASKS}
        feed = {name: getattr(batch, name).contiguous().numpy() for name in INPUTS}
        outputs = self.session.run(list(TASKS), feed)
        return {task: np.asarray(out, np.float64) for task, out in zip(TASKS, outputs, strict=True)}


__all__ = [
    "INPUTS",
    "TASKS",
    "TOLERANCE",
    "OnnxExportError",
    "OnnxScorer",
    "check_batch",
    "export_onnx",
]


def _name(model: RankingModel) -> str:
    """The registry name of ``model`` (inside its position-bias wrapper)."""
    inner = getattr(model, "inner", model)
    return str(inner.name)
