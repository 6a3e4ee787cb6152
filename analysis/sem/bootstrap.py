"""Nonparametric bootstrap of a fitted model (lavaan ``se = "bootstrap"``).

Cases are resampled with replacement (within groups), the model is refitted
with the same estimator and options, and every free parameter and every
``:=`` effect gets a bootstrap standard error and a percentile, bias-corrected
(``bca.simple``) or BCa interval; the Bollen-Stine bootstrap gives a p value
for the model test. Failed (non-converged) replications are dropped and
counted, improper ones (negative variances) are kept and counted, as lavaan.

Speed: each refit starts from the full-sample estimate and reuses the
compiled :class:`~analysis.sem.model.Model`; only the sample moments change. The
replications run on :func:`analysis.execution.run_replications` (local pool,
or a Dask cluster), with per-replication seeds, so the result for a seed does
not depend on the number of workers.

>>> # In R: sem(model, data, se = "bootstrap", bootstrap = 1000)
>>> boot = bootstrap_fit(fit, n_boot=1000, seed=1)          # doctest: +SKIP
>>> boot.params[["lhs", "op", "rhs", "est", "se", "ci.lower", "ci.upper"]]  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from analysis.sem import distributions as sps

from analysis.sem.data import SampleStats, sample_moments
from analysis.sem.defined import DefinedParameters
from analysis.errors import OptionError
from analysis.sem.estimators import ML_ESTIMATORS
from analysis.execution import run_replications

__all__ = ["bootstrap_fit", "BootstrapResult", "bootstrap_ci", "norm_inter", "bollen_stine_transform",
           "jackknife_acceleration", "bollen_stine_test", "replication_warnings_record", "CI_TYPES"]

CI_TYPES = ("perc", "bca.simple", "bca", "norm", "basic")


# ---------------------------------------------------------------- intervals

def norm_inter(t: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Quantiles of ``t`` at ``alpha`` by interpolation on the normal scale
    between order statistics (Davison & Hinkley 1997, eq. 5.8; the boot
    package's ``norm.inter``, which lavaan uses)."""
    t = np.sort(np.asarray(t, float)[np.isfinite(t)])
    r = len(t)
    alpha = np.atleast_1d(np.asarray(alpha, float))
    rk = (r + 1) * alpha
    k = np.trunc(rk).astype(int)
    out = np.empty(len(alpha))
    for j in range(len(alpha)):
        if k[j] == rk[j] and 0 < k[j] <= r:
            out[j] = t[k[j] - 1]
        elif k[j] <= 0:
            out[j] = t[0]
        elif k[j] >= r:
            out[j] = t[-1]
        else:
            z, z1, z2 = sps.norm.ppf([alpha[j], k[j] / (r + 1), (k[j] + 1) / (r + 1)])
            out[j] = t[k[j] - 1] + (z - z1) / (z2 - z1) * (t[k[j]] - t[k[j] - 1])
    return out


def bootstrap_ci(draws: np.ndarray, est: np.ndarray, *, ci: str = "perc", level: float = 0.95,
                 acceleration: np.ndarray | None = None) -> np.ndarray:
    """(k, 2) interval limits from (R, k) bootstrap draws and the k estimates."""
    draws = np.asarray(draws, float)
    est = np.asarray(est, float)
    out = np.column_stack([est, est]).astype(float)
    lo_hi = np.array([(1 - level) / 2, (1 + level) / 2])
    for j in range(draws.shape[1]):
        t = draws[:, j][np.isfinite(draws[:, j])]
        if len(t) < 2 or np.var(t) == 0:
            continue
        if ci == "perc":
            out[j] = norm_inter(t, lo_hi)
        elif ci == "basic":
            out[j] = 2 * est[j] - norm_inter(t, lo_hi[::-1])
        elif ci == "norm":
            bias = t.mean() - est[j]
            out[j] = est[j] - bias + t.std(ddof=1) * sps.norm.ppf(lo_hi)
        else:  # bca.simple (no acceleration) and bca
            a = 0.0 if acceleration is None else float(acceleration[j])
            w = sps.norm.ppf(np.mean(t < est[j]))
            if not np.isfinite(w):
                continue
            z = sps.norm.ppf(lo_hi)
            out[j] = norm_inter(t, sps.norm.cdf(w + (w + z) / (1 - a * (w + z))))
    return out


def jackknife_acceleration(jack: np.ndarray) -> np.ndarray:
    """BCa acceleration from (N, k) leave-one-out estimates (Efron 1987; Davison & Hinkley
    1997, eq. 5.25): ``a = sum L^3 / (6 (sum L^2)^1.5)`` with the jackknife influence values
    ``L_i = mean(theta_(.)) - theta_(i)``. Failed refits (NaN rows) are left out."""
    jack = np.asarray(jack, float)
    jack = jack[np.isfinite(jack).all(axis=1)]
    infl = jack.mean(axis=0) - jack
    denom = 6 * np.sum(infl**2, axis=0) ** 1.5
    return np.where(denom > 0, np.sum(infl**3, axis=0) / np.where(denom > 0, denom, 1), 0.0)


# ---------------------------------------------------------------- refitting

def _sym_sqrt(m: np.ndarray, inverse: bool = False) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    w = np.maximum(w, 1e-300)
    return (v * (w ** (-0.5 if inverse else 0.5))) @ v.T


def bollen_stine_transform(data: list[np.ndarray], sigma: list[np.ndarray],
                           mu: list[np.ndarray | None]) -> list[np.ndarray]:
    """Rotate each group's complete data so its sample covariance equals the
    model-implied one (and its means the implied means): Bollen & Stine (1992)."""
    out = []
    for Y, sig, m in zip(data, sigma, mu):
        s, ybar = sample_moments(Y)
        z = (Y - ybar) @ _sym_sqrt(s, inverse=True) @ _sym_sqrt(sig)
        out.append(z + (m if m is not None else ybar))
    return out


class _LeanML:
    """Complete-data ML objective with its analytic RAM gradient, for refits.

    With ``E = (I - A)^-1`` restricted to the observed rows, ``Sigma = E S E'``,
    ``mu = E m``, ``W = Sigma^-1``, ``d = ybar - mu`` and
    ``G = W (Sigma - S_obs - d d') W / 2``: ``dF/dS = E'GE``,
    ``dF/dA = 2 E'GE S B' - E'Wd (Bm)'`` and ``dF/dm = -E'Wd``; each free
    parameter sums the cells it fills. O(m^3) per evaluation, no Jacobian of
    the moments (the core's path, needed for SEs, builds one per iteration).
    """

    def __init__(self, model, stats):
        self.groups = model.group_maps
        self.meanstructure = bool(model.meanstructure)
        self.n_free = model.n_free
        self.weights = np.asarray(stats.nobs, float) / float(sum(stats.nobs))
        self.ntotal = int(sum(stats.nobs))
        self.cov = stats.cov
        self.mean = stats.mean
        self.logdet_s = [np.linalg.slogdet(c)[1] for c in stats.cov]
        # per group: identity, and the cell maps with the symmetric-S factor 2 off the diagonal
        self._eye = [np.eye(grp.m) for grp in self.groups]
        self._sfac = [np.where(grp.cells["S"][0] == grp.cells["S"][1], 1.0, 2.0) for grp in self.groups]
        # every free cell's parameter, in the order fg lays out its gradient terms (M, A, S)
        self._k = [np.concatenate(([grp.cells["M"][2]] if self.meanstructure else [])
                                  + [grp.cells["A"][2], grp.cells["S"][2]]) for grp in self.groups]
        self._paths = [_path_length(grp) for grp in self.groups]


    @staticmethod
    def usable(model) -> bool:
        try:
            return all(not g.n_tau and not g.has_scales and hasattr(g, "A0") for g in model.group_maps)
        except AttributeError:
            return False

    def fg(self, x: np.ndarray):
        f, grad = 0.0, np.zeros(self.n_free)
        for g, grp in enumerate(self.groups):
            A, S = grp.A0.copy(), grp.S0.copy()    # grp.fill without thresholds and scales
            i, j, k = grp.cells["A"]
            A[i, j] = x[k]
            i, j, k = grp.cells["S"]
            S[i, j] = S[j, i] = x[k]
            if self.meanstructure:
                M = grp.M0.copy()
                i, _, k = grp.cells["M"]
                M[i] = x[k]
            steps = self._paths[g]
            if steps is None:
                B = np.linalg.inv(self._eye[g] - A)
            else:   # A is nilpotent (no cycles): (I - A)^-1 = I + A + ... + A^steps, exactly
                B = self._eye[g] + A
                for _ in range(steps - 1):
                    B = self._eye[g] + A @ B
            E = B[: grp.p]
            sigma = E @ S @ E.T
            try:
                chol = np.linalg.cholesky(sigma)
            except np.linalg.LinAlgError:
                return np.inf, None
            cinv = np.linalg.inv(chol)
            W = cinv.T @ cinv
            logdet = 2.0 * np.log(chol.diagonal()).sum()
            Sobs = self.cov[g]
            val = logdet + (Sobs * W).sum() - self.logdet_s[g] - grp.p
            inner = sigma - Sobs
            w = self.weights[g]
            if self.meanstructure:
                Bm = B @ M
                d = self.mean[g] - Bm[: grp.p]
                Wd = W @ d
                val += d @ Wd
                inner = inner - d[:, None] * d
            f += w * 0.5 * val
            G = 0.5 * W @ inner @ W
            EGE = E.T @ G @ E
            gA = 2.0 * EGE @ S @ B.T
            parts = []
            if self.meanstructure:
                EWd = E.T @ Wd
                gA -= EWd[:, None] * Bm
                parts.append(-w * EWd[grp.cells["M"][0]])
            i, j, _ = grp.cells["A"]
            parts.append(w * gA[i, j])
            i, j, _ = grp.cells["S"]
            parts.append(w * EGE[i, j] * self._sfac[g])
            grad += np.bincount(self._k[g], np.concatenate(parts), minlength=self.n_free)
        return float(f), grad


@functools.lru_cache(maxsize=64)   # per compiled group (one per model): refits share it
def _path_length(grp) -> int | None:
    """The longest chain of directed paths in a group's A matrix (its nilpotency index - 1), when
    it is short (a CFA: 1; an SEM: a few), else None (a cycle, or long chains: invert I - A)."""
    pattern = grp.A0 != 0
    i, j, _ = grp.cells["A"]
    pattern[i, j] = True
    reach = pattern.astype(float)
    power = reach
    for steps in range(1, 5):
        if not power.any():
            return max(steps - 1, 1)
        power = (power @ reach > 0).astype(float)
    return None


def _bfgs(lean: _LeanML, x0: np.ndarray, hinv0: np.ndarray, gtol: float, max_iter: int = 200):
    """Quasi-Newton from the full-sample solution, the inverse information there
    as the first inverse Hessian; Armijo backtracking. (x, f, converged)."""
    x = x0.copy()
    f, g = lean.fg(x)
    if g is None:
        return x, f, False
    H = hinv0.copy()
    for _ in range(max_iter):
        d = -H @ g
        # converged: small gradient, or a quasi-Newton step below 10 gtol in every parameter
        if abs(g).max() < gtol or abs(d).max() < 10 * gtol:
            return x, f, True
        slope = float(g @ d)
        if not slope < 0:
            H = hinv0.copy()
            d = -H @ g
            slope = float(g @ d)
        t = 1.0
        for _ in range(40):
            xn = x + t * d
            fn, gn = lean.fg(xn)
            if gn is not None and fn <= f + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            return x, f, False
        s_, y_ = xn - x, gn - g
        sy = float(s_ @ y_)
        if sy > 1e-12:
            rho = 1.0 / sy
            Hy = H @ y_
            s_hy = s_[:, None] * Hy      # the outer products by broadcasting (np.outer's overhead is per call)
            H = H - rho * (s_hy + s_hy.T) + (rho * rho * float(y_ @ Hy) + rho) * (s_[:, None] * s_)
        x, f, g = xn, fn, gn
    return x, f, False


@dataclass
class Refitter:
    """Everything a worker needs to refit the model to new data (sent once per worker)."""

    model: Any
    x0: np.ndarray
    estimator: str
    missing: str
    options: dict
    ov: list[str]
    group: str | None
    group_labels: list[str]
    data: list[np.ndarray]
    exo_rows: list[tuple[int, int, int, int]]  # (partable row, group index, i, j) of fixed.x moments
    variance_free: np.ndarray  # 0-based free indices of variances (improper when < 0)
    gtol: float = 1e-5  # |dx| < ~1e-4: far below bootstrap noise (SEs ~ 0.1)
    hinv0: np.ndarray | None = None  # inverse information at the full-sample solution (lean refits)

    @property
    def fast(self) -> bool:
        # ML, MLR and MLM share the ML point estimates on complete data
        return (self.estimator in ML_ESTIMATORS and self.missing == "listwise"
                and not any(self.model.ordered_names))

    def _stats(self, parts: list[np.ndarray]):
        covs, means = zip(*(sample_moments(Y) for Y in parts))
        return SampleStats(tuple(self.ov), tuple(covs), tuple(means), tuple(len(Y) for Y in parts),
                           tuple(self.group_labels))

    def _model_for(self, stats):
        """The compiled model, with fixed.x moments reset to this sample's (as lavaan)."""
        if not self.exo_rows:
            return self.model
        from analysis.sem.model import Model

        pt = self.model.partable.copy()
        for row, g, i, j in self.exo_rows:
            pt.at[row, "ustart"] = stats.cov[g][i, j] if j >= 0 else stats.mean[g][i]
        return Model(pt, meanstructure=self.model.meanstructure)

    def estimator_for(self, parts: list[np.ndarray], *, point_only: bool = True):
        """An estimator for data ``parts`` with the fit's options (ML point
        estimates through the lean path when they equal the fit's)."""
        if self.fast and (point_only or self.estimator == "ML"):
            parts = [Y[~np.isnan(Y).any(axis=1)] for Y in parts]
            stats = self._stats(parts)
            from analysis.sem.estimators.ml import MLEstimator

            return MLEstimator(self._model_for(stats), stats)
        from analysis.sem.data import DataCheck
        from analysis.sem.estimators.factory import make_estimator

        frames = []
        for g, Y in enumerate(parts):
            df = pd.DataFrame(Y, columns=self.ov)
            if self.group is not None:
                df[self.group] = self.group_labels[g]
            frames.append(df)
        df = pd.concat(frames, ignore_index=True)
        if self.missing == "listwise":
            df = df.dropna(subset=self.ov)
        check = DataCheck(data=df, variables=tuple(self.ov))
        complete = [Y[~np.isnan(Y).any(axis=1)] for Y in parts]
        stats = self._stats(complete if self.missing == "listwise" else
                            [np.where(np.isnan(Y), np.nanmean(Y, axis=0), Y) for Y in parts])
        return make_estimator(self.estimator, self.missing, self._model_for(stats), stats, check, self.options)

    def refit(self, parts: list[np.ndarray], *, with_test: bool = False, point_only: bool = True):
        """(x, converged, chisq, estimator) for data ``parts`` (one array per group).

        Point estimates of complete-data ML go through :class:`_LeanML` (no
        estimator object is returned then); everything else, and any lean
        refit that does not converge, through the core's estimator and optimizer.
        """
        from analysis.sem.optimize import minimize

        if point_only and self.fast and self.hinv0 is not None:
            parts = [Y[~np.isnan(Y).any(axis=1)] for Y in parts]
            stats = self._stats(parts)
            model = self._model_for(stats)
            if _LeanML.usable(model):
                try:
                    lean = _LeanML(model, stats)
                    x, f, ok = _bfgs(lean, self.x0, self.hinv0, self.gtol)
                except (np.linalg.LinAlgError, ValueError, FloatingPointError):
                    ok = False
                if ok and np.all(np.isfinite(x)):
                    return x, True, float(max(2.0 * lean.ntotal * f, 0.0)) if with_test else math.nan, None
        try:
            est = self.estimator_for(parts, point_only=point_only)
            opt = minimize(est, self.x0, gtol=self.gtol)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, ZeroDivisionError):
            return np.full(len(self.x0), np.nan), False, math.nan, None
        ok = bool(opt.converged and np.all(np.isfinite(opt.x)))
        chisq = math.nan
        if with_test and ok:
            chisq = float(max(2.0 * est.ntotal * opt.fun, 0.0)) if self.fast else float(est.test(opt.x)["chisq"])
        return opt.x, ok, chisq, est


def _resample(rng: np.random.Generator, sizes: list[int]) -> list[np.ndarray]:
    return [rng.integers(0, n, n) for n in sizes]


def _boot_one(ctx: Refitter, rng: np.random.Generator, i: int):
    idx = _resample(rng, [len(Y) for Y in ctx.data])
    x, ok, _, _ = ctx.refit([Y[k] for Y, k in zip(ctx.data, idx)])
    improper = bool(ok and len(ctx.variance_free) and np.any(x[ctx.variance_free] < 0))
    return x, ok, improper


def _jack_one(ctx: Refitter, rng: np.random.Generator, i: int):
    """Refit without case ``i`` (cases numbered through the groups in order)."""
    sizes = np.cumsum([len(Y) for Y in ctx.data])
    g = int(np.searchsorted(sizes, i, side="right"))
    k = i - (int(sizes[g - 1]) if g else 0)
    x, ok, _, _ = ctx.refit([np.delete(Y, k, axis=0) if j == g else Y for j, Y in enumerate(ctx.data)])
    return x if ok else np.full(len(ctx.x0), np.nan)


def _bs_one(ctx: Refitter, rng: np.random.Generator, i: int):
    idx = _resample(rng, [len(Y) for Y in ctx.data])
    x, ok, chisq, _ = ctx.refit([Y[k] for Y, k in zip(ctx.data, idx)], with_test=True)
    return ok, chisq


def refitter(fit, data: pd.DataFrame | None) -> Refitter:
    """The refitting context of a fit_sem result on its raw data (bootstrap and power replications)."""
    model = fit.model
    if model is None or fit.x is None:
        raise OptionError("bootstrap_fit needs a FitResult from fit_sem (with its compiled model)")
    check = getattr(fit, "data_check", None)
    if data is None:
        if check is None:
            raise OptionError("bootstrap_fit needs the raw data: this fit was made from a covariance "
                             "matrix (pass data=...)")
        data = check.data
    ov = list(model.ov_names[0])
    missing_cols = [v for v in ov if v not in data.columns]
    if missing_cols:
        raise OptionError(f"the data given to bootstrap_fit lack the model's variables: {', '.join(missing_cols)}")
    labels = list(fit.group_labels) if fit.group else []
    if fit.group:
        keys = data[fit.group].astype(str)
        parts = [data.loc[keys == lab, ov].to_numpy(float) for lab in labels]
    else:
        parts = [data[ov].to_numpy(float)]
    opts = dict(fit.options)
    pt = model.partable
    exo_rows = []
    for row in pt.index[(pt["exo"] == 1) & (pt["group"] > 0)]:
        g = int(pt.at[row, "group"]) - 1
        lhs, op, rhs = pt.at[row, "lhs"], pt.at[row, "op"], pt.at[row, "rhs"]
        pos = {v: k for k, v in enumerate(model.ov_names[g])}
        if op == "~~" and lhs in pos and rhs in pos:
            exo_rows.append((row, g, pos[lhs], pos[rhs]))
        elif op == "~1" and lhs in pos:
            exo_rows.append((row, g, pos[lhs], -1))
    var_free = pt[(pt["op"] == "~~") & (pt["lhs"] == pt["rhs"]) & (pt["free"] > 0)]["free"].to_numpy(int) - 1
    hinv0 = None
    try:  # the full-sample expected information, inverted once, starts every lean refit
        from analysis.sem.estimators.ml import MLEstimator

        if fit.sample_stats is not None and all(m is not None for m in fit.sample_stats.mean):
            hinv0 = np.linalg.inv(MLEstimator(model, fit.sample_stats).information(np.asarray(fit.x, float)))
    except (np.linalg.LinAlgError, ValueError, TypeError, AttributeError):
        hinv0 = None
    return Refitter(model=model, x0=np.asarray(fit.x, float), estimator=str(fit.estimator).upper(),
                     missing=str(opts.get("missing", "listwise")), options=opts, ov=ov, group=fit.group,
                     group_labels=labels, data=parts, exo_rows=exo_rows, variance_free=np.unique(var_free),
                     hinv0=hinv0)


# ---------------------------------------------------------------- results

@dataclass
class BootstrapResult:
    """Bootstrap inference for a fitted model.

    ``params``: the ParameterTable with bootstrap ``se``, ``z``, ``pvalue``,
    ``ci.lower``, ``ci.upper`` and ``ci.method``; ``draws``: one row per
    successful replication, one column per free parameter and ``:=`` effect.
    """

    params: pd.DataFrame
    draws: pd.DataFrame
    n_boot: int
    n_failed: int
    n_improper: int
    failed: tuple[int, ...]
    ci: str
    level: float
    seed: int | None
    bollen_stine: dict | None = None

    @property
    def n_ok(self) -> int:
        return self.n_boot - self.n_failed

    def to_dict(self) -> dict:
        cols = ["lhs", "op", "rhs", "group", "label", "est", "se", "z", "pvalue", "ci.lower", "ci.upper"]
        est = self.params[[c for c in cols if c in self.params]].copy()
        return {
            "bootstrap": {"R": self.n_boot, "ok": self.n_ok, "failed": self.n_failed,
                          "improper": self.n_improper, "ci": self.ci, "level": self.level, "seed": self.seed,
                          **({"bollen_stine": self.bollen_stine} if self.bollen_stine else {})},
            "estimates": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                           for k, v in r.items()} for r in est.to_dict("records")],
        }

    def summary(self) -> str:
        lines = [f"Bootstrap: {self.n_ok} of {self.n_boot} replications used "
                 f"({self.n_failed} failed, {self.n_improper} improper); {self.ci} "
                 f"{self.level:.0%} intervals; seed {self.seed}"]
        if self.bollen_stine:
            bs = self.bollen_stine
            lines.append(f"Bollen-Stine bootstrap p = {bs['pvalue']:.3f} (chisq {bs['chisq']:.3f}, "
                         f"{bs['n_larger']} of {bs['n_ok']} bootstrap chisq larger)")
        p = self.params
        show = p[(p["free"] > 0) | (p["op"] == ":=")]
        for _, r in show.iterrows():
            name = f"{r['lhs']} {r['op']} {r['rhs']}"
            lines.append(f"  {name:<40} {r['est']:>9.3f} {r['se']:>8.3f}  [{r['ci.lower']:.3f}, {r['ci.upper']:.3f}]")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return "<pre>" + self.summary().replace("&", "&amp;").replace("<", "&lt;") + "</pre>"


def replication_warnings_record(caught: list, n_boot: int) -> dict | None:
    """The warnings of the replications as one record: how many, and the two most common.

    A warning from every replication (thousands of lines) would bury what matters.
    """
    if not caught:
        return None
    from collections import Counter

    kinds = Counter(str(w.message).splitlines()[0] for w in caught)
    common = "; ".join(f"{text} ({k}x)" for text, k in kinds.most_common(2))
    return {"type": "bootstrap", "category": "BootstrapWarning",
            "message": f"{len(caught)} warning(s) in the {n_boot} bootstrap replications, "
                       f"{len(kinds)} kind(s); most common: {common}"}


def _check_args(n_boot, ci, level):
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 2:
        raise OptionError(f"The 'n_boot' parameter of bootstrap_fit must be an int >= 2. Got {n_boot!r} instead.")
    if ci not in CI_TYPES:
        raise OptionError(f"The 'ci' parameter of bootstrap_fit must be one of {', '.join(CI_TYPES)}. "
                         f"Got {ci!r} instead.")
    if not 0 < level < 1:
        raise OptionError(f"The 'level' parameter of bootstrap_fit must be in (0, 1). Got {level!r} instead.")


def bootstrap_fit(fit, *, n_boot: int = 1000, ci: str = "perc", level: float = 0.95, seed: int | None = None,
                  bollen_stine: bool = False, data: pd.DataFrame | None = None, backend: str = "auto",
                  workers: int | None = None, scheduler: str | None = None,
                  progress: bool | None = None) -> BootstrapResult:
    """Bootstrap a :class:`~analysis.sem.results.FitResult` (ML, MLR, FIML, WLSMV).

    ``ci``: ``"perc"`` (lavaan's default), ``"bca.simple"`` (bias-corrected),
    ``"bca"`` (bias-corrected and accelerated), ``"norm"`` or ``"basic"``.
    ``bollen_stine=True`` adds the Bollen-Stine bootstrap p value of the
    model test (complete data only). ``backend``/``workers``/``scheduler`` as
    :func:`analysis.execution.run_replications`.
    """
    _check_args(n_boot, ci, level)
    if getattr(fit, "twolevel", None) is not None:
        raise OptionError("bootstrap of a two-level model is not available (its replications would have to "
                          "resample whole clusters); use its ML or MLR (cluster-robust) standard errors")
    opts = getattr(fit, "options", None) or {}
    if any(opts.get(k) for k in ("sampling_weights", "cluster", "strata")):
        raise OptionError("resampling respondents ignores the sample design (weights, clusters, strata); use "
                          "the design's replicate weights instead (analysis.design.replicate: rao_wu_bootstrap "
                          "and replicate_fit) or the cluster-robust standard errors of the fit")
    ctx = refitter(fit, data)
    root = np.random.SeedSequence(seed)
    boot_seq, bs_seq = root.spawn(2)
    reps = run_replications(_boot_one, int(n_boot), seed=boot_seq, context=ctx, backend=backend,
                            workers=workers, scheduler=scheduler, progress=progress,
                            description="bootstrap")
    X = np.array([r[0] for r in reps], float)
    ok = np.array([r[1] for r in reps], bool)
    improper = int(sum(r[2] for r in reps))

    pt = fit.params.copy()
    free_rows = pt.index[pt["free"] > 0]
    def_rows = pt.index[pt["op"] == ":="]
    x_names = list(getattr(fit.model, "x_names", [f"x{k + 1}" for k in range(X.shape[1])]))
    defined = _defined_draws(pt, X[ok]) if len(def_rows) else np.zeros((int(ok.sum()), 0))
    draws = pd.DataFrame(np.column_stack([X[ok], defined]),
                         columns=x_names + list(pt.loc[def_rows, "lhs"]))

    est_free = np.asarray(fit.x, float)
    est_def = pt.loc[def_rows, "est"].to_numpy(float)
    allest = np.concatenate([est_free, est_def])
    acc = None
    if ci == "bca":   # the acceleration from N leave-one-out refits (jackknife influence values)
        n_cases = sum(len(Y) for Y in ctx.data)
        # leave-one-out estimates differ from the full-sample one by ~1/N: refit them tightly
        jctx = Refitter(**{**ctx.__dict__, "gtol": 1e-7})
        jack = np.array(run_replications(_jack_one, n_cases, seed=0, context=jctx, backend=backend,
                                         workers=workers, scheduler=scheduler, progress=progress,
                                         description="jackknife (BCa)"), float)
        jack_def = _defined_draws(pt, jack) if len(def_rows) else np.zeros((n_cases, 0))
        acc = jackknife_acceleration(np.column_stack([jack, jack_def]))
    lim = bootstrap_ci(draws.to_numpy(), allest, ci=ci, level=level, acceleration=acc)
    se = draws.std(ddof=1).to_numpy() if len(draws) > 1 else np.full(len(allest), np.nan)

    pt["ci.method"] = ""
    nfree = len(est_free)
    for rows, sl in ((free_rows, slice(0, nfree)), (def_rows, slice(nfree, None))):
        if not len(rows):
            continue
        k = (pt.loc[rows, "free"].to_numpy(int) - 1) if sl.start == 0 else np.arange(len(rows)) + nfree
        pt.loc[rows, "se"] = se[k]
        pt.loc[rows, "ci.lower"] = lim[k, 0]
        pt.loc[rows, "ci.upper"] = lim[k, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = pt.loc[rows, "est"].to_numpy(float) / se[k]
        pt.loc[rows, "z"] = z
        pt.loc[rows, "pvalue"] = 2 * sps.norm.sf(np.abs(z))
        pt.loc[rows, "ci.method"] = f"bootstrap.{ci}"

    bs = None
    if bollen_stine:
        bs = _bollen_stine(fit, ctx, bs_seq, int(n_boot), backend, workers, scheduler, progress)
    return BootstrapResult(params=pt, draws=draws, n_boot=int(n_boot), n_failed=int((~ok).sum()),
                           n_improper=improper, failed=tuple(int(i) for i in np.flatnonzero(~ok)), ci=ci,
                           level=level, seed=seed, bollen_stine=bs)


def _defined_draws(pt: pd.DataFrame, X: np.ndarray) -> np.ndarray:
    dfn = DefinedParameters(pt)
    return np.array([dfn.values(x) for x in X]).reshape(len(X), len(dfn.names))


def bollen_stine_test(fit, *, n_boot: int = 1000, seed: int | None = None, data: pd.DataFrame | None = None,
                      backend: str = "auto", workers: int | None = None, scheduler: str | None = None,
                      progress: bool | None = None) -> dict:
    """The Bollen-Stine bootstrap p value of a fit's chi-square alone (lavaan's
    ``test = "bootstrap"``): ``{"chisq", "pvalue", "n_ok", "n_larger", "n_failed", ...}``."""
    _check_args(n_boot, "perc", 0.95)
    ctx = refitter(fit, data)
    _, bs_seq = np.random.SeedSequence(seed).spawn(2)   # the stream bootstrap_fit uses for it
    return _bollen_stine(fit, ctx, bs_seq, int(n_boot), backend, workers, scheduler, progress)


def _bollen_stine(fit, ctx: Refitter, seq, n_boot, backend, workers, scheduler, progress) -> dict:
    if any(np.isnan(Y).any() for Y in ctx.data) or not ctx.fast:
        raise OptionError("the Bollen-Stine bootstrap needs complete data and a normal-theory ML fit "
                         "(as lavaan: not with missing data or ordered variables)")
    moments = fit.model.implied(fit.x)
    sig = [m.sigma for m in moments]
    mu = [m.mu if fit.model.meanstructure else None for m in moments]
    tctx = Refitter(**{**ctx.__dict__, "data": bollen_stine_transform(ctx.data, sig, mu)})
    reps = run_replications(_bs_one, n_boot, seed=seq, context=tctx, backend=backend, workers=workers,
                            scheduler=scheduler, progress=progress, description="Bollen-Stine")
    t = np.array([c for ok, c in reps if ok], float)
    chisq = float(fit.fit_indices["chisq"])
    larger = int(np.sum(t > chisq))
    # lavaan's p: the share of bootstrap statistics above the observed one
    return {"chisq": chisq, "pvalue": larger / len(t) if len(t) else math.nan, "n_ok": int(len(t)),
            "n_larger": larger, "n_failed": int(n_boot - len(t)),
            "boot_chisq_mean": float(t.mean()) if len(t) else math.nan}
