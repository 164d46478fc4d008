"""The loader contract, checked on every registered format.

Each format gets a few good rows and one broken row written in its own layout (a missing id, a
negative price, an unparsable time, a grade that is not a number ...). Loading and ingesting
keeps the good rows and reports the broken one — its file and line — in ingest's rejects report.
Parametrized over ``LOADERS.names()``: a new format fails
:func:`test_every_format_has_a_broken_file` until :data:`CASES` has one for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from shopsearch.datasets.registry import LOADERS
from shopsearch.ingest.workspace import ingest
from shopsearch.store.workspace import Workspace


@dataclass(frozen=True)
class Case:
    """One format's files with one broken row, and what ingest must make of them.

    Attributes:
        paths: the files to load.
        broken: ``(file, line)`` of the broken row (the header is line 1; Parquet rows count
            from 1), where every reject must point.
        table, field, reason: one reject the broken row must cause (``reason`` is a part of
            the message).
        kept: rows each table must store: the good rows only.
        gone: ``(table, column, value)`` of the broken row, which must not be stored.
    """

    paths: list[Path]
    broken: tuple[Path, int]
    table: str
    field: str
    reason: str
    kept: dict[str, int]
    gone: tuple[str, str, str]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _products_csv(tmp: Path, price: str) -> Path:
    return _write(
        tmp / "catalog.csv",
        "product_id,title,brand,category,price\n"
        "p1,Grey sofa,Acme,Home > Sofas,199.5\n"
        "p2,Oak chair,,Home > Chairs,\n"
        f"p3,Bad lamp,Lumo,Home > Lamps,{price}\n"
        "p4,Desk,,,20\n",
    )


def generic(tmp: Path) -> Case:
    path = _write(
        tmp / "catalog.csv",
        "product_id,title,price\np1,Grey sofa,199.5\n,No id,10\np3,Oak chair,20\n",
    )
    return Case([path], (path, 3), "products", "product_id", "missing", {"products": 2},
                ("products", "title", "No id"))  # fmt: skip


def products(tmp: Path) -> Case:
    path = _products_csv(tmp, "-5")
    return Case([path], (path, 4), "products", "price", "negative", {"products": 3},
                ("products", "product_id", "p3"))  # fmt: skip


def events(tmp: Path) -> Case:
    path = _write(
        tmp / "log.csv",
        "request_id,user_id,query,timestamp,product_id,position,clicked\n"
        "r1,u1,sofa,2024-01-01T10:00:00Z,p1,1,1\n"
        "r1,u1,sofa,2024-01-01T10:00:00Z,p2,2,0\n"
        "r2,u2,chair,yesterday at noon,p2,1,1\n"
        "r3,u3,lamp,2024-01-02T10:00:00Z,p3,1,0\n",
    )
    return Case([path], (path, 4), "requests", "timestamp", "unparsable timestamp",
                {"requests": 2, "impressions": 3, "interactions": 1},
                ("requests", "request_id", "r2"))  # fmt: skip


def judgments(tmp: Path) -> Case:
    path = _write(
        tmp / "qrels.csv",
        "query,product_id,grade\nsofa,p1,3\nlamp,p9,ten\nchair,p2,2\n",
    )
    return Case([path], (path, 3), "judgments", "grade", "not a number", {"judgments": 2},
                ("judgments", "product_id", "p9"))  # fmt: skip


def homedepot(tmp: Path) -> Case:
    path = _write(
        tmp / "train.csv",
        "id,product_uid,product_title,search_term,relevance\n"
        "2,100001,Simpson Strong-Tie 12-Gauge Angle,angle bracket,3.0\n"
        "9,100002,Dyna-Glo Heater,propane heater,n/a\n"
        "17,100001,Simpson Strong-Tie 12-Gauge Angle,simpson angle,2.67\n",
    )
    return Case([path], (path, 3), "judgments", "grade", "not a number",
                {"judgments": 2, "products": 2},
                ("judgments", "query", "propane heater"))  # fmt: skip


def crowdflower(tmp: Path) -> Case:
    path = _write(
        tmp / "train.csv",
        "id,query,product_title,product_description,median_relevance,relevance_variance\n"
        "1,led lights,LED Train Lights,Battery operated,4,0.0\n"
        "2,projector,Pure White Projector Screen,,four,0.0\n"
        "3,pillow,Accent Pillow,Red satin,1,0.5\n",
    )
    return Case([path], (path, 3), "judgments", "grade", "not a number",
                {"judgments": 2, "products": 3},
                ("judgments", "query", "projector"))  # fmt: skip


def bestbuy(tmp: Path) -> Case:
    path = _write(
        tmp / "train.csv",
        "user,sku,category,query,click_time,query_time\n"
        "16ef81,9854804,abcat0701002,gears of war 3,2011-09-14 12:46:28.66,2011-09-14 12:45:07\n"
        "07135,9854804,abcat0701002,halo reach,2011-09-19 23:27:59.956,19/19/2011 25:61\n"
        "a89cbd,1013666,abcat0701002,fifa,2011-08-14 00:45:32.351,2011-08-14 00:44:00\n",
    )
    return Case([path], (path, 3), "requests", "timestamp", "unparsable timestamp",
                {"requests": 2, "impressions": 2, "interactions": 2},
                ("requests", "query", "halo reach"))  # fmt: skip


def trivago(tmp: Path) -> Case:
    path = _write(
        tmp / "train.csv",
        "user_id,session_id,timestamp,step,action_type,reference,platform,city,device,"
        "current_filters,impressions,prices\n"
        'U1,s1,1541037460,1,clickout item,102,FR,"Paris, France",desktop,,101|102,80|120\n'
        'U1,s1,soon,2,clickout item,101,FR,"Paris, France",desktop,,101|103,80|90\n'
        'U2,s2,1541037500,1,clickout item,201,DE,"Berlin, Germany",mobile,,201,55\n',
    )
    return Case([path], (path, 3), "requests", "timestamp", "unparsable timestamp",
                {"requests": 2, "impressions": 3, "interactions": 2},
                ("requests", "request_id", "trivago:s1:2"))  # fmt: skip


def esci(tmp: Path) -> Case:
    path = tmp / "shopping_queries_dataset_examples.parquet"
    pd.DataFrame(
        {
            "example_id": [0, 1, 2],
            "query": ["revent 80 cfm", "zapatillas", "revent fan"],
            "query_id": [0, 1, 2],
            "product_id": ["B000MOO21W", "B0ES1", "B07X3Y6B1V"],
            "product_locale": ["us", "es", "us"],
            "esci_label": ["E", "X", "S"],
        }
    ).to_parquet(path, index=False)
    return Case([path], (path, 2), "judgments", "grade", "not a number", {"judgments": 2},
                ("judgments", "query", "zapatillas"))  # fmt: skip


def wands(tmp: Path) -> Case:
    label = _write(
        tmp / "label.csv",
        "id\tquery_id\tproduct_id\tlabel\n0\t0\t0\tExact\n1\t0\t5\tMaybe\n2\t1\t1\tPartial\n",
    )
    query = _write(tmp / "query.csv", "query_id\tquery\tquery_class\n0\tsalon chair\tC\n"
                   "1\tcoffee table\tT\n")  # fmt: skip
    return Case([label, query], (label, 3), "judgments", "grade", "not a number",
                {"judgments": 2}, ("judgments", "product_id", "5"))  # fmt: skip


ALICCP_HEADER = (
    "click,purchase,101,121,122,124,125,126,127,128,129,205,206,207,210,216,508,509,702,853,301\n"
)


def aliccp(tmp: Path) -> Case:
    rows = [
        "0,0,7,1,1,1,1,0,1,1,1,11,3,84,88,52,23,0,17,0,1",
        "1,0,,1,1,1,1,0,1,1,1,12,4,85,89,53,0,0,0,0,1",  # no user id (field 101)
        "1,1,8,1,1,1,1,0,1,1,1,13,5,86,90,54,5,0,0,21,1",
    ]
    path = _write(tmp / "ali_ccp_train.csv", ALICCP_HEADER + "\n".join(rows) + "\n")
    return Case([path], (path, 3), "requests", "user_id", "missing",
                {"requests": 2, "impressions": 2, "interactions": 2},
                ("requests", "request_id", "aliccp:ali_ccp_train:3"))  # fmt: skip


def aliexpress(tmp: Path) -> Case:
    header = ["search_id", *(f"categorical_{i}" for i in range(1, 17))]
    header += [*(f"numerical_{i}" for i in range(1, 64)), "click", "conversion"]

    def row(search: str, item: int, click: int) -> str:
        return ",".join([search, *["1"] * 9, *[str(item)] * 6, "0", *["0.5"] * 23,
                         *[f"0.{item}"] * 40, str(click), "0"])  # fmt: skip

    # The format has no value ingest checks except its ids: the broken row is a corrupted
    # search id, longer than any id may be.
    corrupted = "7" * 300
    rows = [row("7", 1, 1), row(corrupted, 2, 1), row("12", 3, 0)]
    path = _write(tmp / "train.csv", ",".join(header) + "\n" + "\n".join(rows) + "\n")
    return Case([path], (path, 3), "requests", "request_id", "too long",
                {"requests": 2, "impressions": 2, "interactions": 1},
                ("requests", "request_id", f"aliexpress:train:{corrupted}"))  # fmt: skip


def jdsearch(tmp: Path) -> Case:
    path = _write(
        tmp / "product_data.txt",
        "wid\tname\tbrand_id\tbrand_name\tcate_id_1\tcate_name_1\tshop_id\n"
        "9227588\t648\x18602\t813\t648\t639\t2231\t769\n"
        "\t378\t610\t378\t639\t2231\t437\n"  # no wid
        "87422901\t379\t610\t378\t639\t2231\t437\n",
    )
    return Case([path], (path, 3), "products", "product_id", "missing", {"products": 2},
                ("products", "title", "378"))  # fmt: skip


#: Format name → its files with one broken row. Add one when you register a loader.
CASES: dict[str, Callable[[Path], Case]] = {
    "generic": generic,
    "products": products,
    "events": events,
    "judgments": judgments,
    "homedepot": homedepot,
    "crowdflower": crowdflower,
    "bestbuy": bestbuy,
    "trivago": trivago,
    "esci": esci,
    "wands": wands,
    "aliccp": aliccp,
    "aliexpress": aliexpress,
    "jdsearch": jdsearch,
}
NAMES = LOADERS.names()


@pytest.mark.parametrize("name", NAMES)
def test_every_format_has_a_broken_file(name: str) -> None:
    assert name in CASES, (
        f"format {name!r} is registered but has no entry in CASES "
        "(tests/contracts/test_loaders.py); add files of that format with one broken row"
    )


@pytest.mark.parametrize("name", NAMES)
def test_good_rows_are_kept_and_the_broken_row_is_reported(name: str, tmp_path: Path) -> None:
    if name not in CASES:
        pytest.fail(f"add CASES[{name!r}] to tests/contracts/test_loaders.py")
    case = CASES[name](tmp_path)
    data = LOADERS.get(name)(case.paths)
    assert data.format == name
    workspace = Workspace.create(tmp_path / "ws")
    result = ingest(workspace, data)

    assert result.report is not None, f"{name}: the broken row was not rejected"
    report = pd.read_csv(result.report, dtype={"file": str, "row": int})
    file, line = case.broken
    assert set(zip(report["file"], report["row"], strict=True)) == {(str(file), line)}, (
        f"{name}: every reject must point at {file.name} line {line}:\n{report}"
    )
    assert set(result.rejected) == set(report["table"]), f"{name}: tables with rejects"
    for table, frame in data.tables().items():
        counted = sum(n.get(table, 0) for n in (result.kept, result.rejected, result.repeated))
        assert counted == len(frame), f"{name}: {table} rows = kept + rejected + repeated"
    mine = report[(report["table"] == case.table) & (report["field"] == case.field)]
    assert len(mine) == 1, f"{name}: no {case.table}.{case.field} reject:\n{report}"
    assert case.reason in mine["reason"].iloc[0]

    for table, rows in case.kept.items():
        assert result.kept[table] == rows, f"{name}: {table}"
        assert workspace.table(table).num_rows == rows, f"{name}: {table}"
    table, column, value = case.gone
    stored = workspace.table(table).column(column).to_pylist()
    assert value not in stored
