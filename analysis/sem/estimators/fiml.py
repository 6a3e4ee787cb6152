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

from analysis.sem.data import sample_moments
from analysis.sem.model import vech_indices

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
    mis: np.ndarray = None  # (m, p - k) missing item indices


class MissingPatterns:
    """Missing-data patterns of one group with their sufficient statistics.

    Parameters
    ----------
    Y : (N, p) array with NaN for missing answers. Rows with every item
        missing carry no information and are dropped (``n_dropped``).
    weights : sampling weights per row (lavaan's ``sampling.weights``, already
        normalised); the sufficient statistics, likelihood and scores are weighted
        and ``N`` is the sum of the weights.
    design : :class:`analysis.design.ResolvedDesign` of the rows; case-wise score
        cross-products then become its Taylor (cluster/strata) variance (``meat``).
    """

    def __init__(self, Y, weights=None, design=None):
        Y = np.asarray(Y, dtype=float)
        keep = ~np.isnan(Y).all(axis=1)
        self.n_dropped = int((~keep).sum())
        self.kept = np.flatnonzero(keep)
        Y = Y[keep]
        self.Y = Y
        self.n_rows, self.p = Y.shape
        self.w = None if weights is None else np.asarray(weights, float)[keep]
        self.design = None if design is None else design.subset(self.kept)
        self.N = self.n_rows if self.w is None else float(self.w.sum())
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
            wt = [np.ones(len(r)) if self.w is None else self.w[r] for r in rows]
            n = np.array([w.sum() for w in wt], dtype=float)
            ybar = np.empty((len(pats), k))
            S = np.empty((len(pats), k, k))
            for b, (r, ix, w) in enumerate(zip(rows, idx, wt)):
                yo = Y[np.ix_(r, ix)]
                ybar[b] = w @ yo / n[b]
                dev = yo - ybar[b]
                S[b] = (dev * w[:, None]).T @ dev / n[b]
            allv = np.arange(self.p)
            mis = np.array([np.setdiff1d(allv, o, assume_unique=True) for o in idx],
                           dtype=int).reshape(len(pats), self.p - k)
            self.batches.append(_Batch(idx, n, ybar, S, rows, mis))

    # ------------------------------------------------------------------
    def _full_inverse(self, sigma):
        key = sigma.tobytes()
        if getattr(self, "_winv", (None,))[0] != key:
            L = np.linalg.cholesky(sigma)
            Li = np.linalg.inv(L)
            self._winv = (key, Li.T @ Li, 2.0 * np.log(np.diag(L)).sum())
        return self._winv[1], self._winv[2]

    def _sub(self, batch, sigma, mu):
        """Per pattern Sigma_oo^-1, log|Sigma_oo| and ybar - mu_o.

        From the full inverse W = Sigma^-1 by the Schur complement over the few
        missing items r: Sigma_oo^-1 = W_oo - W_or W_rr^-1 W_ro and
        log|Sigma_oo| = log|Sigma| + log|W_rr| (O(k^2 r) per pattern, not O(k^3)).
        """
        W, logdet_full = self._full_inverse(sigma)
        ix, ms = batch.idx, batch.mis
        P = W[ix[:, :, None], ix[:, None, :]]
        m = len(ix)
        logdet = np.full(m, logdet_full)
        if ms.shape[1]:
            Wrr = W[ms[:, :, None], ms[:, None, :]]
            Wor = W[ix[:, :, None], ms[:, None, :]]
            Lr = np.linalg.cholesky(Wrr)
            logdet = logdet + 2.0 * np.log(np.diagonal(Lr, axis1=1, axis2=2)).sum(1)
            X = np.linalg.solve(Wrr, np.swapaxes(Wor, 1, 2))          # W_rr^-1 W_ro
            P = P - Wor @ X
            P = 0.5 * (P + np.swapaxes(P, 1, 2))
        d = batch.ybar - mu[ix]
        return P, logdet, d

    def _check_pd(self, sigma):
        self._full_inverse(sigma)          # raises LinAlgError when not positive definite

    def loglik_gradient(self, sigma, mu):
        """(logl, dlogl/dmu, dlogl/dSigma) in one pass over the patterns."""
        self._check_pd(sigma)
        p = self.p
        total = 0.0
        g_mu = np.zeros(p)
        g_sig = np.zeros(p * p)
        for b in self.batches:
            P, logdet, d = self._sub(b, sigma, mu)
            k = b.idx.shape[1]
            A = b.S + d[:, :, None] * d[:, None, :]
            PA = P @ A
            total += float((-0.5 * b.n * (k * _LOG2PI + logdet + np.trace(PA, axis1=1, axis2=2))).sum())
            G = -0.5 * b.n[:, None, None] * (P - PA @ P)
            flat = (b.idx[:, :, None] * p + b.idx[:, None, :]).ravel()
            g_sig += np.bincount(flat, weights=G.ravel(), minlength=p * p)
            gm = b.n[:, None] * np.einsum("mij,mj->mi", P, d)
            g_mu += np.bincount(b.idx.ravel(), weights=gm.ravel(), minlength=p)
        return total, g_mu, g_sig.reshape(p, p)

    def loglik(self, sigma, mu) -> float:
        """Observed-data log-likelihood; -inf when a sub-matrix is not positive definite."""
        total = 0.0
        try:
            self._check_pd(sigma)
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
        out = np.empty(self.n_rows)
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
        # sum n (P(x)P/2 - Q(x)P) in one product; the quadratic form only sees its
        # symmetric part, which equals P(x)P/2 - (Q(x)P + P(x)Q)/2 for symmetric P, Q
        R = (0.5 * VP - VQ).T @ nVP

        def rearrange(M):  # sum vec(A_p) vec(B_p)' -> sum kron(A_p, B_p)
            return M.reshape(p, p, p, p).transpose(0, 2, 1, 3).reshape(p * p, p * p)

        H_ss = rearrange(R)
        H_ss = 0.5 * (H_ss + H_ss.T)
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

    def expected_information(self, sigma, mu):
        """Expected information of the saturated model under MAR per case, [mu, vech Sigma]
        layout: each pattern adds its share of Sigma_oo^-1 (means) and 0.5 D'(P (x) P)D
        (covariances) on its observed items (lavaan's h1 information, "expected")."""
        p = self.p
        H = np.zeros((p + p * p, p + p * p))
        for b in self.batches:
            P, _, _ = self._sub(b, sigma, mu)
            for n, ix, Pj in zip(b.n, b.idx, P):
                H[np.ix_(ix, ix)] += n * Pj
                flat = p + (ix[:, None] * p + ix[None, :]).ravel()
                H[np.ix_(flat, flat)] += n * 0.5 * np.kron(Pj, Pj)
        return _to_vech_mat(p, H) / self.N

    def weighted_mean_var(self):
        """Available-case (weighted) means and variances (divisor: sum of weights), per item."""
        obs = ~np.isnan(self.Y)
        w = (np.ones(self.n_rows) if self.w is None else self.w)[:, None] * obs
        y = np.where(obs, self.Y, 0.0)
        mu = (w * y).sum(0) / w.sum(0)
        return mu, (w * (y - mu) ** 2).sum(0) / w.sum(0)

    def meat(self, S):
        """Cross-products of case-wise (weighted) scores: S'S, or the design's Taylor variance
        of their totals (clusters as lavaan: PSU totals times nC / (nC - 1); strata or an fpc
        as survey's svyrecvar, centred within strata)."""
        d = self.design
        if d is None or (d.design.cluster is None and d.design.strata is None and d.design.fpc is None):
            return S.T @ S
        centre = d.design.strata is not None or d.design.fpc is not None
        return d.total_variance(S, centre=centre)

    def scores(self, sigma, mu):
        """Case-wise scores d log f(y_i) / d(mu, vec Sigma), (N, p + p^2), full layout
        (times each case's sampling weight when there are weights)."""
        p = self.p
        out = np.zeros((self.n_rows, p + p * p))
        for b in self.batches:
            P, _, _ = self._sub(b, sigma, mu)
            pid = np.concatenate([np.full(len(r), j) for j, r in enumerate(b.rows)])
            rows = np.concatenate(b.rows)
            ix = b.idx[pid]                                           # (n, k)
            r = self.Y[rows[:, None], ix] - mu[ix]
            u = np.einsum("nij,nj->ni", P[pid], r)
            out[rows[:, None], ix] = u
            G = 0.5 * (u[:, :, None] * u[:, None, :] - P[pid])
            cols = p + ix[:, :, None] * p + ix[:, None, :]
            out[rows[:, None, None], cols] = G
        if self.w is not None:
            out *= self.w[:, None]
        return out


def em_saturated(pat: MissingPatterns, *, tol: float = 1e-10, max_iter: int = 5000):
    """Unrestricted mean vector and covariance matrix by EM; returns (mu, sigma, logl, iterations).

    Starts from the available-case means and variances (zero covariances), as lavaan.
    The E-step is batched over patterns with the same number of observed items.
    """
    p, N = pat.p, pat.N
    mu = np.nanmean(pat.Y, axis=0)
    sigma = np.diag(np.nanvar(pat.Y, axis=0))
    allv = np.arange(p)
    prep = []
    for b in pat.batches:
        m, k = b.idx.shape
        mis = np.array([np.setdiff1d(allv, o, assume_unique=True) for o in b.idx], dtype=int).reshape(m, p - k)
        Moo = b.n[:, None, None] * (b.S + b.ybar[:, :, None] * b.ybar[:, None, :])
        prep.append((b, mis, Moo))

    def scatter(T, ri, ci, vals):
        flat = (ri * p + ci).ravel()
        T += np.bincount(flat, weights=vals.ravel(), minlength=p * p).reshape(p, p)

    it = 0
    for it in range(1, max_iter + 1):
        T1 = np.zeros(p)
        T2 = np.zeros((p, p))
        Winv = np.linalg.inv(sigma)
        for b, mis, Moo in prep:
            o = b.idx
            n = b.n
            T1 += np.bincount(o.ravel(), weights=(n[:, None] * b.ybar).ravel(), minlength=p)
            scatter(T2, o[:, :, None], o[:, None, :], Moo)
            if mis.shape[1] == 0:
                continue
            # with W = Sigma^-1: Sigma_mo Sigma_oo^-1 = -W_mm^-1 W_mo, Var(y_m | y_o) = W_mm^-1
            Wmm = Winv[mis[:, :, None], mis[:, None, :]]
            Wmo = Winv[mis[:, :, None], o[:, None, :]]
            Cm = np.linalg.inv(Wmm)
            B = -Cm @ Wmo
            c = mu[mis] - np.einsum("mij,mj->mi", B, mu[o])
            Byb = np.einsum("mij,mj->mi", B, b.ybar)
            yhat = c + Byb
            T1 += np.bincount(mis.ravel(), weights=(n[:, None] * yhat).ravel(), minlength=p)
            Mom = Moo @ np.swapaxes(B, 1, 2) + n[:, None, None] * b.ybar[:, :, None] * c[:, None, :]
            scatter(T2, o[:, :, None], mis[:, None, :], Mom)
            scatter(T2, mis[:, :, None], o[:, None, :], np.swapaxes(Mom, 1, 2))
            Mmm = (B @ Moo @ np.swapaxes(B, 1, 2)
                   + n[:, None, None] * (Byb[:, :, None] * c[:, None, :] + c[:, :, None] * Byb[:, None, :]
                                         + c[:, :, None] * c[:, None, :] + Cm))
            scatter(T2, mis[:, :, None], mis[:, None, :], Mmm)
        new_mu = T1 / N
        new_sigma = T2 / N - np.outer(new_mu, new_mu)
        new_sigma = 0.5 * (new_sigma + new_sigma.T)
        delta = max(np.abs(new_mu - mu).max(), np.abs(new_sigma - sigma).max())
        mu, sigma = new_mu, new_sigma
        if delta < tol:
            break
    return mu, sigma, pat.loglik(sigma, mu), it


# ----------------------------------------------------------------------------
# layout helpers: full (p x p) <-> lavaan's vech (lower triangle, column-major)
# ----------------------------------------------------------------------------
def _to_vech_vec(p, full):
    """Moment vector [mu (p), vec Sigma (p^2)] -> [mu, vech Sigma]: d/dvech = G_ij + G_ji (i != j)."""
    r, c = vech_indices(p)
    a, b = p + r * p + c, p + c * p + r
    out = full[..., a] + np.where(r != c, full[..., b], 0.0)
    return np.concatenate([full[..., :p], out], axis=-1)


def _to_vech_mat(p, H):
    """Both sides of a [mu, vec Sigma] square matrix to the [mu, vech Sigma] layout."""
    Hc = _to_vech_vec(p, H)                  # columns
    return _to_vech_vec(p, Hc.T).T           # rows


def h1_information(pat: MissingPatterns, sigma, mu, *, means: bool = True):
    """Observed information A1 and first-order B1 of the saturated model (unit, vech layout).

    ``means=False`` keeps the covariance rows only (complete data without a
    mean structure, where the means are saturated and drop out).
    """
    p = pat.p
    A1 = -_to_vech_mat(p, pat.hessian(sigma, mu)) / pat.N
    S = _to_vech_vec(p, pat.scores(sigma, mu))
    B1 = pat.meat(S) / pat.N
    if not means:
        A1, B1 = A1[p:, p:], B1[p:, p:]
    return A1, B1


class FIMLEstimator:
    """ML on raw data with missing values (lavaan ``missing = "ml"``), optionally robust (MLR).

    Parameters
    ----------
    model : analysis.sem.model.Model (with a mean structure unless the data are complete)
    data : list of (N_g, p_g) arrays per group, columns in ``model.ov_names[g]`` order,
        NaN for missing answers.
    robust : MLR: Huber-White sandwich SEs and the Yuan-Bentler (Mplus) scaled test.
    weights, designs : per group, sampling weights (normalised to sum to N over the groups)
        and :class:`analysis.design.ResolvedDesign` of the rows (clusters, strata), or None.

    Objective on lavaan's scale: ``(logl_h1 - logl(x)) / N``, so chisq = 2 N F.
    Information: observed (the Hessian, lavaan's default with missing data and for MLR).
    """

    def __init__(self, model, data, *, robust: bool = False, group_labels=(), weights=None, designs=None):
        from analysis.sem.data import SampleStats

        self.model = model
        self.name = "MLR" if robust else "ML"
        self.robust = robust
        self.test_kind = "yuan.bentler.mplus" if robust else "standard"
        # fixed.x (lavaan): cases missing an exogenous covariate are deleted, and the covariates'
        # moments are fixed at their values in the cases used
        self.n_exo_deleted = []
        data = [np.asarray(Y, float) for Y in data]
        for g, Y in enumerate(data):
            xi = [model.ov_names[g].index(v) for v in model.exo_names[g]]
            bad = np.isnan(Y[:, xi]).any(1) & ~np.isnan(Y).all(1) if xi else np.zeros(len(Y), bool)
            self.n_exo_deleted.append(int(bad.sum()))
            data[g] = Y[~bad]
            if weights is not None:
                weights = [*weights[:g], weights[g][~bad], *weights[g + 1:]]
            if designs is not None:
                designs = [*designs[:g], designs[g].subset(np.flatnonzero(~bad)), *designs[g + 1:]]
        if weights is not None:
            # lavaan normalises the weights after deleting the cases missing a covariate: to the
            # number of non-empty cases left (sampling.weights.normalization = "total")
            n_left = sum(int((~np.isnan(Y).all(1)).sum()) for Y in data)
            scale = n_left / sum(float(np.sum(w)) for w in weights)
            weights = [w * scale for w in weights]
            for d in designs or ():
                d.weights = d.weights * scale
        if any(self.n_exo_deleted):
            import warnings
            from analysis.errors import SEMWarning
            warnings.warn(f"{sum(self.n_exo_deleted)} case(s) deleted because of missing values in "
                          "exogenous covariate(s) with fixed.x = TRUE (as lavaan)", SEMWarning, stacklevel=3)
        self.patterns = [MissingPatterns(Y, None if weights is None else weights[g],
                                         None if designs is None else designs[g])
                         for g, Y in enumerate(data)]
        self.weighted = weights is not None
        for g, pat in enumerate(self.patterns):
            if len(pat.never_observed):
                names = [model.ov_names[g][i] for i in pat.never_observed]
                from analysis.errors import DataError
                lab = f" in group '{group_labels[g]}'" if len(data) > 1 and len(group_labels) else ""
                raise DataError("variable(s) missing for every case" + lab + ": " + ", ".join(names))
        self.nobs = [pat.N for pat in self.patterns]
        self.ntotal = int(round(sum(self.nobs)))   # weights are normalised to sum to N
        self.weights = np.asarray(self.nobs, float) / self.ntotal
        self.n_dropped = [pat.n_dropped for pat in self.patterns]
        self.means = bool(model.meanstructure)
        complete = all(pat.n_patterns == 1 and pat.observed.all() for pat in self.patterns)
        if not self.means and not complete:
            from analysis.errors import OptionError
            raise OptionError("full-information ML needs a mean structure (meanstructure=True)")
        self._p = [pat.p for pat in self.patterns]
        self._check_pairs(group_labels)
        # saturated model by EM (complete data: the sample moments)
        self.h1 = []
        for pat in self.patterns:
            mu, sig, ll, _ = em_saturated(pat)
            self.h1.append((mu, sig, ll))
        self.logl_h1 = float(sum(h[2] for h in self.h1))
        # the EM moments serve as sample statistics (start values, standardized solutions)
        self.stats = SampleStats(tuple(model.ov_names[0]), tuple(h[1] for h in self.h1),
                                 tuple(h[0] for h in self.h1), tuple(self.nobs),
                                 tuple(str(x) for x in group_labels))
        self._layouts = [model.moment_layout(g) for g in range(model.n_groups)]
        self._refix_exo()

    def _refix_exo(self):
        """Fixed.x: the covariates' (co)variances and means at their ML values in the cases used."""
        pt = self.model.partable
        if not (pt["exo"] == 1).any():
            return
        for g, pat in enumerate(self.patterns):
            grp = self.model.group_maps[g]
            names = self.model.ov_names[g]
            Y = pat.Y
            w = np.ones(pat.n_rows) if pat.w is None else pat.w
            wmean = lambda v: float(w @ v / w.sum())   # noqa: E731
            sub = pt[(pt["exo"] == 1) & (pt["group"] == self.model.groups[g])]
            for idx, row in sub.iterrows():
                i = names.index(row["lhs"])
                if row["op"] == "~1":
                    val = wmean(Y[:, i])
                    grp.M0[grp.names.index(row["lhs"])] = val
                else:
                    j = names.index(row["rhs"])
                    val = wmean((Y[:, i] - wmean(Y[:, i])) * (Y[:, j] - wmean(Y[:, j])))
                    a, b = grp.names.index(row["lhs"]), grp.names.index(row["rhs"])
                    grp.S0[a, b] = grp.S0[b, a] = val
                pt.at[idx, "ustart"] = val

    def _n_exo_moments(self, g):
        px = len(self.model.exo_names[g])
        return px * (px + 1) // 2 + (px if self.means else 0)

    def _check_pairs(self, group_labels):
        from analysis.errors import DataError
        for g, pat in enumerate(self.patterns):
            both = pat.observed.T.astype(float) @ pat.observed.astype(float)
            bad = np.argwhere(np.triu(both == 0, 1))
            if len(bad):
                names = self.model.ov_names[g]
                pairs = ", ".join(f"{names[i]} & {names[j]}" for i, j in bad[:5])
                lab = f" in group '{group_labels[g]}'" if len(self.patterns) > 1 and len(group_labels) else ""
                raise DataError(
                    "full-information ML cannot estimate the covariance of variables never observed "
                    f"together{lab}: {pairs}" + (" ..." if len(bad) > 5 else ""))

    # ------------------------------------------------------------------
    def _moments(self, x):
        out = []
        for g, mom in enumerate(self.model.implied(x)):
            mu = mom.mu if self.means else self.h1[g][0]
            out.append((mom.sigma, mu))
        return out

    def _delta_full(self, x):
        """Per group Delta on the [mu, vech Sigma] layout (zero mu rows without mean structure)."""
        out = []
        for g, d in enumerate(self.model.delta(x)):
            lay = self._layouts[g]
            p = self._p[g]
            dm = d[lay["mu"]] if self.means else np.zeros((p, d.shape[1]))
            out.append(np.vstack([dm, d[lay["sigma"]]]))
        return out

    def _eval(self, x):
        """(logl, moment gradients per group) at x, cached for the last x."""
        key = np.asarray(x, float).tobytes()
        if getattr(self, "_eval_cache", (None,))[0] == key:
            return self._eval_cache[1]
        ll, gms = 0.0, []
        try:
            for pat, (s, m) in zip(self.patterns, self._moments(x)):
                l_, gm, gs = pat.loglik_gradient(s, m)
                ll += l_
                gms.append(_to_vech_vec(pat.p, np.concatenate([gm, gs.ravel()])))
        except np.linalg.LinAlgError:
            ll, gms = -np.inf, None
        self._eval_cache = (key, (ll, gms))
        return ll, gms

    def loglik(self, x) -> float:
        return float(self._eval(x)[0])

    def objective(self, x) -> float:
        ll = self.loglik(x)
        if not np.isfinite(ll):
            return np.inf
        return (self.logl_h1 - ll) / self.ntotal

    def _moment_gradients(self, x):
        gms = self._eval(x)[1]
        if gms is None:
            raise np.linalg.LinAlgError("implied covariance matrix is not positive definite")
        return gms

    def gradient(self, x) -> np.ndarray:
        try:
            gms = self._moment_gradients(x)
        except np.linalg.LinAlgError:
            return np.full(self.model.n_free, np.nan)
        D = self._delta_full(x)
        return -sum(d.T @ g for d, g in zip(D, gms)) / self.ntotal

    def scoring_step(self, x, with_info: bool = True):
        """(objective, gradient, approximate information) for the optimizer's scoring steps.

        The approximation is the complete-data expected information at the
        current moments (cheap); the optimizer's BFGS updates correct it.
        """
        f = self.objective(x)
        if not np.isfinite(f):
            return np.inf, None, None
        from analysis.sem.estimators.base import ml_weight
        D = self._delta_full(x)
        gms = self._moment_gradients(x)    # cached by objective()
        grad = -sum(d.T @ g for d, g in zip(D, gms)) / self.ntotal
        if not with_info:
            return f, grad, None
        info = np.zeros((self.model.n_free,) * 2)
        for w, d, (s, m), p in zip(self.weights, D, self._moments(x), self._p):
            W = np.linalg.inv(s)
            info += w * (d[:p].T @ W @ d[:p] + d[p:].T @ ml_weight(W) @ d[p:])
        return f, grad, info

    # ------------------------------------------------------------------
    def _second_term(self, x, gms, h=1e-6):
        """sum_k g_k d2 m_k / dx dx' by central differences of Delta(x)' g (g held fixed)."""
        q = len(x)
        H = np.zeros((q, q))
        for j in range(q):
            e = np.zeros(q)
            e[j] = h * max(1.0, abs(x[j]))
            Dp, Dm = self._delta_full(x + e), self._delta_full(x - e)
            col = sum(dp.T @ g - dm.T @ g for dp, dm, g in zip(Dp, Dm, gms)) / (2 * e[j])
            H[:, j] = col
        return 0.5 * (H + H.T)

    def _second_term_ram(self, x, gms):
        """Analytic sum_k g_k d2 m_k / dx dx' for the RAM model (no ordinal scales).

        With B = (I - A)^-1, C = B S B', Gt = F' G F, Q = B' Gt B, H1 = C Gt B,
        gt = F' g_mu, u = B' gt, v = B m (derivation in the module's tests):
        d2/da_ij da_kl = 2 (B_li H1_jk + B_jk H1_li + Q_ki C_jl) + u_k B_li v_j + u_i B_jk v_l
        d2/da_ij ds_kl = 2 (Q_li B_jk + Q_ki B_jl [k != l]),  d2/da_ij dm_k = u_i B_jk.
        """
        model = self.model
        q = len(x)
        H = np.zeros((q, q))
        for g, grp in enumerate(model.group_maps):
            if grp.has_scales or grp.n_tau:
                return None
            A, S, M, T, D = grp.fill(np.asarray(x, float))
            m_, p = grp.m, grp.p
            B = np.linalg.inv(np.eye(m_) - A)
            gm = gms[g]
            g_mu = gm[:p] if self.means else np.zeros(p)
            r, c = vech_indices(p)
            G = np.zeros((p, p))
            # back from vech-gradient (off-diagonal doubled) to the symmetric full layout
            vals = gm[p:] * np.where(r == c, 1.0, 0.5)
            G[r, c] = vals
            G[c, r] = vals
            Gt = np.zeros((m_, m_))
            Gt[:p, :p] = G
            gt = np.zeros(m_)
            gt[:p] = g_mu
            C = B @ S @ B.T
            Q = B.T @ Gt @ B
            H1 = C @ Gt @ B
            u = B.T @ gt
            v = B @ M
            ai, aj, ak = grp.cells["A"]
            si, sj, sk = grp.cells["S"]
            mi, _, mk = grp.cells["M"]
            I, J = ai[:, None], aj[:, None]
            K, L = ai[None, :], aj[None, :]
            haa = 2 * (B[L, I] * H1[J, K] + B[J, K] * H1[L, I] + Q[K, I] * C[J, L])
            haa += u[K] * B[L, I] * v[J] + u[I] * B[J, K] * v[L]
            Ks, Ls = si[None, :], sj[None, :]
            has = 2 * (Q[Ls, I] * B[J, Ks] + np.where(Ks != Ls, Q[Ks, I] * B[J, Ls], 0.0))
            ham = u[I] * B[J, mi[None, :]]
            np.add.at(H, (ak[:, None], ak[None, :]), haa)
            np.add.at(H, (ak[:, None], sk[None, :]), has)
            np.add.at(H, (sk[None, :].T, ak[None, :]), has.T)
            if self.means and len(mk):
                np.add.at(H, (ak[:, None], mk[None, :]), ham)
                np.add.at(H, (mk[:, None], ak[None, :]), ham.T)
        return H

    def observed_information(self, x) -> np.ndarray:
        """Unit observed information -(1/N) d2 logl / dx dx' (analytic moment Hessian)."""
        key = np.asarray(x, float).tobytes()
        cache = getattr(self, "_obs_cache", None)
        if cache is not None and cache[0] == key:
            return cache[1]
        D = self._delta_full(x)
        H = np.zeros((len(x), len(x)))
        for pat, d, (s, m) in zip(self.patterns, D, self._moments(x)):
            Hm = _to_vech_mat(pat.p, pat.hessian(s, m))
            H += d.T @ Hm @ d
        gms = self._moment_gradients(x)
        second = self._second_term_ram(x, gms)
        H += self._second_term(x, gms) if second is None else second
        self._obs_cache = (key, -H / self.ntotal)
        return self._obs_cache[1]

    def information(self, x) -> np.ndarray:
        return self.observed_information(x)

    def h1_observed_information(self, x) -> np.ndarray:
        """Delta' A1 Delta: the saturated model's observed information at the implied moments,
        without the model's second derivatives (lavaan's observed.information = "h1")."""
        H = np.zeros((len(x), len(x)))
        for pat, d, (s, m) in zip(self.patterns, self._delta_full(x), self._moments(x)):
            H += d.T @ _to_vech_mat(pat.p, pat.hessian(s, m)) @ d
        return -H / self.ntotal

    def first_order(self, x, per_group: bool = False):
        """Unit first-order information (1/N) sum_i s_i s_i' of the case-wise scores."""
        key = np.asarray(x, float).tobytes()
        if getattr(self, "_fo_cache", (None,))[0] != key:    # SEs and the test use the same x
            out = []
            for pat, d, (s, m) in zip(self.patterns, self._delta_full(x), self._moments(x)):
                S = _to_vech_vec(pat.p, pat.scores(s, m)) @ d
                out.append(pat.meat(S) / pat.N)
            self._fo_cache = (key, out)
        out = self._fo_cache[1]
        if per_group:
            return out
        return sum(w * b for w, b in zip(self.weights, out))

    # lavaan's information kinds (set by fit_sem from the se=/test= options): "hessian" (observed,
    # the default), "expected" (complete data only) and "h1" (the saturated model's observed
    # information at the implied moments, lavaan's observed.information = "h1" for tests)
    se_information = "hessian"
    test_information = "hessian"

    @property
    def test_kind(self):
        """The scaled test computed beside the standard one (MLR: Yuan-Bentler, Mplus variant)."""
        return getattr(self, "_test_kind", "yuan.bentler.mplus" if self.robust else None)

    @test_kind.setter
    def test_kind(self, value):
        self._test_kind = value

    def information_of(self, x, kind: str = "hessian") -> np.ndarray:
        """Unit information of ``kind`` ("hessian", "h1" or "expected")."""
        if kind == "expected":
            from analysis.sem.estimators.ml import MLEstimator
            return MLEstimator(self.model, self.stats).information(x)
        if kind == "h1":
            return self.h1_observed_information(x)
        return self.observed_information(x)

    def vcov(self, x) -> np.ndarray:
        A = self.information_of(x, self.se_information)
        A_inv = np.linalg.inv(A)
        if not self.robust:
            return A_inv / self.ntotal
        from analysis.sem.estimators.scaling import sandwich
        return sandwich(A_inv, self.first_order(x), self.ntotal)

    # ------------------------------------------------------------------
    def df(self) -> int:
        k = sum(p * (p + 1) // 2 + (p if self.means else 0) - self._n_exo_moments(g)
                for g, p in enumerate(self._p))
        return int(k - self.model.n_free + self.model.n_eq_constraints)

    def test(self, x) -> dict:
        from analysis.sem import distributions as st
        chisq = max(2.0 * (self.logl_h1 - self.loglik(x)), 0.0)
        df = self.df()
        out = {"test": "standard", "chisq": chisq, "df": df,
               "pvalue": float(st.chi2.sf(chisq, df)) if df > 0 else np.nan}
        if self.test_kind == "yuan.bentler.mplus":
            from analysis.sem.estimators.scaling import yuan_bentler_mplus
            # lavaan's clustered ML (not MLR) takes the test's information from h1
            A = self.information_of(x, self.test_information)
            from analysis.sem.constraints import inverse_information   # bordered under a == 2*b, b > 0.8

            A_inv = inverse_information(A, self, x)
            B0 = self.first_order(x, per_group=True)
            tr_h1 = self._trace_h1()
            tr_h0 = sum(w * np.sum(b * A_inv.T) for w, b in zip(self.weights, B0))
            # lavaan counts h1's moments without the fixed.x ones (their rows of A1 are zero)
            ndat = sum(p * (p + 1) // 2 + (p if self.means else 0) - len(self._x_moment_rows(g))
                       for g, p in enumerate(self._p))
            # lavaan divides by nx.free: free rows before equality constraints are folded
            nx_free = int((self.model.partable["free"] > 0).sum())
            out.update(yuan_bentler_mplus(chisq, df, tr_h1, tr_h0, ndat, nx_free))
        elif self.test_kind in ("satorra.bentler", "yuan.bentler", "scaled.shifted", "mean.var.adjusted"):
            from analysis.sem.estimators.scaling import scaled_test
            trace, trace_h0, trace2 = self._ugamma_trace(self._delta_full(x), self._moments(x), squared=True)
            out.update(scaled_test(self.test_kind, chisq, df, trace, trace2))
            if self.test_kind == "yuan.bentler":     # lavaan reports its two halves too
                ndat = sum(p * (p + 1) // 2 + (p if self.means else 0) - len(self._x_moment_rows(g))
                           for g, p in enumerate(self._p))
                nx_free = int((self.model.partable["free"] > 0).sum())
                out.update({"scaling.factor.h1": self._trace_h1() / ndat,
                            "scaling.factor.h0": trace_h0 / nx_free})
        return out

    def second_test(self, x, name: str) -> dict:
        """A Satorra-Bentler family test beside MLR's own (lavaan's test="satorra.bentler",
        "scaled.shifted" or "mean.var.adjusted" with estimator MLR), from the h1 observed information."""
        from analysis.sem.estimators.scaling import scaled_test

        chisq = max(2.0 * (self.logl_h1 - self.loglik(x)), 0.0)
        trace, _, trace2 = self._ugamma_trace(self._delta_full(x), self._moments(x), squared=True)
        return scaled_test(name, chisq, self.df(), trace, trace2)

    def _ugamma_trace(self, deltas, moments, squared: bool = False):
        """tr(U Gamma) of lavaan's Satorra-Bentler / Yuan-Bentler tests with the observed
        information: A1 the saturated model's observed information at the implied ``moments``
        (h1.information = "structured"), E = sum_g f_g Delta' A1 Delta, U = A1 - f_g A1 Delta
        E^-1 Delta' A1 and Gamma = A1u^-1 B1u A1u^-1 at the saturated estimates (fixed.x
        covariates' moments left out, as lavaan zeroes them). Also tr(B1 Delta E^-1 Delta'), the
        h0 half of lavaan's yuan.bentler scaling factors, and with ``squared`` tr((U Gamma)^2)
        (scaled.shifted, mean.var.adjusted) over all groups: U's off-diagonal group blocks
        -f_g A1_g Delta_g E^-1 Delta_h' A1_h come from the common E."""
        A1s, B1s, Ds, Omegas = [], [], [], []
        for g, (pat, d, (sig, mu)) in enumerate(zip(self.patterns, deltas, moments)):
            A1, B1 = h1_information(pat, sig, mu, means=self.means)
            d = d if self.means else d[self._p[g]:]
            A1u, B1u = self._h1_info(g)
            keep = np.setdiff1d(np.arange(len(A1)), self._x_moment_rows(g))
            A1u_inv = np.linalg.inv(A1u[np.ix_(keep, keep)])
            Omegas.append(A1u_inv @ B1u[np.ix_(keep, keep)] @ A1u_inv)
            A1s.append(A1[np.ix_(keep, keep)])
            B1s.append(B1[np.ix_(keep, keep)])
            Ds.append(d[keep])
        E = sum(w * d.T @ a @ d for w, d, a in zip(self.weights, Ds, A1s))
        E_inv = np.linalg.inv(E)
        trace = trace_h0 = 0.0
        for w, d, a, b, om in zip(self.weights, Ds, A1s, B1s, Omegas):
            D_Einv_Dt = d @ E_inv @ d.T
            U = a - w * a @ D_Einv_Dt @ a
            trace += float(np.sum(U * om.T))
            trace_h0 += w * float(np.sum(b * D_Einv_Dt))
        if not squared:
            return trace, trace_h0
        rows = []
        for g, (wg, dg, a) in enumerate(zip(self.weights, Ds, A1s)):
            row = []
            for h, (dh, ah, om_h) in enumerate(zip(Ds, A1s, Omegas)):
                u = (a if g == h else np.zeros((len(a), len(ah)))) - wg * a @ dg @ E_inv @ dh.T @ ah
                row.append(u @ om_h)
            rows.append(row)
        ug = np.block(rows)
        return trace, trace_h0, float(np.sum(ug * ug.T))

    def _h1_info(self, g):
        """(A1, B1) of the saturated model of group g at the EM estimates (cached)."""
        if not hasattr(self, "_h1_cache"):
            self._h1_cache = [h1_information(pat, sig, mu, means=True)
                              for pat, (mu, sig, _) in zip(self.patterns, self.h1)]
        A1, B1 = self._h1_cache[g]
        return (A1, B1) if self.means else (A1[self._p[g]:, self._p[g]:], B1[self._p[g]:, self._p[g]:])

    def _x_moment_rows(self, g, xi=None):
        """Rows of [mu, vech Sigma] that belong to the fixed.x covariates alone (masked as lavaan),
        or to the variables at positions ``xi``."""
        names = self.model.ov_names[g]
        xi = {names.index(v) for v in self.model.exo_names[g]} if xi is None else set(xi)
        p = self._p[g]
        r, c = vech_indices(p)
        rows = [i for i in range(p) if i in xi] if self.means else []
        off = p if self.means else 0
        rows += [off + k for k, (a, b) in enumerate(zip(r, c)) if a in xi and b in xi]
        return np.array(rows, dtype=int)

    def _trace_h1(self) -> float:
        if not hasattr(self, "_tr_h1"):
            tr = 0.0
            for g in range(len(self.patterns)):
                A1, B1 = self._h1_info(g)
                keep = np.setdiff1d(np.arange(len(A1)), self._x_moment_rows(g))
                A1, B1 = A1[np.ix_(keep, keep)], B1[np.ix_(keep, keep)]
                tr += float(np.sum(B1 * np.linalg.inv(A1).T))
            self._tr_h1 = tr
        return self._tr_h1

    def loglik_x(self) -> float:
        """Log-likelihood of the fixed.x covariates alone (lavaan leaves it out of logl)."""
        total = 0.0
        for g, pat in enumerate(self.patterns):
            names = self.model.ov_names[g]
            xi = [names.index(v) for v in self.model.exo_names[g]]
            if xi:
                X = pat.Y[:, xi]
                S = sample_moments(X, pat.w)[0]
                total += -0.5 * pat.N * (len(xi) * _LOG2PI + np.linalg.slogdet(S)[1] + len(xi))
        return total

    # ------------------------------------------------------------------
    def _free_x_pairs(self) -> bool:
        """fixed_x=False with several observed exogenous variables: their covariances are
        free parameters of lavaan's independence model."""
        from analysis.sem.fitindices import observed_exogenous
        return any(len(np.setdiff1d(observed_exogenous(self.model, g), self._xi(g))) > 1
                   for g in range(len(self.patterns)))

    def _baseline_by_model(self) -> dict:
        """The independence model with free covariances among the observed exogenous variables,
        fitted by FIML as a model of its own (same estimator options); its test as the model's."""
        from analysis.sem.data import SampleStats
        from analysis.sem.fitindices import observed_exogenous
        from analysis.sem.model import Model
        from analysis.sem.optimize import minimize, start_values
        from analysis.sem.partable import build_partable

        names = list(self.model.ov_names[0])
        bx = [names[i] for i in observed_exogenous(self.model, 0)]
        lines = [f"{v} ~~ {v}" for v in names]
        lines += [f"{a} ~~ {b}" for j, a in enumerate(bx) for b in bx[j + 1:]]
        lines += [f"{v} ~ 1" for v in names] if self.means else []
        pt = build_partable("\n".join(lines), n_groups=len(self.patterns), meanstructure=self.means,
                            fixed_x=False)
        stats = SampleStats(tuple(names), tuple(h[1] for h in self.h1), tuple(h[0] for h in self.h1),
                            tuple(self.nobs), tuple(self.stats.group_labels))
        pt["start"] = start_values(pt, stats)
        model = Model(pt, meanstructure=self.means)
        est = FIMLEstimator(model, [pat.Y for pat in self.patterns], robust=self.robust)
        for attr in ("test_kind", "se_information", "test_information"):
            setattr(est, attr, getattr(self, attr))
        x = minimize(est, model.x_start).x
        out = est.test(x)
        out["logl"] = est.loglik(x)
        self._baseline_pieces = [(s, m) for s, m in est._moments(x)]
        self._baseline_fit = (est, x)
        return out

    def baseline(self) -> dict:
        """The independence model (diagonal Sigma, free means): closed-form FIML fit and its test."""
        from analysis.sem import distributions as st
        if self._free_x_pairs():
            return self._baseline_by_model()
        ll = 0.0
        pieces = []
        for g, pat in enumerate(self.patterns):
            mu, var = pat.weighted_mean_var()
            if not self.means:
                mu = self.h1[g][0]
            sig = np.diag(var)
            xi = self._xi(g)
            if len(xi):        # fixed.x: the covariates keep their sample covariance matrix
                X = pat.Y[:, xi]
                sig[np.ix_(xi, xi)] = sample_moments(X, pat.w)[0]
            ll += pat.loglik(sig, mu)
            pieces.append((sig, mu))
        df = sum(p * (p - 1) // 2 - len(self._xi(g)) * (len(self._xi(g)) - 1) // 2
                 for g, p in enumerate(self._p))
        chisq = max(2.0 * (self.logl_h1 - ll), 0.0)
        out = {"chisq": chisq, "df": df, "pvalue": float(st.chi2.sf(chisq, df)) if df > 0 else np.nan,
               "logl": ll}
        if self._baseline_scaled():
            # independent variables: the information is diagonal in (mu_j, sigma_jj) and the
            # case-wise scores are univariate, (y - mu)/s and ((y - mu)^2/s^2 - 1/s)/2
            from analysis.sem.estimators.scaling import yuan_bentler_mplus
            a_diag, Bg, off = [], [], 0
            for g, (pat, (s, m)) in enumerate(zip(self.patterns, pieces)):
                keep = self._not_x(g)             # fixed.x covariates are not baseline parameters
                var = np.diag(s)[keep]
                obs = pat.observed[:, keep]
                r = np.where(obs, pat.Y[:, keep] - m[keep], 0.0)
                wt = np.ones(pat.n_rows) if pat.w is None else pat.w
                n_j = wt @ obs
                sc_s = np.where(obs, 0.5 * (r * r / var ** 2 - 1.0 / var), 0.0)
                if self.means:
                    a_diag.append(n_j / var)
                    sc = np.hstack([r / var, sc_s])
                else:
                    sc = sc_s
                a_diag.append(n_j / (2 * var ** 2))
                q = sc.shape[1]
                Bg.append((off, pat.meat(sc * wt[:, None]) / pat.N))
                off += q
            A_inv = np.diag(self.ntotal / np.concatenate(a_diag))
            full = []
            for o, blk in Bg:
                M = np.zeros_like(A_inv)
                M[o:o + blk.shape[0], o:o + blk.shape[0]] = blk
                full.append(M)
            Bg = full
            tr_h0 = sum(w * np.sum(b * A_inv.T) for w, b in zip(self.weights, Bg))
            out.update(yuan_bentler_mplus(chisq, df, self._trace_h1(), tr_h0))
        if self.test_kind in ("satorra.bentler", "yuan.bentler", "scaled.shifted", "mean.var.adjusted"):
            from analysis.sem.estimators.scaling import scaled_test
            trace, _, trace2 = self._ugamma_trace(self._baseline_delta(), pieces, squared=True)
            out.update(scaled_test(self.test_kind, chisq, df, trace, trace2))
        self._baseline_pieces = pieces
        return out

    def _baseline_scaled(self) -> bool:
        return self.test_kind == "yuan.bentler.mplus"

    def _xi(self, g):
        names = self.model.ov_names[g]
        return np.array([names.index(v) for v in self.model.exo_names[g]], dtype=int)

    def _not_x(self, g):
        return np.setdiff1d(np.arange(self._p[g]), self._xi(g))

    def _baseline_delta(self):
        """Jacobian of [mu, vech Sigma] for the independence model (block over groups);
        free: means and variances of the variables that are not fixed.x covariates."""
        out, off = [], 0
        q = sum((2 if self.means else 1) * len(self._not_x(g)) for g in range(len(self._p)))
        for g, p in enumerate(self._p):
            keep = self._not_x(g)
            k = len(keep)
            r, c = vech_indices(p)
            d = np.zeros((p + len(r), q))
            if self.means:
                d[keep, off + np.arange(k)] = 1.0
                off += k
            diag = np.flatnonzero(r == c)
            d[p + diag[keep], off + np.arange(k)] = 1.0
            off += k
            out.append(d)
        return out

    def fiml_corrected(self, x, test: dict, baseline: dict, version: str | None = None) -> dict:
        """lavaan's FIML-C robust CFI/TLI/RMSEA pieces (lav_fit_fiml_corrected).

        Version V3 with a scaled test (MLR), V6 without (ML):
        V6 uses k = tr(Wc Wm^-1 U Wm^-1).

        Refit statistics at the EM ("tilde") moments with the FIML estimates;
        k = tr(U Wm^-1 Wc Wm^-1 U Gamma), Gamma = Wm^-1 Jm Wm^-1, with Wm/Jm the
        observed/first-order saturated information of the missing data and Wc the
        complete-data information at the EM moments.
        """
        from analysis.sem.estimators.base import ml_weight
        D = self._delta_full(x)
        Db = self._baseline_delta()
        Wm, Jm, Wc, Wmi = [], [], [], []
        xx3 = xx3n = 0.0
        for g, (pat, (mu_t, sig_t, _)) in enumerate(zip(self.patterns, self.h1)):
            A1, B1 = self._h1_cache[g] if hasattr(self, "_h1_cache") else h1_information(pat, sig_t, mu_t)
            W = np.linalg.inv(sig_t)
            p = pat.p
            wc = np.zeros_like(A1)
            wc[:p, :p] = W
            wc[p:, p:] = ml_weight(W)
            # lavaan refits at the EM moments with its default fixed.x = TRUE, so Wc has the
            # observed exogenous variables' own moments zeroed even when fixed_x=False
            from analysis.sem.fitindices import observed_exogenous
            zx = self._x_moment_rows(g, observed_exogenous(self.model, g))
            wc[zx, :] = 0.0
            wc[:, zx] = 0.0
            # fixed.x: the covariates' own moments are masked (lavaan zeroes them in the h1 information)
            keep = np.setdiff1d(np.arange(len(A1)), self._x_moment_rows(g))
            A1, B1, wc = (M[np.ix_(keep, keep)] for M in (A1, B1, wc))
            D[g], Db[g] = D[g][keep], Db[g][keep]
            Wm.append(A1)
            Jm.append(B1)
            Wmi.append(np.linalg.inv(A1))
            Wc.append(wc)
            s, m = self._moments(x)[g]
            # lavaan refits at the EM moments with sample.nobs = as.integer(group size): with
            # sampling weights the (weighted) group sizes are truncated there, so here too
            n_g = pat.N if pat.w is None else float(np.floor(pat.N + 1e-9))
            xx3 += 2 * n_g * _ml_discrepancy(sig_t, mu_t, s, m)
            sb, mb = self._baseline_pieces[g]
            xx3n += 2 * n_g * _ml_discrepancy(sig_t, mu_t, sb, mb)
        from scipy.linalg import block_diag

        fg = self.weights
        big = lambda mats, f: block_diag(*[fi * mm for fi, mm in zip(f, mats)])
        Wc_all, Wm_all = big(Wc, fg), big(Wm, fg)
        Wmi_all = big(Wmi, 1 / fg)
        Gamma_all = big([wi @ j @ wi for wi, j in zip(Wmi, Jm)], 1 / fg)

        version = version or ("V3" if self.test_kind else "V6")
        WcWmi = Wc_all @ Wmi_all
        mid = Wmi_all @ WcWmi

        def k_of(Dl):
            Dall = np.vstack(Dl)
            E = Dall.T @ Wm_all @ Dall
            U = Wm_all - Wm_all @ Dall @ np.linalg.solve(E, Dall.T @ Wm_all)
            if version == "V6":
                return float(np.sum(WcWmi * (U @ Wmi_all).T))
            return float(np.sum((U @ mid) * (U @ Gamma_all).T))

        df3, df3n = test["df"], baseline["df"]
        c3 = k_of(D) / df3 if df3 > 0 else np.nan
        c3n = k_of(Db) / df3n
        return {"XX3": xx3, "df3": df3, "c.hat3": c3, "XX3.scaled": xx3 / c3,
                "XX3.null": xx3n, "df3.null": df3n, "c.hat3.null": c3n}


def _ml_discrepancy(S, ybar, sigma, mu):
    """0.5 (log|Sigma| + tr(S Sigma^-1) - log|S| - p + (ybar-mu)' Sigma^-1 (ybar-mu))."""
    W = np.linalg.inv(sigma)
    d = ybar - mu
    p = len(ybar)
    return 0.5 * (np.linalg.slogdet(sigma)[1] + np.sum(S * W) - np.linalg.slogdet(S)[1] - p + d @ W @ d)


def fiml_gfi(est, x, df) -> dict:
    """gfi, agfi, pgfi of a FIML fit as lavaan: its WLS.obs (available-case means, pairwise
    covariances times (N-1)/N), the implied moments and, as weight, the saturated model's
    expected information under MAR at the implied moments."""
    import pandas as pd

    gfi, nel = 0.0, 0
    for g, (pat, (sigma, mu)) in enumerate(zip(est.patterns, est._moments(x))):
        p = pat.p
        frame = pd.DataFrame(pat.Y)
        n = len(frame)
        cov = frame.cov().to_numpy() * (n - 1) / n       # pandas: pairwise complete, n_ij - 1
        r, c = vech_indices(p)
        obs = np.concatenate([frame.mean().to_numpy(), cov[r, c]])
        if pat.w is not None:       # lavaan: with sampling weights, the EM (h1) moments
            h1_mu, h1_sigma, _ = est.h1[g]
            obs = np.concatenate([h1_mu, h1_sigma[r, c]])
        fitted = np.concatenate([mu, sigma[r, c]])
        V = pat.expected_information(sigma, mu)
        zero = est._x_moment_rows(g)                      # fixed.x covariates' own moments
        V[zero, :] = 0.0
        V[:, zero] = 0.0
        d = obs - fitted
        gfi += est.weights[g] * (1.0 - (d @ V @ d) / (obs @ V @ obs))
        nel += len(obs)
    agfi = 1 - (nel / df) * (1 - gfi) if df > 0 else 1.0
    return {"gfi": gfi, "agfi": agfi, "pgfi": (df / nel) * gfi}


def fiml_extra_fit_measures(est, x, test, fit) -> dict:
    """Fit keys of a FIML (or complete-data MLR) fit that differ from the complete-data ML ones."""
    import math

    from analysis.sem.fitindices import incremental_indices, robust_fit_indices

    base = est.baseline()
    chisq, df = test["chisq"], test["df"]
    b2, bdf = base["chisq"], base["df"]
    n = est.ntotal
    logl_x = est.loglik_x()                    # fixed.x: lavaan's logl leaves the covariates out
    logl = est.loglik(x) - logl_x
    npar = est.model.n_free
    out = {"fmin": chisq / (2 * n), "baseline.chisq": b2, "baseline.df": bdf,
           "baseline.pvalue": base["pvalue"],
           **incremental_indices(chisq, df, b2, bdf),
           "logl": logl, "unrestricted.logl": est.logl_h1 - logl_x,
           "aic": -2 * logl + 2 * npar, "bic": -2 * logl + npar * math.log(n),
           "bic2": -2 * logl + npar * math.log((n + 2) / 24), "ntotal": n}
    if getattr(est, "fiml", False):
        out.update(fiml_gfi(est, x, df))
    missing = any(p.n_patterns > 1 or not p.observed.all() for p in est.patterns)
    missing = missing or getattr(est, "fiml", False)   # lavaan: missing="ml" always uses FIML-C
    if test.get("test.scaled"):
        fc = est.fiml_corrected(x, test, base) if missing else None
        out.update(robust_fit_indices(test, base, n, est.model.n_groups, robust=fc, continuous=True))
    elif missing:
        out.update(robust_fit_indices(test, base, n, est.model.n_groups,
                                      robust=est.fiml_corrected(x, test, base)))
    return out
