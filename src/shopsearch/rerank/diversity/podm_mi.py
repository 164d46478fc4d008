"""``shopsearch/podm-mi``: the Preference-oriented Diversity Model based on Mutual Information
(Wang et al., JD, SIGIR 2024), as far as a shop's logs allow.

**Preferences as Gaussians (PON).** Each user ``u`` has a diversity preference
``z_u ~ q(z_u) = N(mu_u, diag sigma_u^2)`` in ``dims`` dimensions, with the prior ``N(0, I)``;
``mu`` and ``sigma`` are learned by variational inference, so a user with little history keeps
a wide posterior near the prior (the population's preference) and an unknown user gets the
prior. A preference maps to a **strength** ``lambda(z) = softplus(a . z + a0)`` (how much
redundancy costs this user) and **facet weights** ``w(z) = softmax(W z + w0)`` over the facets
(:data:`~.base.FACETS`: category, brand, attributes; which kind of sameness tires them).

**Mutual information (SAM).** The candidates' diversity is their redundancy per facet in the
list (largest similarity to a product above; :mod:`.samples`). ``I(z; Y)`` between the
preference and the user's clicks ``Y`` on a list of candidates is bounded below by
``H(Y) + E_q[log p(Y | z, list)]`` (the variational bound of Barber and Agakov; ``H(Y)`` does
not depend on the model), with the click model
``logit p(click_i) = e_pos(i) + beta * (-log base_rank_i) + b_u + nuisance_i
- lambda(z) sum_f w_f(z) red_if``.
Training maximises that bound with reparameterised samples of ``z`` minus ``kl_weight`` times
``KL(q(z_u) || N(0, I))`` - the variational-inference objective (an ELBO) of the preferences.
``e_pos`` (examination by shown position), ``beta`` (relevance of the logging ranker's order),
the user's click bias ``b_u`` (MAP, ``N(0, 1)`` prior) and the shared ``nuisance`` terms absorb
what is not a user's diversity preference: the relevance controls of :mod:`.samples`, the
list's mean redundancy (homogeneous lists come from precise queries, which get more clicks)
and a population-wide, signed coefficient per facet of the redundancy itself (a product like
one above is usually *more* relevant: in the logs sameness and relevance go together, so the
population's own coefficient is confounded and is left to the ranker). ``lambda(z) >= 0`` is
therefore a user's aversion to sameness *beyond* the population's, and only it is served.

**Utility matrix and re-ranking.** For a request, the expected penalty weights
``c_f = E_q[lambda(z) w_f(z)]`` (``samples`` draws of the user's posterior) turn the facet
similarity into the utility matrix ``U[i, j] = -sum_f c_f S_f[i, j]`` (what placing ``j`` above
costs ``i``); candidates are placed greedily by ``beta * (-log rank_i) + min over placed j of
U[i, j]`` per facet (the max-similarity redundancy the model was trained on), so a focused
user's list stays in ranked order and a browsing user's list is diversified along the facets
that user tires of.

Simplified against the paper (and why): the paper's PON encodes query and behaviour sequences
with networks and gives items a Gaussian too; here a user's posterior is a free variational
parameter per user id and an item's diversity is its deterministic per-facet redundancy, since
the simulated logs carry no richer signal. The paper trains inside a PRM-style re-ranker with a
classification loss; here the click model above plays that role and the relevance comes from
the ranked order (the ranking stage's scores and the logged ranker's are not on one scale;
ranks are). Serving needs no torch: the fitted arrays are read with numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import orjson

from shopsearch.errors import InvalidInputError, NotFittedError
from shopsearch.rerank.diversity.base import (
    CONFIG_FILE,
    F64,
    FACETS,
    RERANKERS,
    DiversityReranker,
    Reranked,
    complete,
    read_config,
)
from shopsearch.rerank.diversity.samples import LoggedLists

#: Arrays of a fitted model, one ``.npy`` file each.
ARRAYS = (
    "mu_",
    "log_sigma_",
    "bias_",
    "strength_w_",
    "facet_w_",
    "facet_b_",
    "position_",
)
USERS_FILE = "users.json"


def _softplus(x: F64) -> F64:
    out: F64 = np.logaddexp(0.0, x)
    return out


def _softmax(x: F64) -> F64:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    out: F64 = e / e.sum(axis=-1, keepdims=True)
    return out


@RERANKERS.register()
class PODMMIReranker(DiversityReranker):
    """PODM-MI (see the module docstring).

    Args:
        dims: dimensions of a user's diversity preference.
        epochs: passes over the logged lists.
        lr: Adam learning rate.
        batch_lists: lists per gradient step.
        kl_weight: weight of the KL term (1: the ELBO).
        samples: posterior draws averaged at serving.
        seed: seed of initialisation, batches and draws.
        confounded: facets whose sameness goes with relevance in the logs; each gets a
            population-wide, signed nuisance coefficient (see the module docstring).
    """

    name = "podm-mi"
    config_keys = (
        "dims",
        "epochs",
        "lr",
        "batch_lists",
        "kl_weight",
        "samples",
        "seed",
        "confounded",
    )

    def __init__(
        self,
        dims: int = 4,
        epochs: int = 10,
        lr: float = 0.05,
        batch_lists: int = 512,
        kl_weight: float = 1.0,
        samples: int = 32,
        seed: int = 0,
        confounded: tuple[str, ...] | list[str] = ("category",),
    ) -> None:
        for label, value, low in (
            ("dims", dims, 1),
            ("epochs", epochs, 1),
            ("batch_lists", batch_lists, 1),
            ("samples", samples, 1),
        ):
            if value < low:
                raise InvalidInputError(f"{label}={value} is not allowed; use {label} >= {low}")
        if lr <= 0 or kl_weight < 0:
            raise InvalidInputError(f"lr={lr}, kl_weight={kl_weight}: use lr > 0, kl_weight >= 0")
        self.dims = dims
        self.epochs = epochs
        self.lr = lr
        self.batch_lists = batch_lists
        self.kl_weight = kl_weight
        self.samples = samples
        self.seed = seed
        unknown = [name for name in confounded if name not in FACETS]
        if unknown:
            raise InvalidInputError(
                f"confounded={list(confounded)} names no facet {unknown}; use some of {FACETS}"
            )
        self.confounded = list(confounded)

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, lists: LoggedLists, progress: Any = None) -> Self:
        """Learn the users' preference posteriors and the click model from logged lists.

        Args:
            lists: the logged lists (:func:`~.samples.logged_lists`).
            progress: called as ``progress(epoch, epochs, loss)`` after each epoch.

        Raises:
            InvalidInputError: no lists.
        """
        if len(lists) == 0:
            raise InvalidInputError("no logged lists to learn diversity preferences from")
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a small model: one thread is fastest and shares the cores
        try:
            return self._fit(lists, progress)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, lists: LoggedLists, progress: Any) -> Self:
        import torch

        gen = torch.Generator().manual_seed(self.seed)
        n_users, d, f = len(lists.users), self.dims, len(FACETS)
        k = lists.mask.shape[1]
        n_pos = int(lists.position.max()) + 1
        t = torch.as_tensor
        user = t(lists.user)
        position = t(np.clip(lists.position, 0, n_pos - 1))
        rank = t(-np.log(lists.base_rank), dtype=torch.float32)
        red = t(lists.redundancy)
        confounded = [FACETS.index(name) for name in self.confounded]
        listed = lists.mask[..., None]
        mean_red = (lists.redundancy * listed).sum(1) / np.maximum(listed.sum(1), 1)
        nuisance = t(
            np.concatenate(
                [lists.control, np.broadcast_to(mean_red[:, None, :], red.shape)], axis=-1
            ).astype(np.float32)
        )
        click = t(lists.click)
        mask = t(lists.mask.astype(np.float32))
        p = {
            "mu": torch.zeros(n_users, d),
            "log_sigma": torch.full((n_users, d), -1.0),
            "bias": torch.zeros(n_users),
            "strength_w": torch.randn(d + 1, generator=gen),
            "facet_w": 0.1 * torch.randn(d, f, generator=gen),
            "facet_b": torch.zeros(f),
            "position": torch.zeros(n_pos),
            "beta": torch.ones(1),
            "nuisance": torch.zeros(nuisance.shape[-1] + len(self.confounded)),
            "intercept": torch.full((1,), -3.0),
        }
        for v in p.values():
            v.requires_grad_(True)
        opt = torch.optim.Adam(list(p.values()), lr=self.lr)
        n = len(lists)
        loss_value = float("nan")
        for epoch in range(self.epochs):
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for first in range(0, n, self.batch_lists):
                rows = perm[first : first + self.batch_lists]
                u = user[rows]
                eps = torch.randn(rows.numel(), d, generator=gen)
                z = p["mu"][u] + torch.exp(p["log_sigma"][u]) * eps
                strength = torch.nn.functional.softplus(
                    z @ p["strength_w"][:d] + p["strength_w"][d]
                )
                weights = torch.softmax(z @ p["facet_w"] + p["facet_b"], dim=-1)
                penalty = strength[:, None] * (red[rows] * weights[:, None, :]).sum(-1)
                logit = (
                    p["intercept"]
                    + p["position"][position[rows]]
                    + p["beta"] * rank[rows]
                    + p["bias"][u][:, None]
                    + torch.cat([nuisance[rows], red[rows][..., confounded]], dim=-1)
                    @ p["nuisance"]
                    - penalty
                )
                nll = (
                    torch.nn.functional.binary_cross_entropy_with_logits(
                        logit, click[rows], weight=mask[rows], reduction="sum"
                    )
                    / rows.numel()
                )
                sigma2 = torch.exp(2 * p["log_sigma"])
                kl = 0.5 * (sigma2 + p["mu"] ** 2 - 1.0 - 2 * p["log_sigma"]).sum()
                prior = 0.5 * (p["bias"] ** 2).sum() + 0.5 * (p["position"] ** 2).sum() * 1e-3
                loss = nll + (self.kl_weight * kl + prior) / n
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += float(nll.detach()) * rows.numel()
            loss_value = total / n / max(k, 1)
            if progress is not None:
                progress(epoch + 1, self.epochs, loss_value)
        with torch.no_grad():
            self.users_ = list(lists.users)
            self.mu_ = p["mu"].numpy().astype(np.float64)
            self.log_sigma_ = p["log_sigma"].numpy().astype(np.float64)
            self.bias_ = p["bias"].numpy().astype(np.float64)
            self.strength_w_ = p["strength_w"].numpy().astype(np.float64)
            self.facet_w_ = p["facet_w"].numpy().astype(np.float64)
            self.facet_b_ = p["facet_b"].numpy().astype(np.float64)
            self.position_ = p["position"].numpy().astype(np.float64) + float(p["intercept"])
            self.beta_ = float(p["beta"])
            self.nuisance_ = p["nuisance"].numpy().astype(np.float64)
        self.info_ = {"lists": n, "users": n_users, "loss": loss_value}
        self._index = {u: i for i, u in enumerate(self.users_)}
        return self

    # -- serving --------------------------------------------------------------------------------
    def _check(self) -> None:
        if not hasattr(self, "mu_"):
            raise NotFittedError(
                "the PODM-MI re-ranker is not fitted; call fit(lists) or load a trained one "
                "('shopsearch train --stage rerank')"
            )

    def _draws(self) -> F64:
        if not hasattr(self, "_eps"):
            rng = np.random.default_rng(self.seed)
            self._eps: F64 = rng.standard_normal((self.samples, self.dims))
        return self._eps

    def preference(self, user: str | None) -> tuple[float, F64]:
        """The user's expected penalty strength and its facet weights: ``(E[lambda],
        E[lambda w] / E[lambda])`` over the posterior (the prior for an unknown user)."""
        self._check()
        i = self._index.get(user) if user is not None else None
        mu = self.mu_[i] if i is not None else np.zeros(self.dims)
        sigma = np.exp(self.log_sigma_[i]) if i is not None else np.ones(self.dims)
        z = mu[None, :] + sigma[None, :] * self._draws()
        strength = _softplus(z @ self.strength_w_[: self.dims] + self.strength_w_[self.dims])
        weights = _softmax(z @ self.facet_w_ + self.facet_b_)
        cost = (strength[:, None] * weights).mean(axis=0)
        total = float(cost.sum())
        return total, cost / total if total > 0 else np.full(len(FACETS), 1.0 / len(FACETS))

    def utility_matrix(self, similarity: F64, user: str | None) -> F64:
        """``(len(FACETS), n, n)``: what placing ``j`` above costs ``i``, per facet
        (``-E[lambda w_f] S_f[i, j]``)."""
        strength, weights = self.preference(user)
        out: F64 = -(strength * weights)[:, None, None] * similarity
        return out

    def _rerank(self, scores: F64, similarity: F64, user: str | None, k: int) -> Reranked:
        """The PODM-MI order of the first ``depth`` candidates (module docstring)."""
        n = len(scores)
        utility = self.utility_matrix(similarity, user)
        relevance = -self.beta_ * np.log(np.arange(1, n + 1, dtype=np.float64))
        cost = np.zeros((utility.shape[0], n))  # per facet: worst cost of a placed candidate
        free = np.ones(n, dtype=bool)
        picked: list[int] = []
        values: list[float] = []
        for _ in range(k):
            value = np.where(free, relevance + cost.sum(axis=0), -np.inf)
            best = int(np.argmax(value))
            picked.append(best)
            values.append(float(value[best]))
            free[best] = False
            cost = np.minimum(cost, utility[:, :, best])
        return complete(picked, values, n)

    # -- files ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """``config.json`` (parameters, ``beta_``, ``info_``), ``users.json`` and one ``.npy``
        per fitted array."""
        self._check()
        path = super().save(folder)
        config = read_config(path)
        config["fitted"] = {
            "beta_": self.beta_,
            "nuisance_": self.nuisance_.tolist(),
            "info_": self.info_,
        }
        (path / CONFIG_FILE).write_bytes(orjson.dumps(config))
        (path / USERS_FILE).write_bytes(orjson.dumps(self.users_))
        for name in ARRAYS:
            np.save(path / f"{name.rstrip('_')}.npy", getattr(self, name), allow_pickle=False)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read a model written by :meth:`save`."""
        path = Path(folder)
        config = read_config(path)
        model = cls(**config["params"])
        fitted = config.get("fitted")
        if fitted is None:
            return model
        model.beta_ = float(fitted["beta_"])
        model.info_ = dict(fitted["info_"])
        model.nuisance_ = np.array(fitted["nuisance_"], dtype=np.float64)
        model.users_ = list(orjson.loads((path / USERS_FILE).read_bytes()))
        for name in ARRAYS:
            setattr(model, name, np.load(path / f"{name.rstrip('_')}.npy", allow_pickle=False))
        model._index = {u: i for i, u in enumerate(model.users_)}
        return model


def strength_of(model: PODMMIReranker, users: list[str]) -> npt.NDArray[np.float64]:
    """Each user's expected penalty strength (diagnostics: compare with the truth)."""
    return np.array([model.preference(u)[0] for u in users], dtype=np.float64)


__all__ = ["PODMMIReranker", "strength_of"]
