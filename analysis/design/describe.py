"""Design-based means, proportions and regressions (R survey's svymean / svyby / svyglm).

Standard errors by Taylor linearisation (:meth:`ResolvedDesign.total_variance`):
a mean's influence values are ``w_i (y_i - ybar) / sum(w)``; a respondent missing
the variable (or outside the ``by`` domain) keeps its place in the design with a
zero influence value, as survey's ``na.rm = TRUE`` and ``svyby`` do. ``deff`` is
survey's ``deff = "replace"``: the design variance over that of a with-replacement
simple random sample of the same size, ``svyvar / n``. A respondent whose ``by`` group is
missing belongs to no domain (svyby); how many is reported, never silently. Categories and
groups are labelled as text, a numeric code as ``"1"`` whether or not the column has blanks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.errors import DataError
from analysis.sem.design import Design, ResolvedDesign

__all__ = ["describe", "Description", "regress", "RegressionResult"]


@dataclass
class Description:
    """Design-based estimates: ``means`` (variable, mean, se, deff, n) and ``proportions``
    (variable, category, proportion, se, n), each with ``group`` when estimated by domain;
    ``dropped`` respondents had no ``by`` group."""

    means: pd.DataFrame
    proportions: pd.DataFrame
    design: dict
    dropped: int = 0
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        from analysis.format import jsonable

        return {"design": self.design, "means": jsonable(self.means.to_dict(orient="records")),
                "proportions": jsonable(self.proportions.to_dict(orient="records")),
                "dropped": self.dropped, "warnings": list(self.warnings)}

    def summary(self) -> str:
        d = self.design
        head = (f"Design-based estimates (Taylor linearisation): weights {d['weights'] or '(none)'}, "
                f"cluster {d['cluster'] or '(none)'}, strata {d['strata'] or '(none)'}; "
                f"{d['n']} respondents, {d['n_psu']} PSUs in {d['n_strata']} strata")
        parts = [head]
        if len(self.means):
            parts += ["", "Means:", self.means.to_string(index=False, float_format=lambda v: f"{v:.4f}")]
        if len(self.proportions):
            parts += ["", "Proportions:",
                      self.proportions.to_string(index=False, float_format=lambda v: f"{v:.4f}")]
        parts += [f"warning: {w}" for w in self.warnings]
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.summary()


def _numeric(data, col):
    s = pd.to_numeric(data[col], errors="coerce")
    bad = data[col].notna() & s.isna()
    if bad.any():
        r = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"column {col!r} is not numeric: row {r + 1} has {data[col].iloc[r]!r}; "
                        "list it under --categorical for proportions")
    return s.to_numpy(dtype=float)


def _mean_and_influence(y, w, in_domain):
    """(mean, influence values, sum of weights, n used, unit variance as survey's svyvar)."""
    use = in_domain & ~np.isnan(y)
    wu = np.where(use, w, 0.0)
    sw = wu.sum()
    if sw <= 0:
        return np.nan, np.zeros_like(w), 0.0, 0, np.nan
    yu = np.where(use, y, 0.0)
    m = float(wu @ yu / sw)
    z = wu * (yu - m) / sw
    n = int(use.sum())
    var_unit = float(wu @ (yu - m) ** 2 / sw) * n / (n - 1) if n > 1 else np.nan
    return m, z, sw, n, var_unit


def describe(data: pd.DataFrame, design: Design | None = None, *, variables=(), categorical=(),
             by: str | None = None, source: str | None = None) -> Description:
    """Design-based means of ``variables`` and proportions of ``categorical`` (per ``by`` group)."""
    design = design or Design()
    data = data.reset_index(drop=True)
    rd = design.resolve(data, source)
    for col in [*variables, *categorical, *([by] if by else [])]:
        if col not in data.columns:
            from difflib import get_close_matches
            near = get_close_matches(col, list(map(str, data.columns)), n=2)
            hint = f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""
            raise DataError(f"{source + ': ' if source else ''}column {col!r} not found in the data{hint}")
    dropped, warnings = 0, []
    if by is not None:
        key = data[by]
        missing = key.isna().to_numpy()
        dropped = int(missing.sum())
        if dropped == len(data):
            raise DataError(f"--by column {by!r} has no values")
        if dropped:   # as svyby: in the design (its PSUs and strata), in no domain
            warnings.append(f"--by column {by!r}: {dropped} respondent(s) with no value (first: row "
                            f"{int(np.flatnonzero(missing)[0]) + 1}) left out of the group estimates")
        domains = [(g, (key == g).to_numpy()) for g in sorted(pd.unique(key.dropna()), key=_sort_key)]
    else:
        domains = [(None, np.ones(len(data), dtype=bool))]
    w = rd.weights
    mean_rows, prop_rows = [], []
    columns = [_numeric(data, v) for v in variables]
    for label, dom in domains:
        # every variable of a domain at once: one pass over the PSU totals
        if columns:
            res = [_mean_and_influence(y, w, dom) for y in columns]
            var = _diag_variance(rd, [r[1] for r in res])
            for v, r, vv in zip(variables, res, var):
                m, _, _, n, unit = r
                se = float(np.sqrt(vv)) if n > 0 else np.nan
                row = {"variable": v, "mean": m, "se": se,
                       "deff": float(vv / (unit / n)) if n > 1 and unit > 0 else np.nan, "n": n}
                mean_rows.append(row if label is None else {"group": _label(label), **row})
        for c in categorical:
            col = data[c]
            cats = sorted(pd.unique(col.dropna()), key=_sort_key)
            ind = [np.where(col.isna(), np.nan, (col == k).astype(float)).astype(float) for k in cats]
            res = [_mean_and_influence(y, w, dom) for y in ind]
            if not res:
                continue
            var = _diag_variance(rd, [r[1] for r in res])
            for k, r, vv in zip(cats, res, var):
                row = {"variable": c, "category": _label(k), "proportion": r[0],
                       "se": float(np.sqrt(vv)) if r[3] > 0 else np.nan, "n": r[3]}
                prop_rows.append(row if label is None else {"group": _label(label), **row})
    info = {**design.to_dict(), "n": len(data), "n_psu": rd.n_psu, "n_strata": rd.n_strata}
    return Description(pd.DataFrame(mean_rows), pd.DataFrame(prop_rows), info, dropped, warnings)


def _diag_variance(rd: ResolvedDesign, influence: list, chunk: int = 8) -> np.ndarray:
    """Design variances of the totals of each influence vector (a few columns at a time:
    a million respondents x 45 items never sits in memory at once)."""
    out = []
    for i in range(0, len(influence), chunk):
        Z = np.column_stack(influence[i:i + chunk])
        out.append(np.diag(np.atleast_2d(rd.total_variance(Z))))
    return np.concatenate(out) if out else np.array([])


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _label(v) -> str:
    """A category or group as text; a column with blanks is read as floats, so 1.0 is "1" (as R's factor)."""
    v = _plain(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _sort_key(v):
    return (0, float(v), "") if isinstance(v, (int, float, np.number)) else (1, 0.0, str(v))


# ---------------------------------------------------------------------------- regression
@dataclass
class RegressionResult:
    """Design-based linear regression: coefficients, Taylor SEs, t tests on the design df."""

    table: pd.DataFrame
    df: int
    nobs: int

    def to_dict(self) -> dict:
        from analysis.format import jsonable
        return {"df": self.df, "nobs": self.nobs, "coefficients": jsonable(self.table.to_dict(orient="records"))}

    def summary(self) -> str:
        return (f"Design-based regression (weighted least squares, Taylor-linearised SEs; "
                f"{self.nobs} respondents, {self.df} residual df)\n"
                + self.table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def regress(formula: str, data: pd.DataFrame, design: Design | None = None) -> RegressionResult:
    """``y ~ x1 + x2 + C(g)`` by weighted least squares (statsmodels) with the design's Taylor
    covariance ``A^-1 V(sum w_i x_i e_i) A^-1`` (survey's svyglm, gaussian family)."""
    import statsmodels.formula.api as smf
    from scipy import stats

    design = design or Design()
    data = data.reset_index(drop=True)
    rd = design.resolve(data)
    frame = data.assign(_w=rd.weights)
    model = smf.wls(formula, frame, weights=frame["_w"], missing="drop")
    fit = model.fit()
    rows = model.data.row_labels               # rows kept by the formula (complete cases)
    X = model.exog
    e = fit.resid.to_numpy()
    w = rd.weights[rows]
    bread = np.linalg.inv(X.T @ (w[:, None] * X))
    scores = np.zeros((len(data), X.shape[1]))
    scores[rows] = (w * e)[:, None] * X
    cov = bread @ rd.total_variance(scores) @ bread
    se = np.sqrt(np.diag(cov))
    df = rd.degf - X.shape[1] + 1
    t = fit.params.to_numpy() / se
    table = pd.DataFrame({"term": fit.params.index, "estimate": fit.params.to_numpy(), "se": se,
                          "t": t, "pvalue": 2 * stats.t.sf(np.abs(t), df)})
    return RegressionResult(table, int(df), int(len(rows)))
