"""The estimator interface and the sample statistics every estimator starts from.

An estimator binds a :class:`~analysis.sem.model.Model` to
:class:`analysis.sem.data.SampleStats` (per-group ``cov`` with divisor N, ``mean``,
``nobs``)
and exposes ``objective / gradient / information / vcov / test`` (see
``docs/engine.md``). The optimizer, standard errors, fit indices and
bootstrap only talk to this surface.
"""

from __future__ import annotations

import numpy as np
from analysis.sem import distributions as sps

from analysis.errors import SampleCovarianceError

__all__ = ["Estimator", "ml_weight", "vech", "sample_logdets"]


def vech(a: np.ndarray) -> np.ndarray:
    """Lower triangle of a symmetric matrix, column by column (lavaan's vech)."""
    from analysis.sem.model import vech_indices

    r, c = vech_indices(a.shape[0])
    return a[r, c]


def ml_weight(w: np.ndarray) -> np.ndarray:
    """0.5 D'(W kron W)D for vech(Sigma), W = Sigma^-1 (normal-theory information)."""
    from analysis.sem.model import vech_indices

    a, b = vech_indices(w.shape[0])
    mult = np.where(a == b, 1 / np.sqrt(2), np.sqrt(2))
    g = w[np.ix_(a, a)] * w[np.ix_(b, b)] + w[np.ix_(a, b)] * w[np.ix_(b, a)]
    return 0.5 * g * np.outer(mult, mult)


def sample_logdets(stats) -> list[float]:
    """log|S| per group; raises SampleCovarianceError (naming the variables) if S is not PD."""
    out = []
    labels = list(getattr(stats, "group_labels", ()) or ())
    for g, s in enumerate(stats.cov):
        lab = f" of group '{labels[g]}'" if len(stats.cov) > 1 and labels else ""
        vals, vecs = np.linalg.eigh(s)
        if vals.min() <= 1e-10 * max(1.0, vals.max()):
            names = list(stats.ov_names)
            worst = vecs[:, 0]
            involved = [names[i] for i in np.argsort(-np.abs(worst))[:3] if abs(worst[i]) > 0.1]
            zero_var = [names[i] for i in range(len(names)) if s[i, i] <= 1e-12]
            detail = (f"variable(s) with zero variance: {', '.join(zero_var)}" if zero_var else
                      "linear dependence among " + ", ".join(involved))
            raise SampleCovarianceError(
                f"the sample covariance matrix{lab} is not positive definite "
                f"(smallest eigenvalue {vals.min():.3g}): {detail}")
        out.append(float(np.sum(np.log(vals))))
    return out


class Estimator:
    """Common surface of all estimators; subclasses implement the statistics."""

    name = "?"

    def __init__(self, model, stats):
        self.model = model
        self.stats = stats
        self.ntotal = stats.ntotal
        self.weights = np.asarray(stats.nobs, dtype=float) / stats.ntotal

    def objective(self, x: np.ndarray) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def gradient(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def information(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def vcov(self, x: np.ndarray) -> np.ndarray:
        """Inverse of N times the unit information (lavaan's se="standard")."""
        info = self.information(x) * self.ntotal
        return np.linalg.inv(info)

    def df(self) -> int:
        return self.model.df

    def test(self, x: np.ndarray) -> dict:
        chisq = max(2.0 * self.ntotal * self.objective(x), 0.0)
        df = self.df()
        pvalue = float(sps.chi2.sf(chisq, df)) if df > 0 else np.nan
        return {"test": "standard", "chisq": chisq, "df": df, "pvalue": pvalue}
