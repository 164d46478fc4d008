"""Cost per query of the dense query encoders (issue 20): MiniLM, model2vec, the two-tower.

Encodes ``--queries`` distinct queries one at a time, as a search does when its query misses
the query-vector cache, after a warm-up of 20 queries, and reports per encoder the wall and
thread-CPU microseconds per query (mean, p50, p99), the vector length and the seconds to load
and encode one query (model2vec: from its distilled folder, which ``--encoder-dir`` must
already hold or it is distilled first, that time reported apart; the two-tower's, a saved
``hashed+minilm`` model, excludes the MiniLM it shares, loaded just before). The queries are
the ``search_term`` column of a Home Depot judgments file (latin-1). Torch runs one thread, as
the server does.

    python benchmarks/query_encoders.py --queries-file hd-test.csv --encoder-dir cache/encoders \
        --two-tower cache/mmse-two-tower --report query-encoders.json
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopsearch.store.atomic import write_json
from shopsearch.text.encoders import Encoder, MiniLMEncoder, cap_encoder_threads


def _time(encoder: Encoder, queries: list[str]) -> dict[str, Any]:
    for query in queries[:20]:
        encoder.encode_queries([query])
    wall, cpu = [], []
    for query in queries:
        w, c = time.perf_counter(), time.thread_time()
        encoder.encode_queries([query])
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
    out: dict[str, Any] = {"queries": len(queries), "dim": encoder.dim}
    for name, values in (("wall", wall), ("cpu", cpu)):
        us = 1e6 * np.asarray(values)
        out[f"{name}_us_mean"] = float(us.mean())
        out[f"{name}_us_p50"] = float(np.percentile(us, 50))
        out[f"{name}_us_p99"] = float(np.percentile(us, 99))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries-file", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--encoder-dir", type=Path, required=True, help="model2vec folder root")
    parser.add_argument("--model2vec-dims", type=int, default=256)
    parser.add_argument("--two-tower", type=Path, help="a saved TwoTowerEncoder folder")
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cap_encoder_threads(1)
    frame = pd.read_csv(args.queries_file, encoding="latin-1", usecols=["search_term"])
    queries = list(dict.fromkeys(frame["search_term"].astype(str)))[: args.queries]
    report: dict[str, Any] = {"load": os.getloadavg(), "encoders": {}}

    from shopsearch.text.static_encoder import Model2VecEncoder

    static = Model2VecEncoder(pca_dims=args.model2vec_dims, folder=str(args.encoder_dir))
    start = time.perf_counter()
    static.distill()
    report["model2vec_distill_s"] = time.perf_counter() - start
    minilm = MiniLMEncoder()

    def two_tower() -> Encoder:
        from shopsearch.retrieval.mmse import TwoTowerEncoder

        return TwoTowerEncoder.load(args.two_tower, dense_encoder=minilm)  # MiniLM: loaded

    # each built when its turn comes, so load_s is its own (the two-tower's excludes MiniLM)
    factories: dict[str, Callable[[], Encoder]] = {
        "minilm": lambda: minilm,
        "model2vec": lambda: static,
    }
    if args.two_tower is not None:
        factories["two-tower"] = two_tower
    for name, factory in factories.items():
        start = time.perf_counter()
        encoder = factory()
        encoder.encode_queries(["warm up"])
        loaded = time.perf_counter() - start
        result = {"load_s": loaded, "version": encoder.version, **_time(encoder, queries)}
        report["encoders"][name] = result
        print(
            f"{name:10s} dim {result['dim']:4d}  wall us/query mean {result['wall_us_mean']:9.1f}"
            f" p50 {result['wall_us_p50']:9.1f} p99 {result['wall_us_p99']:9.1f}  cpu mean "
            f"{result['cpu_us_mean']:9.1f}  load {loaded:.2f} s"
        )
    report["load_after"] = os.getloadavg()
    write_json(args.report, report)


if __name__ == "__main__":
    main()
