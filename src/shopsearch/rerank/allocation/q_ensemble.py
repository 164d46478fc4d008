"""One objective's Q-function: a bootstrap ensemble of ridge regressions.

Each member is fitted on its own bootstrap resample of the transitions (Poisson(1) weights), so
the members disagree where the data are thin (new items, rare positions); the mean is the
estimate, the spread a measure of its uncertainty, and a single member a Thompson-style sample
for exploration. Saved as one ``.npy`` of coefficients.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError

F64 = npt.NDArray[np.float64]


class QEnsemble:
    """Ridge ensemble ``Q(phi) = phi @ coef_[m]`` over ``members`` bootstrap resamples.

    Args:
        members: ensemble size.
        ridge: L2 penalty (features are not standardised; the bias column is penalised too,
            lightly).
        seed: seed of the bootstrap weights.
    """

    def __init__(self, members: int = 5, ridge: float = 1.0, seed: int = 0) -> None:
        if members < 1:
            raise InvalidInputError(f"members={members} is not allowed; use members >= 1")
        self.members = members
        self.ridge = ridge
        self.seed = seed
        self.coef_: F64 | None = None

    def fit(self, phi: F64, y: F64, weight: F64 | None = None) -> QEnsemble:
        """Fit every member on a bootstrap resample of ``(phi, y)`` (optionally weighted)."""
        if phi.ndim != 2 or y.shape != (phi.shape[0],) or phi.shape[0] == 0:
            raise InvalidInputError(
                f"phi {phi.shape} and y {y.shape} do not match; give (n, d) and (n,), n >= 1"
            )
        rng = np.random.default_rng(self.seed)
        base = np.ones(y.size) if weight is None else weight
        eye = self.ridge * np.eye(phi.shape[1])
        coef = np.empty((self.members, phi.shape[1]))
        for m in range(self.members):
            w = base * rng.poisson(1.0, y.size)
            wphi = phi * w[:, None]
            coef[m] = np.linalg.solve(wphi.T @ phi + eye, wphi.T @ y)
        self.coef_ = coef
        return self

    def _coef(self) -> F64:
        if self.coef_ is None:
            raise InvalidInputError("this QEnsemble is not fitted; call fit() or load() first")
        return self.coef_

    def predict(self, phi: F64, member: int | None = None) -> F64:
        """The ensemble mean (or one ``member``'s estimate) for each row of ``phi``."""
        coef = self._coef()
        out: F64 = phi @ (coef.mean(axis=0) if member is None else coef[member % self.members])
        return out

    def spread(self, phi: F64) -> F64:
        """The members' standard deviation for each row of ``phi``."""
        out: F64 = (phi @ self._coef().T).std(axis=1)
        return out

    def save(self, path: Path) -> None:
        """Write the coefficients to ``path`` (``.npy``)."""
        np.save(path, self._coef())

    @classmethod
    def load(cls, path: Path) -> QEnsemble:
        """Read what :meth:`save` wrote."""
        coef = np.load(path)
        out = cls(members=int(coef.shape[0]))
        out.coef_ = coef.astype(np.float64)
        return out


__all__ = ["QEnsemble"]
