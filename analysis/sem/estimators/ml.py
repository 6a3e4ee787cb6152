"""Complete-data maximum likelihood (lavaan ``estimator="ML"``, ``likelihood="normal"``).

    F = sum_g (n_g / N) * 0.5 * (log|Sigma| + tr(S Sigma^-1) - log|S| - p
                                  + (ybar - mu)' Sigma^-1 (ybar - mu))

with S the covariance matrix of group g with divisor n_g; chisq = 2 N F.
The information is the expected (Fisher) information per case, weighted
by n_g / N over groups, so ``vcov = inv(N * information)``. Its covariance
part ``0.5 tr(W dSigma_k W dSigma_l)`` is computed as inner products of
``L' dSigma_k L`` (W = L L'), which costs k p^3 instead of k (p^2/2)^2.
"""

from __future__ import annotations

import numpy as np

from analysis.sem.model import vech_indices
from analysis.sem.estimators.base import Estimator, ml_weight, sample_logdets

__all__ = ["MLEstimator"]


class MLEstimator(Estimator):
    name = "ML"

    def __init__(self, model, stats):
        super().__init__(model, stats)
        self.logdet_s = sample_logdets(stats)
        if model.meanstructure and any(m is None for m in stats.mean):
            from analysis.errors import DataError

            raise DataError("the model has a mean structure but no sample means were given "
                            "(pass sample_mean, or fit without meanstructure)")
        self._p = [len(n) for n in model.ov_names]
        self._layouts = [model.moment_layout(g) for g in range(model.n_groups)]
        self._vech = [vech_indices(p) for p in self._p]
        self._offdiag = [np.where(r == c, 1.0, 2.0) for r, c in self._vech]

    # per group pieces ---------------------------------------------------
    @staticmethod
    def _terms(moments):
        """Per group (sigma, mu, W, logdet, chol(W)) or None when Sigma is not positive definite."""
        out = []
        for mom in moments:
            try:
                chol = np.linalg.cholesky(mom.sigma)
            except np.linalg.LinAlgError:
                return None
            cinv = np.linalg.inv(chol)          # W = cinv' cinv
            out.append((mom.sigma, mom.mu, cinv.T @ cinv, 2.0 * np.sum(np.log(np.diag(chol))), cinv))
        return out

    def _group_terms(self, x):
        return self._terms(self.model.implied(x))

    def _fmin_group(self, g, mu, w, logdet):
        val = logdet + np.sum(self.stats.cov[g] * w) - self.logdet_s[g] - self._p[g]
        if self.model.meanstructure:
            d = self.stats.mean[g] - mu
            val += d @ w @ d
        return 0.5 * val

    def objective(self, x: np.ndarray) -> float:
        terms = self._group_terms(x)
        if terms is None:
            return np.inf
        return float(sum(self.weights[g] * self._fmin_group(g, mu, w, ld)
                         for g, (sigma, mu, w, ld, _) in enumerate(terms)))

    def _moment_matrices(self, g, mu, w):
        """dF/dmu and dF/dSigma (p x p, dF = sum_rc G_rc dSigma_rc) of one group."""
        gmat = 0.5 * (w - w @ self.stats.cov[g] @ w)
        gmu = None
        if self.model.meanstructure:
            wd = w @ (self.stats.mean[g] - mu)
            gmat -= 0.5 * np.outer(wd, wd)
            gmu = -wd
        return gmu, gmat

    def _moment_gradient(self, g, mu, w):
        """dF/dmu and dF/dvech(Sigma) of one group."""
        gmu, gmat = self._moment_matrices(g, mu, w)
        r, c = self._vech[g]
        return gmu, gmat[r, c] * self._offdiag[g]

    def _grad(self, terms, deltas):
        grad = np.zeros(self.model.n_free)
        for g, (sigma, mu, w, ld, _) in enumerate(terms):
            lay = self._layouts[g]
            gmu, gsig = self._moment_gradient(g, mu, w)
            grad += self.weights[g] * (deltas[g][lay["sigma"]].T @ gsig)
            if gmu is not None:
                grad += self.weights[g] * (deltas[g][lay["mu"]].T @ gmu)
        return grad

    def _info(self, terms, deltas):
        k = self.model.n_free
        info = np.zeros((k, k))
        for g, (sigma, mu, w, ld, cinv) in enumerate(terms):
            lay = self._layouts[g]
            ds = deltas[g][lay["sigma"]]
            p = self._p[g]
            r, c = self._vech[g]
            dfull = np.zeros((k, p, p))
            dfull[:, r, c] = ds.T
            dfull[:, c, r] = ds.T
            # tr(W A W B) = <C_A, C_B> with C = cinv A cinv', as two large products (not k small ones)
            right = (dfull.reshape(k * p, p) @ cinv.T).reshape(k, p, p)
            cm = (cinv @ right.transpose(1, 0, 2).reshape(p, k * p)).reshape(p, k, p).transpose(1, 0, 2)
            cm = cm.reshape(k, -1)
            info += self.weights[g] * 0.5 * (cm @ cm.T)
            if self.model.meanstructure:
                dm = cinv @ deltas[g][lay["mu"]]
                info += self.weights[g] * (dm.T @ dm)
        return info

    def gradient(self, x: np.ndarray) -> np.ndarray:
        moms, deltas = self.model.implied_delta(x)
        terms = self._terms(moms)
        if terms is None:
            return np.full(self.model.n_free, np.nan)
        return self._grad(terms, deltas)

    def information(self, x: np.ndarray) -> np.ndarray:
        # a fit asks for it at the estimates several times (identification check, vcov, tests)
        x = np.asarray(x, dtype=float)
        last = getattr(self, "_last_information", None)
        if last is not None and np.array_equal(last[0], x):
            return last[1].copy()
        moms, deltas = self.model.implied_delta(x)
        terms = self._terms(moms)
        if terms is None:
            raise np.linalg.LinAlgError("implied covariance matrix is not positive definite")
        info = self._info(terms, deltas)
        self._last_information = (x.copy(), info)
        return info.copy()

    def _objective_gradient(self, x: np.ndarray):
        """(objective, gradient) by the chain rule through the RAM matrices (no delta)."""
        model = self.model
        cores = [model.group_core(grp, x) for grp in model.group_maps]
        terms = self._terms([model.group_moments(grp, c) for grp, c in zip(model.group_maps, cores)])
        if terms is None:
            return np.inf, None, None
        f, gmats, gmus = 0.0, [], []
        for g, (sigma, mu, w, ld, _) in enumerate(terms):
            f += self.weights[g] * self._fmin_group(g, mu, w, ld)
            gmu, gmat = self._moment_matrices(g, mu, w)
            gmats.append(self.weights[g] * gmat)
            gmus.append(None if gmu is None else self.weights[g] * gmu)
        return float(f), model.chain_gradient(x, gmats, gmus, core=cores), None

    def scoring_step(self, x: np.ndarray, with_info: bool = True):
        """(objective, gradient, information or None) in one pass, for the optimizer."""
        if not with_info:
            return self._objective_gradient(np.asarray(x, dtype=float))
        moms, deltas = self.model.implied_delta(x)
        terms = self._terms(moms)
        if terms is None:
            return np.inf, None, None
        f = sum(self.weights[g] * self._fmin_group(g, mu, w, ld) for g, (sigma, mu, w, ld, _) in enumerate(terms))
        return float(f), self._grad(terms, deltas), (self._info(terms, deltas) if with_info else None)

    def weight_matrices(self, x: np.ndarray) -> list[np.ndarray]:
        """Per group the normal-theory weight of [mu, vech(Sigma)] (block diagonal), for robust SEs."""
        out = []
        for g, (sigma, mu, w, ld, _) in enumerate(self._group_terms(x)):
            ws = ml_weight(w)
            if self.model.meanstructure:
                p = self._p[g]
                full = np.zeros((p + ws.shape[0],) * 2)
                full[:p, :p] = w
                full[p:, p:] = ws
                ws = full
            out.append(ws)
        return out
