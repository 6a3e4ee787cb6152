"""Complete-data maximum likelihood (lavaan ``estimator="ML"``, ``likelihood="normal"``).

    F = sum_g (n_g / N) * 0.5 * (log|Sigma| + tr(S Sigma^-1) - log|S| - p
                                  + (ybar - mu)' Sigma^-1 (ybar - mu))

with S the covariance matrix of group g with divisor n_g; chisq = 2 N F.
The information is the expected (Fisher) information per case, weighted
by n_g / N over groups, so ``vcov = inv(N * information)``.
"""

from __future__ import annotations

import numpy as np

from .base import Estimator, ml_weight, sample_logdets

__all__ = ["MLEstimator"]


class MLEstimator(Estimator):
    name = "ML"

    def __init__(self, model, stats):
        super().__init__(model, stats)
        self.logdet_s = sample_logdets(stats)
        if model.meanstructure and any(m is None for m in stats.mean):
            from ..errors import DataError

            raise DataError("the model has a mean structure but no sample means were given "
                            "(pass sample_mean, or fit without meanstructure)")
        self._p = [len(n) for n in model.ov_names]
        self._layouts = [model.moment_layout(g) for g in range(model.n_groups)]
        self._offdiag = []
        for g in range(model.n_groups):
            p = self._p[g]
            r, c = np.tril_indices(p)
            order = np.lexsort((r, c))
            self._offdiag.append(np.where(r[order] == c[order], 1.0, 2.0))

    # per group pieces ---------------------------------------------------
    def _group_terms(self, x):
        """Per group (sigma, mu, W, logdet) or None when Sigma is not positive definite."""
        out = []
        for mom in self.model.implied(x):
            try:
                chol = np.linalg.cholesky(mom.sigma)
            except np.linalg.LinAlgError:
                return None
            logdet = 2.0 * np.sum(np.log(np.diag(chol)))
            cinv = np.linalg.inv(chol)
            w = cinv.T @ cinv
            out.append((mom.sigma, mom.mu, w, logdet))
        return out

    def objective(self, x: np.ndarray) -> float:
        terms = self._group_terms(x)
        if terms is None:
            return np.inf
        f = 0.0
        for g, (sigma, mu, w, logdet) in enumerate(terms):
            s = self.stats.cov[g]
            val = logdet + np.sum(s * w) - self.logdet_s[g] - self._p[g]
            if self.model.meanstructure:
                d = self.stats.mean[g] - mu
                val += d @ w @ d
            f += self.weights[g] * 0.5 * val
        return float(f)

    def _moment_gradient(self, g, sigma, mu, w):
        s = self.stats.cov[g]
        ws = w @ s
        gmat = 0.5 * (w - ws @ w)
        gmu = None
        if self.model.meanstructure:
            wd = w @ (self.stats.mean[g] - mu)
            gmat -= 0.5 * np.outer(wd, wd)
            gmu = -wd
        p = self._p[g]
        r, c = np.tril_indices(p)
        order = np.lexsort((r, c))
        gsig = gmat[r[order], c[order]] * self._offdiag[g]
        return gmu, gsig

    def gradient(self, x: np.ndarray) -> np.ndarray:
        terms = self._group_terms(x)
        if terms is None:
            return np.full(self.model.n_free, np.nan)
        deltas = self.model.delta(x)
        grad = np.zeros(self.model.n_free)
        for g, (sigma, mu, w, logdet) in enumerate(terms):
            lay = self._layouts[g]
            gmu, gsig = self._moment_gradient(g, sigma, mu, w)
            grad += self.weights[g] * (deltas[g][lay["sigma"]].T @ gsig)
            if gmu is not None:
                grad += self.weights[g] * (deltas[g][lay["mu"]].T @ gmu)
        return grad

    def information(self, x: np.ndarray) -> np.ndarray:
        terms = self._group_terms(x)
        if terms is None:
            raise np.linalg.LinAlgError("implied covariance matrix is not positive definite")
        return self._information(x, terms)[0]

    def _information(self, x, terms):
        deltas = self.model.delta(x)
        info = np.zeros((self.model.n_free, self.model.n_free))
        for g, (sigma, mu, w, logdet) in enumerate(terms):
            lay = self._layouts[g]
            ds = deltas[g][lay["sigma"]]
            info += self.weights[g] * (ds.T @ ml_weight(w) @ ds)
            if self.model.meanstructure:
                dm = deltas[g][lay["mu"]]
                info += self.weights[g] * (dm.T @ w @ dm)
        return info, deltas

    def weight_matrices(self, x: np.ndarray) -> list[np.ndarray]:
        """Per group the normal-theory weight of [mu, vech(Sigma)] (block diagonal), for robust SEs."""
        out = []
        for g, (sigma, mu, w, logdet) in enumerate(self._group_terms(x)):
            ws = ml_weight(w)
            if self.model.meanstructure:
                p = self._p[g]
                full = np.zeros((p + ws.shape[0],) * 2)
                full[:p, :p] = w
                full[p:, p:] = ws
                ws = full
            out.append(ws)
        return out

    def scoring_step(self, x: np.ndarray):
        """(objective, gradient, information) in one pass, for the optimizer."""
        terms = self._group_terms(x)
        if terms is None:
            return np.inf, None, None
        info, deltas = self._information(x, terms)
        grad = np.zeros(self.model.n_free)
        f = 0.0
        for g, (sigma, mu, w, logdet) in enumerate(terms):
            lay = self._layouts[g]
            gmu, gsig = self._moment_gradient(g, sigma, mu, w)
            grad += self.weights[g] * (deltas[g][lay["sigma"]].T @ gsig)
            val = logdet + np.sum(self.stats.cov[g] * w) - self.logdet_s[g] - self._p[g]
            if gmu is not None:
                grad += self.weights[g] * (deltas[g][lay["mu"]].T @ gmu)
                d = self.stats.mean[g] - mu
                val += d @ w @ d
            f += self.weights[g] * 0.5 * val
        return float(f), grad, info
