"""Sandwich standard errors and scaled test statistics, shared by MLM, MLR/FIML and WLSMV.

Formulas as lavaan 0.6 implements them (read there, nothing copied): the
sandwich ``A^-1 B A^-1 / N``; the traces of ``U Gamma`` behind the
Satorra-Bentler, mean-and-variance adjusted and scaled-shifted statistics; the
Yuan-Bentler (Mplus) scaling factor of MLR; the ADF Gamma of complete data.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.sem import distributions as stats

__all__ = ["sandwich", "ugamma_traces", "satorra_bentler", "scaled_shifted", "mean_var_adjusted",
           "scaled_test", "yuan_bentler_mplus", "pchisq", "group_arrays", "group_rows", "adf_gamma"]


def sandwich(a_inv: np.ndarray, b: np.ndarray, n: float) -> np.ndarray:
    """Huber-White covariance ``A^-1 B A^-1 / N`` (unit-information A and B)."""
    v = a_inv @ b @ a_inv / n
    return 0.5 * (v + v.T)


def ugamma_traces(V, Delta, E_inv, Gamma, nobs):
    """``tr(U Gamma)`` and ``tr((U Gamma)^2)`` over groups (lavaan's "original" method).

    V, Delta, Gamma: lists per group (unit weight matrix, model Jacobian, asymptotic
    covariance of the sample statistics). E_inv: inverse of
    ``sum_g f_g Delta_g' V_g Delta_g`` with ``f_g = N_g / N``.
    """
    nobs = np.asarray(nobs, dtype=float)
    fg = nobs / nobs.sum()
    VD = [f * v @ d for f, v, d in zip(fg, V, Delta)]                  # f_g V_g Delta_g
    from scipy.linalg import block_diag

    # U = bdiag(f V) - [f V Delta] E^-1 [f V Delta]'
    VDall = np.vstack(VD)
    U = block_diag(*[f * v for f, v in zip(fg, V)]) - VDall @ E_inv @ VDall.T
    G = block_diag(*[gam / f for gam, f in zip(Gamma, fg)])
    UG = U @ G
    return float(np.trace(UG)), float(np.sum(UG * UG.T))


def satorra_bentler(chisq: float, df: int, trace_ug: float) -> dict:
    """Mean-scaled statistic ``T / c`` with ``c = tr(U Gamma) / df``."""
    c = trace_ug / df if df > 0 else np.nan
    scaled = chisq / c if df > 0 else 0.0
    return {"chisq.scaled": scaled, "df.scaled": df,
            "pvalue.scaled": pchisq(scaled, df), "chisq.scaling.factor": c,
            "trace.UGamma": trace_ug, "test.scaled": "satorra.bentler", "method": "satorra.bentler"}


def scaled_shifted(chisq: float, df: int, trace_ug: float, trace_ug2: float) -> dict:
    """Mean-and-variance adjusted statistic ``a T + b`` (Asparouhov & Muthén 2010)."""
    if df <= 0:
        return {"chisq.scaled": 0.0, "df.scaled": df, "pvalue.scaled": np.nan,
                "chisq.scaling.factor": np.nan, "chisq.shift.parameter": np.nan,
                "test.scaled": "scaled.shifted", "method": "scaled.shifted"}
    a = np.sqrt(df / trace_ug2)
    shift = df - a * trace_ug
    scaled = chisq * a + shift
    return {"chisq.scaled": scaled, "df.scaled": df, "pvalue.scaled": pchisq(scaled, df),
            "chisq.scaling.factor": 1.0 / a, "chisq.shift.parameter": shift,
            "chisq.shift.parameters": shift,   # the name analysis.sem reads for TestStatistic.shift
            "trace.UGamma": trace_ug, "trace.UGamma2": trace_ug2,
            "test.scaled": "scaled.shifted", "method": "scaled.shifted"}


def mean_var_adjusted(chisq: float, df: int, trace_ug: float, trace_ug2: float) -> dict:
    """Satterthwaite's mean-and-variance adjusted statistic: ``T / c`` on ``d`` degrees of
    freedom, ``c = tr((U Gamma)^2) / tr(U Gamma)``, ``d = tr(U Gamma)^2 / tr((U Gamma)^2)``
    (lavaan's test = "mean.var.adjusted"; d is not rounded)."""
    if df <= 0:
        return {"chisq.scaled": 0.0, "df.scaled": df, "pvalue.scaled": np.nan,
                "chisq.scaling.factor": np.nan, "test.scaled": "mean.var.adjusted",
                "method": "mean.var.adjusted"}
    c = trace_ug2 / trace_ug
    d = trace_ug ** 2 / trace_ug2
    if c <= 0:      # tr(U Gamma) < 0 (e.g. a baseline under the h1 observed information): lavaan's NA
        c = np.nan
    scaled = chisq / c
    return {"chisq.scaled": scaled, "df.scaled": d, "pvalue.scaled": pchisq(scaled, d),
            "chisq.scaling.factor": c, "trace.UGamma": trace_ug, "trace.UGamma2": trace_ug2,
            "test.scaled": "mean.var.adjusted", "method": "mean.var.adjusted"}


def scaled_test(kind: str, chisq: float, df: int, trace_ug: float, trace_ug2: float) -> dict:
    """The Satorra-Bentler family of scaled statistics from the traces of U Gamma
    (``yuan.bentler`` with the expected information equals ``satorra.bentler``)."""
    if kind in ("satorra.bentler", "yuan.bentler"):
        out = satorra_bentler(chisq, df, trace_ug)
        out["test.scaled"] = out["method"] = kind
        return out
    if kind == "scaled.shifted":
        return scaled_shifted(chisq, df, trace_ug, trace_ug2)
    if kind == "mean.var.adjusted":
        return mean_var_adjusted(chisq, df, trace_ug, trace_ug2)
    raise ValueError(f"unknown scaled test {kind!r}")


def yuan_bentler_mplus(chisq: float, df: int, trace_h1: float, trace_h0: float,
                       ndat: int | None = None, npar: int | None = None) -> dict:
    """Yuan-Bentler scaled statistic, Mplus variant: c = (tr(A1^-1 B1) - tr(E^-1 B0)) / df."""
    trace_ug = trace_h1 - trace_h0
    extra = {}
    if ndat and npar:
        extra = {"scaling.factor.h1": trace_h1 / ndat, "scaling.factor.h0": trace_h0 / npar}
    c = trace_ug / df if df > 0 else np.nan
    if df > 0 and c < 0:
        c = np.nan
    scaled = chisq / c if df > 0 else 0.0
    return {"chisq.scaled": scaled, "df.scaled": df, "pvalue.scaled": pchisq(scaled, df),
            "chisq.scaling.factor": c, "trace.UGamma": trace_ug,
            "test.scaled": "yuan.bentler.mplus", "method": "yuan.bentler.mplus", **extra}


def pchisq(x, df):
    if df <= 0 or not np.isfinite(x):
        return np.nan
    return float(stats.chi2.sf(x, df))


def group_arrays(check, model) -> list[np.ndarray]:
    """Raw data per group (columns in ``model.ov_names[g]`` order) from a DataCheck."""
    data = check.data
    extra = [c for c in data.columns if c not in set(check.variables)]
    if model.n_groups == 1 or not extra:
        return [data[model.ov_names[0]].to_numpy(dtype=float)]
    gcol = extra[0]
    # groups in fit_sem's order (lavaan: order of appearance in the data)
    labels = [str(v) for v in pd.unique(data[gcol])]
    key = data[gcol].astype(str)
    return [data.loc[key == lab, model.ov_names[g]].to_numpy(dtype=float) for g, lab in enumerate(labels)]


def group_rows(check, model) -> list[np.ndarray]:
    """Positions (in ``check.data``) of each group's rows, in the order of :func:`group_arrays`."""
    data = check.data
    extra = [c for c in data.columns if c not in set(check.variables)]
    if model.n_groups == 1 or not extra:
        return [np.arange(len(data))]
    key = data[extra[0]].astype(str).to_numpy()
    return [np.flatnonzero(key == lab) for lab in pd.unique(data[extra[0]].astype(str))]


def adf_gamma(Y: np.ndarray, means: bool, x_idx=()) -> np.ndarray:
    """Asymptotic covariance of [ybar, vech S] (N divisor, lavaan's Gamma for MLM).

    With fixed.x covariates ``x_idx``, lavaan's version: the moment contributions minus
    those of the data with every other variable replaced by its regression on the covariates
    (so the covariates' own moments get zero rows).
    """
    n, p = Y.shape
    r, c = np.tril_indices(p)
    order = np.lexsort((r, c))
    r, c = r[order], c[order]

    def contributions(A):
        ac = A - A.mean(axis=0)
        z = ac[:, r] * ac[:, c]
        return np.hstack([A, z]) if means else z

    z = contributions(Y)
    x_idx = list(x_idx)
    if x_idx:
        X = np.column_stack([np.ones(n), Y[:, x_idx]])
        rest = [j for j in range(p) if j not in x_idx]
        coef, *_ = np.linalg.lstsq(X, Y[:, rest], rcond=None)
        Yhat = Y.copy()
        Yhat[:, rest] = X @ coef
        z = z - contributions(Yhat)
    z = z - z.mean(axis=0)
    return z.T @ z / n
