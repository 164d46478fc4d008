from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from shopsearch.errors import SchemaVersionError, WorkspaceError
from shopsearch.store.schema import TABLES
from shopsearch.store.workspace import Workspace


def _domains(*ids: str) -> pa.Table:
    return pa.table(
        {
            "domain_id": list(ids),
            "name": [i.upper() for i in ids],
            "language": ["en"] * len(ids),
            "currency": ["USD"] * len(ids),
        }
    )


def test_create_open_and_version_check(tmp_path):
    ws = Workspace.create(tmp_path / "w")
    assert Workspace.open(tmp_path / "w").root == ws.root
    meta = tmp_path / "w" / "workspace.json"
    data = orjson.loads(meta.read_bytes())
    data["schema_version"] = 999
    meta.write_bytes(orjson.dumps(data))
    with pytest.raises(SchemaVersionError, match="schema version 999"):
        Workspace.open(tmp_path / "w")


def test_open_missing_and_create_in_foreign_dir(tmp_path):
    with pytest.raises(WorkspaceError, match="no shopsearch workspace"):
        Workspace.open(tmp_path / "nothing")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    with pytest.raises(WorkspaceError, match="non-empty directory"):
        Workspace.create(tmp_path / "busy")


def test_append_upsert_replace_and_sql(tmp_path):
    ws = Workspace.create(tmp_path)
    assert ws.table("domains").num_rows == 0
    ws.append("domains", _domains("us"))
    ws.append("domains", _domains("gb"))
    assert len(ws.parts("domains")) == 2
    ws.upsert("domains", _domains("us", "de"))
    assert sorted(ws.table("domains")["domain_id"].to_pylist()) == ["de", "gb", "us"]
    assert ws.count("domains") == 3
    with ws.connect() as con:
        assert con.execute("SELECT count(*) FROM domains").fetchone() == (3,)
        assert con.execute("SELECT count(*) FROM products").fetchone() == (0,)
    ws.replace("domains", _domains("fr"))
    assert ws.table("domains")["domain_id"].to_pylist() == ["fr"]
    assert [d.domain_id for d in ws.domains()] == ["fr"]


def test_upsert_last_row_of_a_key_wins(tmp_path):
    ws = Workspace.create(tmp_path)
    table = _domains("us", "us")
    table = table.set_column(1, "name", pa.array(["first", "second"]))
    ws.upsert("domains", table)
    assert ws.table("domains")["name"].to_pylist() == ["second"]


def test_crash_before_manifest_keeps_old_data_and_orphans_are_cleaned(tmp_path):
    ws = Workspace.create(tmp_path)
    ws.append("domains", _domains("us"))
    folder = tmp_path / "tables" / "domains"
    # A crash after writing a part but before the manifest: the part is an orphan.
    orphan = folder / "part-orphan.parquet"
    orphan.write_bytes(b"half a file")
    (folder / ".manifest.json.abc.tmp").write_bytes(b"{")
    assert ws.table("domains")["domain_id"].to_pylist() == ["us"]
    ws.append("domains", _domains("gb"))
    assert not orphan.exists()
    assert sorted(ws.table("domains")["domain_id"].to_pylist()) == ["gb", "us"]


def test_conform_rejects_missing_columns(tmp_path):
    ws = Workspace.create(tmp_path)
    with pytest.raises(WorkspaceError, match="lack column"):
        ws.append("domains", pa.table({"domain_id": ["x"]}))


def test_every_table_has_an_empty_schema(tmp_path):
    ws = Workspace.create(tmp_path)
    for name, schema in TABLES.items():
        assert ws.table(name).schema == schema
