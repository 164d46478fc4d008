"""Judged (query, product) pairs of two shops as transfer samples; the two-shop Home Depot split.

Reading
-------
:func:`read_pairs` reads a judged file of any judged format (``homedepot``, ``crowdflower``,
``generic`` with an optional products file) into one frame of ``query, product_id, title,
grade`` (grades as numbers, one row per judged pair, titles joined from the products).

Features
--------
:func:`pair_features` computes text-match features for every pair, within one shop: the BM25
IDF and average title length come from that shop's own catalog (its judged products), as the
shop's own index would. The ranking models read a fixed set of dense columns
(:data:`~shopsearch.ranking.feature_names.DENSE_FEATURES`); the signals fill these columns (the rest
stay 0, which standardisation keeps at 0):

=======================  ==========================================================================
column                   signal
=======================  ==========================================================================
``bm25``                 BM25 (k1 = 1.2, b = 0.75) of the query tokens over the title tokens
``matched_share``        share of query tokens found in the title
``query_terms``          number of query tokens
``brand_in_query``       every query token is in the title (0/1)
``category_in_query``    the title's last word (usually the product type) is in the query (0/1)
``has_query_leaf``       share of the query's adjacent token pairs found adjacent in the title
``top_match``            Jaccard similarity of the character 3-gram sets (tolerates typos)
``leaf_match``           cosine of the query's and the title's MiniLM vectors
``price_rel_category``   ``bm25`` minus the largest ``bm25`` among the query's judged products
``price_rel_user``       the cosine minus the largest cosine among the query's judged products
``user_history``         log1p(number of title tokens)
=======================  ==========================================================================

Tokens are lower-case alphanumeric runs with a plural ``s`` stripped (words longer than 3 letters
not ending in ``ss``). The two "relative" columns compare a product only with the other products
judged for the same query, which a re-ranker sees together; no grade is read. MiniLM vectors of
titles and queries come through the content-hashed
:class:`~shopsearch.text.embedding_cache.EmbeddingCache` (MiniLM is symmetric: a query is encoded
exactly like an item text), so a rerun encodes nothing; the encoder is injectable (tests use a
hashed one).

Samples
-------
:func:`relevance_samples` turns featured pairs into :class:`~shopsearch.ranking.samples.Samples`:
one request per (shop, query), one row per judged product, the grade normalised to ``[0, 1]``
over the shop's grade range as a soft ``click`` label, ``domain`` = the shop's name, no behaviour
sequence, position 0. The models see a product's id only when the product is *linked*: in both
shops' catalogs (the instance relationship that PGTL's priors use). Every other product gets the
same empty id in training and test: most test products are never judged in training (cold
items), and an id embedding per product would only memorise its training grades, a signal that
test rows then lack.

Instance relationships (:func:`link_products`): a target product is linked to a source product
(1) with the same id, else (2) with the same normalised title (its :func:`tokens` joined), else
(3) to its nearest source product by MiniLM title cosine when that is at least
:data:`LINK_COSINE` (0.9, chosen before any run: near-duplicate titles, e.g. the same item in
another colour or pack size). A linked target product takes its source product's id, so the
models' shared item embedding and PGTL's priors (the item's statistics in the other shop) reach
it; the source product keeps its own id.

The two-shop Home Depot split
-----------------------------
:func:`split_two_shops` builds an honest two-shop setting out of the Home Depot judgments (the only
real text judgments available here): a product belongs to a *family* when a word of its title is
one of the family's keywords (:data:`FAMILIES`); a query belongs to the family's shop (the target)
when strictly more than half of its judged products are in the family, else to the other shop
(the source). Every judged pair of a query goes with its query, so the shops share no query; a
product judged for queries of both shops is in both catalogs (counted in the split's summary).
The rule is deterministic (no seed) and reads only product titles, never grades.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.errors import DataFormatError, InvalidInputError
from shopsearch.ranking.click_samples import make_samples
from shopsearch.ranking.samples import Samples
from shopsearch.text.encoders import Encoder

_WORD = re.compile(r"[a-z0-9]+")
_K1, _B = 1.2, 0.75

#: Known grade ranges ``(lowest, highest)`` of the judged formats; ``generic`` has none (the
#: range is read from the training judgments).
GRADE_RANGES: dict[str, tuple[float, float]] = {"homedepot": (1.0, 3.0), "crowdflower": (1.0, 4.0)}

#: Product families of the two-shop split: family → title keywords.
FAMILIES: dict[str, tuple[str, ...]] = {
    "lighting-electrical": (
        "light", "lights", "lighting", "lamp", "bulb", "bulbs", "led", "fixture", "fixtures",
        "switch", "switches", "outlet", "outlets", "wire", "wiring", "cable", "ceiling", "fan",
        "chandelier", "sconce", "dimmer", "breaker", "cord", "receptacle", "pendant",
        "flashlight", "electrical", "conduit",
    ),
    "outdoor-garden": (
        "garden", "lawn", "mower", "patio", "grill", "hose", "plant", "plants", "fence",
        "outdoor", "planter", "mulch", "soil", "trimmer", "sprinkler", "shrub", "tree", "seed",
        "fertilizer",
    ),
    "bath-plumbing": (
        "faucet", "toilet", "shower", "sink", "vanity", "bath", "bathroom", "valve", "pipe",
        "drain", "tub", "plumbing",
    ),
}  # fmt: skip

FloatArray = npt.NDArray[np.float64]

#: Least MiniLM title cosine that links a target product to its nearest source product.
LINK_COSINE = 0.9


def tokens(text: str) -> list[str]:
    """Lower-case alphanumeric tokens with a plural ``s`` stripped (see the module docstring)."""
    out = []
    for word in _WORD.findall(text.lower()):
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


# --------------------------------------------------------------------------- reading


def read_pairs(fmt: str, paths: Sequence[Path], products: Sequence[Path] = ()) -> pd.DataFrame:
    """Judged pairs ``query, product_id, title, grade`` of a judged format.

    Args:
        fmt: ``homedepot``, ``crowdflower`` or ``generic``.
        paths: the judged files.
        products: extra products files (generic format) that give the titles.

    Raises:
        InvalidInputError: for an unknown format.
        DataFormatError: when there are no judgments, a grade is not a number, or a judged
            product has no title.
    """
    from shopsearch.datasets import get_loader

    if fmt not in ("homedepot", "crowdflower", "generic"):
        raise InvalidInputError(
            f"judged format {fmt!r} is not supported here; use homedepot, crowdflower or generic"
        )
    data = get_loader(fmt)([*paths, *products])
    judged = data.judgments
    names = ", ".join(map(str, paths))
    if judged is None or judged.empty:
        raise DataFormatError(f"{names} holds no judgments; give a judged {fmt} file")
    grade = pd.to_numeric(judged["grade"], errors="coerce")
    if grade.isna().any():
        row = judged.loc[grade.isna()].iloc[0]
        raise DataFormatError(
            f"{int(grade.isna().sum())} grade(s) in {names} are not numbers; first: "
            f"{row['_file']} row {row['_row']} grade {row['grade']!r}"
        )
    catalog = data.products if data.products is not None else pd.DataFrame()
    titles: dict[str, str] = {}
    if not catalog.empty:
        first = catalog.drop_duplicates("product_id", keep="first")
        titles = dict(zip(first["product_id"].astype(str), first["title"].astype(str), strict=True))
    pairs = pd.DataFrame(
        {
            "query": judged["query"].astype(str).str.strip(),
            "product_id": judged["product_id"].astype(str),
            "grade": grade.astype(np.float64),
        }
    )
    pairs["title"] = pairs["product_id"].map(titles)
    if pairs["title"].isna().any():
        missing = pairs.loc[pairs["title"].isna(), "product_id"]
        raise DataFormatError(
            f"{missing.nunique()} judged product(s) of {names} have no title (first: "
            f"{missing.iloc[0]!r}); give their products file with --target-products"
        )
    pairs = pairs[pairs["query"] != ""]
    # One row per judged pair: a pair judged twice keeps its mean grade.
    out = pairs.groupby(["query", "product_id"], as_index=False, sort=True).agg(
        title=("title", "first"), grade=("grade", "mean")
    )
    return out


def grade_range(fmt: str, grades: pd.Series) -> tuple[float, float]:
    """The format's ``(lowest, highest)`` grade, or for ``generic`` the range of ``grades``.

    Raises:
        InvalidInputError: when the range is empty (every grade equal).
    """
    low, high = GRADE_RANGES.get(fmt, (float(grades.min()), float(grades.max())))
    if not high > low:
        raise InvalidInputError(
            f"the {fmt} training grades all equal {low:g}; the grade scale needs two levels"
        )
    return low, high


# --------------------------------------------------------------------------- features


def _trigrams(words: list[str]) -> set[str]:
    out: set[str] = set()
    for word in words:
        padded = f"#{word}#"
        out.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return out


def _bm25(pairs: pd.DataFrame, q_tok: list[list[str]], t_tok: list[list[str]]) -> FloatArray:
    """BM25 of each pair with IDF and average length from the pairs' distinct products."""
    first = ~pairs["product_id"].duplicated().to_numpy()
    catalog = [set(t) for t, keep in zip(t_tok, first, strict=True) if keep]
    n_docs = len(catalog)
    df: dict[str, int] = {}
    for doc in catalog:
        for word in doc:
            df[word] = df.get(word, 0) + 1
    avgdl = max(float(np.mean([len(t) for t, k in zip(t_tok, first, strict=True) if k])), 1.0)
    out = np.zeros(len(pairs))
    for i, (query, title) in enumerate(zip(q_tok, t_tok, strict=True)):
        counts: dict[str, int] = {}
        for word in title:
            counts[word] = counts.get(word, 0) + 1
        norm = _K1 * (1 - _B + _B * len(title) / avgdl)
        score = 0.0
        for word in set(query):
            tf = counts.get(word, 0)
            if tf:
                d = df.get(word, 0)
                idf = np.log(1 + (n_docs - d + 0.5) / (d + 0.5))
                score += idf * tf * (_K1 + 1) / (tf + norm)
        out[i] = score
    return out


def encode_texts(texts: Sequence[str], encoder: Encoder, cache_dir: Path | None) -> FloatArray:
    """Unit vectors of ``texts`` (distinct texts encoded once, through the cache when given)."""
    from shopsearch.text.embedding_cache import EmbeddingCache

    unique = list(dict.fromkeys(texts))
    if cache_dir is not None:
        vectors = EmbeddingCache(cache_dir, encoder).encode_items(unique)
    else:
        vectors = encoder.encode_items(unique)
    index = {t: i for i, t in enumerate(unique)}
    rows = np.fromiter((index[t] for t in texts), np.int64, len(texts))
    out: FloatArray = np.asarray(vectors, np.float64)[rows]
    return out


def pair_features(pairs: pd.DataFrame, encoder: Encoder, cache_dir: Path | None) -> pd.DataFrame:
    """``pairs`` of one shop with the feature columns of the module docstring added."""
    out = pairs.reset_index(drop=True).copy()
    q_tok = [tokens(q) for q in out["query"]]
    t_tok = [tokens(t) for t in out["title"]]
    n = len(out)
    matched = np.zeros(n)
    all_in = np.zeros(n)
    last_in = np.zeros(n)
    bigram = np.zeros(n)
    jaccard = np.zeros(n)
    for i, (query, title) in enumerate(zip(q_tok, t_tok, strict=True)):
        words = set(title)
        hits = sum(1 for w in query if w in words)
        matched[i] = hits / max(len(query), 1)
        all_in[i] = float(bool(query) and hits == len(query))
        last_in[i] = float(bool(title) and title[-1] in set(query))
        q_pairs = set(itertools.pairwise(query))
        if q_pairs:
            t_pairs = set(itertools.pairwise(title))
            bigram[i] = len(q_pairs & t_pairs) / len(q_pairs)
        a, b = _trigrams(query), _trigrams(title)
        jaccard[i] = len(a & b) / max(len(a | b), 1)
    out["bm25"] = _bm25(out, q_tok, t_tok)
    out["matched_share"] = matched
    out["query_terms"] = np.array([len(q) for q in q_tok], np.float64)
    out["brand_in_query"] = all_in
    out["category_in_query"] = last_in
    out["has_query_leaf"] = bigram
    out["top_match"] = jaccard
    titles = out["title"].astype(str).str.strip().tolist()
    queries = out["query"].astype(str).tolist()
    vectors = encode_texts(titles + queries, encoder, cache_dir)
    out["leaf_match"] = np.einsum("ij,ij->i", vectors[:n], vectors[n:])
    by_query = out.groupby("query", sort=False)
    out["price_rel_category"] = out["bm25"] - by_query["bm25"].transform("max")
    out["price_rel_user"] = out["leaf_match"] - by_query["leaf_match"].transform("max")
    out["user_history"] = np.log1p([len(t) for t in t_tok])
    return out


def labelled(featured: pd.DataFrame, domain: str, low: float, high: float) -> pd.DataFrame:
    """``featured`` pairs with ``domain`` set and the grade normalised over ``low..high`` (clipped
    to ``[0, 1]``) as the soft ``click`` label."""
    out = featured.copy()
    out["domain"] = domain
    out["click"] = ((out["grade"] - low) / (high - low)).clip(0.0, 1.0)
    return out


@dataclass(frozen=True)
class ProductLinks:
    """Target product id → the source product id it is linked to, and how many links each
    rule made (``by_id``, ``by_title``, ``by_embedding``)."""

    links: dict[str, str]
    by_id: int
    by_title: int
    by_embedding: int


def link_products(
    source: pd.DataFrame,
    target: pd.DataFrame,
    encoder: Encoder,
    cache_dir: Path | None,
    min_cosine: float = LINK_COSINE,
) -> ProductLinks:
    """Link each target product to a source product by id, normalised title or MiniLM nearest
    neighbour (see the module docstring); unlinked target products are absent."""
    src = source.drop_duplicates("product_id")[["product_id", "title"]].astype(str)
    tgt = target.drop_duplicates("product_id")[["product_id", "title"]].astype(str)
    src = src.sort_values("product_id", kind="stable").reset_index(drop=True)
    ids = set(src["product_id"])
    links = {pid: pid for pid in tgt["product_id"] if pid in ids}
    by_title: dict[str, str] = {}
    for pid, title in zip(src["product_id"], src["title"], strict=True):
        by_title.setdefault(" ".join(tokens(title)), pid)
    rest = tgt[~tgt["product_id"].isin(set(links))]
    titled = 0
    for pid, title in zip(rest["product_id"], rest["title"], strict=True):
        match = by_title.get(" ".join(tokens(title)))
        if match is not None:
            links[pid] = match
            titled += 1
    rest = rest[~rest["product_id"].isin(set(links))]
    embedded = 0
    if len(rest) and len(src):
        vectors = encode_texts(
            src["title"].str.strip().tolist() + rest["title"].str.strip().tolist(),
            encoder,
            cache_dir,
        )
        vectors32 = vectors.astype(np.float32)
        src_vec, rest_vec = vectors32[: len(src)], vectors32[len(src) :]
        for start in range(0, len(rest), 512):  # [512, n_source] cosines at a time
            cosine = rest_vec[start : start + 512] @ src_vec.T
            best = cosine.argmax(axis=1)
            for offset, (j, value) in enumerate(
                zip(best, cosine[np.arange(len(best)), best], strict=True)
            ):
                if value >= min_cosine:
                    links[rest["product_id"].iloc[start + offset]] = src["product_id"].iloc[j]
                    embedded += 1
    return ProductLinks(links, len(links) - titled - embedded, titled, embedded)


def relevance_samples(
    frames: Sequence[pd.DataFrame], links: Mapping[str, str] | None = None, source: str = ""
) -> Samples:
    """Samples of :func:`labelled` pairs: one request per (domain, query), no sequence.

    The judged product's id is kept in ``pid``; the model-facing ``product_id`` is, for a row of
    the ``source`` domain, its id when a target product links to it, and for any other row the
    id of the source product its product links to (``links``, see :func:`link_products`);
    ``""`` for every other product (see the module docstring).

    Raises:
        InvalidInputError: when there is no pair.
    """
    rows = pd.concat(list(frames), ignore_index=True)
    if rows.empty:
        raise InvalidInputError("no judged pairs to build samples from")
    rows = rows.sort_values(["domain", "query", "product_id"], kind="stable").reset_index(drop=True)
    rows["pid"] = rows["product_id"].astype(str)
    links = dict(links or {})
    in_source = rows["domain"] == source
    linked_to = set(links.values())
    rows["product_id"] = rows["pid"].map(links).fillna("")
    rows.loc[in_source, "product_id"] = rows.loc[in_source, "pid"].where(
        rows.loc[in_source, "pid"].isin(linked_to), ""
    )
    rows["request_id"] = rows["domain"] + "\x1f" + rows["query"]
    rows["session_id"] = rows["request_id"]
    rows["user_id"] = ""
    rows["position"] = 0
    rows["tsu"] = 0
    rows["qnorm"] = rows["query"]
    rows["query_leaf"] = ""
    rows["req"] = pd.factorize(rows["request_id"])[0]
    sequences = np.full((int(rows["req"].max()) + 1, 1), "", dtype=object)
    return make_samples(rows, sequences)


def split_queries(
    queries: Sequence[str], fractions: Sequence[float], seed: int
) -> tuple[dict[float, list[str]], list[str]]:
    """Seeded split of distinct queries into nested training parts and one test part.

    The distinct queries are shuffled once (seeded); the training part of fraction ``f`` is the
    first ``round(f * n)`` of them, so a smaller fraction's queries are a subset of a larger
    one's, and the test part is every query after the largest fraction's, the same for all.

    Returns:
        ``({fraction: training queries}, test queries)``.

    Raises:
        InvalidInputError: for a fraction outside (0, 1) or a side left empty.
    """
    if not fractions:
        raise InvalidInputError("no target training fraction given; use e.g. 0.1")
    for fraction in fractions:
        if not 0.0 < fraction < 1.0:
            raise InvalidInputError(f"fraction={fraction} is not allowed; use 0 < fraction < 1")
    unique = sorted(set(queries))
    order = np.random.default_rng(seed).permutation(len(unique))
    shuffled = [unique[i] for i in order]
    sizes = {f: round(f * len(unique)) for f in fractions}
    largest = max(sizes.values())
    if min(sizes.values()) < 1 or largest >= len(unique):
        raise InvalidInputError(
            f"{len(unique)} target queries cannot be split with fractions "
            f"{', '.join(f'{f:g}' for f in fractions)}; give more target judgments"
        )
    return {f: shuffled[:n] for f, n in sizes.items()}, shuffled[largest:]


# --------------------------------------------------------------------------- two shops


@dataclass(frozen=True)
class ShopSplit:
    """The two shops of :func:`split_two_shops` and counts describing them."""

    source: pd.DataFrame
    target: pd.DataFrame
    summary: dict[str, int | float | str]


def split_two_shops(frame: pd.DataFrame, family: str) -> ShopSplit:
    """Split Home Depot rows (``product_uid, product_title, search_term, relevance``) into a
    source shop and the ``family`` target shop (module docstring).

    Raises:
        InvalidInputError: for an unknown family or when a shop would be empty.
    """
    if family not in FAMILIES:
        raise InvalidInputError(f"family {family!r} is not known; use one of {', '.join(FAMILIES)}")
    needed = ("product_uid", "product_title", "search_term", "relevance")
    missing = [c for c in needed if c not in frame]
    if missing:
        raise InvalidInputError(f"the frame lacks {missing}; give a Home Depot train.csv")
    keywords = set(FAMILIES[family])
    in_family = (
        frame["product_title"]
        .astype(str)
        .map(lambda title: bool(keywords & set(_WORD.findall(title.lower()))))
    )
    share = in_family.groupby(frame["search_term"]).mean()
    target_queries = set(share.index[share > 0.5])
    is_target = frame["search_term"].isin(target_queries)
    source, target = frame[~is_target], frame[is_target]
    if source.empty or target.empty:
        raise InvalidInputError(f"family {family!r} leaves a shop without judgments")
    shared = set(source["product_uid"]) & set(target["product_uid"])
    summary: dict[str, int | float | str] = {
        "family": family,
        "source_queries": int(source["search_term"].nunique()),
        "source_pairs": len(source),
        "source_products": int(source["product_uid"].nunique()),
        "target_queries": int(target["search_term"].nunique()),
        "target_pairs": len(target),
        "target_products": int(target["product_uid"].nunique()),
        "products_in_both": len(shared),
        "source_mean_grade": round(float(source["relevance"].mean()), 4),
        "target_mean_grade": round(float(target["relevance"].mean()), 4),
    }
    return ShopSplit(source.reset_index(drop=True), target.reset_index(drop=True), summary)


__all__ = [
    "FAMILIES",
    "GRADE_RANGES",
    "ShopSplit",
    "encode_texts",
    "grade_range",
    "labelled",
    "pair_features",
    "read_pairs",
    "relevance_samples",
    "split_queries",
    "split_two_shops",
    "tokens",
]
