"""The ONNX Runtime path scores as torch does, for every torch model; failures fall back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.base import RankingBatch
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.onnx_scorer import (
    SEQUENCE_INPUTS,
    OnnxExportError,
    OnnxScorer,
    export_onnx,
    shared_graph_path,
)
from shopsearch.ranking.position_bias import PositionBiasModel
from shopsearch.ranking.ranker import Ranker, train_ranker
from shopsearch.ranking.registry import is_torch_model, model_names, torch_model_class
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import TrainConfig, fit, predict, split_by_group

TASKS = ("click", "cart", "purchase")
#: Models that split the batch by domain in Python (a loop over the domains present), which
#: torch.export cannot trace with a dynamic batch: they serve with torch.
PER_DOMAIN_LOOP = {"cdan-w", "mmoe-domain", "shared-bottom", "star"}


@pytest.mark.parametrize("name", sorted(n for n in model_names() if is_torch_model(n)))
def test_every_torch_model_exports_and_scores_as_torch(
    name: str, tmp_path: Path, tiny_split: tuple[Samples, Samples], tiny_encoder: FeatureEncoder
) -> None:
    train, test = tiny_split
    torch.manual_seed(0)
    model = PositionBiasModel(torch_model_class(name)(tiny_encoder.spec_), "feature")
    fit_part, valid_part = split_by_group(tiny_encoder.transform(train), 0.2)
    fit(model, fit_part, valid_part, TrainConfig(epochs=1, batch_size=256))
    path = tmp_path / "model.onnx"
    if name in PER_DOMAIN_LOOP:
        with pytest.raises(OnnxExportError, match=f"ONNX export of {name} failed"):
            export_onnx(model, tiny_encoder.spec_, path)
        assert not path.exists()
        return
    scorer = OnnxScorer(export_onnx(model, tiny_encoder.spec_, path))
    batch = tiny_encoder.transform(test)
    want = predict(model, batch)
    for rows in (batch, batch.index(torch.arange(1)), batch.index(torch.arange(7))):
        got, ref = scorer.score(rows), predict(model, rows)
        for task in TASKS:
            np.testing.assert_allclose(got[task], ref[task], rtol=1e-4, atol=1e-5)
    assert not np.allclose(want["click"], want["click"][0]), "scores must differ between rows"
    # A served request: one user's sequence expanded over the rows, scored by the second graph.
    assert shared_graph_path(path).is_file()
    assert scorer.shared_session is not None
    for rows in (batch, batch.index(torch.arange(1)), batch.index(torch.arange(7))):
        served = one_sequence(rows)
        got, ref = scorer.score(served), predict(model, served)
        for task in TASKS:
            np.testing.assert_allclose(got[task], ref[task], rtol=1e-4, atol=1e-5)


def one_sequence(batch: RankingBatch) -> RankingBatch:
    """``batch`` with its last row's sequence (stride 0) for every row, as the server builds."""
    import dataclasses

    one = {n: getattr(batch, n)[-1:].expand_as(getattr(batch, n)) for n in SEQUENCE_INPUTS}
    return dataclasses.replace(batch, **one)


def test_ranker_saves_the_graph_and_loads_either_runtime(
    tmp_path: Path, tiny_split: tuple[Samples, Samples]
) -> None:
    train, test = tiny_split
    ranker = train_ranker(train, "dnn", "feature", TrainConfig(epochs=1, batch_size=512))
    folder = ranker.save(tmp_path / "ranking")
    assert (folder / "model.onnx").is_file()
    assert (folder / "model.shared.onnx").is_file()
    assert not (folder / "model.onnx.data").exists()
    onnx, plain = Ranker.load(folder, "onnx"), Ranker.load(folder, "torch")
    assert (onnx.runtime, plain.runtime) == ("onnx", "torch")
    got, want = onnx.score(test), plain.score(test)
    for task in TASKS:
        np.testing.assert_allclose(got[task], want[task], rtol=1e-4, atol=1e-5)
    assert onnx.onnx is not None
    shared, runs = onnx.onnx.shared_session, []

    class Counting:
        def run(self, *args: object) -> object:
            runs.append(1)
            return shared.run(*args)

    onnx.onnx.shared_session = Counting()
    onnx.score(test)
    assert runs == []  # rows of many users: the first graph
    served = one_sequence(onnx.encoder.transform(test))
    got, want_served = onnx.score_batch(served), plain.score_batch(served)
    assert runs == [1]
    for task in TASKS:
        np.testing.assert_allclose(got[task], want_served[task], rtol=1e-4, atol=1e-5)
    (folder / "model.shared.onnx").unlink()  # saved before it was: the first graph serves all
    alone = Ranker.load(folder, "onnx")
    assert alone.onnx is not None
    assert alone.onnx.shared_session is None
    np.testing.assert_allclose(alone.score(test)["click"], want["click"], rtol=1e-4, atol=1e-5)
    (folder / "model.onnx").unlink()  # saved before the graph was: exported as it loads
    again = Ranker.load(folder, "onnx")
    assert again.runtime == "onnx"
    np.testing.assert_allclose(again.score(test)["click"], want["click"], rtol=1e-4, atol=1e-5)
    with pytest.raises(InvalidInputError, match="runtime"):
        Ranker.load(folder, "tensorrt")


def test_a_graph_that_disagrees_is_refused_and_the_ranker_keeps_torch(
    tmp_path: Path,
    tiny_split: tuple[Samples, Samples],
    tiny_encoder: FeatureEncoder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import shopsearch.ranking.onnx_scorer as onnx_scorer

    model = PositionBiasModel(torch_model_class("dnn")(tiny_encoder.spec_), "none")
    real = onnx_scorer.predict
    monkeypatch.setattr(
        onnx_scorer,
        "predict",
        lambda m, b: {t: v + 0.01 for t, v in real(m, b).items()},
    )
    path = tmp_path / "model.onnx"
    with pytest.raises(OnnxExportError, match="differs from torch"):
        export_onnx(model, tiny_encoder.spec_, path)
    assert not path.exists()
    ranker = train_ranker(tiny_split[0], "dnn", "none", TrainConfig(epochs=1, batch_size=512))
    folder = ranker.save(tmp_path / "ranking")
    assert not (folder / "model.onnx").exists()
    assert not (folder / "model.shared.onnx").exists()
    assert "scores with torch" in caplog.text
    assert Ranker.load(folder, "onnx").runtime == "torch"
