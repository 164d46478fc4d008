"""MODRL-TA (Cheng et al., JD, CIKM 2024): multi-objective Q-learning for traffic allocation.

After ranking, the allocator moves items of the first ``window`` positions by at most
``max_shift`` places. Its three parts, as the paper describes them and as far as logged data
allow:

1. **Multi-objective Q-learning (MOQ)**: one Q-function per objective (:data:`~.features.
   OBJECTIVES`: clicks, purchases, new-item exposure), each a bootstrap ensemble of ridge
   regressions (:class:`~.q_ensemble.QEnsemble`). The action of an item is its position; its
   value is the objective's long-term return ``r + gamma * Q(s')``, where ``s'`` is the item's
   state at its next appearance (its history then includes what this one earned: a new item's
   early sales, which make it more attractive later, are how today's exposure pays later).
   Fitted Q iteration (``rounds`` rounds). The features make ``Q = A(s) + B(s) exam(p) +
   C(s) on_page(p)`` (:func:`~.features.phi`).
2. **Decision fusion (DFM)** by the cross-entropy method (:mod:`.cem`): the objectives' Q-values,
   each divided by its mean size, are weighted by ``w`` on the simplex; every request's new
   items are placed where the weighted sum over the whole window is highest (the other items
   keep the ranking's relative order; the best merge is found exactly), and CEM picks ``w``
   maximising the estimated joint value ``sum_k priority_k V_k(w) / V_k(none)`` over recent
   requests, where ``V_k(none)`` is the value of the ranked order; a
   plan whose estimated purchases fall more than ``purchase_tolerance`` below the ranked
   order's is penalised. Re-fitting starts the search from the previous weights, so the weights
   follow the objectives over time.
3. **Progressive data augmentation (PDA)**: first the allocator learns from interactions
   *simulated* from the offline logs: every logged impression is replayed at a random other
   position, its logged click and purchase re-weighted by the examination ratio of the two
   positions (a position-based click model estimated from the same logs). Live interactions
   (logs after ``live_since``, served with the allocator) then replace the simulated ones
   progressively: with ``L`` days of live logs a share ``min(1, L / ramp_days)`` of the
   simulated transitions is dropped.

Simplifications (and why): linear-in-features Q ensembles instead of deep networks (the logs
are small, fitting is exact and fast); only new items choose their positions (at most
``max_shift`` places from their rank) while the others keep the ranking's relative order and
give way, so the ranking model still orders the established items and the Q-values decide
where the new ones go and what displacing the others costs; the
bootstrapped value is taken at the item's next *logged* position (SARSA-style) rather than the
max over actions (other items compete for the same places); one fused weight vector per fit
(per day) rather than per request.

Logs it learns from (:data:`LOG_COLUMNS`, one row per logged impression): ``request_id``,
``timestamp``, ``domain``, ``product_id``, 1-based ``position``, ``clicked``, ``purchased``,
``new``; and the catalog's ``domain, product_id, new``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.errors import InvalidInputError
from shopsearch.rerank.allocation.cem import cross_entropy_weights
from shopsearch.rerank.allocation.features import (
    OBJECTIVES,
    STATE_FEATURES,
    ItemStats,
    PositionModel,
    phi,
    state_features,
)
from shopsearch.rerank.allocation.q_ensemble import QEnsemble

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Columns of the logged impressions :meth:`MODRLTA.fit` reads.
LOG_COLUMNS = (
    "request_id",
    "timestamp",
    "domain",
    "product_id",
    "position",
    "clicked",
    "purchased",
    "new",
)

#: Largest examination ratio a simulated transition re-weights a logged outcome by.
MAX_RATIO = 10.0
DAY = pd.Timedelta(days=1)


@dataclass
class Transitions:
    """Item-level transitions ``(s, placed, r, s', next position)``, arrays by row."""

    x: F64
    placed: I64
    reward: F64
    x_next: F64
    next_position: I64

    def __len__(self) -> int:
        return int(self.placed.size)

    def take(self, rows: I64) -> Transitions:
        """The transitions in ``rows``."""
        return Transitions(
            self.x[rows],
            self.placed[rows],
            self.reward[rows],
            self.x_next[rows],
            self.next_position[rows],
        )

    @staticmethod
    def concat(parts: list[Transitions]) -> Transitions:
        """The transitions of every part, in order."""
        return Transitions(
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.placed for p in parts]),
            np.concatenate([p.reward for p in parts]),
            np.concatenate([p.x_next for p in parts]),
            np.concatenate([p.next_position for p in parts]),
        )


@dataclass(frozen=True)
class Allocation:
    """Where the allocator puts a window of ranked items.

    Attributes:
        order: indices into the window, in their new order.
        placed: the new 0-based position of each window item (in ranked order).
    """

    order: I64
    placed: I64

    @property
    def shift(self) -> I64:
        """Places each item moved up (negative: down), in ranked order."""
        out: I64 = np.arange(self.placed.size) - self.placed
        return out


class MODRLTA:
    """Multi-objective traffic allocation (see the module docstring).

    Args:
        gamma: discount of an item's next appearance.
        members: Q-ensemble members per objective.
        ridge: ridge penalty of the Q regressions.
        max_shift: most places an item moves up or down.
        window: ranked positions the allocator may re-order.
        priorities: weight of each objective's relative gain in the fused value (clicks,
            purchases, exposure).
        purchase_tolerance: estimated purchase loss (share of the ranked order's) allowed.
        ramp_days: days of live logs after which no simulated transition is left.
        rounds: fitted Q iteration rounds.
        cem_requests: recent requests the fusion weights are chosen on.
        max_simulated: most simulated transitions kept (a random subset beyond).
        seed: seed of every random choice.
    """

    def __init__(
        self,
        *,
        gamma: float = 0.8,
        members: int = 5,
        ridge: float = 1.0,
        max_shift: int = 10,
        window: int = 50,
        priorities: tuple[float, float, float] = (1.0, 1.0, 1.0),
        purchase_tolerance: float = 0.02,
        ramp_days: float = 5.0,
        rounds: int = 3,
        cem_requests: int = 300,
        max_simulated: int = 200_000,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= gamma < 1.0 or max_shift < 1 or window < 2 or ramp_days <= 0:
            raise InvalidInputError(
                f"gamma={gamma}, max_shift={max_shift}, window={window}, ramp_days={ramp_days}: "
                "use 0 <= gamma < 1, max_shift >= 1, window >= 2 and ramp_days > 0"
            )
        self.gamma = gamma
        self.members = members
        self.ridge = ridge
        self.max_shift = max_shift
        self.window = window
        self.priorities = tuple(float(p) for p in priorities)
        self.purchase_tolerance = purchase_tolerance
        self.ramp_days = ramp_days
        self.rounds = rounds
        self.cem_requests = cem_requests
        self.max_simulated = max_simulated
        self.seed = seed
        self.position_: PositionModel | None = None
        self.q_: list[QEnsemble] | None = None
        self.scale_: F64 | None = None
        self.weights_: F64 | None = None
        self.stats_: ItemStats | None = None
        self.info_: dict[str, Any] = {}

    # -- learning ---------------------------------------------------------------------------
    def fit(
        self,
        logs: pd.DataFrame,
        catalog: pd.DataFrame,
        live_since: pd.Timestamp | None = None,
        init_weights: F64 | None = None,
        windows: Sequence[list[tuple[str, str]]] | None = None,
    ) -> MODRLTA:
        """Learn from logged impressions (see the module docstring).

        Args:
            logs: one row per logged impression (:data:`LOG_COLUMNS`).
            catalog: ``domain, product_id, new`` of every product (the items served later).
            live_since: logs after this time were served with the allocator (live); the rest
                only give simulated transitions. ``None``: all offline.
            init_weights: fusion weights to start the search from (the previous fit's).
            windows: ranked windows (item keys, best first) the allocator faces, recent last:
                the fusion weights are chosen on the last ``cem_requests`` of them. Without
                them, on the logged lists of the last requests (which hold only shown items,
                so no new item below the page can be lifted onto it).

        Raises:
            InvalidInputError: for missing columns or logs without clicks.
        """
        missing = [c for c in LOG_COLUMNS if c not in logs.columns]
        if missing:
            raise InvalidInputError(
                f"the allocation logs lack column(s) {', '.join(missing)}; give {LOG_COLUMNS}"
            )
        rng = np.random.default_rng(self.seed)
        frame = logs.sort_values(["timestamp", "request_id", "position"], kind="stable")
        frame = frame.reset_index(drop=True)
        position = frame["position"].to_numpy(dtype=np.int64) - 1
        clicked = frame["clicked"].to_numpy(dtype=bool)
        purchased = frame["purchased"].to_numpy(dtype=bool)
        new = frame["new"].to_numpy(dtype=bool)
        live = (
            np.zeros(len(frame), dtype=bool)
            if live_since is None
            else (frame["timestamp"] > live_since).to_numpy()
        )
        self.position_ = PositionModel.fit(position[~live], clicked[~live])
        groups = frame.groupby(["domain", "product_id"], sort=False)
        imp: F64 = groups.cumcount().to_numpy().astype(np.float64)
        clicks = groups["clicked"].cumsum().to_numpy(dtype=np.float64) - clicked
        sales = groups["purchased"].cumsum().to_numpy(dtype=np.float64) - purchased
        x = state_features(new, position, imp, clicks, sales)
        simulated = self._simulated(x, position, clicked, purchased, new, (imp, clicks, sales))
        simulated = simulated.take(np.flatnonzero(~live[: len(simulated)]))
        if len(simulated) > self.max_simulated:
            simulated = simulated.take(
                np.sort(rng.choice(len(simulated), self.max_simulated, replace=False))
            )
        live_days = 0.0
        parts = []
        if live.any():
            live_days = float((frame["timestamp"].max() - live_since) / DAY)
            item = groups.ngroup().to_numpy().astype(np.int64)
            real = self._real(x, position, clicked, purchased, new, item)
            parts.append(real.take(np.flatnonzero(live)))
        share = min(1.0, live_days / self.ramp_days)
        keep = rng.random(len(simulated)) >= share
        parts.insert(0, simulated.take(np.flatnonzero(keep)))
        data = Transitions.concat(parts)
        if len(data) == 0:
            raise InvalidInputError("no transitions to learn from; log some impressions first")
        self._fit_q(data)
        self.stats_ = self._stats(frame, catalog)
        if windows:
            states = [self.state(keys) for keys in list(windows)[-self.cem_requests :]]
        else:
            recent = frame.index.to_numpy()[live] if live.any() else frame.index.to_numpy()
            states = self._logged_lists(frame.loc[recent], x[recent])
        self.weights_ = self._fuse(states, init_weights, rng)
        self.info_ = {
            "impressions": len(frame),
            "live_impressions": int(live.sum()),
            "live_days": round(live_days, 3),
            "simulated_share_dropped": round(share, 3),
            "transitions": {"simulated": int(keep.sum()), "live": len(data) - int(keep.sum())},
            "weights": dict(zip(OBJECTIVES, self.weights_.round(4).tolist(), strict=True)),
        }
        return self

    def _simulated(
        self,
        x: F64,
        position: I64,
        clicked: npt.NDArray[np.bool_],
        purchased: npt.NDArray[np.bool_],
        new: npt.NDArray[np.bool_],
        history: tuple[F64, F64, F64],
    ) -> Transitions:
        """Every logged impression replayed at a random position within ``max_shift``."""
        assert self.position_ is not None
        rng = np.random.default_rng(self.seed + 1)
        placed = np.maximum(
            position + rng.integers(-self.max_shift, self.max_shift + 1, position.size), 0
        )
        exam, on = self.position_.features(placed)
        logged_exam, _ = self.position_.features(position)
        ratio = np.minimum(exam / np.maximum(logged_exam, 1e-9), MAX_RATIO)
        click = clicked * ratio
        buy = purchased * ratio
        reward = np.column_stack([click, buy, new * on])
        imp, clicks, sales = history
        x_next = state_features(new, position, imp + on, clicks + click, sales + buy)
        return Transitions(x, placed.astype(np.int64), reward, x_next, position)

    def _real(
        self,
        x: F64,
        position: I64,
        clicked: npt.NDArray[np.bool_],
        purchased: npt.NDArray[np.bool_],
        new: npt.NDArray[np.bool_],
        item: I64,
    ) -> Transitions:
        """Logged impressions as they happened; ``s'`` is the item's next logged impression."""
        assert self.position_ is not None
        _, on = self.position_.features(position)
        reward = np.column_stack(
            [clicked.astype(np.float64), purchased.astype(np.float64), new * on]
        )
        order = np.lexsort((np.arange(item.size), item))
        nxt = np.full(item.size, -1, dtype=np.int64)
        same = item[order[1:]] == item[order[:-1]]
        nxt[order[:-1][same]] = order[1:][same]
        has = nxt >= 0
        x_next = x.copy()
        x_next[has] = x[nxt[has]]
        next_position = np.where(has, position[np.maximum(nxt, 0)], position)
        return Transitions(x, position, reward, x_next, next_position.astype(np.int64))

    def _fit_q(self, data: Transitions) -> None:
        assert self.position_ is not None
        exam, on = self.position_.features(data.placed)
        features = phi(data.x, exam, on)
        next_exam, next_on = self.position_.features(data.next_position)
        next_features = phi(data.x_next, next_exam, next_on)
        q = [QEnsemble(self.members, self.ridge, self.seed + k) for k in range(len(OBJECTIVES))]
        future = np.zeros((len(data), len(OBJECTIVES)))
        for _ in range(self.rounds):
            for k, model in enumerate(q):
                model.fit(features, data.reward[:, k] + self.gamma * future[:, k])
            future = np.column_stack([model.predict(next_features) for model in q])
        self.q_ = q
        values = np.column_stack([model.predict(features) for model in q])
        self.scale_ = np.maximum(np.abs(values).mean(axis=0), 1e-9)

    def _stats(self, frame: pd.DataFrame, catalog: pd.DataFrame) -> ItemStats:
        totals = frame.groupby(["domain", "product_id"]).agg(
            impressions=("position", "size"), clicks=("clicked", "sum"), sales=("purchased", "sum")
        )
        table = catalog[["domain", "product_id", "new"]].drop_duplicates(["domain", "product_id"])
        table = table.merge(totals.reset_index(), on=["domain", "product_id"], how="left")
        return ItemStats.from_frame(table.fillna({"impressions": 0, "clicks": 0, "sales": 0}))

    def _logged_lists(self, frame: pd.DataFrame, x: F64) -> list[F64]:
        """States of the logged lists of the last ``cem_requests`` requests of ``frame``."""
        ids = pd.unique(frame["request_id"])[-self.cem_requests :]
        chosen = frame["request_id"].isin(set(ids)).to_numpy()
        rows = frame.loc[chosen]
        states = x[chosen]
        order = np.lexsort((rows["position"].to_numpy(), rows["request_id"].to_numpy()))
        codes = rows["request_id"].to_numpy()[order]
        cuts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        return list(np.split(states[order], cuts))

    def _fuse(self, states: list[F64], init: F64 | None, rng: np.random.Generator) -> F64:
        """CEM over the fusion weights on the windows' ``states`` (see :meth:`fit`)."""
        requests = [s for s in states if len(s) > 1]
        if not requests:
            return np.full(len(OBJECTIVES), 1.0 / len(OBJECTIVES))
        ranked = [self.values(s, np.arange(len(s))) for s in requests]
        base = np.maximum(np.sum(ranked, axis=0), 1e-9)
        priorities = np.asarray(self.priorities)

        def score(w: F64) -> float:
            total = np.zeros(len(OBJECTIVES))
            for s in requests:
                total += self.values(s, self.allocate(s, weights=w).placed)
            gain = float(priorities @ (total / base))
            shortfall = max(0.0, (1.0 - self.purchase_tolerance) - total[1] / base[1])
            return float(gain - 100.0 * shortfall)

        weights, _ = cross_entropy_weights(
            score, len(OBJECTIVES), init=init, seed=int(rng.integers(2**31))
        )
        return weights

    # -- serving ----------------------------------------------------------------------------
    def _q(self) -> tuple[list[QEnsemble], PositionModel, F64]:
        if self.q_ is None or self.position_ is None or self.scale_ is None:
            raise InvalidInputError("this MODRLTA is not fitted; call fit() or load() first")
        return self.q_, self.position_, self.scale_

    def values(self, x: F64, placed: I64) -> F64:
        """Each objective's total estimated value of items ``x`` placed at ``placed``."""
        q, position, _ = self._q()
        exam, on = position.features(placed)
        features = phi(x, exam, on)
        return np.array([model.predict(features).sum() for model in q])

    def allocate(
        self, x: F64, *, weights: F64 | None = None, member: int | None = None
    ) -> Allocation:
        """Positions of a ranked window that maximise the fused value.

        New items (state feature ``new``) move at most ``max_shift`` places up or down; the
        other items keep the ranking's relative order and fill the remaining places (so the
        plan is a merge of the two ranked sequences, found exactly by dynamic programming).

        Args:
            x: ``(n, D)`` state features, ranked order.
            weights: fusion weights (default: the fitted ones).
            member: use one ensemble member (exploration) instead of the ensemble mean.
        """
        q, position, scale = self._q()
        w = self.weights_ if weights is None else weights
        if w is None:
            raise InvalidInputError("this MODRLTA has no fusion weights; fit() it first")
        n = x.shape[0]
        new = np.flatnonzero(x[:, 1] > 0)
        if n < 2 or new.size == 0:
            return Allocation(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64))
        d = x.shape[1]
        exam, on = position.features(np.arange(n))
        value = np.zeros((n, n))  # value[i, p]: fused value of item i at position p
        for k, model in enumerate(q):
            coef = model.coef_
            assert coef is not None
            c = coef.mean(axis=0) if member is None else coef[member % model.members]
            b_part, c_part = x @ c[d : 2 * d], x @ c[2 * d :]
            value += (w[k] / scale[k]) * (np.outer(b_part, exam) + np.outer(c_part, on))
        order = _best_merge(value, new, self.max_shift)
        placed = np.empty(n, dtype=np.int64)
        placed[order] = np.arange(n)
        return Allocation(order, placed)

    def state(self, keys: list[tuple[str, str]]) -> F64:
        """State features of ranked ``keys`` (in ranked order) from the fitted item stats."""
        if self.stats_ is None:
            raise InvalidInputError("this MODRLTA is not fitted; call fit() or load() first")
        return self.stats_.features(keys, np.arange(len(keys)))

    # -- files ------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The parameters (what ``config.json`` holds besides the fitted state)."""
        return {
            "gamma": self.gamma,
            "members": self.members,
            "ridge": self.ridge,
            "max_shift": self.max_shift,
            "window": self.window,
            "priorities": list(self.priorities),
            "purchase_tolerance": self.purchase_tolerance,
            "ramp_days": self.ramp_days,
            "rounds": self.rounds,
            "cem_requests": self.cem_requests,
            "max_simulated": self.max_simulated,
            "seed": self.seed,
        }

    def save(self, folder: Path) -> None:
        """Write the model to ``folder``: ``config.json``, ``q_<objective>.npy``,
        ``stats.parquet``."""
        q, position, scale = self._q()
        if self.weights_ is None or self.stats_ is None:
            raise InvalidInputError("this MODRLTA is not fitted; call fit() first")
        folder.mkdir(parents=True, exist_ok=True)
        for name, model in zip(OBJECTIVES, q, strict=True):
            model.save(folder / f"q_{name}.npy")
        self.stats_.save(folder / "stats.parquet")
        data = {
            "model": "modrl-ta",
            "params": self.config(),
            "state_features": list(STATE_FEATURES),
            "examination": position.examination.tolist(),
            "scale": scale.tolist(),
            "weights": self.weights_.tolist(),
            "info": self.info_,
        }
        (folder / "config.json").write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, folder: Path) -> MODRLTA:
        """Read what :meth:`save` wrote.

        Raises:
            InvalidInputError: for a folder without a saved model.
        """
        path = folder / "config.json"
        if not path.exists():
            raise InvalidInputError(f"{folder} holds no allocation model (no config.json)")
        data = json.loads(path.read_text())
        params = dict(data["params"])
        params["priorities"] = tuple(params["priorities"])
        model = cls(**params)
        model.q_ = [QEnsemble.load(folder / f"q_{name}.npy") for name in OBJECTIVES]
        model.position_ = PositionModel(np.asarray(data["examination"], dtype=np.float64))
        model.scale_ = np.asarray(data["scale"], dtype=np.float64)
        model.weights_ = np.asarray(data["weights"], dtype=np.float64)
        model.stats_ = ItemStats.load(folder / "stats.parquet")
        model.info_ = dict(data.get("info", {}))
        return model


def _best_merge(value: F64, new: I64, max_shift: int) -> I64:
    """The merge of the new items (``new``, ranked order) into the others (ranked order) with
    the highest total ``value[item, position]``, every new item within ``max_shift`` of its
    rank; returns the items in their new order."""
    n = value.shape[0]
    is_new = np.zeros(n, dtype=bool)
    is_new[new] = True
    old = np.flatnonzero(~is_new)
    m, r = new.size, old.size
    best = np.full((m + 1, r + 1), -np.inf)
    came = np.zeros((m + 1, r + 1), dtype=np.int8)  # 1: last placed a new item, 2: an old one
    best[0, 0] = 0.0
    for a in range(m + 1):
        for b in range(r + 1):
            here = best[a, b]
            if here == -np.inf:
                continue
            p = a + b
            if a < m and abs(p - int(new[a])) <= max_shift:
                v = here + value[new[a], p]
                if v > best[a + 1, b]:
                    best[a + 1, b], came[a + 1, b] = v, 1
            if b < r:
                v = here + value[old[b], p]
                if v > best[a, b + 1]:
                    best[a, b + 1], came[a, b + 1] = v, 2
    if best[m, r] == -np.inf:  # unreachable with max_shift >= 1; keep the ranking
        return np.arange(n, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    a, b = m, r
    while a + b:
        if came[a, b] == 1:
            a -= 1
            out[a + b] = new[a]
        else:
            b -= 1
            out[a + b] = old[b]
    return out


__all__ = ["LOG_COLUMNS", "MODRLTA", "Allocation", "Transitions"]
