"""Adapter to semopy, the second engine used for cross-checks and benchmarks.

This is the only module that imports semopy. ``fit_semopy`` fits model
syntax with semopy and returns its estimates under lavaan's column names
(``lhs, op, rhs, est, se, z, pvalue``), its fit statistics under
``fitMeasures()`` names, and the time it took. semopy has no ``:=``,
``==`` or multi-group fitting, so those statements are dropped (and listed
in ``dropped``). semopy's own conventions are kept as they are: its GFI is
the NFI, and its AIC/BIC/log-likelihood are on another scale; only the
statistics whose definitions agree with lavaan's are mapped
(chisq, df, pvalue, baseline.chisq, baseline.df, cfi, tli, rmsea).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.sem.partable import build_partable
from analysis.sem.syntax import EXPRESSION_OPS, parse_model

__all__ = ["fit_semopy", "SemopyFit", "semopy_available"]

_FIT_MAP = {"chi2": "chisq", "DoF": "df", "chi2 p-value": "pvalue", "chi2 Baseline": "baseline.chisq",
            "DoF Baseline": "baseline.df", "CFI": "cfi", "TLI": "tli", "RMSEA": "rmsea"}


def semopy_available() -> bool:
    try:
        import semopy  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class SemopyFit:
    params: pd.DataFrame
    fit_indices: pd.Series
    seconds: float
    converged: bool
    dropped: list[str] = field(default_factory=list)
    model: object = None


def _to_float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan        # semopy writes "-" for fixed parameters


def fit_semopy(model: str, data: pd.DataFrame, *, obj: str = "MLW", solver: str = "SLSQP") -> SemopyFit:
    """Fit ``model`` with semopy (defaults: its ML objective and SLSQP solver).

    >>> fit = fit_semopy("visual =~ x1 + x2 + x3", hs)          # doctest: +SKIP
    >>> fit.params[["lhs", "op", "rhs", "est"]]                  # doctest: +SKIP
    """
    import semopy

    statements = parse_model(model)
    keep = [s for s in statements if s.op not in EXPRESSION_OPS]
    dropped = [f"{s.lhs} {s.op} {s.rhs}" for s in statements if s.op in EXPRESSION_OPS]
    lines = model.splitlines()
    text = "\n".join(ln for i, ln in enumerate(lines, start=1)
                     if not any(s.line == i for s in statements if s.op in EXPRESSION_OPS))
    loadings = {(s.lhs, s.rhs) for s in keep if s.op == "=~"}
    pt = build_partable(keep)
    ours = set(zip(pt["lhs"], pt["op"], pt["rhs"]))
    m = semopy.Model(text)
    t0 = time.perf_counter()
    res = m.fit(data, obj=obj, solver=solver)
    seconds = time.perf_counter() - t0
    ins = m.inspect()
    rows = []
    for lval, op, rval, est, se, z, p in ins[["lval", "op", "rval", "Estimate", "Std. Err", "z-value",
                                              "p-value"]].itertuples(index=False):
        if op == "~" and (rval, lval) in loadings:       # semopy writes loadings as x ~ f
            lhs, op2, rhs = rval, "=~", lval
        else:
            lhs, op2, rhs = lval, op, rval
            if op == "~~" and (lhs, op, rhs) not in ours and (rhs, op, lhs) in ours:
                lhs, rhs = rhs, lhs                      # orient covariances as our table does
        rows.append({"lhs": lhs, "op": op2, "rhs": rhs, "est": _to_float(est), "se": _to_float(se),
                     "z": _to_float(z), "pvalue": _to_float(p)})
    params = pd.DataFrame(rows, columns=["lhs", "op", "rhs", "est", "se", "z", "pvalue"])
    stats = semopy.calc_stats(m).T.iloc[:, 0]
    fit = pd.Series({lav: float(stats[name]) for name, lav in _FIT_MAP.items() if name in stats.index})
    converged = bool(getattr(res, "success", True))
    return SemopyFit(params=params, fit_indices=fit, seconds=seconds, converged=converged,
                     dropped=dropped, model=m)
