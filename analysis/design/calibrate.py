"""Calibration weights to population margins (R survey's rake / calibrate / postStratify).

``calibrate(data, targets, method="rake")`` returns a :class:`CalibrationResult`
whose ``weights`` reproduce the target margins exactly: with no base weight they
sum to N (the sample size), otherwise to the sum of the base weights.

* ``rake``: iterative proportional fitting over the margins in turn (survey's
  ``rake``), until every margin is within ``tol`` (relative);
* ``linear``: the GREG / linear calibration of survey's ``calibrate(calfun =
  "linear")``, ``w_i (1 + x_i' lambda)`` with ``x`` the margins' indicators;
* ``poststratify``: one margin (a variable, or several joined with ``:`` such as
  ``eth:sex``), each cell scaled to its target (survey's ``postStratify``).

``trim=(lo, hi)`` bounds the weights at ``lo`` and ``hi`` times their mean and
rakes again, alternately, until both the bounds and the margins hold.
Targets are rows ``variable, category, proportion``; a variable ``a:b`` is the
cross-classification of columns ``a`` and ``b`` with categories ``x:y``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.errors import DataError, OptionError

__all__ = ["calibrate", "read_targets", "weight_summary", "CalibrationResult", "METHODS"]

METHODS = ("rake", "linear", "poststratify")


def read_targets(path) -> pd.DataFrame:
    """TARGETS.csv (columns variable, category, proportion; optionally a group column for --by)."""
    from analysis.sem.data import read_table

    t = read_table(path)
    return check_targets(t, str(path))


def check_targets(t: pd.DataFrame, source: str = "targets") -> pd.DataFrame:
    need = ["variable", "category", "proportion"]
    absent = [c for c in need if c not in t.columns]
    if absent:
        raise DataError(f"{source}: missing column(s) {', '.join(absent)}; the targets need columns "
                        "variable, category, proportion")
    t = t.copy()
    t["variable"] = t["variable"].astype(str).str.strip()
    t["category"] = t["category"].map(_key)
    p = pd.to_numeric(t["proportion"], errors="coerce")
    bad = np.flatnonzero(~(p >= 0).to_numpy())
    if len(bad):
        r = int(bad[0])
        raise DataError(f"{source}: line {r + 2}: proportion {t['proportion'].iloc[r]!r} of "
                        f"{t['variable'].iloc[r]}={t['category'].iloc[r]} is not a number >= 0")
    t["proportion"] = p
    extra = [c for c in t.columns if c not in need]
    dup = t.duplicated(["variable", "category", *extra])
    if dup.any():
        r = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"{source}: line {r + 2}: {t['variable'].iloc[r]}={t['category'].iloc[r]} "
                        "is given twice")
    for keys, block in t.groupby(["variable", *extra], sort=False):
        total = block["proportion"].sum()
        if abs(total - 1) > 1e-6:
            name = keys if isinstance(keys, str) else keys[0]
            raise DataError(f"{source}: the proportions of {name!r} sum to {total:.6g}, not 1")
    return t


def _key(value) -> str:
    """Category labels compared as text (1, 1.0 and '1' are the same category)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


@dataclass
class CalibrationResult:
    """Calibrated weights with how they were reached."""

    weights: np.ndarray
    method: str
    converged: bool
    iterations: int
    max_margin_error: float
    margins: pd.DataFrame
    """variable, category, target, achieved (proportions), n (unweighted respondents)."""
    summary_stats: dict = field(default_factory=dict)
    trimmed: int = 0
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"method": self.method, "converged": self.converged, "iterations": self.iterations,
                "max_margin_error": self.max_margin_error, "trimmed": self.trimmed,
                "weights": self.summary_stats, "warnings": list(self.warnings),
                "margins": self.margins.to_dict(orient="records")}

    def summary(self) -> str:
        s = self.summary_stats
        lines = [f"Calibration ({self.method}): {'converged' if self.converged else 'NOT converged'} "
                 f"after {self.iterations} iteration(s); largest margin error {self.max_margin_error:.2g}",
                 f"  weights: n {s['n']}, sum {s['sum']:.6g}, range {s['min']:.4g} - {s['max']:.4g}, "
                 f"CV {s['cv']:.3f}",
                 f"  Kish effective sample size {s['kish_n_eff']:.1f}; design effect due to weighting "
                 f"{s['deff_weighting']:.3f}"]
        if self.trimmed:
            lines.append(f"  {self.trimmed} weight(s) trimmed, then raked again")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def weight_summary(w) -> dict:
    """Range, CV, Kish's effective sample size and design effect due to weighting (1 + CV^2)."""
    w = np.asarray(w, dtype=float)
    n = len(w)
    cv = float(w.std() / w.mean())
    n_eff = float(w.sum() ** 2 / (w ** 2).sum())
    return {"n": n, "sum": float(w.sum()), "min": float(w.min()), "max": float(w.max()),
            "mean": float(w.mean()), "cv": cv, "kish_n_eff": n_eff, "deff_weighting": n / n_eff}


def _cells(data: pd.DataFrame, variable: str, source: str) -> pd.Series:
    parts = [v.strip() for v in variable.split(":")]
    absent = [v for v in parts if v not in data.columns]
    if absent:
        raise DataError(f"{source}: target variable {', '.join(map(repr, absent))} is not a column of the data")
    cols = []
    for v in parts:
        miss = np.flatnonzero(data[v].isna().to_numpy())
        if len(miss):
            raise DataError(f"data row {int(miss[0]) + 1}: {v!r} is missing; every respondent needs a "
                            f"value of a calibration variable ({len(miss)} such row(s))")
        cols.append(data[v].map(_key))
    out = cols[0]
    for c in cols[1:]:
        out = out + ":" + c
    return out.reset_index(drop=True)


def calibrate(data: pd.DataFrame, targets: pd.DataFrame, *, method: str = "rake",
              base_weight: str | None = None, trim: tuple[float, float] | None = None,
              by: str | None = None, tol: float = 1e-10, max_iter: int = 1000,
              source: str = "targets") -> CalibrationResult:
    """Weights that reproduce the target margins (see the module docstring)."""
    if method not in METHODS:
        raise OptionError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    targets = check_targets(targets, source)
    data = data.reset_index(drop=True)
    if base_weight is not None:
        from analysis.sem.design import Design
        base = Design(weights=base_weight).resolve(data).weights
    else:
        base = np.ones(len(data))
    if trim is not None:
        lo, hi = trim
        if not (0 <= lo < 1 < hi):
            raise OptionError(f"trim bounds must satisfy 0 <= LO < 1 < HI (multiples of the mean weight); "
                              f"got {lo}, {hi}")
    if by is None:
        groups = [(None, np.arange(len(data)))]
    else:
        if by not in data.columns:
            raise DataError(f"--by column {by!r} not found in the data")
        key = data[by].map(_key)
        groups = [(g, np.flatnonzero((key == g).to_numpy())) for g in pd.unique(key)]
    w = np.empty(len(data))
    results = []
    for label, rows in groups:
        t = targets
        if by is not None and by in targets.columns:
            t = targets[targets[by].map(_key) == label]
            if t.empty:
                raise DataError(f"{source}: no targets for {by} = {label!r}")
        part = data.iloc[rows].reset_index(drop=True)
        res = _calibrate_one(part, t, method, base[rows], trim, tol, max_iter, source,
                             "" if label is None else f" ({by} = {label})")
        w[rows] = res.weights
        res.margins.insert(0, "group", label) if by is not None else None
        results.append(res)
    margins = pd.concat([r.margins for r in results], ignore_index=True)
    return CalibrationResult(
        weights=w, method=method, converged=all(r.converged for r in results),
        iterations=max(r.iterations for r in results),
        max_margin_error=max(r.max_margin_error for r in results), margins=margins,
        summary_stats=weight_summary(w), trimmed=sum(r.trimmed for r in results),
        warnings=[x for r in results for x in r.warnings])


def _calibrate_one(data, targets, method, base, trim, tol, max_iter, source, where):
    total = float(base.sum())
    margins = []      # (variable, cell codes per row, categories, target totals)
    for variable, block in targets.groupby("variable", sort=False):
        cells = _cells(data, variable, source)
        cats = list(block["category"])
        present = set(cells)
        absent = [c for c in cats if c not in present and block.set_index("category").loc[c, "proportion"] > 0]
        if absent:
            raise DataError(f"{source}: {variable} = {', '.join(map(repr, absent))} has a target but no "
                            f"respondent in the sample{where}; merge it with a neighbouring category")
        unknown = sorted(present - set(cats))
        if unknown:
            rows = np.flatnonzero(cells.isin(unknown).to_numpy())
            raise DataError(f"{source}: {variable} = {', '.join(map(repr, unknown))} occurs in the sample "
                            f"(e.g. data row {int(rows[0]) + 1}) but has no target{where}; add it to the "
                            "targets (proportion 0 to give it no weight)")
        codes = pd.Categorical(cells, categories=cats).codes
        margins.append((variable, codes, cats, block["proportion"].to_numpy() * total))
    if method == "poststratify" and len(margins) != 1:
        raise OptionError("poststratify takes one margin (a variable, or a cross-classification such as "
                          f"eth:sex); the targets have {len(margins)}: use rake or linear for several")
    w = base.copy()
    trimmed = 0
    if method == "linear":
        w, it, conv = _linear(base, margins), 1, True
    else:
        w, it, conv = _rake(w, margins, tol, max_iter)
    warnings = []
    if trim is not None:
        lo, hi = trim
        for _ in range(100):
            mean = w.mean()
            out = (w < lo * mean * (1 - 1e-9)) | (w > hi * mean * (1 + 1e-9))
            if not out.any():
                break
            trimmed = max(trimmed, int(out.sum()))
            w = np.clip(w, lo * mean, hi * mean)
            w, k, conv = _rake(w, margins, tol, max_iter)
            it += k
        else:
            warnings.append("trimming and raking did not settle after 100 rounds; the weights meet the "
                            "margins but some lie outside the trimming bounds")
    rows = []
    err = 0.0
    for variable, codes, cats, tot in margins:
        got = np.bincount(codes, weights=w, minlength=len(cats))
        n = np.bincount(codes, minlength=len(cats))
        err = max(err, float(np.max(np.abs(got - tot)) / total))
        rows += [{"variable": variable, "category": c, "target": t / total, "achieved": g / w.sum(), "n": int(k)}
                 for c, t, g, k in zip(cats, tot, got, n)]
    if np.any(w < 0):
        warnings.append(f"{int((w < 0).sum())} negative weight(s): linear calibration can give them; "
                        "use rake, or trim")
    if not conv:
        warnings.append(f"raking did not converge in {max_iter} iterations{where} (largest margin error "
                        f"{err:.2g}); are the margins compatible?")
    return CalibrationResult(w, method, conv, it, err, pd.DataFrame(rows), {}, trimmed, warnings)


def _rake(w, margins, tol, max_iter):
    """Iterative proportional fitting: each margin scaled to its targets in turn."""
    w = w.copy()
    for it in range(1, max_iter + 1):
        for _, codes, cats, tot in margins:
            got = np.bincount(codes, weights=w, minlength=len(cats))
            ratio = np.divide(tot, got, out=np.zeros_like(tot), where=got > 0)
            w *= ratio[codes]
        worst = 0.0
        for _, codes, cats, tot in margins:
            got = np.bincount(codes, weights=w, minlength=len(cats))
            worst = max(worst, float(np.max(np.abs(got - tot) / np.maximum(tot, 1e-300))))
        if worst < tol:
            return w, it, True
    return w, max_iter, False


def _linear(base, margins):
    """GREG: w = d (1 + X lambda) with X'w = totals (an intercept and each margin's indicators
    but the first category, so that X has full column rank)."""
    n = len(base)
    cols, totals = [np.ones(n)], [None]
    for j, (_, codes, cats, tot) in enumerate(margins):
        for k in range(1, len(cats)):
            cols.append((codes == k).astype(float))
            totals.append(tot[k])
    totals[0] = margins[0][3].sum()
    X = np.column_stack(cols)
    T = np.asarray(totals, dtype=float)
    lam = np.linalg.solve(X.T @ (base[:, None] * X), T - X.T @ base)
    return base * (1 + X @ lam)
