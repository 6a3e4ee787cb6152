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

from .defined import defined_values

__all__ = ["standardize", "rsquare"]


def _scales(model, x):
    """Per group: dict name -> total SD (all variables), and the ov/lv name sets."""
    out = []
    implied = model.implied(x)
    for g, (vall, _) in enumerate(model.implied_all(x)):
        names = model._g[g].names
        sd = {n: np.sqrt(vall[i, i]) if vall[i, i] >= 0 else np.nan for i, n in enumerate(names)}
        # observed: implied Sigma (includes scales of ordered variables)
        for i, n in enumerate(model.ov_names[g]):
            v = implied[g].sigma[i, i]
            sd[n] = np.sqrt(v) if v >= 0 else np.nan
        out.append((sd, set(model.ov_names[g]), set(model.lv_names[g])))
    return out


def standardize(pt: pd.DataFrame, model, x: np.ndarray) -> pd.DataFrame:
    """Return ``pt`` with the ``std.lv`` and ``std.all`` columns filled (``est`` must be set)."""
    pt = pt.copy()
    est = pt["est"].to_numpy(dtype=float)
    std_lv = est.copy()
    std_all = est.copy()
    groups = model.groups
    scales = _scales(model, x)
    ops, lhs, rhs, grp = (pt[c].tolist() for c in ("op", "lhs", "rhs", "group"))
    for gi, g in enumerate(groups):
        sd, ov, lv = scales[gi]
        idx = [k for k in range(len(ops)) if grp[k] == g]
        var_est = {lhs[k]: est[k] for k in idx if ops[k] == "~~" and lhs[k] == rhs[k]}

        def rv(name):
            v = var_est.get(name)
            return np.sqrt(abs(v)) if v is not None and v != 0 else sd[name]

        for k in idx:
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
    pt["std.lv"], pt["std.all"] = std_lv, std_all
    defined = (pt["op"] == ":=").to_numpy()
    if defined.any():
        for col in ("std.lv", "std.all"):
            vals = defined_values(pt, x, values=col)
            out = pt[col].to_numpy(dtype=float).copy()
            out[defined] = [vals[n] for n in pt.loc[defined, "lhs"]]
            pt[col] = out
    return pt


def rsquare(pt: pd.DataFrame, model, x: np.ndarray) -> pd.DataFrame:
    """R-square of endogenous variables (indicators, dependent observed and latent variables)."""
    rows = []
    implied = model.implied(x)
    alls = model.implied_all(x)
    table = list(zip(pt["lhs"], pt["op"], pt["rhs"], pt["group"], pt["est"]))
    for gi, g in enumerate(model.groups):
        vall, _ = alls[gi]
        names = model._g[gi].names
        sub = [t for t in table if t[3] == g]
        endo = list(dict.fromkeys([r for l, o, r, _, _ in sub if o == "=~"]
                                  + [l for l, o, r, _, _ in sub if o == "~"]))
        resid = {l: e for l, o, r, _, e in sub if o == "~~" and l == r}
        ov = model.ov_names[gi]
        for v in endo:
            if v not in resid:
                continue
            if v in ov:
                i = ov.index(v)
                total = implied[gi].sigma[i, i]
            else:
                total = vall[names.index(v), names.index(v)]
            rows.append({"lhs": v, "group": g, "r2": 1.0 - float(resid[v]) / total})
    return pd.DataFrame(rows, columns=["lhs", "group", "r2"])
