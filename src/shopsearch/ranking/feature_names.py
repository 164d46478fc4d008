"""The names of the ranking features, in the column order the models read them.

Kept apart from :mod:`.features` (the encoder) and :mod:`.samples` (the sample builder), which
both need them.
"""

from __future__ import annotations

#: Dense (numeric) features, in column order of ``RankingBatch.dense``.
DENSE_FEATURES: tuple[str, ...] = (
    "bm25",
    "matched_share",
    "query_terms",
    "brand_in_query",
    "category_in_query",
    "has_query_leaf",
    "leaf_match",
    "top_match",
    "log_price",
    "price_rel_category",
    "price_rel_user",
    "has_user_prices",
    "user_history",
    "log_impressions",
    "log_clicks",
    "log_purchases",
    "ctr_prior",
    "cart_prior",
    "cvr_prior",
    "qp_log_impressions",
    "qp_log_clicks",
    "qp_ctr_prior",
)

#: Dense features that depend on the market (price level, traffic, priors): SEQ+MD's mask.
MARKET_DRIVEN: tuple[str, ...] = (
    "log_price",
    "price_rel_category",
    "log_impressions",
    "log_clicks",
    "log_purchases",
    "ctr_prior",
    "cart_prior",
    "cvr_prior",
    "qp_log_impressions",
    "qp_log_clicks",
    "qp_ctr_prior",
)

#: Categorical features in ``RankingBatch.sparse``.
SPARSE_FEATURES: tuple[str, ...] = ("domain", "brand", "leaf", "query_leaf")

#: The dense feature of the query–product cosine under the bundle's dense encoder
#: (:mod:`.dense_feature`); present only in models trained with it.
DENSE_SIM = "dense_sim"

#: The dense feature of the relevance student's score of the query and the product (the
#: pipeline's ``relevance`` stage computes it; the training pipeline scores the logged pairs
#: with the same student); present only in models trained with it.
RELEVANCE = "relevance"
