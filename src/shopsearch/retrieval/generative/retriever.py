"""The generative retrieval source: a trained generator decodes semantic IDs for a query,
constrained to the trie of the indexed products' IDs.

:class:`GenerativeRetriever` (registered ``"generative"``) serves a
:class:`~.trained.GenerativeModel`. Indexing keeps the trained ID of every product the model
knows and gives every other product an ID from its text alone (encoder → fitted quantizer →
:meth:`~.ids.FixedSemanticIds.add`), so a catalog change needs no retraining: the generator is
never touched. Filters become a row mask and the trie nodes holding a passing product; the beam
only enters those. A product's score is its ID's log-probability plus, when several products
share the ID, its log-share of the ID by the softmax of its reconstructed vector's cosine to the
query. With ``k`` at least the number of passing products the beam holds every node, so the
search is exhaustive.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shopsearch.catalog.candidates import Candidates, Filters, ProductKey
from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.progress import Progress
from shopsearch.retrieval.base import Capability, Hits, QueryPlan, Retriever, check_k
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.dense_rows import ProductRows
from shopsearch.retrieval.generative.decode import StepScores, beam_search
from shopsearch.retrieval.generative.trie import PrefixTrie
from shopsearch.retrieval.mmse import torch_threads
from shopsearch.retrieval.registry import RETRIEVERS
from shopsearch.store.atomic import write_json, write_parquet
from shopsearch.text.product_text import product_texts

if TYPE_CHECKING:  # torch is imported only when a generative model is trained or loaded
    from shopsearch.retrieval.generative.trained import GenerativeModel

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
_FORMAT = "shopsearch-genret"
_FORMAT_VERSION = 1
#: Random letter strings whose best ID score sets the match threshold.
NOISE_QUERIES = 200


@RETRIEVERS.register()
class GenerativeRetriever(Retriever):
    """Constrained decoding of semantic IDs (see the module docstring).

    Args:
        model: the trained model; ``None`` only for :meth:`load`.
        beam: open prefixes kept per depth (raised to ``k`` when fewer products pass than
            ``k``, which makes the search exhaustive).
        cache_dir: embedding cache for new products' vectors (``None``: encode directly).

    Attributes:
        rows_: per-row keys and filter fields.
        tokens_: each row's ID (padded), ``lengths_`` its length, ``codes_`` its full codes.
        trie_: the trie of the rows' IDs.
    """

    name = "generative"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({"updates"})
    config_keys: ClassVar[list[str]] = ["beam"]
    rows_: ProductRows
    tokens_: I64
    lengths_: I64
    codes_: npt.NDArray[np.uint8]
    trie_: PrefixTrie

    def __init__(
        self, model: GenerativeModel | None = None, beam: int = 100, cache_dir: Path | None = None
    ) -> None:
        if model is None:
            raise InvalidInputError(
                f"{type(self).__name__} needs a trained model; train one with 'shopsearch "
                f"train --stage retrieval --model {self.name}'"
            )
        if beam < 1:
            raise InvalidInputError(f"beam={beam} is not allowed; use beam >= 1")
        self.model = model
        self.beam = beam
        self.cache_dir = cache_dir
        self.match_threshold_: float | None = None
        self._ids = copy.deepcopy(model.ids)  # indexing adds IDs; the model's own stay as trained
        self._row_of_id = {key: row for row, key in enumerate(model.ids.keys)}

    # -- building ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "trie_"):
            raise NotFittedError(
                "GenerativeRetriever is not indexed; call index(products) or "
                "GenerativeRetriever.load(path)"
            )

    def _vectors(self, products: pa.Table) -> F32:
        from shopsearch.retrieval.generative.trained import item_vectors

        return item_vectors(self.model.encoder, product_texts(products), self.cache_dir)

    def _ids_of(self, products: pa.Table, keep_trained: bool) -> tuple[I64, I64, np.ndarray]:
        """Tokens, lengths and codes of ``products``: the trained ID of a known product (when
        ``keep_trained``), else one from its text."""
        keys = list(
            zip(
                products.column("domain").to_pylist(),
                products.column("product_id").to_pylist(),
                strict=True,
            )
        )
        known = np.fromiter(
            (self._row_of_id.get(k, -1) if keep_trained else -1 for k in keys), np.int64, len(keys)
        )
        new = np.flatnonzero(known < 0)
        ids = self._ids
        rows = known.copy()
        if new.size:
            codes = self.model.quantizer.encode(self._vectors(products.take(pa.array(new))))
            start = len(ids.keys)
            ids.add([keys[i] for i in new.tolist()], codes)
            rows[new] = np.arange(start, start + len(new))
        tokens = np.minimum(ids.tokens[rows], self.model.generator.vocab - 1)
        return tokens, ids.lengths[rows], ids.codes[rows]

    def _rebuild(self) -> None:
        self.trie_ = PrefixTrie(self.tokens_, self.lengths_)

    def index(self, products: pa.Table, progress: Progress | None = None) -> Self:
        """Give every product an ID (trained, or from its text) and build the trie."""
        products, _ = DenseRetriever.latest(products)
        self._ids = copy.deepcopy(self.model.ids)
        self.tokens_, self.lengths_, self.codes_ = self._ids_of(products, keep_trained=True)
        rows = ProductRows()
        rows.append(products)
        self.rows_ = rows
        self._rebuild()
        if progress is not None:
            progress(products.num_rows, products.num_rows)
        self.match_threshold_ = None
        return self

    def upsert(self, products: pa.Table) -> Self:
        """Add or replace products in place: each gets an ID from its text (the generator is
        unchanged); a replaced product keeps its ID when its text is unchanged."""
        if not hasattr(self, "trie_"):
            return self.index(products)
        products, keys = DenseRetriever.latest(products)
        tokens, lengths, codes = self._ids_of(products, keep_trained=False)
        old = np.fromiter((self.rows_.row_of.get(k, -1) for k in keys), np.int64, len(keys))
        known = old >= 0
        same = np.zeros(len(keys), np.bool_)
        same[known] = (self.codes_[old[known]] == codes[known]).all(axis=1)
        if same.any():
            self.rows_.update(old[same], products.filter(pa.array(same)))
        self.rows_.kill(old[known & ~same])
        if not same.all():
            self.rows_.append(products.filter(pa.array(~same)))
            self.tokens_ = np.concatenate([self.tokens_, tokens[~same]])
            self.lengths_ = np.concatenate([self.lengths_, lengths[~same]])
            self.codes_ = np.concatenate([self.codes_, codes[~same]])
        self._compact()
        return self

    def delete(self, keys: Iterable[ProductKey]) -> int:
        """Remove products by key; unknown keys are ignored. Returns how many were removed."""
        self._check_fitted()
        rows = np.unique(
            np.array([self.rows_.row_of[k] for k in keys if k in self.rows_.row_of], np.int64)
        )
        self.rows_.kill(rows)
        self._compact()
        return len(rows)

    def _compact(self) -> None:
        if self.rows_.n_alive != len(self.rows_):
            kept = self.rows_.compact()
            self.tokens_, self.lengths_ = self.tokens_[kept], self.lengths_[kept]
            self.codes_ = self.codes_[kept]
        self._rebuild()

    # -- searching -----------------------------------------------------------------------------
    def _query_vectors(self, queries: Sequence[str]) -> F32:
        return np.asarray(self.model.encoder.encode_queries(list(queries)), np.float32)

    def _steps(self, vector: F32, plan: QueryPlan | None) -> StepScores:
        """The beam's next-token scorer for one query (this source reads no ``plan``)."""
        from shopsearch.retrieval.generative.incremental import CachedSteps
        from shopsearch.retrieval.generative.model import IdGenerator

        generator = self.model.generator
        if not isinstance(generator, IdGenerator):
            raise self._wrong_generator(generator)
        return CachedSteps(generator, vector)

    def _wrong_generator(self, generator: object) -> WorkspaceError:
        other = "generative" if self.name == "genrec" else "genrec"
        return WorkspaceError(
            f"the {self.name!r} source holds a {type(generator).__name__} generator, which the "
            f"{other!r} source serves; train this source with 'shopsearch train --stage "
            f"retrieval --model {self.name}'"
        )

    def _decode(
        self, vector: F32, k: int, filters: Filters | None, plan: QueryPlan | None = None
    ) -> Candidates:
        mask = None if filters is None else self.rows_.mask(filters)
        passing = len(self.rows_) if mask is None else int(np.count_nonzero(mask))
        if passing == 0:
            return Candidates.empty()
        allowed = None if mask is None else self.trie_.allowed(mask)
        beam = passing if k >= passing else self.beam
        with torch_threads(1):
            steps = self._steps(vector, plan)
            found = beam_search(self.trie_, steps, min(k, passing), beam, allowed)
        rows, scores = found.rows(self.trie_)
        if mask is not None:
            keep = mask[rows]
            rows, scores = rows[keep], scores[keep]
        scores = scores + self._in_bucket(vector, rows, found.leaves)
        order = np.lexsort((rows, -scores))[:k]
        keys = self.rows_.keys
        return Candidates(
            keys=[keys[r] for r in rows[order].tolist()],
            scores=np.asarray(scores[order], np.float32),
            total=passing,
        )

    def _in_bucket(self, vector: F32, rows: I64, leaves: I64) -> npt.NDArray[np.float64]:
        """Each row's log-share of its (shared) ID: a softmax over the ID's returned products
        of their reconstructed vectors' cosine to the query; 0 for an ID of one product."""
        out = np.zeros(len(rows))
        sizes = np.asarray([self.trie_.rows(int(leaf)).size for leaf in leaves.tolist()])
        if not len(rows) or sizes.max(initial=1) <= 1:
            return out
        books = self.model.quantizer.codebooks_
        tables = [book @ vector for book in books]
        codes = self.codes_[rows].astype(np.int64)
        cosine = sum(tables[level][codes[:, level]] for level in range(len(books)))
        logits = np.asarray(cosine, np.float64) / self.model.in_bucket_temperature
        tokens = self.tokens_[rows]
        _, group = np.unique(
            np.concatenate([tokens, self.lengths_[rows, None]], axis=1), axis=0,
            return_inverse=True,
        )  # fmt: skip
        group = group.ravel()
        top = np.full(group.max() + 1, -np.inf)
        np.maximum.at(top, group, logits)
        total = np.zeros(len(top))
        np.add.at(total, group, np.exp(logits - top[group]))
        return logits - top[group] - np.log(total[group])

    def retrieve(self, query: str, k: int = 100, filters: Filters | None = None) -> Candidates:
        """The products of the ``k`` best IDs the generator emits for ``query``."""
        self._check_fitted()
        check_k(k)
        return self._decode(self._query_vectors([query])[0], k, filters)

    def search(
        self,
        query: str,
        k: int = 100,
        filters: Filters | None = None,
        plan: QueryPlan | None = None,
    ) -> Hits:
        """:meth:`retrieve`, with the ``plan`` (a source that reads the user's history gets
        it from there)."""
        self._check_fitted()
        check_k(k)
        return Hits(self._decode(self._query_vectors([query])[0], k, filters, plan))

    def retrieve_many(
        self, queries: Sequence[str], k: int = 100, filters: Filters | None = None
    ) -> list[Candidates]:
        """:meth:`retrieve` for many queries (their vectors encoded in one batch)."""
        self._check_fitted()
        check_k(k)
        if not queries:
            return []
        vectors = self._query_vectors(queries)
        return [self._decode(vector, k, filters) for vector in vectors]

    def matches(self, candidates: Candidates) -> npt.NDArray[np.bool_]:
        """Candidates scoring at least the match threshold (:meth:`fit_matches`): a loose
        guess of the generator does not count as a match of the query."""
        if self.match_threshold_ is None:
            self.fit_matches()
        assert self.match_threshold_ is not None
        return np.asarray(candidates.scores >= self.match_threshold_, dtype=bool)

    def fit_matches(self) -> None:
        """The threshold: the 95th percentile of the best score for random letter strings."""
        self._check_fitted()
        rng = np.random.default_rng(0)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        texts = [
            " ".join("".join(rng.choice(letters, int(rng.integers(4, 12))))
                     for _ in range(int(rng.integers(1, 3))))
            for _ in range(NOISE_QUERIES)
        ]  # fmt: skip
        best = [float(c.scores[0]) for c in self.retrieve_many(texts, 1) if len(c)]
        self.match_threshold_ = float(np.percentile(best, 95)) if best else 0.0

    # -- saving --------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """``config.json``, ``rows.parquet``, ``ids.npz`` (the rows' IDs) and ``model/``."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save(path / "model")
        write_parquet(path / "rows.parquet", self.rows_.to_table())
        with open(path / "ids.npz", "wb") as handle:
            np.savez(handle, tokens=self.tokens_, lengths=self.lengths_, codes=self.codes_)
        write_json(
            path / "config.json",
            {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "retriever": self.name,
                "config": self.get_config(),
                "rows": len(self.rows_),
                "match_threshold": self.match_threshold_,
            },
        )

    @classmethod
    def load(cls, path: Path, cache_dir: Path | None = None) -> Self:
        """Read a retriever :meth:`save` wrote.

        Raises:
            WorkspaceError: the folder holds no generative index, or it is inconsistent.
        """
        path = Path(path)
        try:
            config = orjson.loads((path / "config.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError) as exc:
            raise WorkspaceError(f"no generative index at {path} ({exc})") from exc
        if config.get("format") != _FORMAT or config.get("format_version") != _FORMAT_VERSION:
            raise WorkspaceError(f"{path} holds no {_FORMAT} version {_FORMAT_VERSION} index")
        from shopsearch.retrieval.generative.trained import GenerativeModel

        retriever = cls(
            GenerativeModel.load(path / "model"), cache_dir=cache_dir, **config["config"]
        )
        try:
            rows = ProductRows.from_table(pq.read_table(path / "rows.parquet"))
            with np.load(path / "ids.npz", allow_pickle=False) as saved:
                tokens, lengths, codes = saved["tokens"], saved["lengths"], saved["codes"]
        except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
            raise WorkspaceError(f"generative index at {path} does not load ({exc})") from exc
        if not len(rows) == len(tokens) == config["rows"]:
            raise WorkspaceError(
                f"{path}: {len(rows)} rows but {len(tokens)} IDs; the save was interrupted"
            )
        retriever.rows_, retriever.tokens_, retriever.lengths_ = rows, tokens, lengths
        retriever.codes_ = codes
        added = [i for i, key in enumerate(rows.keys) if key not in retriever._row_of_id]
        if added:  # the suffix counters of products added since training
            retriever._ids.add([rows.keys[i] for i in added], codes[added])
        retriever._rebuild()
        retriever.match_threshold_ = config.get("match_threshold")
        return retriever


__all__ = ["GenerativeRetriever"]
