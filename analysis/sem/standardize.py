"""Standardized solutions (``std.lv``, ``std.all``) and R-square, as lavaan.

std.lv scales latent variables to unit variance (total, model-implied);
std.all also scales observed variables by their implied standard deviation.
Covariances are divided by the square roots of the two *parameter*
variances (lavaan's ``cov.std = TRUE``, i.e. residual correlations).
Defined parameters (``:=``) are re-evaluated on the standardized values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


__all__ = ["standardize", "rsquare", "standardized_se"]


def _scales(model, x):
    """Per group: dict name -> total SD (all variables), and the ov/lv name sets."""
    out = []
    for g, (vall, _) in enumerate(model.implied_all(x)):
        names = model.group_maps[g].names
        sd = {n: np.sqrt(vall[i, i]) if vall[i, i] >= 0 else np.nan for i, n in enumerate(names)}
        # ordered variables: the variances of their latent responses before the ~*~ scale
        # factors (lavaan's VY), so that groups with free scales are standardized as lavaan
        out.append((sd, set(model.ov_names[g]), set(model.lv_names[g])))
    return out


class Standardizer:
    """std.lv and std.all of every row of a table as arrays, compiled once for a table and its
    model, so that they can be evaluated cheaply at many parameter vectors (delta method)."""

    def __init__(self, pt: pd.DataFrame, model):
        from analysis.sem.defined import DefinedParameters
        from analysis.sem.syntax import EXPRESSION_OPS

        self.model = model
        self.ops, self.lhs, self.rhs = (pt[c].tolist() for c in ("op", "lhs", "rhs"))
        grp = pt["group"].tolist()
        self.free = pt["free"].to_numpy()
        self.expr = pt["op"].isin(EXPRESSION_OPS).to_numpy()
        self.rows = [[k for k in range(len(grp)) if grp[k] == g] for g in model.groups]
        # the residual variance row of each variable (residual covariances use its square root)
        self.var_row = [{self.lhs[k]: k for k in idx if self.ops[k] == "~~" and self.lhs[k] == self.rhs[k]}
                        for idx in self.rows]
        self.defined = (pt["op"] == ":=").to_numpy()
        self.dp = DefinedParameters(pt) if self.defined.any() else None
        labels: dict[str, int] = {}
        for k, (lab, g) in enumerate(zip(pt["label"].tolist(), grp)):
            if lab and g > 0 and lab not in labels:
                labels[lab] = k
        self.label_rows = labels

    def est(self, x: np.ndarray) -> np.ndarray:
        """Row values at ``x``: free rows from ``x``, fixed rows their (current) value."""
        est = self.model.partable["ustart"].to_numpy(dtype=float).copy()
        est[self.free > 0] = np.asarray(x, float)[self.free[self.free > 0] - 1]
        est[self.expr] = np.nan
        return est

    def __call__(self, x: np.ndarray, est: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        est = self.est(x) if est is None else np.asarray(est, dtype=float)
        std_lv, std_all = est.copy(), est.copy()
        ops, lhs, rhs = self.ops, self.lhs, self.rhs
        for gi, (sd, ov, lv) in enumerate(_scales(self.model, x)):
            var_row = self.var_row[gi]

            def rv(name):
                k = var_row.get(name)
                return np.sqrt(abs(est[k])) if k is not None and est[k] != 0 else sd[name]

            for k in self.rows[gi]:
                op, l, r, e = ops[k], lhs[k], rhs[k], est[k]
                a = b = e
                if op == "=~":
                    a = e * sd[l] / (sd[r] if r in lv else 1.0)
                    b = a / (sd[r] if r in ov else 1.0)
                elif op == "~":
                    a = e * (sd[r] if r in lv else 1.0) / (sd[l] if l in lv else 1.0)
                    b = a * (sd[r] if r in ov else 1.0) / (sd[l] if l in ov else 1.0)
                elif op == "~~":
                    if l == r:
                        if l in lv:
                            a = b = e / sd[l] ** 2
                        else:
                            a, b = e, e / sd[l] ** 2
                    else:
                        a = e / (rv(l) if l in lv else 1.0) / (rv(r) if r in lv else 1.0)
                        b = a / (rv(l) if l in ov else 1.0) / (rv(r) if r in ov else 1.0)
                elif op == "~1":
                    if l in lv:
                        a = b = e / sd[l]
                    else:
                        a, b = e, e / sd[l]
                elif op == "|":
                    a, b = e, e / sd[l]
                elif op == "~*~":
                    a, b = e, 1.0
                std_lv[k], std_all[k] = a, b
        if self.dp is not None:   # := re-evaluated on the standardized values of its labels
            for col in (std_lv, std_all):
                env = {lab: float(col[k]) for lab, k in self.label_rows.items()}
                col[self.defined] = self.dp.values(x, env)
        return std_lv, std_all


def standardize(pt: pd.DataFrame, model, x: np.ndarray) -> pd.DataFrame:
    """Return ``pt`` with the ``std.lv`` and ``std.all`` columns filled (``est`` must be set)."""
    pt = pt.copy()
    pt["std.lv"], pt["std.all"] = Standardizer(pt, model)(x, est=pt["est"].to_numpy(dtype=float))
    return pt


def standardized_se(model, x: np.ndarray, vcov: np.ndarray, *, prepare=None) -> dict[str, np.ndarray]:
    """Delta-method standard errors of ``std.lv`` and ``std.all``, in the order of
    ``model.partable``'s rows (lavaan's ``standardizedSolution()``: ``sqrt(diag(J V J'))`` with
    J the Jacobian of the standardized values in the free parameters, here by central
    differences; fixed rows get SEs too, since their standardized values move with the free
    ones). ``prepare(x)``: sets values that depend on ``x`` outside it (WLSMV's delta
    residual variances); it is called back at ``x`` at the end."""
    x = np.asarray(x, dtype=float)
    std = Standardizer(model.partable, model)
    n_rows = len(model.partable)
    jac_lv, jac_all = np.zeros((n_rows, len(x))), np.zeros((n_rows, len(x)))
    for k in range(len(x)):
        h = 1e-6 * max(1.0, abs(x[k]))
        xp, xm = x.copy(), x.copy()
        xp[k] += h
        xm[k] -= h
        if prepare is not None:
            prepare(xp)
        lv_p, all_p = std(xp)
        if prepare is not None:
            prepare(xm)
        lv_m, all_m = std(xm)
        jac_lv[:, k] = (lv_p - lv_m) / (2 * h)
        jac_all[:, k] = (all_p - all_m) / (2 * h)
    if prepare is not None:
        prepare(x)
    out = {}
    for col, jac in (("std.lv", jac_lv), ("std.all", jac_all)):
        var = np.einsum("ij,jk,ik->i", jac, vcov, jac)
        out[col] = np.sqrt(np.maximum(var, 0.0))
    return out


def rsquare(pt: pd.DataFrame, model, x: np.ndarray) -> pd.DataFrame:
    """R-square of endogenous variables (indicators, dependent observed and latent variables)."""
    rows = []
    alls = model.implied_all(x)
    table = list(zip(pt["lhs"], pt["op"], pt["rhs"], pt["group"], pt["est"]))
    for gi, g in enumerate(model.groups):
        vall, _ = alls[gi]
        names = model.group_maps[gi].names
        sub = [t for t in table if t[3] == g]
        endo = list(dict.fromkeys([r for l, o, r, _, _ in sub if o == "=~"]
                                  + [l for l, o, r, _, _ in sub if o == "~"]))
        resid = {l: e for l, o, r, _, e in sub if o == "~~" and l == r}
        for v in endo:
            if v not in resid:
                continue
            # ordered items: the latent response's variance before its ~*~ scale (lavaan's VY)
            total = vall[names.index(v), names.index(v)]
            rows.append({"lhs": v, "group": g, "r2": 1.0 - float(resid[v]) / total})
    return pd.DataFrame(rows, columns=["lhs", "group", "r2"])
