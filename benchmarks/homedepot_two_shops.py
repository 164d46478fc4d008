"""Split the Home Depot judgments into two shops for the relevance transfer protocol.

No second real judged e-commerce relevance set (CrowdFlower, ...) is available on this machine,
so the target shop is made from Home Depot itself, by product family
(:func:`shopsearch.transfer.relevance_data.split_two_shops`): a query whose judged products are
mostly of the family (title keywords) goes to the target shop, every other query to the source.
The shops share no query and differ in product mix.

Writes the source in the Home Depot format (UTF-8) and the target in the generic format: a
judgments file (``query, product_id, grade``, grade = relevance - 1, so 0 = irrelevant ... 2 =
exact, the same gains the relevance suite uses) and a products file (``product_id, title``).

Usage::

    python benchmarks/homedepot_two_shops.py ../shared/datasets/homedepot/train.csv \\
        --family lighting-electrical --out-dir hd-shops
    # -> hd-shops/source.csv, hd-shops/target-judgments.csv, hd-shops/target-products.csv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from shopsearch.transfer.relevance_data import FAMILIES, split_two_shops


def main() -> None:
    """Parse the arguments, split, write the three files and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train_csv", type=Path, help="Home Depot train.csv (latin-1)")
    parser.add_argument("--family", default="lighting-electrical", choices=sorted(FAMILIES))
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--encoding", default="latin-1")
    args = parser.parse_args()
    frame = pd.read_csv(args.train_csv, encoding=args.encoding, dtype={"product_uid": str})
    shops = split_two_shops(frame, args.family)
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    shops.source.to_csv(out / "source.csv", index=False)
    target = shops.target
    pd.DataFrame(
        {
            "query": target["search_term"],
            "product_id": target["product_uid"],
            "grade": (target["relevance"] - 1.0).round(6),
        }
    ).to_csv(out / "target-judgments.csv", index=False)
    products = target.drop_duplicates("product_uid")
    pd.DataFrame(
        {"product_id": products["product_uid"], "title": products["product_title"]}
    ).to_csv(out / "target-products.csv", index=False)
    print(json.dumps(shops.summary, indent=2))


if __name__ == "__main__":
    main()
