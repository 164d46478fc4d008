"""Generative retrieval on the Home Depot file (issue 17): training time of the generator and
latency of constrained decoding on one thread.

Trains the generative source as ``eval relevance`` does (semantic IDs of the MiniLM vectors of
the training file's products, the SFT generator on its relevant judgments), pads the catalog to
``--products`` with the test file's products and, if still short, copies of training products
under new keys (they get IDs from their text, as new products do), then times ``--queries``
test queries at ``k = 100`` one at a time on one thread:

- *decode*: the constrained beam and the in-bucket scoring, the query vector given (the
  issue's target: p99 <= 20 ms at 50k products);
- *end to end*: ``retrieve`` with MiniLM encoding the query.

    python benchmarks/genret_speed.py --train hd-train.csv --test hd-test.csv \\
        --cache-dir C --products 50000 --report genret-speed.json [--model DIR] [--save DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from shopsearch.bench.timing import percentiles_ms
from shopsearch.evaluate.suites.judged import catalog_table, read_judged
from shopsearch.evaluate.suites.relevance_generative import GENERATOR
from shopsearch.retrieval.generative.retriever import GenerativeRetriever
from shopsearch.retrieval.generative.train import GenerativeConfig, train_generative
from shopsearch.retrieval.generative.trained import GenerativeModel
from shopsearch.retrieval.learned_train import item_texts
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.store.atomic import write_json
from shopsearch.text.encoders import MiniLMEncoder


def _padded(catalog: pa.Table, products: int) -> pa.Table:
    """``catalog`` with copies of its first rows under new keys, up to ``products`` rows."""
    short = products - catalog.num_rows
    if short <= 0:
        return catalog
    copies = catalog.slice(0, min(short, catalog.num_rows))
    ids = [f"copy-{i}" for i in range(copies.num_rows)]
    at = copies.schema.get_field_index("product_id")
    copies = copies.set_column(at, copies.schema.field(at), pa.array(ids, pa.string()))
    return _padded(pa.concat_tables([catalog, copies]), products)


def _latency(seconds: list[float]) -> dict[str, float | None]:
    return {**percentiles_ms(seconds), "mean_ms": 1000 * float(np.mean(seconds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--save", type=Path, help="save the indexed source here")
    parser.add_argument("--model", type=Path, help="the trained model: loaded if saved, else saved")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    train = read_judged("homedepot", [args.train], None)
    test = read_judged("homedepot", [args.test], None)
    training = catalog_table([train.products])
    texts = item_texts(training)
    samples = StagedSamples.from_judgments(train.qrels, texts)
    encoder = MiniLMEncoder()
    config = GenerativeConfig(positive_stage=train.relevant_threshold, generator=GENERATOR)
    if args.model is not None and (args.model / "model.json").exists():
        model = GenerativeModel.load(args.model)
        train_s = float(model.info["train_s"])
    else:
        start = time.perf_counter()
        model = train_generative(samples, list(texts), encoder, config, args.cache_dir, say=print)
        train_s = model.info["train_s"] = time.perf_counter() - start
        if args.model is not None:
            model.save(args.model)
    catalog = _padded(catalog_table([train.products, test.products]), args.products)
    start = time.perf_counter()
    source = GenerativeRetriever(model, cache_dir=args.cache_dir).index(catalog)
    index_s = time.perf_counter() - start
    if args.save is not None:
        source.save(args.save)
    queries = sorted(test.qrels)[: args.queries]
    vectors = np.asarray(encoder.encode_queries(queries), np.float32)
    torch.set_num_threads(1)
    decode, end_to_end = [], []
    for query, vector in zip(queries, vectors, strict=True):
        begin = time.perf_counter()
        source._decode(vector, 100, None)
        decode.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        source.retrieve(query, 100)
        end_to_end.append(time.perf_counter() - begin)
    report = {
        "products": len(source.rows_),
        "training_products": len(texts),
        "pairs": model.info["pairs"],
        "train_s": train_s,
        "train_phases_s": model.info["seconds"],
        "index_s": index_s,
        "generator": model.info,
        "queries": len(queries),
        "decode": _latency(decode),
        "end_to_end": _latency(end_to_end),
        "cpu": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    write_json(args.report, report)
    print(report)


if __name__ == "__main__":
    main()
