"""Starting values and the optimizer.

``start_values`` plays the role of lavaan's ``lav_start``: loadings from
ratios of sample covariances (a Spearman-style estimate, robust to the
marker's scale), factor variances from the marker's covariances, residual
variances from the implied communality, zero for paths and covariances,
sample means for intercepts.

``minimize`` runs Fisher scoring (Gauss-Newton with the expected
information) with a backtracking line search, to a tight gradient tolerance;
if scoring fails it falls back to scipy's BFGS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from analysis.sem.distributions import norm

from analysis.sem.syntax import EXPRESSION_OPS

__all__ = ["start_values", "minimize", "OptimizeResult"]


def _median(values, default):
    vals = [v for v in values if np.isfinite(v)]
    return float(np.median(vals)) if vals else default


def start_values(pt: pd.DataFrame, stats) -> np.ndarray:
    """Start value of every row of ``pt`` (NaN for expression rows); user values win."""
    start = np.full(len(pt), np.nan)
    cols = [pt[c].tolist() for c in ("lhs", "op", "rhs", "free", "exo", "ustart", "group")]
    table = [(k, *row) for k, row in enumerate(zip(*cols)) if row[1] not in EXPRESSION_OPS]
    for gi, g in enumerate(sorted({row[7] for row in table if row[7] > 0})):
        ov = list(stats.ov_names)
        pos = {v: i for i, v in enumerate(ov)}
        S = stats.cov[gi]
        mean = stats.mean[gi]
        sub = [row for row in table if row[7] == g]
        lv = list(dict.fromkeys(row[1] for row in sub if row[2] == "=~"))
        lam: dict[tuple[str, str], float] = {}
        psi: dict[str, float] = {}
        for f in lv:
            rows = [row for row in sub if row[2] == "=~" and row[1] == f]
            inds = [row[3] for row in rows if row[3] in pos]
            marker = [row for row in rows if row[4] == 0 and row[3] in pos]
            mk = marker[0][3] if marker else None
            mval = float(marker[0][6]) if marker else 1.0
            if mk is not None and mval != 0:
                m = pos[mk]
                for x in inds:
                    if x == mk:
                        lam[(f, x)] = mval
                        continue
                    i = pos[x]
                    others = [pos[k] for k in inds if k not in (x, mk)]
                    lam[(f, x)] = mval * _median([S[i, k] / S[m, k] for k in others if S[m, k] != 0],
                                                 np.sign(S[i, m]) or 1.0)
                others = [k for k in inds if k != mk]
                psi[f] = _median([S[m, pos[k]] / (mval * lam[(f, k)]) for k in others
                                  if lam[(f, k)] != 0], 0.5 * S[m, m] / mval ** 2)
            else:
                ref = pos[inds[0]] if inds else None
                for x in inds:
                    i = pos[x]
                    others = [pos[k] for k in inds if k != x]
                    comm = _median([S[i, a] * S[i, b] / S[a, b] for a in others for b in others
                                    if a < b and S[a, b] != 0], 0.5 * S[i, i])
                    comm = min(max(comm, 0.1 * S[i, i]), 0.9 * S[i, i])
                    sign = np.sign(S[i, ref]) if ref is not None and ref != i and S[i, ref] != 0 else 1.0
                    lam[(f, x)] = sign * np.sqrt(comm)
                psi[f] = 1.0
            psi[f] = max(psi[f], 0.05) if np.isfinite(psi[f]) else 0.05
        comm_ov: dict[str, float] = {}
        for (f, x), l in lam.items():
            comm_ov[x] = comm_ov.get(x, 0.0) + l * l * psi[f]
        n_th: dict[str, int] = {}
        for row in sub:
            if row[2] == "|":
                n_th[row[1]] = n_th.get(row[1], 0) + 1
        for k, l, op, r, free, exo, ustart, _ in sub:
            if free == 0 and exo == 0:
                start[k] = ustart
                continue
            if exo == 1:
                if op == "~~":
                    start[k] = S[pos[l], pos[r]]
                elif op == "~1":
                    start[k] = mean[pos[l]] if mean is not None else 0.0
                continue
            if np.isfinite(ustart):
                start[k] = ustart
                continue
            if op == "=~":
                start[k] = lam.get((l, r), 1.0)
            elif op == "~~" and l == r:
                if l in pos:
                    s = S[pos[l], pos[l]]
                    c = comm_ov.get(l)
                    start[k] = 0.5 * s if c is None else min(max(s - c, 0.1 * s), 0.9 * s)
                else:
                    start[k] = psi.get(l, 0.05)
            elif op == "~1":
                start[k] = mean[pos[l]] if (l in pos and mean is not None) else 0.0
            elif op == "|":
                start[k] = norm.ppf(int(r[1:]) / (n_th[l] + 1))
            elif op == "~*~":
                start[k] = 1.0
            else:
                start[k] = 0.0
    return start


@dataclass
class OptimizeResult:
    x: np.ndarray
    fun: float
    grad: np.ndarray
    iterations: int
    converged: bool
    message: str
    method: str


def _gnorm(g):
    return float(np.max(np.abs(g))) if len(g) else 0.0


_BLAS = None


def _single_thread_blas():
    """Limit BLAS to one thread: SEM matrices are small, and OpenBLAS threads on a busy
    machine cost 10-20x (measured: 0.7 ms vs 14 ms for a 25-item information matrix)."""
    global _BLAS
    try:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        return _BLAS.limit(limits=1, user_api="blas")
    except Exception:  # pragma: no cover - threadpoolctl missing or failing: run as is
        import contextlib

        return contextlib.nullcontext()


def minimize(est, x0: np.ndarray, **kwargs) -> OptimizeResult:
    """Minimize ``est.objective`` from ``x0`` (see :func:`_minimize`), BLAS single-threaded."""
    with _single_thread_blas():
        return _minimize(est, x0, **kwargs)


def _minimize(est, x0: np.ndarray, *, gtol: float = 1e-9, xtol: float = 1e-10, ftol: float = 1e-15,
             max_iter: int = 500,
             scoring_iterations: int = 4) -> OptimizeResult:
    """Minimize ``est.objective`` from ``x0``.

    Stops when the gradient is below ``gtol``, or when the Newton decrement
    ``g' H^-1 g`` (about twice the distance to the minimum in objective units)
    is below ``ftol``, i.e. at the rounding level of the objective.

    Fisher scoring (the expected information as Hessian) for the first
    ``scoring_iterations`` steps, then quasi-Newton: BFGS updates of that
    information matrix with the analytic gradients, which turns scoring's
    linear convergence into a superlinear one. Backtracking line search
    throughout; BFGS from scipy as a last resort.
    """
    x = np.asarray(x0, dtype=float).copy()
    n = len(x)
    if n == 0:
        f = est.objective(x)
        return OptimizeResult(x, f, np.zeros(0), 0, np.isfinite(f), "no free parameters", "none")
    step_fn = getattr(est, "scoring_step", None)

    def evaluate(z, with_info):
        if step_fn is not None:
            return step_fn(z, with_info)
        f = est.objective(z)
        if not np.isfinite(f):
            return f, None, None
        return f, est.gradient(z), (est.information(z) if with_info else None)

    f, g, H = evaluate(x, True)
    if not np.isfinite(f) or H is None:
        return _fallback(est, x, 0, "the start values give a non-positive-definite implied covariance",
                         max_iter)
    it = 0
    for it in range(1, max_iter + 1):
        if _gnorm(g) < gtol:
            return OptimizeResult(x, f, g, it - 1, True, "converged", "scoring-bfgs")
        scoring = it <= scoring_iterations
        try:
            dx = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            dx = np.linalg.lstsq(H, g, rcond=None)[0]
        slope = float(g @ dx)
        if np.isfinite(slope) and 0 <= slope < ftol or np.max(np.abs(dx)) < xtol * (1 + np.max(np.abs(x))):
            # the Newton decrement / step is at the floating-point floor of the objective
            return OptimizeResult(x, f, g, it - 1, True, "converged (step below tolerance)", "scoring-bfgs")
        if not np.isfinite(slope) or slope <= 0:
            H = est.information(x) if not scoring else np.eye(n)
            dx = np.linalg.lstsq(H, g, rcond=None)[0]
            slope = float(g @ dx)
            if not np.isfinite(slope) or slope <= 0:
                dx, slope = g, float(g @ g)
        t = 1.0
        next_scoring = it + 1 <= scoring_iterations
        for _ in range(40):
            xn = x - t * dx
            fn, gn, Hn = evaluate(xn, next_scoring)
            if np.isfinite(fn) and fn <= f - 1e-4 * t * slope and (fn < f or t == 1.0):
                break
            t *= 0.5
        else:
            # no decrease found: fine if the predicted decrease is below the objective's rounding
            if slope < 1e3 * ftol or _gnorm(g) < 1e3 * gtol:
                return OptimizeResult(x, f, g, it, True, "converged (objective flat)", "scoring-bfgs")
            return _fallback(est, x, it, "line search failed", max_iter)
        if next_scoring:
            H = Hn
        else:
            s_, y_ = xn - x, gn - g
            sy = float(s_ @ y_)
            if sy > 1e-16 * float(s_ @ s_) ** 0.5 * float(y_ @ y_) ** 0.5 and sy > 0:
                Hs = H @ s_
                H = H - np.outer(Hs, Hs) / float(s_ @ Hs) + np.outer(y_, y_) / sy
        x, f, g = xn, fn, gn
    return OptimizeResult(x, f, g, it, False, f"iteration limit ({max_iter}) reached", "scoring-bfgs")


def _fallback(est, x, iterations, why, max_iter=5000) -> OptimizeResult:
    """scipy BFGS from ``x`` with the iterations left; converged only if the gradient is small."""
    budget = max_iter - iterations
    if budget <= 0:
        g = est.gradient(x)
        return OptimizeResult(x, float(est.objective(x)), g, iterations, False, why, "scoring-bfgs")

    def fun(z):
        v = est.objective(z)
        return v if np.isfinite(v) else 1e10

    from scipy import optimize as spo  # the fallback only: importing scipy.optimize costs a fast command 0.1 s

    res = spo.minimize(fun, x, jac=lambda z: np.nan_to_num(est.gradient(z), nan=0.0), method="BFGS",
                       options={"gtol": 1e-10, "maxiter": budget})
    g = est.gradient(res.x)
    ok = bool(np.all(np.isfinite(g)) and _gnorm(g) < 1e-6 and np.isfinite(est.objective(res.x)))
    return OptimizeResult(res.x, float(res.fun), g, iterations + int(res.nit), ok,
                          f"{why}; BFGS: {res.message}", "bfgs")
