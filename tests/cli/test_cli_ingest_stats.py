from __future__ import annotations

import orjson

from shopsearch.cli import run


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
    assert "2 row(s) rejected and 3 kept" in err.replace("\n", " ")
    assert "rejects" in err
    assert run(["stats", "--workspace", str(ws), "--json"]) == 0
    stats = orjson.loads(capsys.readouterr().out)
    assert stats["domains"]["us"]["products"] == 2


def test_unknown_format_and_missing_workspace_are_clear_errors(tmp_path, capsys):
    assert run(["ingest", "nope", str(tmp_path / "x.csv"), "-w", str(tmp_path / "w")]) == 2
    assert "unknown format 'nope'" in capsys.readouterr().err
    assert run(["stats", "--workspace", str(tmp_path / "absent")]) == 2
    assert "no shopsearch workspace" in capsys.readouterr().err
