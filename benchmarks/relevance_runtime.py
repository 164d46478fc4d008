"""The relevance student's serving cost on torch and on ONNX Runtime (issue 20).

The relevance stage scores a search's candidates with the BERT2DNN student
(:meth:`~shopsearch.relevance.student.BERT2DNNStudent.score_vectors`): the query's side (hashed
features and an embedding bag, once per search) and the MLP over ``[q, p, q·p, |q − p|]`` of
every candidate, whose product vectors are precomputed. This times that call on one thread
against the same MLP exported to ONNX Runtime (query side still in torch), after checking both
give the same scores, so the choice of runtime rests on a measurement.

The cost depends on the network's shapes, not on its weights, so the student is fitted for one
epoch on generated pairs (``--pairs``), with the default sizes of
:class:`~shopsearch.relevance.student.StudentConfig`:

    python benchmarks/relevance_runtime.py --candidates 200 --queries 300 --report rel.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from shopsearch.relevance.student import BERT2DNNStudent, StudentConfig, StudentNetwork
from shopsearch.store.atomic import write_json

F32 = npt.NDArray[np.float32]


class _Scores(nn.Module):
    """The student's probability of relevance from the query's vector and product vectors."""

    def __init__(self, network: StudentNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, query: torch.Tensor, products: torch.Tensor) -> torch.Tensor:
        both = query.expand(products.shape[0], -1)
        return torch.sigmoid(self.network.logits(both, products))


def _texts(rng: np.random.Generator, count: int, words: int) -> list[str]:
    vocabulary = np.array([f"word{i}" for i in range(2000)])
    return [" ".join(rng.choice(vocabulary, words)) for _ in range(count)]


def _per_query_ms(score: Callable[[str], F32], queries: list[str], repeats: int) -> float:
    start = time.process_time()
    for _ in range(repeats):
        for query in queries:
            score(query)
    return 1000 * (time.process_time() - start) / (repeats * len(queries))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    import onnxruntime

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    student = BERT2DNNStudent(StudentConfig(epochs=1)).fit(
        _texts(rng, args.pairs, 3), _texts(rng, args.pairs, 10), rng.random(args.pairs)
    )
    products = student.product_vectors(_texts(rng, args.candidates, 10))
    queries = _texts(rng, args.queries, 3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "relevance.onnx"
        example = (torch.from_numpy(student.query_vector(queries[0])), torch.from_numpy(products))
        torch.onnx.export(
            _Scores(student.network_).eval(),
            example,
            str(path),
            input_names=["query", "products"],
            output_names=["scores"],
            dynamic_shapes={"query": {}, "products": {0: torch.export.Dim("rows")}},
            dynamo=True,
            verbose=False,
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )

    def on_onnx(query: str) -> F32:
        feed = {"query": student.query_vector(query), "products": products}
        return np.asarray(session.run(["scores"], feed)[0], np.float32)

    def on_torch(query: str) -> F32:
        return student.score_vectors(query, products)

    gap = max(float(np.abs(on_onnx(q) - on_torch(q)).max()) for q in queries)
    side = _per_query_ms(student.query_vector, queries, args.repeats)
    report = {
        "candidates": args.candidates,
        "queries": args.queries,
        "config": vars(StudentConfig()),
        "max_abs_difference": gap,
        "torch_ms": _per_query_ms(on_torch, queries, args.repeats),
        "onnx_ms": _per_query_ms(on_onnx, queries, args.repeats),
        "query_side_ms": side,
        "cpu": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    write_json(args.report, report)
    print(report)


if __name__ == "__main__":
    main()
