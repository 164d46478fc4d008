"""``shopsearch split FILE --by COLUMN``: a train/test split by query or session."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopsearch.cli.app import app
from shopsearch.cli.progress import console
from shopsearch.splits import split_file


@app.command()
def split(
    path: Annotated[Path, typer.Argument(help="A CSV or Parquet file.")],
    by: Annotated[str, typer.Option(help="Group column: query or session, never a row id.")],
    train_out: Annotated[Path, typer.Option(help="Where to write the training part.")],
    test_out: Annotated[Path, typer.Option(help="Where to write the test part.")],
    test_fraction: Annotated[float, typer.Option(help="Share of groups held out.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the group hash.")] = 0,
    encoding: Annotated[str, typer.Option(help="CSV text encoding (Home Depot: latin-1).")] = (
        "utf-8"
    ),
) -> None:
    """Split a file into train and test parts by groups (every row of a group on one side).

    Example: shopsearch split homedepot/train.csv --by search_term --encoding latin-1
    --train-out hd-train.csv --test-out hd-test.csv
    """
    n_train, n_test = split_file(path, by, train_out, test_out, test_fraction, seed, encoding)
    console.print(f"{n_train} rows → {train_out}, {n_test} rows → {test_out}", highlight=False)
