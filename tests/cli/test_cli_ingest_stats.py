from __future__ import annotations

import orjson
import pandas as pd

from shopsearch.cli import run
from shopsearch.store.workspace import Workspace


def test_generic_products_with_broken_rows_exit_nonzero(tmp_path, capsys):
    csv = tmp_path / "products.csv"
    csv.write_text(
        "product_id,title,price,domain\n"
        "1,Grey sofa,199.0,us\n"
        ",Missing id,10,us\n"
        "3,Bad price,ten,us\n"
        "4,Chair,49.5,us\n"
    )
    ws = tmp_path / "ws"
    code = run(["ingest", "products", str(csv), "--workspace", str(ws), "--add-domains"])
    err = capsys.readouterr().err
    assert code == 1
    assert "rejected 2 products and stored 1 domains, 2 products" in err.replace("\n", " ")
    assert "rejects" in err
    assert run(["stats", "--workspace", str(ws), "--json"]) == 0
    stats = orjson.loads(capsys.readouterr().out)
    assert stats["domains"]["us"]["products"] == 2


def test_unknown_format_and_missing_workspace_are_clear_errors(tmp_path, capsys):
    assert run(["ingest", "nope", str(tmp_path / "x.csv"), "-w", str(tmp_path / "w")]) == 2
    assert "unknown format 'nope'" in capsys.readouterr().err
    assert run(["stats", "--workspace", str(tmp_path / "absent")]) == 2
    assert "no shopsearch workspace" in capsys.readouterr().err


def test_added_domains_leave_the_workspace_usable(tmp_path, capsys):
    """Issue 13.5: domains added by --add-domains must not break every later ingest."""
    csv = tmp_path / "b3.csv"
    csv.write_text("product_id,title,price,domain\n1,Grey sofa,199.0,us\n2,Chair,49.5,gb\n")
    ws = tmp_path / "ws"
    assert run(["ingest", "products", str(csv), "-w", str(ws), "--add-domains"]) == 0
    out = capsys.readouterr().err.replace("\n", " ")
    assert "added domains: gb, us" in out
    assert "language und, currency XXX" in out
    assert run(["ingest", "products", str(csv), "-w", str(ws)]) == 0
    assert "stored 2 products" in capsys.readouterr().err
    assert run(["stats", "--workspace", str(ws), "--json"]) == 0
    stats = orjson.loads(capsys.readouterr().out)
    assert stats["domains"]["gb"]["products"] == 1


HEADER9 = "product_id,title,description,brand,category,price,domain,in_stock,attributes\n"


def _catalog(tmp_path, bad: str):
    rows = [f"{i},Item {i},d,b,A > B,10,us,true,{{}}\n" for i in range(1, 10)]
    rows[7] = bad  # line 9
    csv = tmp_path / "catalog.csv"
    csv.write_text(HEADER9 + "".join(rows))
    domains = tmp_path / "domains.csv"
    domains.write_text("domain_id,name,language,currency\nus,US,en,USD\n")
    return [str(domains), str(csv)]


def test_malformed_rows_go_to_the_rejects_report(tmp_path, capsys):
    """Issue 13.6: one malformed row is rejected with its line; the good rows are kept."""
    extra_fields, open_quote = "8,Shelf,d,b,A > B,10,us,true,{},x,y\n", '8,"Shelf,d,b,A,1,us,t\n'
    for n, bad in enumerate([extra_fields, open_quote]):
        ws = tmp_path / f"ws{n}"
        assert run(["ingest", "generic", *_catalog(tmp_path, bad), "-w", str(ws)]) == 1
        err = capsys.readouterr().err.replace("\n", " ")
        assert "rejected 1 unreadable record" in err
        report = list((ws / "rejects").glob("*.csv"))
        assert len(report) == 1
        rejects = pd.read_csv(report[0])
        assert rejects["row"].tolist() == [9]
        assert rejects["value"].iloc[0].startswith("8,")
        ids = sorted(Workspace.open(ws).table("products")["product_id"].to_pylist())
        assert ids == ["1", "2", "3", "4", "5", "6", "7", "9"]


def test_summary_counts_agree_per_table(tmp_path, capsys):
    """Issue 13.7: rejected and stored rows are counted per table, never summed across."""
    domains = tmp_path / "domains.csv"
    domains.write_text("domain_id,name,language,currency\nus,US,en,USD\n")
    csv = tmp_path / "products.csv"
    csv.write_text(
        "product_id,title,price,domain\n"
        "1,Grey sofa,199.0,us\n"
        ",Missing id,10,us\n"
        "3,Bad price,ten,us\n"
        "4,Chair,49.5,us\n"
        "4,Chair (new),45,us\n"
    )
    ws = tmp_path / "ws"
    assert run(["ingest", "generic", str(domains), str(csv), "-w", str(ws)]) == 1
    err = capsys.readouterr().err.replace("\n", " ")
    assert "stored 1 domains, 2 products" in err
    assert "rejected 2 products" in err
    assert "1 products row(s) repeat the key of a later row" in err
    assert "kept" not in err


def test_only_domains_the_workspace_lacks_are_noted(tmp_path, capsys):
    """Issue 13.7: a domain already in the workspace is not 'used but not declared'."""
    domains = tmp_path / "domains.csv"
    domains.write_text("domain_id,name,language,currency\nus,US,en,USD\n")
    ws = tmp_path / "ws"
    assert run(["ingest", "generic", str(domains), "-w", str(ws)]) == 0
    capsys.readouterr()
    csv = tmp_path / "products.csv"
    csv.write_text("product_id,title,domain\n1,Sofa,us\n2,Lamp,us\n")
    assert run(["ingest", "products", str(csv), "-w", str(ws)]) == 0
    err = capsys.readouterr().err.replace("\n", " ")
    assert "note" not in err
    assert "stored 2 products" in err
    csv.write_text("product_id,title,domain\n1,Sofa,us\n2,Lamp,xx\n")
    assert run(["ingest", "products", str(csv), "-w", str(ws)]) == 1
    err = capsys.readouterr().err.replace("\n", " ")
    assert "domain(s) xx are not in the workspace" in err
    assert "us are" not in err


def test_a_formats_own_domain_never_overwrites_a_declared_one(tmp_path, capsys):
    """Rows without a domain column are in 'default' (en, USD), unless it is declared already."""
    domains = tmp_path / "domains.csv"
    domains.write_text("domain_id,name,language,currency\ndefault,Mein Laden,de,EUR\n")
    ws = tmp_path / "ws"
    assert run(["ingest", "generic", str(domains), "-w", str(ws)]) == 0
    csv = tmp_path / "products.csv"
    csv.write_text("product_id,title\n1,Sofa\n")
    assert run(["ingest", "products", str(csv), "-w", str(ws)]) == 0
    assert "stored 1 products in" in capsys.readouterr().err
    stored = Workspace.open(ws).domains()
    assert [(d.name, d.language, d.currency) for d in stored] == [("Mein Laden", "de", "EUR")]
