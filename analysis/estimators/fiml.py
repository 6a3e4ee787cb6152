"""Full-information ML over missing-data patterns (lavaan ``missing = "ml"``).

Cases are grouped by their pattern of observed items; each pattern keeps only
its size, mean vector and cross-product matrix (sufficient statistics), so
every likelihood, gradient and Hessian costs one small inverse per pattern,
not per case. Patterns with the same number of observed items are stacked and
handled by batched LAPACK calls. The saturated (H1) model is fitted by EM.

Moment derivatives are returned on the *full* (p x p) covariance layout: a
gradient ``G`` with ``dlogl = tr(G' dSigma)``; the estimators contract them
with ``dSigma/dx`` from ``Model.delta``. Complete data are the one-pattern
special case, so the same code gives the observed information and case-wise
scores that MLR needs without missing data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MissingPatterns", "em_saturated"]

_LOG2PI = np.log(2.0 * np.pi)


@dataclass
class _Batch:
    """Patterns with k observed items, stacked."""

    idx: np.ndarray        # (m, k) observed item indices
    n: np.ndarray          # (m,) cases per pattern
    ybar: np.ndarray       # (m, k)
    S: np.ndarray          # (m, k, k) cross-products about ybar / n
    rows: list             # per pattern: case rows (in the kept data)


class MissingPatterns:
    """Missing-data patterns of one group with their sufficient statistics.

    Parameters
    ----------
    Y : (N, p) array with NaN for missing answers. Rows with every item
        missing carry no information and are dropped (``n_dropped``).
    """

    def __init__(self, Y):
        Y = np.asarray(Y, dtype=float)
        keep = ~np.isnan(Y).all(axis=1)
        self.n_dropped = int((~keep).sum())
        self.kept = np.flatnonzero(keep)
        Y = Y[keep]
        self.Y = Y
        self.N, self.p = Y.shape
        obs = ~np.isnan(Y)
        self.observed = obs
        never = np.flatnonzero(~obs.any(axis=0))
        self.never_observed = never
        masks, inverse = np.unique(obs, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).ravel()
        self.n_patterns = len(masks)
        by_k: dict[int, list] = {}
        for pi, mask in enumerate(masks):
            by_k.setdefault(int(mask.sum()), []).append(pi)
        order = np.argsort(inverse, kind="stable")
        starts = np.searchsorted(inverse[order], np.arange(len(masks) + 1))
        self.batches: list[_Batch] = []
        for k, pats in sorted(by_k.items()):
            idx = np.array([np.flatnonzero(masks[pi]) for pi in pats], dtype=int).reshape(len(pats), k)
            rows = [order[starts[pi]:starts[pi + 1]] for pi in pats]
            n = np.array([len(r) for r in rows], dtype=float)
            ybar = np.empty((len(pats), k))
            S = np.empty((len(pats), k, k))
            for b, (r, ix) in enumerate(zip(rows, idx)):
                yo = Y[np.ix_(r, ix)]
                ybar[b] = yo.mean(axis=0)
                dev = yo - ybar[b]
                S[b] = dev.T @ dev / len(r)
            self.batches.append(_Batch(idx, n, ybar, S, rows))

    # ------------------------------------------------------------------
    def _sub(self, batch, sigma, mu):
        ix = batch.idx
        sig = sigma[ix[:, :, None], ix[:, None, :]]
        L = np.linalg.cholesky(sig)
        logdet = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        P = np.linalg.inv(sig)
        P = 0.5 * (P + np.swapaxes(P, 1, 2))
        d = batch.ybar - mu[ix]
        return P, logdet, d

    def loglik(self, sigma, mu) -> float:
        """Observed-data log-likelihood; -inf when a sub-matrix is not positive definite."""
        total = 0.0
        try:
            for b in self.batches:
                P, logdet, d = self._sub(b, sigma, mu)
                k = b.idx.shape[1]
                tr = np.einsum("mij,mji->m", P, b.S) + np.einsum("mi,mij,mj->m", d, P, d)
                total += float((-0.5 * b.n * (k * _LOG2PI + logdet + tr)).sum())
        except np.linalg.LinAlgError:
            return -np.inf
        return total

    def loglik_casewise(self, sigma, mu) -> np.ndarray:
        """log f(y_i) per kept case (for checks and case diagnostics)."""
        out = np.empty(self.N)
        for b in self.batches:
            P, logdet, _ = self._sub(b, sigma, mu)
            k = b.idx.shape[1]
            for j, rows in enumerate(b.rows):
                r = self.Y[np.ix_(rows, b.idx[j])] - mu[b.idx[j]]
                out[rows] = -0.5 * (k * _LOG2PI + logdet[j] + np.einsum("ni,ij,nj->n", r, P[j], r))
        return out

    def gradient(self, sigma, mu):
        """(dlogl/dmu (p,), dlogl/dSigma (p, p) on the full layout)."""
        p = self.p
        g_mu = np.zeros(p)
        g_sig = np.zeros(p * p)
        for b in self.batches:
            P, _, d = self._sub(b, sigma, mu)
            A = b.S + d[:, :, None] * d[:, None, :]
            PAP = P @ A @ P
            G = -0.5 * b.n[:, None, None] * (P - PAP)
            flat = (b.idx[:, :, None] * p + b.idx[:, None, :]).ravel()
            g_sig += np.bincount(flat, weights=G.ravel(), minlength=p * p)
            gm = b.n[:, None] * np.einsum("mij,mj->mi", P, d)
            g_mu += np.bincount(b.idx.ravel(), weights=gm.ravel(), minlength=p)
        return g_mu, g_sig.reshape(p, p)

    def hessian(self, sigma, mu):
        """Hessian of logl in (mu, vec Sigma) on the full layout, ((p + p^2) square).

        Per pattern (P = Sigma_oo^-1, Q = P A P, A = S + d d'):
        d2/dSigma2 = n/2 P(x)P - n/2 (Q(x)P + P(x)Q); d2/dmu dSigma = -n (P (x) P d);
        d2/dmu2 = -n P. Sums of Kronecker products are formed as one matrix
        product of the stacked vec(P), vec(Q) (Van Loan's rearrangement).
        """
        p = self.p
        m_all = sum(len(b.n) for b in self.batches)
        VP = np.zeros((m_all, p * p))
        VQ = np.zeros((m_all, p * p))
        V = np.zeros((m_all, p))
        nn = np.zeros(m_all)
        pos = 0
        for b in self.batches:
            P, _, d = self._sub(b, sigma, mu)
            A = b.S + d[:, :, None] * d[:, None, :]
            Q = P @ A @ P
            m, k = b.idx.shape
            rr = np.arange(pos, pos + m)[:, None, None]
            flat = b.idx[:, :, None] * p + b.idx[:, None, :]
            VP[rr, flat] = P
            VQ[rr, flat] = Q
            V[np.arange(pos, pos + m)[:, None], b.idx] = np.einsum("mij,mj->mi", P, d)
            nn[pos:pos + m] = b.n
            pos += m
        nVP = nn[:, None] * VP
        R_pp = VP.T @ nVP
        R_qp = VQ.T @ nVP
        R = 0.5 * R_pp - 0.5 * (R_qp + R_qp.T)

        def rearrange(M):  # sum vec(A_p) vec(B_p)' -> sum kron(A_p, B_p)
            return M.reshape(p, p, p, p).transpose(0, 2, 1, 3).reshape(p * p, p * p)

        H_ss = rearrange(R)
        # d2/dmu_a dSigma_ij = -sum n P[a,i] v[j]  (v = P d), symmetrised in (i, j)
        C = -(nVP.T @ V).reshape(p, p, p)            # [i, a, j]
        C = C.transpose(1, 0, 2)                       # [a, i, j]
        C = 0.5 * (C + C.transpose(0, 2, 1))
        H_mm = -(nVP.sum(axis=0)).reshape(p, p)
        H = np.empty((p + p * p, p + p * p))
        H[:p, :p] = H_mm
        H[:p, p:] = C.reshape(p, p * p)
        H[p:, :p] = H[:p, p:].T
        H[p:, p:] = H_ss
        return H

    def scores(self, sigma, mu):
        """Case-wise scores d log f(y_i) / d(mu, vec Sigma), (N, p + p^2), full layout."""
        p = self.p
        out = np.zeros((self.N, p + p * p))
        for b in self.batches:
            P, _, _ = self._sub(b, sigma, mu)
            for j, rows in enumerate(b.rows):
                ix = b.idx[j]
                r = self.Y[np.ix_(rows, ix)] - mu[ix]
                u = r @ P[j]                                          # (n, k)
                out[np.ix_(rows, ix)] = u
                G = 0.5 * (u[:, :, None] * u[:, None, :] - P[j][None])
                cols = p + (ix[:, None] * p + ix[None, :]).ravel()
                out[np.ix_(rows, cols)] = G.reshape(len(rows), -1)
        return out


def em_saturated(pat: MissingPatterns, *, tol: float = 1e-10, max_iter: int = 5000):
    """Unrestricted mean vector and covariance matrix by EM; returns (mu, sigma, logl, iterations).

    Starts from the available-case means and variances (zero covariances), as lavaan.
    """
    p, N = pat.p, pat.N
    Y = pat.Y
    mu = np.nanmean(Y, axis=0)
    sigma = np.diag(np.nanvar(Y, axis=0))
    for it in range(1, max_iter + 1):
        T1 = np.zeros(p)
        T2 = np.zeros((p, p))
        for b in pat.batches:
            m, k = b.idx.shape
            for j in range(m):
                o = b.idx[j]
                mis = np.setdiff1d(np.arange(p), o, assume_unique=True)
                n = b.n[j]
                yb = b.ybar[j]
                Moo = n * (b.S[j] + np.outer(yb, yb))
                if len(mis) == 0:
                    T1 += n * yb
                    T2 += Moo
                    continue
                So = sigma[np.ix_(o, o)]
                Smo = sigma[np.ix_(mis, o)]
                B = np.linalg.solve(So, Smo.T).T            # Sigma_mo Sigma_oo^-1
                c = mu[mis] - B @ mu[o]
                yhat_m = c + B @ yb
                Cm = sigma[np.ix_(mis, mis)] - B @ Smo.T
                T1[o] += n * yb
                T1[mis] += n * yhat_m
                T2[np.ix_(o, o)] += Moo
                Mom = Moo @ B.T + n * np.outer(yb, c)
                T2[np.ix_(o, mis)] += Mom
                T2[np.ix_(mis, o)] += Mom.T
                T2[np.ix_(mis, mis)] += (B @ Moo @ B.T + n * (np.outer(B @ yb, c) + np.outer(c, B @ yb))
                                         + n * np.outer(c, c) + n * Cm)
        new_mu = T1 / N
        new_sigma = T2 / N - np.outer(new_mu, new_mu)
        new_sigma = 0.5 * (new_sigma + new_sigma.T)
        delta = max(np.abs(new_mu - mu).max(), np.abs(new_sigma - sigma).max())
        mu, sigma = new_mu, new_sigma
        if delta < tol:
            break
    return mu, sigma, pat.loglik(sigma, mu), it
