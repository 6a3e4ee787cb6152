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
    model, so that they can be evaluated cheaply at many parameter vectors (delta method).

    Every standardized value is the estimate times at most one scale and divided by at most
    two: total SDs of the variables (sd), their squares (sd2) and, for covariances, the square
    roots of the two parameter variances (rv; lavaan's ``cov.std = TRUE``). Which scales a row
    uses depends only on its op and on whether its variables are latent or observed, so it is
    worked out once here; an evaluation is a few array operations on the scale vector
    ``[sd, sd2, rv of group 1, ..., 1.0]``."""

    def __init__(self, pt: pd.DataFrame, model):
        from analysis.sem.defined import DefinedParameters
        from analysis.sem.syntax import EXPRESSION_OPS

        self.model = model
        ops, lhs, rhs = (pt[c].tolist() for c in ("op", "lhs", "rhs"))
        grp = pt["group"].tolist()
        self.free = pt["free"].to_numpy()
        self.expr = pt["op"].isin(EXPRESSION_OPS).to_numpy()
        self.ustart = model.partable["ustart"].to_numpy(dtype=float)
        n = len(ops)
        self.sizes = [len(model.group_maps[g].names) for g in range(len(model.groups))]
        one = 3 * sum(self.sizes)                 # the slot holding 1.0
        num_a, num_b = np.full(n, one), np.full(n, one)
        den_a, den_b = np.full((n, 2), one), np.full((n, 2), one)
        self.unit_b = np.zeros(n, dtype=bool)     # ~*~ rows: std.all is 1
        self.var_rows = []                        # per group: residual variance row of each variable, or -1
        offset = 0
        for gi, g in enumerate(model.groups):
            names = model.group_maps[gi].names
            m = len(names)
            pos = {v: i for i, v in enumerate(names)}
            ov, lv = set(model.ov_names[gi]), set(model.lv_names[gi])
            rows = [k for k in range(n) if grp[k] == g]
            var_row = {lhs[k]: k for k in rows if ops[k] == "~~" and lhs[k] == rhs[k]}
            self.var_rows.append(np.array([var_row.get(v, -1) for v in names], dtype=int))

            def sd(v, _pos=pos, _o=offset):
                return _o + _pos[v]

            def sd2(v, _pos=pos, _o=offset, _m=m):
                return _o + _m + _pos[v]

            def rv(v, _pos=pos, _o=offset, _m=m):
                return _o + 2 * _m + _pos[v]

            for k in rows:
                op, l, r = ops[k], lhs[k], rhs[k]
                if op == "=~":
                    num_a[k] = num_b[k] = sd(l)
                    if r in lv:
                        den_a[k, 0] = den_b[k, 0] = sd(r)
                    elif r in ov:
                        den_b[k, 0] = sd(r)
                elif op == "~":
                    if r in lv:
                        num_a[k] = num_b[k] = sd(r)
                    elif r in ov:
                        num_b[k] = sd(r)
                    if l in lv:
                        den_a[k, 0] = den_b[k, 0] = sd(l)
                    elif l in ov:
                        den_b[k, 0] = sd(l)
                elif op == "~~" and l == r:
                    den_b[k, 0] = sd2(l)
                    if l in lv:
                        den_a[k, 0] = sd2(l)
                elif op == "~~":
                    for j, v in enumerate((l, r)):
                        if v in lv:
                            den_a[k, j] = den_b[k, j] = rv(v)
                        elif v in ov:
                            den_b[k, j] = rv(v)
                elif op == "~1":
                    den_b[k, 0] = sd(l)
                    if l in lv:
                        den_a[k, 0] = sd(l)
                elif op == "|":
                    den_b[k, 0] = sd(l)
                elif op == "~*~":
                    self.unit_b[k] = True
            offset += 3 * m
        self.num_a, self.num_b, self.den_a, self.den_b = num_a, num_b, den_a, den_b
        self.defined = (pt["op"] == ":=").to_numpy()
        self.dp = DefinedParameters(pt) if self.defined.any() else None
        labels: dict[str, int] = {}
        for k, (lab, g) in enumerate(zip(pt["label"].tolist(), grp)):
            if lab and g > 0 and lab not in labels:
                labels[lab] = k
        self.label_rows = labels

    def est(self, x: np.ndarray) -> np.ndarray:
        """Row values at ``x``: free rows from ``x``, fixed rows their (current) value."""
        est = self.ustart.copy()
        est[self.free > 0] = np.asarray(x, float)[self.free[self.free > 0] - 1]
        est[self.expr] = np.nan
        return est

    def scales(self, x: np.ndarray, est: np.ndarray) -> np.ndarray:
        """The scale vector at ``x``: per group sd, sd^2 and rv of every variable, then 1."""
        parts = []
        x = np.asarray(x, dtype=float)
        for grp, var_row in zip(self.model.group_maps, self.var_rows):
            # the total variances: diag(B S B') with B = (I - A)^-1, no full product needed
            A, S = grp.fill(x)[:2]
            B = np.linalg.inv(grp.I - A)
            d = np.einsum("ij,ij->i", B @ S, B)
            with np.errstate(invalid="ignore"):
                sd = np.sqrt(np.where(d >= 0, d, np.nan))
            has = var_row >= 0
            ev = np.where(has, est[np.where(has, var_row, 0)], 0.0)
            rv = np.where(has & (ev != 0), np.sqrt(np.abs(ev)), sd)
            parts += [sd, sd ** 2, rv]
        parts.append(np.ones(1))
        return np.concatenate(parts)

    def __call__(self, x: np.ndarray, est: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        est = self.est(x) if est is None else np.asarray(est, dtype=float)
        s = self.scales(x, est)
        with np.errstate(divide="ignore", invalid="ignore"):
            std_lv = est * s[self.num_a] / s[self.den_a[:, 0]] / s[self.den_a[:, 1]]
            std_all = est * s[self.num_b] / s[self.den_b[:, 0]] / s[self.den_b[:, 1]]
        std_all[self.unit_b] = 1.0
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
