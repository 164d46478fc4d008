"""A trained generative-retrieval model: what ``train --model generative`` produces and the
retrieval source serves.

It holds the encoder whose vectors the IDs quantise (and whose query vector the generator reads),
the fitted residual quantizer (so a new product gets its codes without a refit), the semantic IDs
of the training catalog, and the generator: the query-only :class:`~.model.IdGenerator` or
:class:`~.genrec.GenRec`, which also reads the user's history. Saved as plain files:
``model.json`` (settings, encoder, sizes), ``codebooks.npy``, ``ids/`` (:mod:`.ids`),
``generator.safetensors`` (or GenRec's files in ``genrec/``) and, for a learned encoder,
``encoder/`` (:func:`~shopsearch.retrieval.learned.save_encoder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import torch

from shopsearch.errors import ShopSearchError, WorkspaceError
from shopsearch.retrieval.generative.adaptive_ids import AdaptiveSemanticIds
from shopsearch.retrieval.generative.genrec import GenRec
from shopsearch.retrieval.generative.ids import FixedSemanticIds, load_ids
from shopsearch.retrieval.generative.model import GeneratorConfig, IdGenerator
from shopsearch.retrieval.generative.quantize import ResidualKMeans
from shopsearch.retrieval.learned import load_encoder, save_encoder
from shopsearch.store.atomic import write_json
from shopsearch.text.embedding_cache import EmbeddingCache
from shopsearch.text.encoders import Encoder, make_encoder

F32 = npt.NDArray[np.float32]
_FORMAT = "shopsearch-generative"
_FORMAT_VERSION = 1
_SETTINGS = "model.json"
_WEIGHTS = "generator.safetensors"
_GENREC = "genrec"


@dataclass
class GenerativeModel:
    """A trained generator with its IDs.

    Attributes:
        encoder: the vector space of the IDs and of the generator's query input.
        quantizer: the fitted residual quantizer (new products' codes).
        ids: the semantic IDs of the products it was trained on (new products get theirs with
            ``ids.add``).
        generator: the trained generator (query only, or GenRec with the user's history).
        in_bucket_temperature: temperature of the in-bucket softmax over products that share an
            ID (their reconstructed vectors' cosine to the query).
        info: training facts for reports and bundle metadata.
    """

    encoder: Encoder
    quantizer: ResidualKMeans
    ids: FixedSemanticIds | AdaptiveSemanticIds
    generator: IdGenerator | GenRec
    in_bucket_temperature: float = 0.05
    info: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        """Write the model's plain files into ``folder``."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        encoder: dict[str, Any] = {"name": self.encoder.name, "version": self.encoder.version}
        if self.encoder.learned:
            save_encoder(self.encoder, folder)
        else:
            encoder["config"] = self.encoder.get_config()
        np.save(folder / "codebooks.npy", np.stack(self.quantizer.codebooks_))
        self.ids.save(folder / "ids")
        generator = self.generator
        spec: dict[str, Any]
        if isinstance(generator, GenRec):
            generator.save(folder / _GENREC)
            spec = {"kind": _GENREC}
        else:
            weights = {k: v.contiguous() for k, v in generator.state_dict().items()}
            save_file(weights, str(folder / _WEIGHTS))
            spec = {
                "query_dim": generator.query.in_features,
                "vocab": generator.vocab,
                "depth": generator.depth,
                "config": asdict(generator.config),
            }
        write_json(
            folder / _SETTINGS,
            {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "encoder": encoder,
                "quantizer": {
                    "levels": self.quantizer.levels,
                    "codewords": self.quantizer.codewords,
                    "iterations": self.quantizer.iterations,
                    "seed": self.quantizer.seed,
                },
                "generator": spec,
                "in_bucket_temperature": self.in_bucket_temperature,
                "info": self.info,
            },
        )

    @classmethod
    def load(cls, folder: Path) -> GenerativeModel:
        """Read a model :meth:`save` wrote.

        Raises:
            WorkspaceError: the folder holds no such model, or its files do not load.
        """
        from safetensors.torch import load_file

        try:
            settings = orjson.loads((folder / _SETTINGS).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError) as exc:
            raise WorkspaceError(
                f"no generative model at {folder} ({exc}); train one with 'shopsearch train "
                "--stage retrieval --model generative'"
            ) from exc
        if settings.get("format") != _FORMAT or settings.get("format_version") != _FORMAT_VERSION:
            raise WorkspaceError(f"{folder} holds no {_FORMAT} version {_FORMAT_VERSION} model")
        try:
            saved = settings["encoder"]
            encoder = (
                make_encoder(saved["name"], saved["config"])
                if "config" in saved
                else load_encoder(folder)
            )
            if encoder.version != saved["version"]:
                raise WorkspaceError(
                    f"{folder}: encoder {saved['name']!r} is now version {encoder.version!r}, "
                    f"the IDs were built with {saved['version']!r}; train again"
                )
            quantizer = ResidualKMeans(**settings["quantizer"])
            books = np.load(folder / "codebooks.npy", allow_pickle=False)
            quantizer.codebooks_ = [np.ascontiguousarray(b, np.float32) for b in books]
            ids = load_ids(folder / "ids")
            spec = settings["generator"]
            generator: IdGenerator | GenRec
            if spec.get("kind") == _GENREC:
                generator = GenRec.load(folder / _GENREC)
            else:
                generator = IdGenerator(
                    spec["query_dim"], spec["vocab"], spec["depth"],
                    GeneratorConfig(**spec["config"]),
                )  # fmt: skip
                generator.load_state_dict(load_file(str(folder / _WEIGHTS)))
                generator.eval()
        except ShopSearchError:
            raise
        except Exception as exc:  # truncated or edited files
            raise WorkspaceError(
                f"generative model at {folder} does not load ({type(exc).__name__}: {exc}); "
                "train it again"
            ) from exc
        return cls(
            encoder,
            quantizer,
            ids,
            generator,
            float(settings["in_bucket_temperature"]),
            dict(settings.get("info", {})),
        )


def item_vectors(encoder: Encoder, texts: Sequence[str], cache_dir: Path | None) -> F32:
    """The encoder's vectors of ``texts`` (through the embedding cache when given)."""
    if cache_dir is None:
        return np.asarray(encoder.encode_items(list(texts)), np.float32)
    return np.asarray(EmbeddingCache(cache_dir, encoder).encode_items(list(texts)), np.float32)


def generator_digest(generator: IdGenerator | GenRec) -> str:
    """A digest of the generator's weights (tests check that catalog changes leave them)."""
    import hashlib

    digest = hashlib.sha256()
    module = generator.net if isinstance(generator, GenRec) else generator
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).numpy().tobytes())
    return digest.hexdigest()


__all__ = ["GenerativeModel", "generator_digest", "item_vectors"]
