from __future__ import annotations

import pandas as pd
import pytest

from shopsearch.config import load_settings
from shopsearch.errors import DataFormatError, InvalidInputError
from shopsearch.splits import split_file


def test_split_keeps_groups_whole_and_is_deterministic(tmp_path):
    src = tmp_path / "j.csv"
    frame = pd.DataFrame({"query": [f"q{i % 40}" for i in range(200)], "x": range(200)})
    frame.to_csv(src, index=False)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    n_train, n_test = split_file(src, "query", a, b, test_fraction=0.25, seed=3)
    assert n_train + n_test == 200
    train, test = pd.read_csv(a), pd.read_csv(b)
    assert not set(train["query"]) & set(test["query"])
    assert 0 < len(set(test["query"])) < 40
    split_file(src, "query", tmp_path / "a2.csv", tmp_path / "b2.csv", 0.25, 3)
    assert pd.read_csv(tmp_path / "b2.csv").equals(test)


def test_split_errors(tmp_path):
    src = tmp_path / "j.csv"
    pd.DataFrame({"query": ["a"]}).to_csv(src, index=False)
    with pytest.raises(DataFormatError, match="no column 'session'"):
        split_file(src, "session", tmp_path / "a", tmp_path / "b")
    with pytest.raises(InvalidInputError, match="test_fraction"):
        split_file(src, "query", tmp_path / "a", tmp_path / "b", test_fraction=1.5)


def test_settings_file_env_and_errors(tmp_path, monkeypatch):
    (tmp_path / "shopsearch.toml").write_text("[search]\nmax_size = 50\n[serve]\nport = 7000\n")
    monkeypatch.setenv("SHOPSEARCH_SERVE__PORT", "9001")
    settings = load_settings(workspace=tmp_path)
    assert settings.search.max_size == 50
    assert settings.serve.port == 9001
    (tmp_path / "bad.toml").write_text("[search]\nmax_size = -1\n")
    with pytest.raises(InvalidInputError, match=r"search\.max_size"):
        load_settings(config_file=tmp_path / "bad.toml")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml")
