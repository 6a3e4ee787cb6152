"""Thresholds, polychoric correlations and their asymptotic covariance.

The two-step estimator of Olsson (1979) and the three-stage construction of
the asymptotic covariance matrix of Muthén (1984), as lavaan does it
(``muthen1984()``; read there for the formulas, nothing copied):

1. thresholds of each ordered item from its own marginal proportions;
2. each polychoric correlation by maximum likelihood on the bivariate table,
   thresholds held fixed;
3. Gamma (lavaan's NACOV) = N * B^-1 (S'S) B^-T, where S stacks the case-wise
   scores of stages 1 and 2 and B is the block-triangular "bread" built from
   their cross-products (A11 per item, A21 threshold/correlation cross terms,
   A22 diagonal).

Missing answers are handled pairwise: thresholds use every case that answered
the item, a correlation every case that answered both items; a missing case
contributes zero scores. Everything is vectorised over all pairs at once; the
bivariate normal CDF is Genz's (2004) algorithm on numpy arrays.

Examples
--------
>>> # In R: lavCor(data, ordered = names(data), output = "th") / "cor"
>>> stats = ordinal_stats(df)                     # doctest: +SKIP
>>> stats.thresholds, stats.corr, stats.gamma     # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from analysis.errors import DataError

__all__ = [
    "bivariate_normal_cdf",
    "ConditionalStats",
    "conditional_stats",
    "ordered_probit",
    "ordinal_codes",
    "ordinal_stats",
    "OrdinalStats",
    "SparseCategoryError",
]

_SQRT2PI = np.sqrt(2.0 * np.pi)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(20)


class SparseCategoryError(DataError):
    """An ordered item has too few categories, or a category only some groups use."""


# --------------------------------------------------------------------------
# bivariate normal CDF (Genz 2004, "Numerical computation of rectangular
# bivariate and trivariate normal and t probabilities"), vectorised
# --------------------------------------------------------------------------
def _bvnu(h, k, r):
    """P(X > h, Y > k) for standard bivariate normal, finite h, k; |r| < 1."""
    h, k, r = np.broadcast_arrays(np.asarray(h, float), np.asarray(k, float),
                                  np.asarray(r, float))
    out = np.empty(h.shape)
    small = np.abs(r) < 0.925
    if small.any():
        hs, ks, rs = h[small], k[small], r[small]
        hk = hs * ks
        hh = (hs * hs + ks * ks) / 2.0
        asr = np.arcsin(rs)
        sn = np.sin(asr[:, None] * (_GL_X[None, :] + 1.0) / 2.0)
        s = (np.exp((sn * hk[:, None] - hh[:, None]) / (1.0 - sn * sn)) * _GL_W).sum(1)
        out[small] = s * asr / (4.0 * np.pi) + ndtr(-hs) * ndtr(-ks)
    big = ~small
    if big.any():
        hs, ks, rs = h[big], k[big].copy(), r[big]
        neg = rs < 0
        ks[neg] = -ks[neg]
        hk = hs * ks
        bvn = np.zeros(hs.shape)
        inner = np.abs(rs) < 1.0
        if inner.any():
            hi, ki, hki, ri = hs[inner], ks[inner], hk[inner], rs[inner]
            as_ = (1.0 - ri) * (1.0 + ri)
            a = np.sqrt(as_)
            bs = (hi - ki) ** 2
            c = (4.0 - hki) / 8.0
            d = (12.0 - hki) / 16.0
            v = a * np.exp(-(bs / as_ + hki) / 2.0) * (
                1.0 - c * (bs - as_) * (1.0 - d * bs / 5.0) / 3.0 + c * d * as_ * as_ / 5.0)
            b = np.sqrt(bs)
            with np.errstate(over="ignore", invalid="ignore"):
                corr = np.exp(-hki / 2.0) * _SQRT2PI * ndtr(-b / a) * b * (
                    1.0 - c * bs * (1.0 - d * bs / 5.0) / 3.0)
            v = v - np.where(hki > -160.0, corr, 0.0)
            a2 = a / 2.0
            xs = (a2[:, None] * (_GL_X[None, :] + 1.0)) ** 2
            rs_ = np.sqrt(1.0 - xs)
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                t = (np.exp(-bs[:, None] / (2.0 * xs) - hki[:, None] / (1.0 + rs_)) / rs_
                     - np.exp(-(bs[:, None] / xs + hki[:, None]) / 2.0)
                     * (1.0 + c[:, None] * xs * (1.0 + d[:, None] * xs)))
            t = np.where(np.isfinite(t), t, 0.0)
            v = v + a2 * (t * _GL_W).sum(1)
            bvn[inner] = -v / (2.0 * np.pi)
        pos = ~neg
        bvn[pos] = bvn[pos] + ndtr(-np.maximum(hs[pos], ks[pos]))
        bvn[neg] = -bvn[neg] + np.maximum(0.0, ndtr(-hs[neg]) - ndtr(-ks[neg]))
        out[big] = bvn
    return out


def bivariate_normal_cdf(x, y, rho):
    """P(X <= x, Y <= y) for a standard bivariate normal with correlation rho.

    Vectorised over broadcastable arrays; infinite limits are allowed.
    Accurate to about 1e-15 (Genz's 20-point Gauss-Legendre rule).

    >>> round(float(bivariate_normal_cdf(0.0, 0.0, 0.5)), 12)   # 1/4 + asin(.5)/(2 pi)
    0.333333333333
    """
    x, y, rho = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float),
                                    np.asarray(rho, float))
    out = np.zeros(x.shape)
    xinf, yinf = np.isposinf(x), np.isposinf(y)
    zero = np.isneginf(x) | np.isneginf(y)
    only_y = xinf & ~zero
    only_x = yinf & ~zero & ~xinf
    out[only_y] = ndtr(y[only_y])
    out[only_x] = ndtr(x[only_x])
    fin = ~(zero | xinf | yinf)
    if fin.any():
        out[fin] = _bvnu(-x[fin], -y[fin], rho[fin])
    return np.clip(out, 0.0, 1.0)


def _bvn_density(x, y, rho):
    """Standard bivariate normal density; zero at infinite arguments."""
    r2 = 1.0 - rho * rho
    with np.errstate(invalid="ignore", over="ignore"):
        q = (x * x - 2.0 * rho * x * y + y * y) / r2
        d = np.exp(-q / 2.0) / (2.0 * np.pi * np.sqrt(r2))
    return np.where(np.isfinite(x) & np.isfinite(y), d, 0.0)


def _npdf(x):
    with np.errstate(over="ignore"):
        d = np.exp(-0.5 * x * x) / _SQRT2PI
    return np.where(np.isfinite(x), d, 0.0)


# --------------------------------------------------------------------------
# categories
# --------------------------------------------------------------------------
def ordinal_codes(data: pd.DataFrame, ordered, *, groups=None,
                  collapse_sparse: bool = False, min_count: int = 1):
    """Integer codes 0..K-1 (NaN for missing) for the ordered columns.

    Categories are the distinct observed values of an item over all groups,
    in ascending order, as lavaan's levels. An item with one category, or a
    category that some group never uses (with several groups), is an error
    naming the item, the category and the group; ``collapse_sparse=True``
    merges such a category into its neighbour (towards the middle) instead.

    Returns ``(codes DataFrame, levels dict item -> list of original values)``.
    """
    groups = None if groups is None else np.asarray(groups)
    codes, levels = {}, {}
    for item in ordered:
        raw = data[item]
        col = (raw if raw.dtype.kind in "iufb" else pd.to_numeric(raw, errors="coerce")).to_numpy(dtype=float)
        ok = ~np.isnan(col)
        if not ok.any():
            raise SparseCategoryError(f"ordered item '{item}' has no observed answers")
        values = np.unique(col[ok])
        base = np.full(len(col), np.nan)
        base[ok] = np.searchsorted(values, col[ok])
        mapping = [[v] for v in values]          # category -> original values merged in it
        cat_of = np.arange(len(values))          # original value index -> category
        while True:
            lab = np.where(ok, cat_of[np.where(ok, base, 0).astype(int)], np.nan)
            problem = _sparse_category(lab, len(mapping), groups, min_count)
            if problem is None or len(mapping) < 2:
                break
            cat, where = problem
            if not collapse_sparse:
                shown = "/".join(str(_plain(v)) for v in mapping[cat])
                raise SparseCategoryError(
                    f"ordered item '{item}': category {shown} is {where}; "
                    "recode the item or pass collapse_sparse=True (CLI: --collapse-sparse) to merge it "
                    "with its neighbouring category")
            nb = cat + 1 if cat < (len(mapping) - 1) / 2 else cat - 1
            lo, hi = sorted((cat, nb))
            mapping[lo:hi + 1] = [mapping[lo] + mapping[hi]]
            cat_of = np.where(cat_of > lo, cat_of - 1, cat_of)
        if len(mapping) < 2:
            raise SparseCategoryError(
                f"ordered item '{item}' has only one observed category "
                f"({_plain(values[0])}); an ordered item needs at least two")
        codes[item] = lab
        levels[item] = [[_plain(v) for v in vs] if len(vs) > 1 else _plain(vs[0])
                        for vs in mapping]
    return pd.DataFrame(codes, index=data.index), levels


def _plain(v):
    v = float(v)
    return int(v) if v.is_integer() else v


def _sparse_category(lab, ncat, groups, min_count):
    """(category, description) of the first unusable category, or None."""
    if groups is None:
        counts = [np.bincount(lab[~np.isnan(lab)].astype(int), minlength=ncat)]
        names = [None]
    else:
        names = list(pd.unique(groups))
        counts = []
        for g in names:
            lg = lab[groups == g]
            counts.append(np.bincount(lg[~np.isnan(lg)].astype(int), minlength=ncat))
    for g, cnt in zip(names, counts):
        for c in range(ncat):
            if cnt[c] < min_count:
                where = (f"never observed in group '{g}'" if g is not None and cnt[c] == 0
                         else f"observed {cnt[c]} time(s)" + (f" in group '{g}'" if g is not None else ""))
                return c, where
    return None


# --------------------------------------------------------------------------
# stages 1-3
# --------------------------------------------------------------------------
@dataclass
class OrdinalStats:
    """Sample statistics of ordered items (one group), lavaan's layout.

    ``wls_obs`` is ``[thresholds (item by item), vechs(corr) (column-wise lower
    triangle)]``; ``gamma`` its asymptotic covariance (N times the sampling
    covariance, lavaan's NACOV); ``nobs`` the number of cases used.
    """

    names: list
    thresholds: list               # per item: array of K-1 thresholds
    corr: np.ndarray
    gamma: np.ndarray | None
    nobs: int
    th_names: list = field(default_factory=list)
    pairs: np.ndarray | None = None   # (i, j) with i > j, lavaan's order

    @property
    def th(self) -> np.ndarray:
        return np.concatenate(self.thresholds)

    @property
    def wls_obs(self) -> np.ndarray:
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        return np.concatenate([self.th, self.corr[i, j]])

    def threshold_table(self) -> pd.DataFrame:
        rows = [(n, "|", f"t{k + 1}", t) for n, ts in zip(self.names, self.thresholds)
                for k, t in enumerate(ts)]
        return pd.DataFrame(rows, columns=["lhs", "op", "rhs", "est"])


def _pairs(p):
    """lavaan's order of the lower triangle: column by column, (i, j) with i > j."""
    return np.array([(i, j) for j in range(p - 1) for i in range(j + 1, p)], dtype=int).reshape(-1, 2)


def _cell_probs(t1, t2, rho):
    """Bivariate cell probabilities and d/drho for stacked tables.

    t1: (P, K1+1) bounds, t2: (P, K2+1) bounds, rho: (P,).
    Returns pi (P, K1, K2) and dpi/drho (P, K1, K2).
    """
    P = len(rho)
    X = np.broadcast_to(t1[:, :, None], (P, t1.shape[1], t2.shape[1]))
    Y = np.broadcast_to(t2[:, None, :], X.shape)
    R = np.broadcast_to(rho[:, None, None], X.shape)
    F = bivariate_normal_cdf(X, Y, R)
    f = _bvn_density(X, Y, R)
    pi = F[:, 1:, 1:] - F[:, :-1, 1:] - F[:, 1:, :-1] + F[:, :-1, :-1]
    dpi = f[:, 1:, 1:] - f[:, :-1, 1:] - f[:, 1:, :-1] + f[:, :-1, :-1]
    return pi, dpi


def _bounds(th, K):
    b = np.full(K + 1, np.inf)
    b[0] = -np.inf
    b[1:K] = th
    return b


def ordinal_stats(codes, *, names=None, gamma: bool = True, missing: str = "pairwise",
                  tol: float = 1e-10, max_iter: int = 100) -> OrdinalStats:
    """Thresholds, polychoric correlations and Gamma for one group.

    Parameters
    ----------
    codes : DataFrame or 2-D array of integer category codes 0..K-1 (NaN = missing),
        e.g. the output of :func:`ordinal_codes`.
    gamma : also compute the asymptotic covariance matrix (lavaan's NACOV).
    missing : "pairwise" (lavaan's missing="pairwise") or "listwise".
    """
    if isinstance(codes, pd.DataFrame):
        names = list(codes.columns) if names is None else names
        Y = codes.to_numpy(dtype=float)
    else:
        Y = np.asarray(codes, dtype=float)
        names = names or [f"y{i + 1}" for i in range(Y.shape[1])]
    if missing == "listwise":
        Y = Y[~np.isnan(Y).any(1)]
    else:
        Y = Y[~np.isnan(Y).all(1)]
    N, p = Y.shape
    obs = ~np.isnan(Y)
    Yi = np.where(obs, Y, 0).astype(int)
    K = (np.nanmax(Y, axis=0) + 1).astype(int)
    for v in range(p):
        if K[v] < 2:
            raise SparseCategoryError(f"ordered item '{names[v]}' has only one observed category")

    # stage 1: thresholds from the marginal proportions
    thresholds, probs = [], []
    for v in range(p):
        cnt = np.bincount(Yi[obs[:, v], v], minlength=K[v]).astype(float)
        if (cnt == 0).any():
            c = int(np.flatnonzero(cnt == 0)[0])
            raise SparseCategoryError(
                f"ordered item '{names[v]}': category {c + 1} (of {K[v]}) is never observed; "
                "recode it or use collapse_sparse=True (CLI: --collapse-sparse)")
        prop = cnt / cnt.sum()
        thresholds.append(ndtri(np.cumsum(prop)[:-1]))
        probs.append(prop)
    th_names = [f"{n}|t{k + 1}" for n, ts in zip(names, thresholds) for k in range(len(ts))]

    # stage 2: polychoric correlations, all pairs at once (Fisher scoring)
    pairs = _pairs(p)
    P = len(pairs)
    K1, K2 = K.max(), K.max()
    t1 = np.full((P, K1 + 1), np.inf)
    t2 = np.full((P, K2 + 1), np.inf)
    freq = np.zeros((P, K1, K2))
    for a, (i, j) in enumerate(pairs):
        # table rows: item j (the earlier one, lavaan's y1), columns: item i
        t1[a, :K[j] + 1] = _bounds(thresholds[j], K[j])
        t2[a, :K[i] + 1] = _bounds(thresholds[i], K[i])
        both = obs[:, i] & obs[:, j]
        np.add.at(freq[a], (Yi[both, j], Yi[both, i]), 1.0)
    # padded categories have zero-width intervals: (inf, inf] gives pi = 0, freq = 0
    valid = np.zeros((P, K1, K2), bool)
    for a, (i, j) in enumerate(pairs):
        valid[a, :K[j], :K[i]] = True
    freq_raw = freq                      # case counts: scores and their cross-products
    freq = _zero_add_2x2(freq, K, pairs)  # estimation only (lavaan's zero.add)
    n_pair = freq.sum((1, 2))
    rho = np.zeros(P)
    # start: Pearson correlation of the codes (pairwise)
    for a, (i, j) in enumerate(pairs):
        both = obs[:, i] & obs[:, j]
        if both.sum() > 2:
            cc = np.corrcoef(Yi[both, j], Yi[both, i])[0, 1]
            rho[a] = np.clip(np.nan_to_num(cc), -0.9, 0.9)
    for _ in range(max_iter):
        pi, dpi = _cell_probs(t1, t2, rho)
        pi_s = np.where(valid, np.maximum(pi, 1e-300), 1.0)
        grad = (freq * dpi / pi_s).sum((1, 2))
        info = n_pair * (np.where(valid, dpi * dpi / pi_s, 0.0)).sum((1, 2))
        step = grad / np.maximum(info, 1e-300)
        new = np.clip(rho + step, -0.999, 0.999)
        done = np.abs(new - rho).max() < tol
        rho = new
        if done:
            break
    corr = np.eye(p)
    corr[pairs[:, 0], pairs[:, 1]] = rho
    corr[pairs[:, 1], pairs[:, 0]] = rho
    stats = OrdinalStats(names=list(names), thresholds=thresholds, corr=corr, gamma=None,
                         nobs=N, th_names=th_names, pairs=pairs)
    if not gamma:
        return stats

    # stage 3: case-wise scores and the sandwich
    nth = int((K - 1).sum())
    th_start = np.concatenate([[0], np.cumsum(K - 1)[:-1]])
    # univariate threshold scores: d log p_k / d tau_t = (1{t=k} - 1{t=k-1}) phi(tau_t) / p_k
    sc_th = np.zeros((N, nth))
    a11 = np.zeros((nth, nth))
    for v in range(p):
        tv, pv = thresholds[v], probs[v]
        yv = Yi[:, v]
        rows = np.flatnonzero(obs[:, v])
        k = yv[rows]
        cols = th_start[v] + np.arange(K[v] - 1)
        up = k < K[v] - 1
        sc_th[rows[up], cols[k[up]]] += _npdf(tv[k[up]]) / pv[k[up]]
        lo = k > 0
        sc_th[rows[lo], cols[k[lo] - 1]] -= _npdf(tv[k[lo] - 1]) / pv[k[lo]]
        blk = sc_th[:, cols]
        a11[np.ix_(cols, cols)] = blk.T @ blk
    # bivariate scores at the estimates, per cell
    pi_s, s_rho, d_up1, d_lo1, d_up2, d_lo2 = _cell_scores(t1, t2, rho, valid)
    flat = s_rho.reshape(P, -1)
    sc_cor = np.zeros((N, P))
    a21 = np.zeros((P, nth))
    for a, (i, j) in enumerate(pairs):
        both = obs[:, i] & obs[:, j]
        rows = np.flatnonzero(both)
        sc_cor[rows, a] = flat[a, Yi[rows, j] * K2 + Yi[rows, i]]
        # A21 = sum over cases of s_rho * d log pi / d tau, from the table of case counts
        w = freq_raw[a] * s_rho[a] / pi_s[a]                      # (K1, K2)
        kj, ki = K[j], K[i]
        # row item (j): upper bound of row k is tau_k (k < kj-1); lower is tau_{k-1}
        g_up = (w * d_up1[a]).sum(1)[:kj]
        g_lo = (w * d_lo1[a]).sum(1)[:kj]
        cj = th_start[j] + np.arange(kj - 1)
        a21[a, cj] = g_up[:kj - 1] - g_lo[1:kj]
        g_up = (w * d_up2[a]).sum(0)[:ki]
        g_lo = (w * d_lo2[a]).sum(0)[:ki]
        ci = th_start[i] + np.arange(ki - 1)
        a21[a, ci] = g_up[:ki - 1] - g_lo[1:ki]
    a22 = (sc_cor * sc_cor).sum(0)
    # influence functions Z = S B^-T (B block lower-triangular), Gamma = N Z'Z
    a11_inv = np.linalg.inv(a11)
    z1 = sc_th @ a11_inv
    z2 = (sc_cor - z1 @ a21.T) / a22
    Z = np.hstack([z1, z2])
    stats.gamma = N * (Z.T @ Z)
    return stats


def _cell_scores(t1, t2, rho, valid):
    """Per pair and cell at (thresholds, rho): the cell probability (floored; 1 outside ``valid``),
    the score of rho, and d pi / d the upper and lower bound of the row item and of the column item."""
    pi, dpi = _cell_probs(t1, t2, rho)
    pi_s = np.where(valid, np.maximum(pi, 1e-300), 1.0)
    r = np.sqrt(1.0 - rho * rho)[:, None, None]
    lo1, up1 = t1[:, :-1][:, :, None], t1[:, 1:][:, :, None]      # row item bounds
    lo2, up2 = t2[:, :-1][:, None, :], t2[:, 1:][:, None, :]      # column item bounds
    R = rho[:, None, None]
    with np.errstate(invalid="ignore"):
        d_up1 = _npdf(up1) * (ndtr(_safe((up2 - R * up1) / r)) - ndtr(_safe((lo2 - R * up1) / r)))
        d_lo1 = _npdf(lo1) * (ndtr(_safe((up2 - R * lo1) / r)) - ndtr(_safe((lo2 - R * lo1) / r)))
        d_up2 = _npdf(up2) * (ndtr(_safe((up1 - R * up2) / r)) - ndtr(_safe((lo1 - R * up2) / r)))
        d_lo2 = _npdf(lo2) * (ndtr(_safe((up1 - R * lo2) / r)) - ndtr(_safe((lo1 - R * lo2) / r)))
    return pi_s, np.where(valid, dpi / pi_s, 0.0), d_up1, d_lo1, d_up2, d_lo2


def _safe(x):
    return np.nan_to_num(x, nan=0.0, posinf=np.inf, neginf=-np.inf)


def _zero_add_2x2(freq, K, pairs):
    """lavaan's zero.add = c(0.5, 0): one empty cell of a 2x2 table gets 0.5, margins kept."""
    out = freq.copy()
    for a, (i, j) in enumerate(pairs):
        if K[i] == 2 and K[j] == 2:
            f = out[a, :2, :2]
            zero = np.argwhere(f == 0)
            if len(zero) == 1:
                if (zero[0] == [0, 0]).all() or (zero[0] == [1, 1]).all():
                    f += np.array([[0.5, -0.5], [-0.5, 0.5]])
                else:
                    f += np.array([[-0.5, 0.5], [0.5, -0.5]])
    return out


# --------------------------------------------------------------------------
# mixed ordered / continuous variables: polyserial and Pearson correlations
# --------------------------------------------------------------------------
@dataclass
class MixedStats(OrdinalStats):
    """WLS sample statistics of a mix of ordered and continuous variables (lavaan's layout).

    ``wls_obs`` is ``[thresholds / -means (variable by variable), variances of the
    continuous variables, vechs(cov)]`` where ``cov`` is the correlation matrix
    rescaled to the covariance metric for continuous variables.
    """

    numeric: np.ndarray | None = None     # bool mask
    means: np.ndarray | None = None
    variances: np.ndarray | None = None

    @property
    def cov(self) -> np.ndarray:
        sd = np.where(self.numeric, np.sqrt(self.variances), 1.0)
        return self.corr * np.outer(sd, sd)

    @property
    def wls_obs(self) -> np.ndarray:
        th = [(-np.atleast_1d(self.means[v]) if self.numeric[v] else t)
              for v, t in enumerate(self.thresholds)]
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        return np.concatenate([np.concatenate(th), self.variances[self.numeric], self.cov[i, j]])


def _polyserial_pieces(z, k, th, rho):
    """Per case: P(y2 = k | y1), and the bounds' standardized distances, for polyserial rho."""
    b = _bounds(th, len(th) + 1)
    up, lo = b[k + 1], b[k]
    r = np.sqrt(1.0 - rho * rho)
    with np.errstate(invalid="ignore"):
        t1 = np.where(np.isfinite(up), (up - rho * z) / r, np.inf)
        t2 = np.where(np.isfinite(lo), (lo - rho * z) / r, -np.inf)
    P = np.maximum(ndtr(t1) - ndtr(t2), np.finfo(float).eps)
    return up, lo, r, t1, t2, P


def mixed_stats(data, ordered_mask, *, names=None, gamma: bool = True) -> MixedStats:
    """Thresholds/means/variances and polychoric, polyserial and Pearson correlations with
    their asymptotic covariance (Muthén 1984, as lavaan's muthen1984()), complete cases.

    ``data``: 2-D array or DataFrame; ordered columns hold category codes 0..K-1.
    """
    from scipy.optimize import minimize_scalar

    if isinstance(data, pd.DataFrame):
        names = list(data.columns) if names is None else names
        Y = data.to_numpy(dtype=float)
    else:
        Y = np.asarray(data, dtype=float)
        names = names or [f"y{i + 1}" for i in range(Y.shape[1])]
    Y = Y[~np.isnan(Y).any(1)]
    N, p = Y.shape
    ordm = np.asarray(ordered_mask, bool)
    num = ~ordm
    Yi = np.where(ordm[None, :], Y, 0).astype(int)
    K = np.where(ordm, Yi.max(0) + 1, 2)
    means = np.where(num, Y.mean(0), 0.0)
    variances = np.where(num, Y.var(0), 1.0)
    sds = np.sqrt(variances)
    thresholds, probs = [], []
    for v in range(p):
        if num[v]:
            thresholds.append(np.array([means[v]]))
            probs.append(None)
            continue
        cnt = np.bincount(Yi[:, v], minlength=K[v]).astype(float)
        if (cnt == 0).any() or K[v] < 2:
            raise SparseCategoryError(f"ordered item '{names[v]}' has an empty category or only one category")
        prop = cnt / N
        thresholds.append(ndtri(np.cumsum(prop)[:-1]))
        probs.append(prop)
    Z = (Y - means) / sds
    pairs = _pairs(p)
    P_ = len(pairs)
    rho = np.zeros(P_)
    # stage 2: correlations
    oo = [a for a, (i, j) in enumerate(pairs) if ordm[i] and ordm[j]]
    if oo:
        sub = ordinal_stats(Yi[:, ordm].astype(float), gamma=False, missing="listwise")
        pos = {v: n for n, v in enumerate(np.flatnonzero(ordm))}
        for a in oo:
            i, j = pairs[a]
            rho[a] = sub.corr[pos[i], pos[j]]
    for a, (i, j) in enumerate(pairs):
        if num[i] and num[j]:
            rho[a] = np.mean(Z[:, i] * Z[:, j])
        elif num[i] != num[j]:
            c, o = (i, j) if num[i] else (j, i)

            def nll(r_, c=c, o=o):
                return -np.sum(np.log(_polyserial_pieces(Z[:, c], Yi[:, o], thresholds[o], r_)[5]))

            rho[a] = minimize_scalar(nll, bounds=(-0.995, 0.995), method="bounded",
                                     options={"xatol": 1e-12}).x
    corr = np.eye(p)
    corr[pairs[:, 0], pairs[:, 1]] = rho
    corr[pairs[:, 1], pairs[:, 0]] = rho
    nslot = np.where(num, 1, K - 1)
    th_start = np.concatenate([[0], np.cumsum(nslot)[:-1]])
    nth = int(nslot.sum())
    var_idx = {v: nth + n for n, v in enumerate(np.flatnonzero(num))}
    th_names = []
    for v in range(p):
        th_names += [names[v]] if num[v] else [f"{names[v]}|t{k + 1}" for k in range(K[v] - 1)]
    stats = MixedStats(names=list(names), thresholds=thresholds, corr=corr, gamma=None, nobs=N,
                       th_names=th_names, pairs=pairs, numeric=num, means=means, variances=variances)
    if not gamma:
        return stats

    # stage 3: univariate scores (thresholds; mean and variance of continuous variables)
    a11_size = nth + int(num.sum())
    SC = np.zeros((N, a11_size))
    for v in range(p):
        if num[v]:
            res = Y[:, v] - means[v]
            SC[:, th_start[v]] = res / variances[v]
            SC[:, var_idx[v]] = -1.0 / (2 * variances[v]) + res * res / (2 * variances[v] ** 2)
        else:
            tv, pv, k = thresholds[v], probs[v], Yi[:, v]
            rows = np.arange(N)
            up = k < K[v] - 1
            SC[rows[up], th_start[v] + k[up]] += _npdf(tv[k[up]]) / pv[k[up]]
            lo = k > 0
            SC[rows[lo], th_start[v] + k[lo] - 1] -= _npdf(tv[k[lo] - 1]) / pv[k[lo]]
    a11 = np.zeros((a11_size, a11_size))
    for v in range(p):
        idx = [th_start[v]] + [var_idx[v]] if num[v] else list(th_start[v] + np.arange(K[v] - 1))
        blk = SC[:, idx]
        a11[np.ix_(idx, idx)] = blk.T @ blk
    # bivariate scores
    sc_cor = np.zeros((N, P_))
    a21 = np.zeros((P_, a11_size))
    H = np.eye(a11_size + P_)
    for a, (i, j) in enumerate(pairs):
        r_ = rho[a]
        if ordm[i] and ordm[j]:
            continue                                   # filled below from the tables
        if num[i] and num[j]:
            y1c, y2c = Y[:, i] - means[i], Y[:, j] - means[j]
            e1, e2, s1, s2 = variances[i], variances[j], sds[i], sds[j]
            rr = 1 - r_ * r_
            zz = y1c ** 2 / e1 - 2 * r_ * y1c * y2c / (s1 * s2) + y2c ** 2 / e2
            sc = r_ / rr + (y1c * y2c / (s1 * s2 * rr) - zz * r_ / rr ** 2)
            d = {th_start[i]: (2 * y1c / e1 - 2 * r_ * y2c / (s1 * s2)) / (2 * rr),
                 th_start[j]: -(2 * r_ * y1c / (s1 * s2) - 2 * y2c / e2) / (2 * rr),
                 var_idx[i]: -(0.5 / e1 - (y1c ** 2 / e1 ** 2 - r_ * y1c * y2c / (e1 * s1 * s2)) / (2 * rr)),
                 var_idx[j]: -(0.5 / e2 + (r_ * y1c * y2c / (e2 * s1 * s2) - y2c ** 2 / e2 ** 2) / (2 * rr))}
            H[a11_size + a, a11_size + a] = s1 * s2
            H[a11_size + a, var_idx[i]] = s2 * r_ / (2 * s1)
            H[a11_size + a, var_idx[j]] = s1 * r_ / (2 * s2)
        else:
            c, o = (i, j) if num[i] else (j, i)
            z, k = Z[:, c], Yi[:, o]
            up, lo, r, t1, t2, P = _polyserial_pieces(z, k, thresholds[o], r_)
            yz1, yz2 = _npdf(t1), _npdf(t2)
            dd = yz1 - yz2
            with np.errstate(invalid="ignore"):
                g1 = np.where(np.isfinite(up), yz1 * (up * r_ - z), 0.0)
                g2 = np.where(np.isfinite(lo), yz2 * (lo * r_ - z), 0.0)
            sc = (g1 - g2) / (r ** 3 * P)
            d = {th_start[c]: (z + dd * r_ / (r * P)) / sds[c],
                 var_idx[c]: ((z * z - 1) + r_ * z * dd / (r * P)) / (2 * variances[c])}
            dth = np.zeros((N, K[o] - 1))
            rows = np.arange(N)
            m_up = k < K[o] - 1
            dth[rows[m_up], k[m_up]] += yz1[m_up] / (r * P[m_up])
            m_lo = k > 0
            dth[rows[m_lo], k[m_lo] - 1] -= yz2[m_lo] / (r * P[m_lo])
            for t in range(K[o] - 1):
                d[th_start[o] + t] = dth[:, t]
            H[a11_size + a, a11_size + a] = sds[c]
            H[a11_size + a, var_idx[c]] = r_ / (2 * sds[c])
        sc_cor[:, a] = sc
        for col, vals in d.items():
            a21[a, col] = sc @ vals
    if oo:
        # polychoric pairs: reuse the table-based scores of the all-ordinal code
        sub_idx = np.flatnonzero(ordm)
        sub = _ordinal_pair_scores(Yi[:, ordm], [thresholds[v] for v in sub_idx], K[ordm])
        pos = {tuple(sorted((sub_idx[ii], sub_idx[jj]), reverse=True)): n
               for n, (ii, jj) in enumerate(_pairs(len(sub_idx)))}
        for a in oo:
            i, j = pairs[a]
            n_ = pos[(i, j)]
            sc_cor[:, a] = sub["sc_cor"][:, n_]
            for vv in (i, j):
                loc = int(np.flatnonzero(sub_idx == vv)[0])
                src = sub["th_start"][loc] + np.arange(K[vv] - 1)
                a21[a, th_start[vv] + np.arange(K[vv] - 1)] = sub["a21"][n_, src]
    a22 = (sc_cor * sc_cor).sum(0)
    z1 = SC @ np.linalg.inv(a11)
    z2 = (sc_cor - z1 @ a21.T) / a22
    Zi = np.hstack([z1, z2])
    W = Zi.T @ Zi
    G = N * (H @ W @ H.T)
    flip = np.ones(a11_size + P_)
    flip[[th_start[v] for v in range(p) if num[v]]] = -1.0
    stats.gamma = G * np.outer(flip, flip)
    return stats


def _ordinal_pair_scores(Yi, thresholds, K):
    """Case-wise polychoric scores and A21 cross-products (complete data), for mixed_stats."""
    N, p = Yi.shape
    pairs = _pairs(p)
    P = len(pairs)
    K1 = int(K.max())
    t1 = np.full((P, K1 + 1), np.inf)
    t2 = np.full((P, K1 + 1), np.inf)
    freq = np.zeros((P, K1, K1))
    valid = np.zeros((P, K1, K1), bool)
    rho = np.zeros(P)
    sub = ordinal_stats(Yi.astype(float), gamma=False, missing="listwise")
    for a, (i, j) in enumerate(pairs):
        t1[a, :K[j] + 1] = _bounds(thresholds[j], K[j])
        t2[a, :K[i] + 1] = _bounds(thresholds[i], K[i])
        np.add.at(freq[a], (Yi[:, j], Yi[:, i]), 1.0)
        valid[a, :K[j], :K[i]] = True
        rho[a] = sub.corr[i, j]
    pi_s, s_rho, d_up1, d_lo1, d_up2, d_lo2 = _cell_scores(t1, t2, rho, valid)
    th_start = np.concatenate([[0], np.cumsum(K - 1)[:-1]])
    nth = int((K - 1).sum())
    sc_cor = np.zeros((N, P))
    a21 = np.zeros((P, nth))
    for a, (i, j) in enumerate(pairs):
        sc_cor[:, a] = s_rho[a][Yi[:, j], Yi[:, i]]
        w = freq[a] * s_rho[a] / pi_s[a]
        kj, ki = K[j], K[i]
        g_up, g_lo = (w * d_up1[a]).sum(1)[:kj], (w * d_lo1[a]).sum(1)[:kj]
        a21[a, th_start[j] + np.arange(kj - 1)] = g_up[:kj - 1] - g_lo[1:kj]
        g_up, g_lo = (w * d_up2[a]).sum(0)[:ki], (w * d_lo2[a]).sum(0)[:ki]
        a21[a, th_start[i] + np.arange(ki - 1)] = g_up[:ki - 1] - g_lo[1:ki]
    return {"sc_cor": sc_cor, "a21": a21, "th_start": th_start}


# --------------------------------------------------------------------------
# conditional on exogenous covariates (lavaan's conditional.x = TRUE)
# --------------------------------------------------------------------------
@dataclass
class ConditionalStats(OrdinalStats):
    """WLS sample statistics of ordered and continuous variables given exogenous covariates x
    (lavaan's conditional.x = TRUE, one group, complete cases).

    Stage 1 regresses each variable on x: an ordered probit for an ordered item (thresholds
    and slopes, ``P(y <= k | x) = Phi(tau_k - x'beta)``), a linear regression for a continuous
    one (intercept, slopes, residual variance with divisor N). Stage 2 estimates the residual
    correlations given x pair by pair (polychoric, polyserial, Pearson), stage 1 held fixed.
    ``wls_obs`` is lavaan's ``[thresholds / -intercepts (variable by variable), vec(slopes)
    (covariate by covariate), residual variances of the continuous variables, vechs(residual
    cov)]`` and ``gamma`` its asymptotic covariance (Muthén 1984 with x; lavaan's NACOV).
    """

    x_names: list = field(default_factory=list)
    numeric: np.ndarray | None = None     # bool mask
    slopes: np.ndarray | None = None      # p x q
    variances: np.ndarray | None = None   # residual variances (1 for ordered items)

    @property
    def cov(self) -> np.ndarray:
        sd = np.where(self.numeric, np.sqrt(self.variances), 1.0)
        return self.corr * np.outer(sd, sd)

    @property
    def wls_obs(self) -> np.ndarray:
        th = [(-t if self.numeric[v] else t) for v, t in enumerate(self.thresholds)]
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        return np.concatenate([np.concatenate(th), self.slopes.ravel(order="F"),
                               self.variances[self.numeric], self.cov[i, j]])


def _probit_bounds(y, th, eta):
    """Per case the upper and lower standardized bounds tau - x'beta of its category."""
    b = _bounds(th, len(th) + 1)
    return b[y + 1] - eta, b[y] - eta


def _interval_prob(z1, z2):
    """Phi(z1) - Phi(z2), from the upper tail where both are large (as lavaan)."""
    return np.where(z2 > 1.0, ndtr(-z2) - ndtr(-z1), ndtr(z1) - ndtr(z2))


def _times_pdf(z):
    """z * phi(z), zero at infinite z."""
    return np.where(np.isfinite(z), np.nan_to_num(z) * _npdf(z), 0.0)


def ordered_probit(y, K, X, *, tol: float = 1e-11, max_iter: int = 200):
    """Maximum likelihood ordered probit of codes ``y`` (0..K-1) on ``X`` (n x q).

    Returns ``(theta, scores)``: theta = [tau_1..tau_{K-1}, beta] and the case-wise scores
    (n x len(theta)). Newton steps with the analytic Hessian from lavaan's start values.
    """
    n, q = X.shape
    nth = K - 1
    Y1 = (np.arange(nth)[None, :] == y[:, None]).astype(float)        # upper bound of the category
    Y2 = (np.arange(nth)[None, :] == (y - 1)[:, None]).astype(float)  # lower bound
    dz1, dz2 = np.hstack([Y1, -X]), np.hstack([Y2, -X])

    def pieces(theta):
        z1, z2 = _probit_bounds(y, theta[:nth], X @ theta[nth:])
        pi = _interval_prob(z1, z2)
        return z1, z2, pi

    theta = np.concatenate([ndtri(np.arange(1, K) / K) if nth > 1 else np.zeros(1), np.zeros(q)])
    z1, z2, pi = pieces(theta)
    ll = np.sum(np.log(pi))
    for _ in range(max_iter):
        a, b = _npdf(z1) / pi, _npdf(z2) / pi
        S = dz1 * a[:, None] - dz2 * b[:, None]
        g = S.sum(0)
        H = (dz1 * (-_times_pdf(z1) / pi)[:, None]).T @ dz1 - (dz2 * (-_times_pdf(z2) / pi)[:, None]).T @ dz2 - S.T @ S
        step = np.linalg.solve(H, -g)
        if np.max(np.abs(g)) < tol * n:
            break
        t, moved = 1.0, False
        while t > 1e-10 and not moved:
            new = theta + t * step
            if np.all(np.diff(new[:nth]) > 0):
                z1n, z2n, pin = pieces(new)
                lln = np.sum(np.log(pin)) if np.all(pin > 0) else -np.inf
                moved = lln >= ll - 1e-12 * abs(ll)
            t /= 2.0
        if not moved:
            break
        theta, z1, z2, pi, ll = new, z1n, z2n, pin, lln
        if np.max(np.abs(2 * t * step)) < 1e-13:
            break
    a, b = _npdf(z1) / pi, _npdf(z2) / pi
    return theta, dz1 * a[:, None] - dz2 * b[:, None]


def conditional_stats(data, ordered_mask, X, *, names=None, x_names=None,
                      missing: str = "listwise") -> ConditionalStats:
    """lavaan's muthen1984() with exogenous covariates for one group.

    ``data``: 2-D array or DataFrame of the endogenous observed variables (ordered columns hold
    category codes 0..K-1, NaN = missing); ``X``: the covariates (n x q), rows matching ``data``.
    ``missing``: "listwise" (complete cases) or "pairwise" (lavaan's missing="pairwise": each
    regression on the cases that answered the variable, each correlation on those that answered
    both; a missing answer contributes zero scores). Cases missing a covariate are left out.
    """
    from scipy.optimize import minimize_scalar

    if isinstance(data, pd.DataFrame):
        names = list(data.columns) if names is None else names
        Y = data.to_numpy(dtype=float)
    else:
        Y = np.asarray(data, dtype=float)
        names = names or [f"y{i + 1}" for i in range(Y.shape[1])]
    X = np.asarray(X, dtype=float)
    keep = ~np.isnan(X).any(1)
    if missing != "pairwise":
        keep &= ~np.isnan(Y).any(1)
    Y, X = Y[keep], X[keep]
    N, p = Y.shape
    q = X.shape[1]
    obs = ~np.isnan(Y)
    ordm = np.asarray(ordered_mask, bool)
    num = ~ordm
    Yi = np.where(ordm[None, :] & obs, np.nan_to_num(Y), 0).astype(int)
    K = np.array([Yi[obs[:, v], v].max() + 1 if ordm[v] and obs[:, v].any() else 2 for v in range(p)])
    X1 = np.hstack([np.ones((N, 1)), X])
    x_names = list(x_names) if x_names is not None else [f"x{k + 1}" for k in range(q)]
    if np.linalg.matrix_rank(X1) < q + 1:
        # lavaan: "probit regression failed ...; X may not be of full rank"
        constant = [x_names[k] for k in range(q) if np.ptp(X[:, k]) == 0]
        why = (f"{', '.join(constant)} constant" if constant else "collinear")
        raise DataError(f"the covariates {', '.join(x_names)} are {why} here; the regressions on them "
                        "(conditional.x) cannot be estimated: drop or recode a covariate, or pass "
                        "conditional_x=False")
    # ---- stage 1: univariate regressions on x
    thresholds, slopes, variances, sc_th, sc_sl, sc_var = [], np.zeros((p, q)), np.ones(p), [], [], []
    bounds, resid = {}, {}
    for v in range(p):
        o = obs[:, v]
        if num[v]:
            if np.linalg.matrix_rank(X1[o]) < X1.shape[1]:
                raise DataError(f"linear regression of '{names[v]}' on the covariates failed: "
                                "the covariates are collinear among the cases that answered it")
            coef, *_ = np.linalg.lstsq(X1[o], Y[o, v], rcond=None)
            res = np.where(o, np.nan_to_num(Y[:, v]) - X1 @ coef, 0.0)
            evar = float(res @ res) / int(o.sum())
            thresholds.append(np.array([coef[0]]))
            slopes[v] = coef[1:]
            variances[v] = evar
            sc = X1 * (res / evar)[:, None]
            sc_th.append(sc[:, :1])
            sc_sl.append(sc[:, 1:])
            sc_var.append(np.where(o, -1.0 / (2 * evar) + res * res / (2 * evar * evar), 0.0)[:, None])
            resid[v] = res
            continue
        cnt = np.bincount(Yi[o, v], minlength=K[v])
        if (cnt == 0).any() or K[v] < 2:
            raise SparseCategoryError(f"ordered item '{names[v]}' has an empty category or only one "
                                      f"category (frequencies {' '.join(map(str, cnt))})")
        theta, sc_o = ordered_probit(Yi[o, v], int(K[v]), X[o])
        sc = np.zeros((N, len(theta)))
        sc[o] = sc_o
        if not np.all(np.isfinite(theta)):
            raise DataError(f"probit regression of '{names[v]}' on the covariates failed; "
                            "the covariates may be collinear")
        nth = K[v] - 1
        thresholds.append(theta[:nth])
        slopes[v] = theta[nth:]
        sc_th.append(sc[:, :nth])
        sc_sl.append(sc[:, nth:])
        bounds[v] = _probit_bounds(Yi[:, v], theta[:nth], X @ theta[nth:])
    nth_v = np.array([len(t) for t in thresholds])
    th_start = np.concatenate([[0], np.cumsum(nth_v)[:-1]])
    n_th = int(nth_v.sum())
    num_idx = np.flatnonzero(num)
    SC_TH = np.hstack(sc_th)
    SC_SL = np.zeros((N, p * q))
    for v in range(p):
        SC_SL[:, v + p * np.arange(q)] = sc_sl[v]
    SC_VAR = np.hstack(sc_var) if sc_var else np.zeros((N, 0))
    n11 = n_th + p * q + len(num_idx)

    def cols(v):
        c = list(th_start[v] + np.arange(nth_v[v])) + list(n_th + v + p * np.arange(q))
        if num[v]:
            c.append(n_th + p * q + int(np.searchsorted(num_idx, v)))
        return np.array(c, dtype=int)

    # ---- stage 2: residual correlations, pair by pair
    pairs = _pairs(p)
    P_ = len(pairs)
    rho = np.zeros(P_)
    SC_COR = np.zeros((N, P_))
    A21 = np.zeros((P_, n11))
    H21 = np.zeros((P_, n11))
    H22 = np.eye(P_)
    sd = np.sqrt(variances)
    for a, (i, j) in enumerate(pairs):
        m = obs[:, i] & obs[:, j]              # the cases that answered both
        Xm, Ym = X[m], Yi[m]
        if ordm[i] and ordm[j]:
            z1i, z2i = (b[m] for b in bounds[i])
            z1j, z2j = (b[m] for b in bounds[j])

            def lik(r_):
                r_ = np.full(len(z1i), r_)
                return (bivariate_normal_cdf(z1i, z1j, r_) - bivariate_normal_cdf(z2i, z1j, r_)
                        - bivariate_normal_cdf(z1i, z2j, r_) + bivariate_normal_cdf(z2i, z2j, r_))

            def nll(r_):
                return _trimmed_nll(lik(r_))

            r = _newton_rho(z1i, z2i, z1j, z2j, lik, nll, np.corrcoef(Ym[:, i], Ym[:, j])[0, 1])
            L = lik(r)
            bad = L <= np.sqrt(np.finfo(float).eps)      # lavaan: these cases' scores are NA (dropped)
            L = np.where(bad, 1.0, L)
            R = np.sqrt(1.0 - r * r)
            d_rho = (_bvn_density(z1i, z1j, r) - _bvn_density(z2i, z1j, r)
                     - _bvn_density(z1i, z2j, r) + _bvn_density(z2i, z2j, r)) / L
            for v, (za1, za2), (zb1, zb2) in ((i, (z1i, z2i), (z1j, z2j)), (j, (z1j, z2j), (z1i, z2i))):
                u = _npdf(za1) * _cdf_diff(zb1, zb2, za1, r, R)
                lo = _npdf(za2) * _cdf_diff(zb1, zb2, za2, r, R)
                Y1 = (np.arange(nth_v[v])[None, :] == Ym[:, v][:, None])
                Y2 = (np.arange(nth_v[v])[None, :] == (Ym[:, v] - 1)[:, None])
                sc_t = np.where(bad[:, None], 0.0, (Y1 * u[:, None] - Y2 * lo[:, None]) / L[:, None])
                sc_s = np.where(bad[:, None], 0.0, Xm * ((lo - u) / L)[:, None])
                d_rho_ok = np.where(bad, 0.0, d_rho)
                c = cols(v)
                A21[a, c] = d_rho_ok @ np.hstack([sc_t, sc_s])
            rho[a] = r
            SC_COR[m, a] = np.where(bad, 0.0, d_rho)
        elif num[i] and num[j]:
            e1, e2 = resid[i][m], resid[j][m]
            v1, v2 = variances[i], variances[j]
            s1, s2 = np.sqrt(v1), np.sqrt(v2)
            if m.all():
                r = float(np.corrcoef(e1, e2)[0, 1])     # lavaan: the residuals' correlation
            else:
                # lavaan: the bivariate normal likelihood in rho, the regressions held fixed
                z1_, z2_ = e1 / s1, e2 / s2

                def nll(r_):
                    return float(np.sum(0.5 * np.log(1 - r_ * r_)
                                        + (z1_ * z1_ - 2 * r_ * z1_ * z2_ + z2_ * z2_) / (2 * (1 - r_ * r_))))

                r = float(minimize_scalar(nll, bounds=(-0.999, 0.999), method="bounded",
                                          options={"xatol": 1e-13}).x)
            Rr = 1.0 - r * r
            mu1 = (2 * e1 / v1 - 2 * r * e2 / (s1 * s2)) / (2 * Rr)
            mu2 = -(2 * r * e1 / (s1 * s2) - 2 * e2 / v2) / (2 * Rr)
            var1 = -(0.5 / v1 - (e1 * e1 / (v1 * v1) - r * e1 * e2 / (v1 * s1 * s2)) / (2 * Rr))
            var2 = -(0.5 / v2 + (r * e1 * e2 / (v2 * s1 * s2) - e2 * e2 / (v2 * v2)) / (2 * Rr))
            z = e1 * e1 / v1 - 2 * r * e1 * e2 / (s1 * s2) + e2 * e2 / v2
            d_rho = r / Rr + (e1 * e2 / (s1 * s2 * Rr) - z * r / (Rr * Rr))
            for v, mu_, var_ in ((i, mu1, var1), (j, mu2, var2)):
                A21[a, cols(v)] = d_rho @ np.hstack([mu_[:, None], Xm * mu_[:, None], var_[:, None]])
            H21[a, cols(i)[-1]] = s2 * r / (2 * s1)
            H21[a, cols(j)[-1]] = s1 * r / (2 * s2)
            H22[a, a] = s1 * s2
            rho[a] = r
            SC_COR[m, a] = d_rho
        else:
            c_, o = (i, j) if num[i] else (j, i)
            Zc = resid[c_][m] / sd[c_]
            z1o, z2o = (b[m] for b in bounds[o])

            def pieces(r_):
                R = np.sqrt(1.0 - r_ * r_)
                t1 = np.where(np.isfinite(z1o), (z1o - r_ * Zc) / R, np.inf)
                t2 = np.where(np.isfinite(z2o), (z2o - r_ * Zc) / R, -np.inf)
                return R, t1, t2, np.maximum(ndtr(t1) - ndtr(t2), np.finfo(float).eps)

            def nll(r_):
                return -np.sum(np.log(pieces(r_)[3]))

            r = minimize_scalar(nll, bounds=(-0.995, 0.995), method="bounded",
                                options={"xatol": 1e-13}).x
            R, t1, t2, Pc = pieces(r)
            f1, f2 = _npdf(t1), _npdf(t2)
            mu_c = (Zc + (r / R) * (f1 - f2) / Pc) / sd[c_]
            var_c = ((Zc * Zc - 1.0) + (r * Zc / R) * (f1 - f2) / Pc) / (2 * variances[c_])
            Y1 = (np.arange(nth_v[o])[None, :] == Ym[:, o][:, None])
            Y2 = (np.arange(nth_v[o])[None, :] == (Ym[:, o] - 1)[:, None])
            th_o = (Y1 * f1[:, None] - Y2 * f2[:, None]) / (R * Pc)[:, None]
            sl_o = Xm * ((f2 - f1) / (R * Pc))[:, None]
            g1 = np.where(np.isfinite(z1o), f1 * (np.nan_to_num(z1o) * r - Zc), 0.0)
            g2 = np.where(np.isfinite(z2o), f2 * (np.nan_to_num(z2o) * r - Zc), 0.0)
            d_rho = (g1 - g2) / (Pc * R ** 3)
            A21[a, cols(c_)] = d_rho @ np.hstack([mu_c[:, None], Xm * mu_c[:, None], var_c[:, None]])
            A21[a, cols(o)] = d_rho @ np.hstack([th_o, sl_o])
            H21[a, cols(c_)[-1]] = r / (2 * sd[c_])
            H22[a, a] = sd[c_]
            rho[a] = r
            SC_COR[m, a] = d_rho
    corr = np.eye(p)
    corr[pairs[:, 0], pairs[:, 1]] = rho
    corr[pairs[:, 1], pairs[:, 0]] = rho
    # ---- stage 3: Gamma = N B^-1 (S'S) B^-T, B block triangular (lavaan's muthen1984)
    SC = np.hstack([SC_TH, SC_SL, SC_VAR, SC_COR])
    inner = SC.T @ SC
    A11 = np.zeros((n11, n11))
    for v in range(p):
        c = cols(v)
        A11[np.ix_(c, c)] = inner[np.ix_(c, c)]
    A11_inv = np.linalg.pinv(A11) if np.linalg.matrix_rank(A11) < n11 else np.linalg.inv(A11)
    a22 = np.sum(SC_COR * SC_COR, axis=0)
    A22_inv = np.diag(1.0 / a22)
    B_inv = np.block([[A11_inv, np.zeros((n11, P_))], [-A22_inv @ A21 @ A11_inv, A22_inv]])
    W = B_inv @ inner @ B_inv.T
    if num.any():
        H = np.block([[np.eye(n11), np.zeros((n11, P_))], [H21, H22]])
        W = H @ W @ H.T
        flip = th_start[num_idx]                         # -intercepts are the "thresholds"
        W[flip, :] *= -1.0
        W[:, flip] *= -1.0
    th_names = [f"{names[v]}|t{k + 1}" if ordm[v] else names[v]
                for v in range(p) for k in range(nth_v[v])]
    return ConditionalStats(names=list(names), thresholds=thresholds, corr=corr, gamma=W * N, nobs=N,
                            th_names=th_names, pairs=pairs, x_names=x_names, numeric=num,
                            slopes=slopes, variances=variances)


def _cdf_diff(zb1, zb2, za, r, R):
    """Phi((zb1 - r za)/R) - Phi((zb2 - r za)/R), with infinite bounds."""
    # an infinite za enters as 0: the caller multiplies by phi(za) = 0 there (a huge stand-in
    # such as nan_to_num's overflowed the quotient)
    za = np.where(np.isfinite(za), za, 0.0)
    with np.errstate(invalid="ignore"):
        u = np.where(np.isfinite(zb1), (zb1 - r * za) / R, np.inf)
        lo = np.where(np.isfinite(zb2), (zb2 - r * za) / R, -np.inf)
    return ndtr(u) - ndtr(lo)


def _score_oo(z1i, z2i, z1j, z2j, lik):
    def score(r_):
        L = lik(r_)
        d = (_bvn_density(z1i, z1j, r_) - _bvn_density(z2i, z1j, r_)
             - _bvn_density(z1i, z2j, r_) + _bvn_density(z2i, z2j, r_))
        return float(np.sum(d / np.maximum(L, 1e-300)))
    return score


def _bvn_density_drho(x, y, rho):
    """d/drho of the standard bivariate normal density; zero at infinite arguments."""
    r2 = 1.0 - rho * rho
    ok = np.isfinite(x) & np.isfinite(y)
    fx, fy = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    q = fx * fx - 2.0 * rho * fx * fy + fy * fy
    factor = rho / r2 + fx * fy / r2 - rho * q / (r2 * r2)
    return np.where(ok, _bvn_density(x, y, rho) * factor, 0.0)


_TOO_SMALL = np.sqrt(np.finfo(float).eps)


def _trimmed_nll(L):
    """Minus the log-likelihood of a residual polychoric; as lavaan, cases whose probability is
    below sqrt(eps) at this rho are left out (lav_bvord_lik_cache)."""
    ok = L >= _TOO_SMALL
    return -float(np.sum(np.log(L[ok])))


def _newton_rho(z1i, z2i, z1j, z2j, lik, nll, start, bound=0.999, tol=1e-12):
    """The maximum likelihood residual polychoric correlation: Newton steps on the log-likelihood
    with its analytic first and second derivatives from lavaan's start (the Pearson correlation of
    the codes), halving a step that leaves (-bound, bound) or lowers the likelihood; bounded Brent
    if that fails."""
    corners = ((z1i, z1j, 1.0), (z2i, z1j, -1.0), (z1i, z2j, -1.0), (z2i, z2j, 1.0))
    r = float(start) if np.isfinite(start) and abs(start) < bound else 0.0
    L = lik(r)
    f = _trimmed_nll(L)
    for _ in range(50):
        if not np.isfinite(f):
            break
        ok = L >= _TOO_SMALL
        Lk = np.where(ok, L, 1.0)
        d1 = np.where(ok, sum(s * _bvn_density(a, b, r) for a, b, s in corners) / Lk, 0.0)
        d2 = np.where(ok, sum(s * _bvn_density_drho(a, b, r) for a, b, s in corners) / Lk, 0.0) - d1 * d1
        g, h = float(d1.sum()), float(d2.sum())
        if not np.isfinite(g) or not np.isfinite(h) or h >= 0:
            break
        step, moved = -g / h, False
        if abs(step) < 1e-9 and abs(r + step) < bound:
            return float(r + step)       # quadratic convergence: the likelihood cannot tell further
        while abs(step) > 1e-15:
            new = r + step
            if abs(new) < bound:
                Ln = lik(new)
                fn = _trimmed_nll(Ln)
                if fn <= f + 1e-12 * abs(f):
                    moved = True
                    break
            step /= 2.0
        if not moved:
            break
        r, f, L = new, fn, Ln
        if abs(step) < tol:
            return float(r)
    return _polish_rho(nll, bound, _score_oo(z1i, z2i, z1j, z2j, lik))


def _polish_rho(nll, bound, score):
    """The maximum likelihood correlation: bounded Brent, then the root of the score."""
    from scipy.optimize import brentq, minimize_scalar

    r = minimize_scalar(nll, bounds=(-bound, bound), method="bounded", options={"xatol": 1e-10}).x
    lo, hi = max(r - 1e-4, -bound), min(r + 1e-4, bound)
    try:
        s_lo, s_hi = score(lo), score(hi)
        if s_lo > 0 > s_hi:
            r = brentq(score, lo, hi, xtol=1e-14)
    except (ValueError, FloatingPointError):
        pass
    return float(r)
