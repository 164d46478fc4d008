"""Ranking training on Ray (issue 19): one ranking model trained on a simulated log locally and
with 1 and 2 Ray Train workers on a local cluster; the loop's seconds per epoch (measured inside
the workers, without Ray's start-up) and each run's wall time.

    python benchmarks/ray_train.py --report ray-train.json [--model dnn] [--batch-size 8192]
        [--sessions 4000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from shopsearch.ranking.ranker import train_ranker
from shopsearch.ranking.samples import build_samples
from shopsearch.ranking.train import TrainConfig
from shopsearch.ray_cluster import connect
from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace
from shopsearch.training.distributed_train import RayTraining


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--model", default="dnn")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--sessions", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    world = SimulationConfig(domains=2, products=1000, users=600, sessions=args.sessions, seed=1)
    with tempfile.TemporaryDirectory(prefix="shopsearch-ray-train-") as tmp:
        simulate(Workspace.create(Path(tmp)), world)
        samples = build_samples(Workspace.open(Path(tmp)).connect())
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, patience=args.epochs)
    connect(None, 2)
    runs: dict[str, dict[str, object]] = {}
    for name, backend in (("local", None), ("1", RayTraining(workers=1)),
                          ("2", RayTraining(workers=2))):  # fmt: skip
        start = time.perf_counter()
        ranker = train_ranker(samples, args.model, "feature", cfg, backend=backend)
        history = ranker.info["history"]
        runs[name] = {
            "wall_s": time.perf_counter() - start,
            "epoch_s": [h["seconds"] for h in history],
            "valid_loss": [h["valid_loss"] for h in history],
        }
        print(name, runs[name])

    def per_epoch(run: str) -> float:
        return float(np.median(runs[run]["epoch_s"]))  # type: ignore[arg-type]

    report = {
        "model": args.model,
        "impressions": len(samples),
        "config": {"batch_size": args.batch_size, "epochs": args.epochs},
        "runs": runs,
        "epoch_speedup_2_over_1": per_epoch("1") / per_epoch("2"),
        "epoch_speedup_2_over_local": per_epoch("local") / per_epoch("2"),
        "cpu": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    write_json(args.report, report)
    print(report)


if __name__ == "__main__":
    main()
