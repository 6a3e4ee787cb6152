"""Reliability, item analysis and discriminant validity, one function per statistic.

Every statistic returns a DataFrame with the same columns
``estimate, ci.lower, ci.upper, n_obs`` (plus identifying columns such as
``construct`` or ``group``), at full precision; rounding happens only when a
table is formatted for people. The reference implementations are named in each
docstring (psych, semTools); ``tests/psychometrics/test_reliability_*.py`` pins their numbers.

:func:`reliability_report` runs everything for an instrument: missing codes
become NA and reverse-keyed items are recoded *first* (omega and alpha are wrong
otherwise; a test shows how wrong), then each construct gets alpha, omega and an
item analysis, and the constructs together get AVE, composite reliability,
Fornell-Larcker and HTMT.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import ndtr

__all__ = [
    "cronbach_alpha",
    "mcdonald_omega",
    "composite_reliability",
    "ave",
    "fornell_larcker",
    "htmt",
    "ordinal_alpha",
    "ordinal_omega",
    "polychoric_matrix",
    "item_analysis",
    "recode_items",
    "reliability_report",
    "ReliabilityResult",
]

_COLS = ["estimate", "ci.lower", "ci.upper", "n_obs"]


from analysis.errors import ReliabilityError
from analysis.psychometrics.items import construct_ids, is_latent, items_of, recode_items


def _numeric_items(items: pd.DataFrame, caller: str, min_items: int = 2) -> pd.DataFrame:
    if not isinstance(items, pd.DataFrame):
        raise ReliabilityError(
            f"The 'items' parameter of {caller} must be a DataFrame. Got {type(items).__name__} instead."
        )
    bad = [c for c in items.columns if items[c].dtype.kind not in "bfiu"]
    if bad:
        raise ReliabilityError(f"{caller}: items must be numeric; column(s) {', '.join(map(str, bad))} are not.")
    if items.shape[1] < min_items:
        raise ReliabilityError(
            f"{caller} needs at least {min_items} items; got {items.shape[1]} ({', '.join(map(str, items.columns))})."
        )
    return items.astype(float)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame(rows)
    for c in _COLS:
        if c not in out:
            out[c] = np.nan
    lead = [c for c in out.columns if c not in _COLS]
    return out[lead + _COLS]


# --------------------------------------------------------------------------- alpha


def _alpha_from_cov(c: np.ndarray) -> float:
    k = c.shape[0]
    return k / (k - 1) * (1.0 - np.trace(c) / c.sum())


def cronbach_alpha(items: pd.DataFrame, *, ci_level: float = 0.95, nan_policy: str = "pairwise") -> pd.DataFrame:
    """Cronbach's alpha with Feldt's F-based confidence interval.

    alpha = k/(k-1) * (1 - sum(diag C) / sum(C)) with C the (pairwise) item
    covariance matrix, as ``psych::alpha()$total$raw_alpha`` and
    ``pingouin.cronbach_alpha``; the CI is Feldt's (1965)
    ``1 - (1 - alpha) F_{(1±level)/2}(n-1, (n-1)(k-1))``, pingouin's formula at
    full precision (pingouin rounds it to 3 decimals).

    Examples
    --------
    >>> # In R: psych::alpha(items)$total$raw_alpha
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1); f = rng.normal(size=200)
    >>> items = pd.DataFrame({f"i{j}": f + rng.normal(size=200) for j in range(4)})
    >>> round(float(cronbach_alpha(items)["estimate"].iloc[0]), 3)
    0.786
    """
    import pingouin as pg

    items = _numeric_items(items, "cronbach_alpha")
    if nan_policy not in ("pairwise", "listwise"):
        raise ReliabilityError(
            f"The 'nan_policy' parameter of cronbach_alpha must be 'pairwise' or 'listwise'. Got {nan_policy!r} instead."
        )
    if not 0 < ci_level < 1:
        raise ReliabilityError(f"The 'ci_level' parameter of cronbach_alpha must be in (0, 1). Got {ci_level!r} instead.")
    data = items.dropna(how="all")
    if nan_policy == "listwise":
        data = data.dropna()
    if len(data) < 2:
        raise ReliabilityError(f"cronbach_alpha needs at least 2 respondents with answers; got {len(data)}.")
    alpha, _ = pg.cronbach_alpha(data=data, nan_policy=nan_policy, ci=ci_level)
    n, k = data.shape
    tail = (1 - ci_level) / 2
    df1, df2 = n - 1, (n - 1) * (k - 1)
    lower = 1 - (1 - alpha) * stats.f.isf(tail, df1, df2)
    upper = 1 - (1 - alpha) * stats.f.isf(1 - tail, df1, df2)
    return _frame([{"statistic": "alpha", "estimate": float(alpha), "ci.lower": lower, "ci.upper": upper, "n_obs": n}])


# ---------------------------------------------------------------- polychorics


def polychoric_matrix(items: pd.DataFrame) -> pd.DataFrame:
    """Polychoric correlation matrix of listwise-complete cases.

    Two-step ML (thresholds from the margins, then each rho), as
    ``lavaan::lavCor(x, ordered = names(x))``; computed by
    :mod:`analysis.sem.polychoric`.
    """
    from analysis.sem.polychoric import ordinal_codes, ordinal_stats

    items = _numeric_items(items, "polychoric_matrix").dropna()
    codes, _ = ordinal_codes(items, list(items.columns))
    st = ordinal_stats(codes, gamma=False, missing="listwise")
    return pd.DataFrame(st.corr, index=items.columns, columns=items.columns)


def ordinal_alpha(items: pd.DataFrame) -> pd.DataFrame:
    """Ordinal alpha (Zumbo, Gadermann & Zeisser 2007): alpha of the polychoric matrix.

    ``psych::alpha(psych::polychoric(x)$rho)$total$raw_alpha`` (up to the
    polychoric estimates; psych's are slightly smoothed).
    """
    items = _numeric_items(items, "ordinal_alpha")
    r = polychoric_matrix(items).to_numpy()
    n = int(items.dropna().shape[0])
    return _frame([{"statistic": "ordinal alpha", "estimate": _alpha_from_cov(r), "n_obs": n}])


def _one_factor_ml(r: np.ndarray) -> np.ndarray:
    """ML loadings of a one-factor model for a correlation matrix (congeneric CFA, std.lv)."""
    k = r.shape[0]
    # start from the first principal axis
    w, v = np.linalg.eigh(r)
    lam0 = v[:, -1] * np.sqrt(w[-1])
    lam0 *= np.sign(lam0.sum()) or 1.0
    psi0 = np.clip(1 - lam0**2, 0.05, None)
    _, logdet_r = np.linalg.slogdet(r)

    def f(par: np.ndarray) -> float:
        lam, psi = par[:k], np.exp(par[k:])
        s = np.outer(lam, lam) + np.diag(psi)
        sign, logdet = np.linalg.slogdet(s)
        if sign <= 0:
            return 1e10
        return logdet + np.trace(np.linalg.solve(s, r)) - logdet_r - k

    res = optimize.minimize(f, np.concatenate([lam0, np.log(psi0)]), method="BFGS", options={"gtol": 1e-10})
    lam = res.x[:k]
    return lam * (np.sign(lam.sum()) or 1.0)


def ordinal_omega(items: pd.DataFrame) -> pd.DataFrame:
    """Ordinal omega on the latent-response scale: one-factor ML on the polychoric matrix.

    omega = (sum lambda)^2 / sum(R), R the polychoric matrix: semTools
    ``compRelSEM(fit, ord.scale = FALSE)`` for a one-factor model of the items
    (the reliability of the latent responses, not of the observed sum score).
    """
    items = _numeric_items(items, "ordinal_omega", min_items=3)
    r = polychoric_matrix(items).to_numpy()
    lam = _one_factor_ml(r)
    n = int(items.dropna().shape[0])
    return _frame([{"statistic": "ordinal omega", "estimate": lam.sum() ** 2 / r.sum(), "n_obs": n}])


# ------------------------------------------------- CFA-based: omega, CR, AVE


def _params_of(fit: Any) -> pd.DataFrame:
    """The ParameterTable of a fit (FitResult, anything with .params/.partable, or the table)."""
    for attr in ("params", "partable", "parameter_table"):
        pt = getattr(fit, attr, None)
        if isinstance(pt, pd.DataFrame):
            return pt
    if isinstance(fit, pd.DataFrame) and {"lhs", "op", "rhs", "est"} <= set(fit.columns):
        return fit
    raise ReliabilityError(
        "Expected a fitted CFA (a FitResult or its ParameterTable with lhs, op, rhs, est); "
        f"got {type(fit).__name__}."
    )


@dataclass
class _Block:
    """Model matrices of one group, from the table: what compRelSEM reads with lavInspect."""

    lam: pd.DataFrame  # indicators x factors
    phi: pd.DataFrame  # model-implied latent covariance (cov.lv)
    theta: pd.DataFrame  # residual covariances of the indicators
    n_obs: int | float


def _blocks(fit: Any) -> dict[Any, _Block]:
    pt = _params_of(fit)
    if "group" not in pt:
        pt = pt.assign(group=1)
    loads = pt[pt["op"] == "=~"]
    lvs = list(dict.fromkeys(loads["lhs"]))
    out: dict[Any, _Block] = {}
    nobs = _nobs_of(fit)
    for g in sorted(pt["group"].dropna().unique()):
        p = pt[pt["group"] == g]
        ld = p[p["op"] == "=~"]
        ovs = [v for v in dict.fromkeys(ld["rhs"]) if v not in lvs]
        lam = pd.DataFrame(0.0, index=ovs, columns=lvs)
        beta = pd.DataFrame(0.0, index=lvs, columns=lvs)
        for r in ld.itertuples():
            if r.rhs in lvs:
                beta.loc[r.rhs, r.lhs] = r.est  # higher-order: lv measured by lv
            else:
                lam.loc[r.rhs, r.lhs] = r.est
        for r in p[(p["op"] == "~") & p["lhs"].isin(lvs) & p["rhs"].isin(lvs)].itertuples():
            beta.loc[r.lhs, r.rhs] = r.est
        psi = pd.DataFrame(0.0, index=lvs, columns=lvs)
        theta = pd.DataFrame(0.0, index=ovs, columns=ovs)
        for r in p[p["op"] == "~~"].itertuples():
            for m in (psi, theta):
                if r.lhs in m.index and r.rhs in m.index:
                    m.loc[r.lhs, r.rhs] = m.loc[r.rhs, r.lhs] = r.est
        ib = np.linalg.inv(np.eye(len(lvs)) - beta.to_numpy())
        phi = pd.DataFrame(ib @ psi.to_numpy() @ ib.T, index=lvs, columns=lvs)
        n = nobs[g] if isinstance(nobs, Mapping) else nobs
        out[g] = _Block(lam, phi, theta, n)
    return out


def _nobs_of(fit: Any) -> Any:
    for attr in ("nobs", "n_obs"):
        v = getattr(fit, attr, None)
        if v is not None:
            if isinstance(v, (list, tuple, np.ndarray)):
                return {i + 1: int(x) for i, x in enumerate(v)}
            return v
    fi = getattr(fit, "fit_indices", None)
    if fi is not None and "ntotal" in fi:
        return int(fi["ntotal"])
    return np.nan


def _sample_cov(
    fit: Any, data: pd.DataFrame | None, group: str | None, names: list[str], ordered: bool = False
) -> dict[Any, pd.DataFrame]:
    """Sample covariance (divisor N, lavaan's sampstat) per group."""
    if data is None:
        for attr in ("sample_cov", "sample_covs"):
            s = getattr(fit, attr, None)
            if s is not None:
                if isinstance(s, pd.DataFrame):
                    return {1: s}
                if isinstance(s, Mapping):
                    return dict(s)
                return {i + 1: x for i, x in enumerate(s)}
        data = getattr(fit, "data", None)
        if group is None:
            group = getattr(fit, "group", None)
    if data is None:
        return {}
    absent = [v for v in names if v not in data.columns]
    if absent:
        raise ReliabilityError(f"The data lack indicator column(s) of the model: {', '.join(absent)}.")
    # ordered indicators: lavaan's sample statistic is the polychoric matrix
    moments = (lambda x: polychoric_matrix(x)) if ordered else (lambda x: x.cov(ddof=0))
    if group is None:
        return {1: moments(data[names].dropna())}
    labels = list(pd.unique(data[group].dropna()))
    return {i + 1: moments(data.loc[data[group] == lab, names].dropna()) for i, lab in enumerate(labels)}


def _thresholds(fit: Any) -> dict[Any, dict[str, np.ndarray]]:
    """Thresholds per group and ordered indicator, from the fit's '|' rows."""
    pt = _params_of(fit)
    if "group" not in pt:
        pt = pt.assign(group=1)
    th = pt[pt["op"] == "|"]
    out: dict[Any, dict[str, np.ndarray]] = {}
    for (g, item), rows in th.groupby(["group", "lhs"], sort=False):
        order = rows["rhs"].str.lstrip("t").astype(int).argsort().to_numpy()
        out.setdefault(g, {})[item] = rows["est"].to_numpy(float)[order]
    return out


def _omega_cat(common: np.ndarray, denom: np.ndarray, thresholds: list[np.ndarray]) -> float:
    """Green & Yang (2009) reliability of the observed ordinal sum score (semTools' ord.scale)."""
    from analysis.sem.polychoric import bivariate_normal_cdf

    d = np.sqrt(np.diag(denom))
    denom = denom / np.outer(d, d)
    num = den = 0.0
    k = len(thresholds)
    for j in range(k):
        for jj in range(k):
            t1, t2 = np.meshgrid(thresholds[j], thresholds[jj], indexing="ij")
            marg = ndtr(thresholds[j]).sum() * ndtr(thresholds[jj]).sum()
            num += _phi2_sum(t1, t2, common[j, jj], bivariate_normal_cdf) - marg
            den += _phi2_sum(t1, t2, denom[j, jj], bivariate_normal_cdf) - marg
    return float(num / den)


def _phi2_sum(t1: np.ndarray, t2: np.ndarray, rho: float, cdf: Any) -> float:
    if rho >= 1 - 1e-12:  # the same latent response: P(Z < min(a, b))
        return float(ndtr(np.minimum(t1, t2)).sum())
    return float(cdf(t1, t2, np.full(t1.shape, rho)).sum())


def _reliability_table(
    fit: Any, data: pd.DataFrame | None, group: str | None, obs_var: bool, kind: str, ord_scale: bool = True
) -> pd.DataFrame:
    blocks = _blocks(fit)
    names = list(dict.fromkeys(v for b in blocks.values() for v in b.lam.index))
    ths = _thresholds(fit)
    ordered = bool(ths)
    sample = _sample_cov(fit, data, group, names, ordered) if obs_var else {}
    rows = []
    for g, b in blocks.items():
        lam = b.lam
        if obs_var and g not in sample:
            raise ReliabilityError(
                f"{kind} with obs_var=True needs the sample covariance: pass data= (and group=) "
                "or use obs_var=False for the model-implied denominator."
            )
        implied = lam.to_numpy() @ b.phi.to_numpy() @ lam.to_numpy().T + b.theta.to_numpy()
        total = (
            sample[g].reindex(index=lam.index, columns=lam.index)
            if obs_var
            else pd.DataFrame(implied, index=lam.index, columns=lam.index)
        )
        cross = (lam.round(5) != 0).sum(axis=1) > 1
        for f in lam.columns:
            idx = lam.index[lam[f] != 0]
            if len(idx) < 2:
                continue  # semTools drops single-indicator factors
            lf = lam.loc[idx, f].to_numpy()
            psi = b.phi.loc[f, f]
            if kind == "ave":
                est = np.nan if cross[idx].any() else float((lf**2).sum() * psi / np.trace(total.loc[idx, idx].to_numpy()))
            elif ordered and ord_scale and kind == "omega" and all(i in ths.get(g, {}) for i in idx):
                common = np.outer(lf, lf) * psi
                est = _omega_cat(common, total.loc[idx, idx].to_numpy(), [ths[g][i] for i in idx])
            else:
                est = float(lf.sum() ** 2 * psi / total.loc[idx, idx].to_numpy().sum())
            rows.append({"construct": f, "group": g, "estimate": est, "n_obs": b.n_obs})
    out = _frame(rows)
    if len(blocks) == 1:
        out = out.drop(columns="group")
    return out


def mcdonald_omega(
    fit: Any, data: pd.DataFrame | None = None, *, group: str | None = None, obs_var: bool = True, ord_scale: bool = True
) -> pd.DataFrame:
    """McDonald's omega per factor from a fitted CFA, as ``semTools::compRelSEM``.

    omega_f = (sum_i lambda_if)^2 phi_ff / sum(S_f), with phi the model-implied
    factor variance and S_f the *sample* covariance matrix of the factor's
    indicators (divisor N; ``obs.var = TRUE``, semTools' default), so residual
    covariances lower omega as they should. ``obs_var=False`` uses the
    model-implied covariance instead. One row per factor (and group).

    ``data`` (and ``group``) give the sample covariance when the fit does not
    carry it.

    For a fit with ordered indicators (WLSMV), the sample statistic is the
    polychoric matrix; with ``ord_scale`` (semTools' default) omega is Green &
    Yang's (2009) reliability of the observed ordinal sum score, from the
    thresholds; with ``ord_scale=False`` it is the reliability of the latent
    responses, (sum lambda)^2 psi / sum(R).

    Examples
    --------
    >>> # In R: semTools::compRelSEM(cfa(HS.model, HolzingerSwineford1939))
    >>> # mcdonald_omega(fit_sem(HS_MODEL, hs), data=hs[ITEMS])
    """
    return _reliability_table(fit, data, group, obs_var, "omega", ord_scale)


def composite_reliability(fit: Any) -> pd.DataFrame:
    """Composite (construct) reliability: omega with the model-implied denominator.

    CR_f = (sum lambda)^2 phi / ((sum lambda)^2 phi + sum theta) for a factor
    without residual covariances (Raykov 1997; Fornell & Larcker 1981); equal
    to ``semTools::compRelSEM(fit, obs.var = FALSE)``.
    """
    return _reliability_table(fit, None, None, False, "cr")


def ave(fit: Any, data: pd.DataFrame | None = None, *, group: str | None = None, obs_var: bool = True) -> pd.DataFrame:
    """Average variance extracted per factor, as ``semTools::AVE``.

    AVE_f = sum_i lambda_if^2 phi_ff / sum_i S_ii (sample variances of the
    indicators with ``obs_var``, else model-implied). NaN for a factor with a
    cross-loading indicator, as semTools.
    """
    return _reliability_table(fit, data, group, obs_var, "ave")


def fornell_larcker(fit: Any, data: pd.DataFrame | None = None, *, group: str | None = None) -> pd.DataFrame:
    """Fornell-Larcker table: sqrt(AVE) on the diagonal, latent correlations below.

    A construct passes when its sqrt(AVE) exceeds its absolute correlation with
    every other construct; the ``passes`` column says so (single group).
    """
    blocks = _blocks(fit)
    b = next(iter(blocks.values()))
    a = ave(fit, data, group=group)
    if "group" in a:
        a = a[a["group"] == next(iter(blocks))]
    root = pd.Series(np.sqrt(a["estimate"].to_numpy()), index=a["construct"])
    lvs = list(root.index)
    sd = np.sqrt(np.diag(b.phi.loc[lvs, lvs].to_numpy()))
    corr = b.phi.loc[lvs, lvs].to_numpy() / np.outer(sd, sd)
    table = pd.DataFrame(corr, index=lvs, columns=lvs)
    for f in lvs:
        table.loc[f, f] = root[f]
    off = np.abs(corr - np.diag(np.diag(corr)))
    table["passes"] = [bool(root[f] > off[i].max()) if len(lvs) > 1 else True for i, f in enumerate(lvs)]
    table.index.name = "construct"
    return table


# ------------------------------------------------------------------------ HTMT


def _constructs_from(model: Any) -> dict[str, list[str]]:
    if isinstance(model, Mapping):
        return {str(k): list(v) for k, v in model.items()}
    if isinstance(model, str):
        out: dict[str, list[str]] = {}
        for raw in model.replace(";", "\n").splitlines():
            line = raw.split("#", 1)[0].strip()
            if "=~" not in line:
                continue
            lhs, rhs = line.split("=~", 1)
            terms = [t.strip().split("*")[-1].strip() for t in rhs.split("+")]
            out.setdefault(lhs.strip(), []).extend(t for t in terms if t)
        if out:
            return out
    raise ReliabilityError("htmt needs the constructs as {construct: [items]} or lavaan syntax with =~ lines.")


def htmt(
    model: Any,
    data: pd.DataFrame | None = None,
    *,
    sample_cov: pd.DataFrame | None = None,
    ordered: bool = False,
    absolute: bool = True,
    htmt2: bool = True,
) -> pd.DataFrame:
    """Heterotrait-monotrait ratio of correlations, as ``semTools::htmt``.

    HTMT_ij = mean(|r| between items of i and j) / sqrt(mean(|r| within i) *
    mean(|r| within j)), with geometric means when ``htmt2`` (Roemer, Schuberth &
    Henseler 2021; semTools' default) and arithmetic means (Henseler, Ringle &
    Sarstedt 2015) otherwise. Correlations are Pearson on listwise-complete
    cases, or polychoric with ``ordered``. Values above .85 (or .90) signal poor
    discriminant validity. Returns the symmetric construct x construct matrix.

    Examples
    --------
    >>> # In R: semTools::htmt(HS.model, HolzingerSwineford1939)
    >>> # htmt(HS_MODEL, hs)
    """
    cons = _constructs_from(model)
    names = [v for items in cons.values() for v in items]
    if data is not None:
        missing = [v for v in names if v not in data.columns]
        if missing:
            raise ReliabilityError(f"htmt: item(s) not in the data: {', '.join(missing)}.")
        sub = data[names].dropna()
        r = polychoric_matrix(sub) if ordered else sub.corr()
    elif sample_cov is not None:
        missing = [v for v in names if v not in sample_cov.columns]
        if missing:
            raise ReliabilityError(f"htmt: item(s) not in sample_cov: {', '.join(missing)}.")
        s = sample_cov.loc[names, names].to_numpy(float)
        d = np.sqrt(np.diag(s))
        r = pd.DataFrame(s / np.outer(d, d), index=names, columns=names)
    else:
        raise ReliabilityError("htmt needs data= or sample_cov=.")
    r = r.abs() if (absolute or htmt2) else r
    mean = (lambda a: float(np.exp(np.mean(np.log(a))))) if htmt2 else (lambda a: float(np.mean(a)))

    def block(a: list[str], b: list[str]) -> float:
        m = r.loc[a, b].to_numpy()
        if a == b:
            m = m[~np.eye(len(a), dtype=bool)]
        return mean(m.ravel())

    keys = list(cons)
    within = {k: block(cons[k], cons[k]) for k in keys}
    out = pd.DataFrame(
        [[block(cons[a], cons[b]) / np.sqrt(within[a] * within[b]) for b in keys] for a in keys], index=keys, columns=keys
    )
    return out


# -------------------------------------------------------------- item analysis


def item_analysis(
    items: pd.DataFrame, *, codes: Mapping[str, Sequence[float]] | Sequence[float] | None = None
) -> pd.DataFrame:
    """Item descriptives and item-total statistics, one row per item.

    Columns: ``n_obs``, ``missing`` (share NA), ``mean``, ``sd``, ``floor`` and
    ``ceiling`` (share at the lowest / highest code of the scale, or of the
    observed range when ``codes`` is not given), ``r.drop`` (corrected
    item-total correlation: item vs. the sum of the *other* items) and
    ``alpha.drop`` (alpha if the item is deleted), both from the pairwise
    covariance matrix as ``psych::alpha`` (``item.stats$r.drop``,
    ``alpha.drop$raw_alpha``), and ``dist`` (share per code, a dict).
    """
    items = _numeric_items(items, "item_analysis")
    c = items.cov().to_numpy()
    total = c.sum()
    rows = []
    for i, name in enumerate(items.columns):
        x = items[name]
        obs = x.dropna()
        code_list = (codes.get(name) if isinstance(codes, Mapping) else codes) if codes is not None else None
        levels = sorted(code_list) if code_list is not None else sorted(obs.unique())
        cov_rest = c[i].sum() - c[i, i]
        var_rest = total - 2 * c[i].sum() + c[i, i]
        keep = [j for j in range(len(items.columns)) if j != i]
        rows.append(
            {
                "item": name,
                "n_obs": int(obs.size),
                "missing": float(x.isna().mean()),
                "mean": float(obs.mean()),
                "sd": float(obs.std()),
                "floor": float((obs == levels[0]).mean()) if levels else np.nan,
                "ceiling": float((obs == levels[-1]).mean()) if levels else np.nan,
                "r.drop": float(cov_rest / np.sqrt(c[i, i] * var_rest)),
                "alpha.drop": float(_alpha_from_cov(c[np.ix_(keep, keep)])) if len(keep) >= 2 else np.nan,
                "dist": {_code_key(v): float((obs == v).mean()) for v in levels},
            }
        )
    return pd.DataFrame(rows).set_index("item")


def _code_key(v: float) -> float | int:
    """A code as written on the scale: 3, not 3.0 (JSON keys read "3")."""
    return int(v) if float(v).is_integer() else float(v)


# ------------------------------------------------------- instrument-driven


def _scale_codes(scale: Any) -> list[float]:
    codes = getattr(scale, "codes", None)
    if codes is None:
        return []
    if isinstance(codes, Mapping):
        codes = list(codes)
    out = []
    for c in codes:
        c = getattr(c, "code", c)
        try:
            out.append(float(c))
        except (TypeError, ValueError):
            continue
    return sorted(out)


def _reverse_keyed(instrument: Any) -> list[str]:
    return [getattr(i, "id", i) for i in (instrument.reverse_keyed_items or [])]


_VALIDITY_TITLES = {
    "htmt": "HTMT, heterotrait-monotrait ratio (above .85 suggests two constructs are not distinct)",
    "ave_cr": "Convergent validity: AVE (>= .50 customary) and composite reliability (>= .70)",
    "fornell_larcker": "Fornell-Larcker: sqrt(AVE) on the diagonal, latent correlations off it",
}


@dataclass(frozen=True)
class ReliabilityResult:
    """Reliability and validity of an instrument's constructs, computed from data."""

    constructs: pd.DataFrame  # one row per construct: alpha, ci, omega, ordinal alpha, ...
    items: pd.DataFrame  # item analysis, one row per item with its construct
    validity: dict[str, pd.DataFrame] = field(default_factory=dict)  # ave, htmt, fornell_larcker
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        show = self.constructs.copy()
        text = ["Reliability per construct", show.to_string(float_format=lambda v: f"{v:.3f}")]
        it = self.items.drop(columns=["dist"], errors="ignore")
        text += ["", "Item analysis (r.drop: corrected item-total correlation; alpha.drop: alpha without the item)",
                 it.to_string(float_format=lambda v: f"{v:.3f}")]
        for name, table in self.validity.items():
            text += ["", _VALIDITY_TITLES.get(name, name), table.to_string(float_format=lambda v: f"{v:.3f}")]
        flags = self.flags()
        if flags:
            text += ["", "Flags", *(f"  {f}" for f in flags)]
        if self.notes:
            text += ["", *(f"Note: {n}" for n in self.notes)]
        return "\n".join(text)

    def flags(self) -> list[str]:
        """Conventional thresholds crossed, in words (alpha < .70, AVE < .50, HTMT > .85, ...)."""
        out = []
        if "alpha" in self.constructs:
            low = self.constructs.index[self.constructs["alpha"] < 0.70]
            out += [f"{c}: alpha {self.constructs.loc[c, 'alpha']:.3f} < .70" for c in low]
        if len(self.items) and "r.drop" in self.items:
            weak = self.items[self.items["r.drop"] < 0.30]
            out += [f"{i}: corrected item-total r {r:.3f} < .30 (a reverse-keyed item not flagged in the "
                    "instrument shows up here as a negative r)" if r < 0 else
                    f"{i}: corrected item-total r {r:.3f} < .30" for i, r in weak["r.drop"].items()]
        av = self.validity.get("ave_cr")
        if av is not None and "ave" in av:
            out += [f"{c}: AVE {v:.3f} < .50" for c, v in av["ave"].items() if v < 0.5]
        fl = self.validity.get("fornell_larcker")
        if fl is not None and "passes" in fl:
            out += [f"{c}: fails Fornell-Larcker (sqrt(AVE) not above every latent correlation)"
                    for c, ok in fl["passes"].items() if not ok]
        ht = self.validity.get("htmt")
        if ht is not None:
            keys = list(ht.index)
            out += [f"{a}-{b}: HTMT {ht.loc[a, b]:.3f} > .85 (may not be distinct constructs)"
                    for i, a in enumerate(keys) for b in keys[i + 1:] if ht.loc[a, b] > 0.85]
        return out

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        fmt = lambda v: f"{v:.3f}"  # noqa: E731
        parts = ["<h4>Reliability per construct</h4>", self.constructs.to_html(float_format=fmt)]
        parts += ["<h4>Item analysis</h4>", self.items.drop(columns=["dist"], errors="ignore").to_html(float_format=fmt)]
        for name, table in self.validity.items():
            parts += [f"<h4>{html.escape(_VALIDITY_TITLES.get(name, name))}</h4>", table.to_html(float_format=fmt)]
        if self.flags():
            parts += ["<h4>Flags</h4><ul>", *(f"<li>{html.escape(f)}</li>" for f in self.flags()), "</ul>"]
        parts += [f"<p><em>{html.escape(n)}</em></p>" for n in self.notes]
        return "".join(parts)

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not np.isfinite(v):
                return None
            if isinstance(v, (np.floating,)):
                return clean(float(v))
            if isinstance(v, np.integer):
                return int(v)
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            return v

        def records(df: pd.DataFrame, index: str) -> list[dict[str, Any]]:
            return [{k: clean(v) for k, v in r.items()} for r in df.reset_index(names=index).to_dict("records")]

        return {
            "constructs": records(self.constructs, "construct"),
            "items": records(self.items, "item"),
            "validity": {k: records(v, "construct") for k, v in self.validity.items()},
            "flags": self.flags(),
            "notes": list(self.notes),
        }


def _fit_measurement(syntax: str, data: pd.DataFrame) -> Any:
    """Fit a CFA with the engine; None (with the reason) if it is not available or fails."""
    from analysis.sem.fit import fit_sem  # type: ignore

    return fit_sem(syntax, data)


def _omega_one_factor(x: pd.DataFrame) -> float:
    """Omega of a one-factor ML CFA (compRelSEM, obs.var=TRUE) without the SEM engine.

    The ML one-factor solution is scale-free, so fitting the correlation
    matrix and rescaling by the SDs gives the covariance-metric loadings.
    """
    x = x.dropna()
    s = x.cov(ddof=0).to_numpy()
    sd = np.sqrt(np.diag(s))
    lam = _one_factor_ml(s / np.outer(sd, sd)) * sd
    # sign: the factor points in the direction of most items; an unreversed item loads negative
    return float(lam.sum() ** 2 / s.sum())


def reliability_report(
    data: pd.DataFrame,
    instrument: Any,
    *,
    constructs: Sequence[str] | None = None,
    ordinal: bool = False,
    ci_level: float = 0.95,
    validity: bool = True,
) -> ReliabilityResult:
    """Reliability and discriminant validity of an instrument's constructs.

    Missing codes become NA and reverse-keyed items are recoded first
    (:func:`recode_items`). Per construct: Cronbach's alpha with its CI,
    McDonald's omega (one-factor ML CFA, as compRelSEM), ordinal alpha/omega
    from polychorics when ``ordinal``, and the item analysis. Across constructs
    (``validity``): AVE, composite reliability and Fornell-Larcker from the
    joint CFA (when the SEM engine is available), and HTMT.
    """
    ids = list(constructs) if constructs is not None else [c for c in construct_ids(instrument) if is_latent(instrument, c)]
    notes: list[str] = []
    absent = [i for cid in ids for i in items_of(instrument, cid) if i not in data.columns]
    if absent:  # all of them at once, not one construct at a time
        raise ReliabilityError(f"The data lack item column(s) the instrument defines: {', '.join(absent)}.")
    rows, item_tables, cons_items = [], [], {}
    for cid in ids:
        names = items_of(instrument, cid)
        x = recode_items(data, instrument, names)
        cons_items[cid] = names
        if len(names) < 2:
            notes.append(f"{cid}: fewer than 2 items, no reliability.")
            continue
        a = cronbach_alpha(x, ci_level=ci_level).iloc[0]
        row = {
            "construct": cid,
            "n_items": len(names),
            "n_obs": int(a["n_obs"]),
            "alpha": a["estimate"],
            "alpha.ci.lower": a["ci.lower"],
            "alpha.ci.upper": a["ci.upper"],
            "omega": _omega_one_factor(x) if len(names) >= 3 else np.nan,
        }
        if ordinal:
            row["ordinal.alpha"] = ordinal_alpha(x)["estimate"].iloc[0]
            row["ordinal.omega"] = ordinal_omega(x)["estimate"].iloc[0] if len(names) >= 3 else np.nan
        rows.append(row)
        codes = {n: _scale_codes(instrument.scale_of(n)) or None for n in names}
        ia = item_analysis(x, codes={k: v for k, v in codes.items() if v})
        ia.insert(0, "construct", cid)
        ia.insert(1, "reverse_keyed", [n in set(_reverse_keyed(instrument)) for n in names])
        item_tables.append(ia)
    tables: dict[str, pd.DataFrame] = {}
    latent = {k: v for k, v in cons_items.items() if len(v) >= 2}
    if validity and len(latent) > 1:
        all_items = [i for v in latent.values() for i in v]
        x = recode_items(data, instrument, all_items)
        tables["htmt"] = htmt(latent, x, ordered=ordinal)
        syntax = "\n".join(f"{k} =~ {' + '.join(v)}" for k, v in latent.items())
        n_complete = len(x.dropna())
        if n_complete < len(x):  # listwise, as semTools: say how many are left
            notes.append(
                f"HTMT, AVE, composite reliability and Fornell-Larcker use the {n_complete} of {len(x)} "
                f"respondents ({n_complete / len(x):.0%}) who answered every item of the {len(latent)} "
                "constructs (listwise deletion); alpha uses pairwise covariances."
            )
        try:
            fit = _fit_measurement(syntax, x.dropna())
        except Exception as exc:  # engine missing or the CFA failed: say so, keep the rest
            notes.append(f"AVE, composite reliability and Fornell-Larcker not computed: {exc}")
        else:
            a = ave(fit, x.dropna()).set_index("construct")
            cr = composite_reliability(fit).set_index("construct")
            tables["ave_cr"] = pd.DataFrame({"ave": a["estimate"], "cr": cr["estimate"]})
            tables["fornell_larcker"] = fornell_larcker(fit, x.dropna())
    cons_df = pd.DataFrame(rows).set_index("construct") if rows else pd.DataFrame()
    items_df = pd.concat(item_tables) if item_tables else pd.DataFrame()
    return ReliabilityResult(cons_df, items_df, tables, tuple(notes))
