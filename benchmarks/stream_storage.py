"""Storage cost of the logged stream (issue 16): bytes per logged search in the event log and
in the ``stream`` table, and per 1M requests at a sampling rate.

Searches logged queries of a workspace with the current bundle, retrieval passing ``--pool``
candidates on and pre-ranking keeping ``--keep``, every stream recorded; encodes each as the
server's event-log line (JSON, checksummed) and writes the rows as the ``stream`` table's
zstd Parquet, then extrapolates to 1M requests at ``--sample``.

    python benchmarks/stream_storage.py -w W --pool 2000 --keep 200 --searches 300 \\
        --sample 0.01 --report stream-storage.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from shopsearch.config import load_settings
from shopsearch.events.records import LogRows, decode_line, search_line
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.store.atomic import write_json, write_parquet
from shopsearch.store.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-w", "--workspace", type=Path, required=True)
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--keep", type=int, default=200)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--sample", type=float, default=0.01)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    ws = Workspace.open(args.workspace)
    settings = load_settings(ws.root)
    settings.retrieval.candidates = args.pool
    settings.pipeline.prerank_keep = args.keep
    engine = Engine.load(ws, settings)
    logged = ws.table("requests", ["query", "domain"]).to_pandas()
    picked = logged.iloc[np.random.default_rng(0).permutation(len(logged))[: args.searches]]
    rows = LogRows()
    line_bytes = []
    for query, domain in zip(picked["query"], picked["domain"], strict=True):
        response = engine.search(SearchParams(query, domain, record_stream=True))
        line = search_line(
            response.request_id, "u", domain, query, {}, 0, [], response.stream or ()
        )
        line_bytes.append(len(line))
        record = decode_line(line.rstrip(b"\n"))
        assert record is not None
        rows.add(record)
    table = rows.table("stream")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stream.parquet"
        write_parquet(path, table)
        parquet = path.stat().st_size
    n = len(line_bytes)
    per_million = 1_000_000 * args.sample
    result = {
        "searches": n,
        "pool": args.pool,
        "keep": args.keep,
        "sample": args.sample,
        "rows_per_search": table.num_rows / n,
        "log_bytes_per_search": float(np.mean(line_bytes)),
        "parquet_bytes_per_search": parquet / n,
        "per_1m_requests": {
            "logged_searches": per_million,
            "log_gb": per_million * float(np.mean(line_bytes)) / 1e9,
            "parquet_gb": per_million * parquet / n / 1e9,
        },
    }
    write_json(args.report, result)
    print(result)


if __name__ == "__main__":
    main()
