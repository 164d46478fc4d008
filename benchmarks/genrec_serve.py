"""The served GenRec source (issue 17) on a simulated shop: training time, and the cost of
searching through the engine with each user's logged history in the prompt.

Simulates a workspace, indexes it (lexical + MiniLM dense), trains ``--model genrec`` (page-wise
SFT on every logged search with an interaction), loads the engine and runs ``--searches`` logged
(query, market, user) triples through ``Engine.search``, one at a time. Reports the history
lengths the retrieve stage passed, the genrec source's milliseconds per search
(``retrieve.genrec``) and the whole search's, p50/p99, and the share of searches whose
genrec candidates change when the user is left out (the history reaches the model).

    python benchmarks/genrec_serve.py --workspace W --report genrec-serve.json
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from shopsearch.bench.timing import percentiles_ms
from shopsearch.config import RetrievalSettings, Settings
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.stages.retrieve import RetrieveStage
from shopsearch.pipeline.state import QueryInfo
from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index
from shopsearch.training.retrieval import train_retrieval_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, required=True, help="a new folder")
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--searches", type=int, default=500)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ws = Workspace.create(args.workspace)
    simulate(ws, SimulationConfig(products=args.products, sessions=args.sessions, seed=0))
    settings = Settings(
        retrieval=RetrievalSettings.model_validate({"learned": ["genrec"], "fusion": "rrf"})
    )
    build_index(ws, settings)
    start = time.perf_counter()
    train_retrieval_bundle(ws, settings, say=print)
    train_s = time.perf_counter() - start
    engine = Engine.load(ws, settings)
    stage = next(s for _, s in engine.stages if isinstance(s, RetrieveStage))
    logged = (
        ws.connect()
        .execute(
            "SELECT query, domain, user_id FROM requests USING SAMPLE "
            f"{args.searches} ROWS (reservoir, 1)"
        )
        .fetchall()
    )
    genrec_ms, total_ms, history, changed = [], [], [], 0
    source = engine.retrieval.sources["genrec"]
    for query, domain, user in logged:
        plan = stage.plan(QueryInfo(query, query), user)
        history.append(len(plan.history) if plan is not None else 0)
        response = engine.search(SearchParams(query=query, domain=domain, user_id=user))
        genrec_ms.append(response.timings_ms["retrieve.genrec"])
        total_ms.append(response.timings_ms["total"])
        if plan is not None and plan.history:
            alone = source.search(query, 100).candidates.keys
            changed += source.search(query, 100, None, plan).candidates.keys != alone
    report = {
        "products": ws.count("products"),
        "requests": ws.count("requests"),
        "train_s": train_s,
        "searches": len(logged),
        "history_items": {
            "mean": float(np.mean(history)),
            "p50": float(np.median(history)),
            "with_history": float(np.mean(np.array(history) > 0)),
        },
        "candidates_changed_by_history": changed / max(sum(h > 0 for h in history), 1),
        "retrieve_genrec": percentiles_ms([ms / 1000 for ms in genrec_ms]),
        "search_total": percentiles_ms([ms / 1000 for ms in total_ms]),
        "cpu": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    write_json(args.report, report)
    print(report)


if __name__ == "__main__":
    main()
