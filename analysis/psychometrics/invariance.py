"""Measurement invariance across groups: the ladder, partial invariance, group comparisons.

Before structural paths or latent means can be compared across ethnic groups
or languages, the measures must mean the same thing in each group. The ladder
fits one joint multi-group model per step, each adding cross-group equality
constraints (lavaan's ``group.equal``):

- continuous indicators (ML, MLR): configural → metric (loadings) → scalar
  (+ intercepts) → strict (+ residual variances);
- ordered indicators (WLSMV): configural → thresholds → metric → scalar,
  thresholds first and identified as Wu & Estabrook (2016) propose (the
  ``ID.cat = "Wu.Estabrook.2016"`` models of ``semTools::measEq.syntax``).

Each step is compared with the previous one: the chi-square difference test
(scaled where the estimator is robust) and the changes in CFI, RMSEA and SRMR,
judged against Chen's (2007) cut-offs, stated in every report:

- metric (and thresholds): ΔCFI ≥ −.010, with ΔRMSEA ≤ .015 or ΔSRMR ≤ .030;
- scalar and strict: ΔCFI ≥ −.010, ΔRMSEA ≤ .015 and ΔSRMR ≤ .010.

:func:`partial_invariance_search` frees the most offending equality
constraint, one at a time (the one whose release lowers chi-square most),
until the criterion holds, and reports what it freed. :func:`compare_groups`
then compares latent means and structural paths across groups on the
(partially) scalar-invariant model.
"""

from __future__ import annotations

import html
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from analysis.sem import distributions as stats

from analysis.errors import DataError, OptionError, SEMWarning
from analysis.sem.estimators import ESTIMATOR_NAMES

__all__ = [
    "invariance_ladder",
    "partial_invariance_search",
    "release_score_tests",
    "compare_groups",
    "InvarianceResult",
    "PartialInvarianceResult",
    "GroupComparison",
    "SmallGroupError",
    "SmallGroupWarning",
    "CHEN_2007",
    "instrument_group_data",
]


class SmallGroupError(DataError):
    """A group too small to estimate its model, or an ordinal category it never uses."""


class SmallGroupWarning(SEMWarning):
    """A group below the configured minimum size (estimates will be unstable)."""

    kind = "small-group"


#: Chen (2007) cut-offs: change from the less to the more constrained model.
CHEN_2007 = {
    "metric": {"delta.cfi": -0.010, "delta.rmsea": 0.015, "delta.srmr": 0.030, "rule": "cfi and (rmsea or srmr)"},
    "scalar": {"delta.cfi": -0.010, "delta.rmsea": 0.015, "delta.srmr": 0.010, "rule": "cfi and rmsea and srmr"},
}

# cumulative group.equal per step; ordinal ladders use the Wu & Estabrook steps
_CONTINUOUS_STEPS: dict[str, tuple[str, ...]] = {
    "configural": (),
    "metric": ("loadings",),
    "scalar": ("loadings", "intercepts"),
    "strict": ("loadings", "intercepts", "residuals"),
    "means": ("loadings", "intercepts", "residuals", "means"),
}
_ORDINAL_STEPS: dict[str, tuple[str, ...]] = {
    "configural": (),
    "thresholds": ("thresholds",),
    "metric": ("thresholds", "loadings"),
    "scalar": ("thresholds", "loadings", "intercepts"),
    # strict: the latent responses' residual variances, parameters under parameterization="theta" only
    "strict": ("thresholds", "loadings", "intercepts", "residuals"),
    "means": ("thresholds", "loadings", "intercepts", "means"),
}
_ORDINAL_DEFAULT = ("configural", "thresholds", "metric", "scalar")
_CONTINUOUS_DEFAULT = ("configural", "metric", "scalar", "strict")
_STEP_ADDS = {  # the constraint type a step adds, for the partial search
    "metric": "loadings",
    "thresholds": "thresholds",
    "scalar": "intercepts",
    "strict": "residuals",
    "means": "means",
}


def _criterion_kind(step: str) -> str:
    return "metric" if step in ("metric", "thresholds") else "scalar"


# ---------------------------------------------------------------- input checks


def _ordered_list(data: pd.DataFrame, ordered: Any, observed: Sequence[str]) -> list[str]:
    if ordered is None or ordered is False:
        return []
    if ordered is True or ordered == "all":
        return list(observed)
    if isinstance(ordered, str):
        ordered = [o.strip() for o in ordered.split(",") if o.strip()]
    missing = [o for o in ordered if o not in data.columns]
    if missing:
        raise OptionError(f"ordered variable(s) not in the data: {', '.join(missing)}.")
    return list(ordered)


def observed_of(model: str) -> list[str]:
    """The observed variables of lavaan model syntax."""
    from analysis.sem.partable import build_partable, observed_names

    pt = build_partable(model)
    return list(observed_names(pt))


def _group_labels(data: pd.DataFrame, group: str) -> list[Any]:
    # lavaan's order: order of first appearance (levels for a categorical)
    col = data[group]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return [c for c in col.cat.categories if (col == c).any()]
    return list(pd.unique(col.dropna()))


def check_groups(
    model: str,
    data: pd.DataFrame,
    group: str,
    *,
    ordered: Sequence[str] = (),
    min_group_size: int = 100,
    missing: str = "listwise",
) -> dict[Any, int]:
    """Cases per group, after the checks that make a multi-group fit possible.

    Raises :class:`SmallGroupError` naming the group when it has fewer complete
    cases than its configural model has free parameters, or when an ordered
    item has a category the group never uses (naming item and category);
    warns with :class:`SmallGroupWarning` for a group below ``min_group_size``.
    With ``missing="fiml"`` (or ``"ml"``) a case counts when it answered at
    least one of the model's items, as the fit uses it.
    """
    if not isinstance(data, pd.DataFrame):
        raise OptionError(f"The 'data' parameter must be a DataFrame. Got {type(data).__name__} instead.")
    if group not in data.columns:
        import difflib

        close = difflib.get_close_matches(group, [str(c) for c in data.columns], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DataError(f"grouping column '{group}' is not in the data{hint}.")
    observed = observed_of(model)
    absent = [v for v in observed if v not in data.columns]
    if absent:
        raise DataError(f"the data lack the model's observed variable(s): {', '.join(absent)}.")
    labels = _group_labels(data, group)
    if len(labels) < 2:
        raise DataError(f"grouping column '{group}' has {len(labels)} group(s); invariance needs at least 2.")
    n_missing_group = int(data[group].isna().sum())
    if n_missing_group:
        warnings.warn(f"{n_missing_group} row(s) without a value of '{group}' are left out.", SmallGroupWarning, stacklevel=3)
    fiml = str(missing).lower() in ("fiml", "ml")
    complete = data.dropna(subset=[group]).dropna(subset=observed, how="all" if fiml else "any")
    counts = {g: int((complete[group] == g).sum()) for g in labels}
    cases = "case(s) with an answer" if fiml else "complete case(s)"
    per_group = _free_per_group(model, len(labels), ordered, data, observed)
    for g, n in counts.items():
        if n < per_group:
            raise SmallGroupError(
                f"group '{g}' of '{group}' has {n} {cases}, fewer than the {per_group} free "
                f"parameters its configural model estimates; merge it with a similar group or drop it."
            )
    if ordered:
        from analysis.sem.polychoric import SparseCategoryError, ordinal_codes

        try:
            ordinal_codes(complete, list(ordered), groups=complete[group].to_numpy())
        except SparseCategoryError as exc:
            raise SmallGroupError(f"{exc} (grouping column '{group}').") from None
    for g, n in counts.items():
        if n < min_group_size:
            warnings.warn(
                f"group '{g}' of '{group}' has only {n} {cases.replace('(s)', 's')} (minimum {min_group_size}); "
                "invariance tests and group estimates will be unstable.",
                SmallGroupWarning,
                stacklevel=3,
            )
    return counts


def _free_per_group(model: str, n_groups: int, ordered: Sequence[str], data: pd.DataFrame, observed: list[str]) -> int:
    from analysis.sem.partable import build_partable

    kw: dict[str, Any] = {}
    if ordered:
        kw["ordered"] = list(ordered)
        kw["n_thresholds"] = {o: max(int(data[o].nunique()) - 1, 1) for o in ordered}
    pt = build_partable(model, n_groups=n_groups, **kw)
    g1 = pt[(pt["group"] == 1) & (pt["free"] > 0)]
    return int(g1["free"].nunique())


def instrument_group_data(data: pd.DataFrame, instrument: Any, model: str, group: str) -> pd.DataFrame:
    """The data as the instrument defines them, ready for a multi-group fit.

    The model's items get missing codes as NA and reverse keys applied (as
    :func:`analysis.psychometrics.reliability.recode_items`); left raw, "prefer not to say"
    = -9 would enter the covariances as an answer. The grouping column has its
    missing codes dropped to NA and its codes replaced by their labels, in
    the scale's order (so the first code is the reference group). ``group``
    may also name a collapsed version of an item (``ETHNIC5`` of ``ETHNIC``),
    which is derived here, and observed constructs of the model that the data
    lack (``REPR``, a count) are scored as the instrument says.
    """
    from analysis.psychometrics.items import instrument_model_data

    known = set(instrument.item_ids)
    out = instrument_model_data(data, instrument, model)
    source = next((it for it in instrument.items if it.collapsed is not None and it.collapsed.id == group), None)
    lang = instrument.default_language
    if group not in data.columns and source is not None and source.id in data.columns:
        codes = pd.to_numeric(data[source.id], errors="coerce").map(source.collapsed.mapping())
        labels = {g.code: g.label.get(lang, str(g.code)) for g in source.collapsed.groups}
    elif group in data.columns and group in known and instrument.scale_of(group).categories:
        scale = instrument.scale_of(group)
        codes = pd.to_numeric(data[group], errors="coerce")
        codes = codes.where(codes.isin(scale.codes))  # missing codes and strays: no group
        labels = scale.labels(lang)
    else:
        return out  # not an instrument item: the column is used as it is
    if codes.isna().all():
        return out  # labels rather than codes (an export with text answers): used as they are
    out[group] = codes.map(labels)
    order = codes.map({c: i for i, c in enumerate(labels)})
    # stable sort: groups appear in the scale's order, rows within a group keep theirs
    return out.iloc[np.argsort(order.fillna(len(labels)).to_numpy(), kind="stable")]


# ---------------------------------------------------------------- fitting


def _fit(
    model: Any,
    data: pd.DataFrame,
    *,
    group: str,
    group_equal: Sequence[str],
    group_partial: Sequence[str],
    estimator: str,
    ordered: Sequence[str],
    fit_kwargs: Mapping[str, Any],
) -> Any:
    from analysis.sem.fit import fit_sem

    kw = dict(fit_kwargs)
    if ordered:
        kw["ordered"] = list(ordered)
    return fit_sem(
        model,
        data,
        group=group,
        group_equal=list(group_equal),
        group_partial=list(group_partial),
        estimator=estimator,
        **kw,
    )


def _fit_ordinal_step(
    model: str,
    data: pd.DataFrame,
    *,
    group: str,
    equal: Sequence[str],
    group_partial: Sequence[str],
    estimator: str,
    ordered: Sequence[str],
    fit_kwargs: Mapping[str, Any],
) -> Any:
    """One Wu & Estabrook (2016) step, fitted from its explicit syntax."""
    from analysis.sem.fit import fit_sem

    syntax = wu_estabrook_syntax(model, data, group=group, equal=equal, ordered=ordered, group_partial=group_partial,
                                 parameterization=str(fit_kwargs.get("parameterization", "delta")).lower())
    kw = {"std_lv": True, **dict(fit_kwargs)}
    fit = fit_sem(syntax, data, group=group, estimator=estimator, ordered=list(ordered), **kw)
    object.__setattr__(fit, "syntax", syntax)
    return fit


def wu_estabrook_syntax(
    model: str,
    data: pd.DataFrame,
    *,
    group: str,
    equal: Sequence[str],
    ordered: Sequence[str],
    group_partial: Sequence[str] = (),
    parameterization: str = "delta",
) -> str:
    """lavaan syntax of one ordinal invariance step, identified as Wu & Estabrook (2016).

    The same models as ``semTools::measEq.syntax(configural.model, ordered,
    parameterization = "delta", ID.fac = "std.lv", ID.cat =
    "Wu.Estabrook.2016", group.equal = equal)``: factor variances 1 and means 0
    in every group until constraints identify them beyond group 1 (variances
    once loadings are equal, means once intercepts are); item intercepts 0 and
    latent-response scales 1 in every group until thresholds are equal, then
    free beyond group 1; at the scalar step the intercepts are 0 everywhere.
    ``group_partial`` (``"N1|t2"``, ``"NEU=~N3"``, ``"N4~1"``) keeps a parameter
    group-specific. Regressions and covariances of ``model`` are kept as written.

    ``parameterization="theta"`` (measEq.syntax's theta): the latent responses'
    residual variances take the scales' place, 1 in every group until thresholds
    are equal, then free beyond group 1 until ``residuals`` are equal (strict),
    when they are 1 again everywhere (``"N1~~N1"`` in ``group_partial`` keeps one free).
    """
    from analysis.sem.syntax import parse_model

    statements = parse_model(model)
    loads = [s for s in statements if s.op == "=~"]
    factors = list(dict.fromkeys(s.lhs for s in loads))
    items = list(dict.fromkeys(s.rhs for s in loads))
    not_ordered = [i for i in items if i not in ordered]
    if not_ordered:
        raise OptionError(
            f"the ordinal invariance ladder needs every indicator ordered; not ordered: {', '.join(not_ordered)}."
        )
    labels = _group_labels(data, group)
    n = len(labels)
    partial = {_key(p) for p in group_partial}
    th_eq, ld_eq, int_eq = "thresholds" in equal, "loadings" in equal, "intercepts" in equal
    res_eq = "residuals" in equal
    if res_eq and parameterization != "theta":
        raise OptionError("strict invariance of ordered items equates the latent responses' residual variances, "
                          "which are parameters only under parameterization='theta' (delta fixes them)")

    def vec(values: Sequence[Any]) -> str:
        return "c(" + ", ".join("NA" if v is None else (f"{v:g}" if not isinstance(v, str) else v) for v in values) + ")"

    def labs(base: str, same: bool) -> str:
        return vec([base] * n if same else [f"{base}.g{g + 1}" for g in range(n)])

    out = ["## loadings"]
    for s in loads:
        same = ld_eq and (s.lhs, "=~", s.rhs) not in partial
        # no NA* needed: fitted with std_lv, so no loading is fixed to 1
        out.append(f"{s.lhs} =~ {labs(f'lambda.{s.rhs}.{s.lhs}', same)}*{s.rhs}")
    out.append("## thresholds")
    for i in items:
        k = int(data[i].nunique()) - 1
        for t in range(1, k + 1):
            same = th_eq and (i, "|", f"t{t}") not in partial
            out.append(f"{i} | {labs(f'{i}.thr{t}', same)}*t{t}")
    out.append("## intercepts and latent-response scales")
    for i in items:
        free_int = th_eq and (not int_eq or (i, "~1", "") in partial)
        out.append(f"{i} ~ {vec([0] + [None if free_int else 0] * (n - 1))}*1")
        if parameterization == "theta":
            free_res = th_eq and (not res_eq or (i, "~~", i) in partial)
            out.append(f"{i} ~~ {vec([1] + [None if free_res else 1] * (n - 1))}*{i}")
        else:
            out.append(f"{i} ~*~ {vec([1] + [None if th_eq else 1] * (n - 1))}*{i}")
    out.append("## factor means and variances")
    for f in factors:
        free_mean = int_eq and "means" not in equal
        out.append(f"{f} ~ {vec([0] + [None if free_mean else 0] * (n - 1))}*1")
        out.append(f"{f} ~~ {vec([1] + [None if ld_eq else 1] * (n - 1))}*{f}")
    rest = [s for s in statements if s.op not in ("=~", "|", "~*~") and not (s.op == "~1" and s.lhs in items + factors)]
    if rest:
        out.append("## structural part as written")
        for s in rest:
            if s.op == "~" and "regressions" in equal and (s.lhs, "~", s.rhs) not in partial:
                out.append(f"{s.lhs} ~ {labs(f'beta.{s.lhs}.{s.rhs}', True)}*{s.rhs}")
            else:
                out.append(f"{s.lhs} {s.op} {s.rhs if s.op != '~1' else '1'}")
    return "\n".join(out) + "\n"


def _key(spec: str) -> tuple[str, str, str]:
    from analysis.sem.syntax import parse_model

    s = parse_model(spec)[0]
    return (s.lhs, s.op, s.rhs)


# ---------------------------------------------------------------- fit measures


def _fi(fit: Any) -> pd.Series:
    return fit.fit_indices


def _get(fi: pd.Series, *keys: str) -> float:
    for k in keys:
        if k in fi.index and not pd.isna(fi[k]):
            return float(fi[k])
    return math.nan


def _robust(estimator: str) -> bool:
    return estimator.upper() in ("MLR", "MLM", "MLMV", "MLMVS", "WLSMV", "ULSMV")


def _step_row(name: str, fit: Any, estimator: str, equal: Sequence[str], freed: Sequence[str] = ()) -> dict[str, Any]:
    fi = _fi(fit)
    row: dict[str, Any] = {
        "name": name,
        "group.equal": list(equal),
        "group.partial": list(freed),
        "npar": _get(fi, "npar"),
        "chisq": _get(fi, "chisq"),
        "df": _get(fi, "df"),
        "pvalue": _get(fi, "pvalue"),
        "cfi": _get(fi, "cfi"),
        "tli": _get(fi, "tli"),
        "rmsea": _get(fi, "rmsea"),
        "srmr": _get(fi, "srmr"),
    }
    if _robust(estimator):
        for k in ("chisq.scaled", "df.scaled", "pvalue.scaled", "chisq.scaling.factor", "cfi.scaled", "tli.scaled",
                  "rmsea.scaled", "cfi.robust", "tli.robust", "rmsea.robust"):
            row[k] = _get(fi, k)
    row["converged"] = bool(getattr(fit, "converged", True))
    return row


def _difference(restricted: Any, free: Any, estimator: str) -> dict[str, Any]:
    """Chi-square difference test of nested fits (scaled where the estimator is robust)."""
    try:
        from analysis.sem.compare import compare

        # lavTestLRT's choice: Satorra (2000) for the scaled-shifted WLSMV/ULSMV test
        method = "satorra.2000" if estimator.upper() in ("WLSMV", "ULSMV") else "default"
        res = compare(free, restricted, warn=False, method=method)
        t = res.tests[0] if res.tests else None
        if t is not None and not math.isnan(float(t.stat)):
            return {"chisq.diff": float(t.stat), "df.diff": float(t.df), "pvalue": float(t.pvalue), "method": t.method}
    except ImportError:
        pass
    f0, f1 = _fi(restricted), _fi(free)
    d = _get(f0, "chisq") - _get(f1, "chisq")
    ddf = _get(f0, "df") - _get(f1, "df")
    method = "standard"
    if _robust(estimator):  # a plain difference is wrong for robust estimators: say so
        return {"chisq.diff": math.nan, "df.diff": ddf, "pvalue": math.nan, "method": "unavailable (no scaled difference)"}
    p = float(stats.chi2.sf(d, ddf)) if ddf > 0 else math.nan
    return {"chisq.diff": d, "df.diff": ddf, "pvalue": p, "method": method}


def _fit_keys(estimator: str) -> tuple[tuple[str, ...], ...]:
    # MLR/MLM: the robust CFI/RMSEA (Brosseau-Liard & Savalei 2012/2014); WLSMV/ULSMV: the
    # scaled ones, on which the ordinal invariance literature (and lavaan 0.6-14) report ΔCFI
    if estimator.upper() in ("WLSMV", "ULSMV"):
        return ("cfi.scaled", "cfi"), ("rmsea.scaled", "rmsea"), ("srmr",)
    if _robust(estimator):
        return ("cfi.robust", "cfi.scaled", "cfi"), ("rmsea.robust", "rmsea.scaled", "rmsea"), ("srmr",)
    return ("cfi",), ("rmsea",), ("srmr",)


def _comparison(prev: str, step: str, f0: Any, f1: Any, estimator: str) -> dict[str, Any]:
    """f0: the less constrained fit (prev), f1: the more constrained (step)."""
    cfi_k, rmsea_k, srmr_k = _fit_keys(estimator)
    a, b = _fi(f0), _fi(f1)
    row = {"from": prev, "to": step, **_difference(f1, f0, estimator)}
    row["delta.cfi"] = _get(b, *cfi_k) - _get(a, *cfi_k)
    row["delta.rmsea"] = _get(b, *rmsea_k) - _get(a, *rmsea_k)
    row["delta.srmr"] = _get(b, *srmr_k) - _get(a, *srmr_k)
    kind = _criterion_kind(step)
    cut = CHEN_2007[kind]
    ok_cfi = row["delta.cfi"] >= cut["delta.cfi"]
    ok_rmsea = row["delta.rmsea"] <= cut["delta.rmsea"]
    ok_srmr = row["delta.srmr"] <= cut["delta.srmr"]
    row["holds"] = bool(ok_cfi and (ok_rmsea or ok_srmr)) if kind == "metric" else bool(ok_cfi and ok_rmsea and ok_srmr)
    row["criterion"] = _criterion_text(kind)
    return row


def _criterion_text(kind: str) -> str:
    c = CHEN_2007[kind]
    joiner = " or " if kind == "metric" else " and "
    return (
        f"Chen (2007): ΔCFI >= {c['delta.cfi']:.3f} and "
        + ("(" if kind == "metric" else "")
        + f"ΔRMSEA <= {c['delta.rmsea']:.3f}{joiner}ΔSRMR <= {c['delta.srmr']:.3f}"
        + (")" if kind == "metric" else "")
    )


# ---------------------------------------------------------------- results


def _int_df(table: pd.DataFrame) -> pd.DataFrame:
    """Degrees of freedom shown as whole numbers (48, not 48.000) where they are."""
    out = table.copy()
    for c in ("df", "df.diff", "df*"):
        if c in out and out[c].notna().all() and np.allclose(out[c], np.round(out[c])):
            out[c] = out[c].round().astype(int)
    return out


def _clean(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    return v


@dataclass(frozen=True, eq=False)
class InvarianceResult:
    """The invariance ladder: one fit per step and the comparisons between steps."""

    steps: pd.DataFrame
    """One row per step: name, chisq, df, pvalue, cfi, tli, rmsea, srmr (scaled/robust where robust)."""
    comparisons: pd.DataFrame
    """One row per step after the first: chisq.diff, df.diff, pvalue, delta.cfi/rmsea/srmr, holds."""
    fits: Mapping[str, Any] = field(default_factory=dict)
    estimator: str = "ML"
    group: str = ""
    group_labels: tuple[Any, ...] = ()
    nobs: tuple[int, ...] = ()
    ordinal: bool = False
    notes: tuple[str, ...] = ()

    @property
    def highest(self) -> str:
        """The most constrained step reached with every comparison up to it holding."""
        level = str(self.steps["name"].iloc[0])
        for _, r in self.comparisons.iterrows():
            if not r["holds"]:
                break
            level = str(r["to"])
        return level

    def summary(self) -> str:
        shown = self.steps.copy()
        cols = ["name", "chisq", "df", "pvalue", "cfi", "tli", "rmsea", "srmr"]
        if _robust(self.estimator):
            # robust indices where the estimator has them (MLR), else the scaled ones (WLSMV)
            first = "scaled" if self.estimator in ("WLSMV", "ULSMV") else "robust"
            second = "robust" if first == "scaled" else "scaled"
            for k in ("cfi", "tli", "rmsea"):
                shown[k] = shown.get(f"{k}.{first}", pd.Series(np.nan, index=shown.index)).fillna(shown.get(f"{k}.{second}"))
            shown = shown.rename(columns={"chisq.scaled": "chisq*", "df.scaled": "df*", "pvalue.scaled": "p*"})
            cols = ["name", "chisq*", "df*", "p*", "cfi", "tli", "rmsea", "srmr"]
        groups = ", ".join(f"{g} (n = {n})" for g, n in zip(self.group_labels, self.nobs))
        lines = [
            f"Measurement invariance across '{self.group}': {groups}",
            f"Estimator {self.estimator}" + (" (ordered indicators; thresholds first, Wu & Estabrook 2016)" if self.ordinal else ""),
            "",
            _int_df(shown[[c for c in cols if c in shown]]).to_string(index=False, float_format=lambda v: f"{v:.3f}"),
            "",
            "Comparisons (each step against the previous one)",
            _int_df(self.comparisons[
                ["from", "to", "chisq.diff", "df.diff", "pvalue", "delta.cfi", "delta.rmsea", "delta.srmr", "holds"]
            ]).to_string(index=False, float_format=lambda v: f"{v:.3f}"),
            "",
            "Cut-offs: metric/thresholds " + _criterion_text("metric") + "; scalar/strict " + _criterion_text("scalar") + ".",
            f"Highest level supported: {self.highest}.",
        ]
        if _robust(self.estimator):
            lines.append("* scaled test statistic; cfi/tli/rmsea robust (MLR) or scaled (WLSMV); Δ tests scaled.")
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        fmt = lambda v: f"{v:.3f}"  # noqa: E731
        steps = self.steps.drop(columns=["group.equal", "group.partial"], errors="ignore")
        comp = self.comparisons.drop(columns=["criterion"], errors="ignore")
        return (
            f"<h4>Measurement invariance across {html.escape(str(self.group))} ({html.escape(self.estimator)})</h4>"
            + steps.to_html(index=False, float_format=fmt)
            + comp.to_html(index=False, float_format=fmt)
            + "<p>Cut-offs: metric/thresholds "
            + html.escape(_criterion_text("metric"))
            + "; scalar/strict "
            + html.escape(_criterion_text("scalar"))
            + f". Highest level supported: <b>{html.escape(self.highest)}</b>.</p>"
            + "".join(f"<p><em>{html.escape(n)}</em></p>" for n in self.notes)
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract: ``{"steps": [...], "comparisons": [...], ...}`` at full precision."""
        return _clean(
            {
                "steps": self.steps.to_dict("records"),
                "comparisons": self.comparisons.to_dict("records"),
                "estimator": self.estimator,
                "group": self.group,
                "group_labels": [str(g) for g in self.group_labels],
                "nobs": list(self.nobs),
                "ordinal": self.ordinal,
                "highest": self.highest,
                "criteria": {"source": "Chen (2007)", **CHEN_2007},
                "notes": list(self.notes),
            }
        )


def _check_estimator(estimator: str) -> str:
    est = str(estimator).upper()
    if est not in ESTIMATOR_NAMES:
        raise OptionError(f"The 'estimator' parameter must be one of {', '.join(ESTIMATOR_NAMES)}. Got {estimator!r} instead.")
    return est


def _setup(model: str, data: pd.DataFrame, estimator: str, ordered: Any) -> tuple[str, list[str], bool, dict]:
    """Estimator, ordered items, whether the ladder is ordinal (WLSMV/ULSMV), and its steps."""
    est = _check_estimator(estimator)
    ordered_list = _ordered_list(data, ordered, observed_of(model))
    ordinal = bool(ordered_list) and est in ("WLSMV", "ULSMV")
    return est, ordered_list, ordinal, _ORDINAL_STEPS if ordinal else _CONTINUOUS_STEPS


def invariance_ladder(
    model: str,
    data: pd.DataFrame,
    *,
    group: str,
    estimator: str = "ML",
    ordered: Any = None,
    steps: Sequence[str] | None = None,
    group_partial: Sequence[str] = (),
    min_group_size: int = 100,
    progress: Callable[[str], None] | None = None,
    **fit_kwargs: Any,
) -> InvarianceResult:
    """Fit the invariance ladder and compare each step with the previous one.

    ``steps`` default to configural, metric, scalar, strict (continuous) or
    configural, thresholds, metric, scalar (``ordered`` items with WLSMV).
    ``group_partial`` frees single parameters in every constrained step
    (lavaan syntax, e.g. ``"x3 ~ 1"``). Extra keyword arguments go to
    :func:`analysis.sem.fit_sem` (e.g. ``missing="fiml"``). ``progress``, if
    given, is called with a short message before each fit (for a status line).

    Examples
    --------
    >>> # In R: for (eq in list(NULL, "loadings", c("loadings","intercepts"), ...))
    >>> #         cfa(HS.model, HolzingerSwineford1939, group = "school", group.equal = eq)
    >>> # invariance_ladder(HS_MODEL, hs, group="school").steps
    """
    design = fit_kwargs.get("design")
    surveyed = fit_kwargs.get("sampling_weights") or fit_kwargs.get("cluster") or (
        design is not None and (design.weights or design.cluster))
    if surveyed and estimator.upper() == "ML":
        estimator = "MLR"   # as fit_sem (lavaan): a survey design makes ML robust, so the tests are scaled
    est, ordered_list, ordinal, table = _setup(model, data, estimator, ordered)
    est_note = f"ordered indicators with {est}: treated as continuous by this estimator" if ordered_list and not ordinal else ""
    default = _ORDINAL_DEFAULT if ordinal else _CONTINUOUS_DEFAULT
    if ordinal and str(fit_kwargs.get("parameterization", "delta")).lower() == "theta":
        default = _ORDINAL_DEFAULT + ("strict",)     # residual variances are parameters: strict is testable
    steps = tuple(steps) if steps is not None else default
    unknown = [s for s in steps if s not in table]
    if unknown:
        raise OptionError(f"unknown invariance step(s) {', '.join(map(repr, unknown))}; choose from {', '.join(table)}.")
    if len(steps) < 2:
        raise OptionError("an invariance ladder needs at least two steps (e.g. configural and metric).")
    counts = check_groups(model, data, group, ordered=ordered_list if ordinal else (), min_group_size=min_group_size,
                          missing=fit_kwargs.get("missing", "listwise"))
    fits: dict[str, Any] = {}
    rows = []
    for i, s in enumerate(steps):
        if progress is not None:
            progress(f"ladder: fitting {s} ({i + 1} of {len(steps)})")
        equal = table[s]
        partial = list(group_partial) if equal else []
        fits[s] = _fit_step(model, data, group, equal, partial, est, ordered_list, fit_kwargs)
        rows.append(_step_row(s, fits[s], est, equal, partial))
    comps = [_comparison(steps[i - 1], steps[i], fits[steps[i - 1]], fits[steps[i]], est) for i in range(1, len(steps))]
    notes = [est_note] if est_note else []
    notes += [f"{s}: did not converge" for s in steps if not getattr(fits[s], "converged", True)]
    first = fits[steps[0]]
    return InvarianceResult(
        steps=pd.DataFrame(rows),
        comparisons=pd.DataFrame(comps),
        fits=fits,
        estimator=est,
        group=group,
        group_labels=tuple(getattr(first, "group_labels", ()) or counts.keys()),
        nobs=tuple(getattr(first, "nobs", ()) or counts.values()),
        ordinal=ordinal,
        notes=tuple(notes),
    )


def _fit_step(model, data, group, equal, partial, est, ordered_list, fit_kwargs):
    if ordered_list and est in ("WLSMV", "ULSMV"):
        return _fit_ordinal_step(
            model, data, group=group, equal=equal, group_partial=partial, estimator=est, ordered=ordered_list, fit_kwargs=fit_kwargs
        )
    return _fit(
        model, data, group=group, group_equal=equal, group_partial=partial, estimator=est, ordered=ordered_list, fit_kwargs=fit_kwargs
    )


# ---------------------------------------------------------------- partial invariance


@dataclass(frozen=True, eq=False)
class PartialInvarianceResult:
    """What a partial-invariance search freed, step by step, and where it ended."""

    step: str
    freed: tuple[str, ...]
    history: pd.DataFrame  # one row per iteration: freed parameter, chisq, df, delta.cfi, chisq.diff, pvalue, holds
    holds: bool
    fit: Any = None
    baseline: str = ""
    criterion: str = ""
    method: str = "refit"

    def summary(self) -> str:
        status = "holds" if self.holds else "does NOT hold"
        # "holds after freeing nothing" read as if something had been tried and found unneeded
        how = f"after freeing {', '.join(self.freed)}" if self.freed else "without freeing any constraint"
        return "\n".join(
            [
                f"Partial {self.step} invariance (against {self.baseline}): {status} {how}.",
                (
                    "Each row frees the equality constraint with the largest score test (lavTestScore), one at a time."
                    if self.method == "score"
                    else "Each row frees the equality constraint whose release lowers chi-square most (one at a time)."
                ),
                _int_df(self.history.assign(freed=self.history["freed"].replace("", "(none)")))
                .to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""),
                f"Criterion: {self.criterion}.",
            ]
        )

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.summary().splitlines()[0])}</p>" + self.history.to_html(index=False, float_format=lambda v: f"{v:.3f}")

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "step": self.step,
                "baseline": self.baseline,
                "freed": list(self.freed),
                "holds": self.holds,
                "criterion": self.criterion,
                "method": self.method,
                "history": self.history.to_dict("records"),
            }
        )


def _constrained_keys(fit: Any, kind: str, lvs: set[str], ordered: Sequence[str]) -> list[str]:
    """lavaan-syntax names of parameters held equal across groups by `kind`."""
    pt = fit.params
    pt = pt[(pt["group"] > 0) & (pt["free"] > 0)]
    out = []
    for (lhs, op, rhs), rows in pt.groupby(["lhs", "op", "rhs"], sort=False):
        if rows["free"].nunique() != 1 or len(rows) < 2:
            continue  # not constrained across groups
        if kind == "loadings" and op == "=~":
            out.append(f"{lhs}=~{rhs}")
        elif kind == "intercepts" and op == "~1" and lhs not in lvs:
            out.append(f"{lhs}~1")
        elif kind == "means" and op == "~1" and lhs in lvs:
            out.append(f"{lhs}~1")
        elif kind == "residuals" and op == "~~" and lhs == rhs and lhs not in lvs:
            out.append(f"{lhs}~~{rhs}")
        elif kind == "thresholds" and op == "|":
            out.append(f"{lhs}|{rhs}")
    return out


def release_score_tests(fit: Any, params: Sequence[str] | None = None) -> pd.DataFrame:
    """Score tests for releasing cross-group equality constraints (ML), as ``lavTestScore(fit)$uni``.

    For each parameter held equal across groups, the model is extended so that
    the parameter is free in every group, evaluated at the constrained
    estimates, and ``X2 = N g' I^-1 g`` (g the gradient of lavaan's ML
    discrepancy, I the expected information per case of the extended model;
    Rao's score test, df = groups - 1). With two groups these are lavaan's
    univariate score tests. Only complete-data ML fits; other estimators use
    refits (:func:`partial_invariance_search` with ``method="refit"``).
    """
    from analysis.sem.estimators.ml import MLEstimator
    from analysis.sem.model import Model
    from analysis.sem.partable import latent_names

    if str(getattr(fit, "estimator", "ML")).upper() != "ML" or (getattr(fit, "options", {}) or {}).get("missing", "listwise") != "listwise":
        raise OptionError("release_score_tests needs a complete-data ML fit; use method='refit' for other estimators.")
    pt = fit.params
    lvs = set(latent_names(pt))
    keys = params if params is not None else [k for kind in ("loadings", "intercepts", "residuals", "means") for k in _constrained_keys(fit, kind, lvs, ())]
    rows_out = []
    n_groups = int(pt["group"].max())
    for spec in keys:
        key = _key(spec)
        ext = pt.copy()
        rows = ext[(ext["lhs"] == key[0]) & (ext["op"] == key[1]) & (ext["rhs"] == key[2]) & (ext["group"] > 0)]
        rows = rows.sort_values("group")
        if len(rows) < 2 or rows["free"].nunique() != 1 or int(rows["free"].iloc[0]) == 0:
            raise OptionError(f"'{spec}' is not a parameter held equal across groups in this fit.")
        nf = int(ext["free"].max())
        for i in rows.index[1:]:
            nf += 1
            ext.at[i, "free"] = nf
        model = Model(ext, meanstructure=fit.model.meanstructure)
        x = np.zeros(nf)
        for f, e in zip(ext["free"], ext["est"]):
            if f > 0:
                x[int(f) - 1] = e
        est = MLEstimator(model, fit.sample_stats)
        g = est.gradient(x)
        info = est.information(x)
        x2 = float(est.ntotal * g @ np.linalg.solve(info, g))
        df = n_groups - 1
        rows_out.append({"param": spec, "X2": x2, "df": df, "pvalue": float(stats.chi2.sf(x2, df))})
    return pd.DataFrame(rows_out, columns=["param", "X2", "df", "pvalue"])


def partial_invariance_search(
    model: str,
    data: pd.DataFrame,
    *,
    group: str,
    step: str = "scalar",
    estimator: str = "ML",
    ordered: Any = None,
    criterion: str = "cfi",
    alpha: float = 0.05,
    max_free: int | None = None,
    method: str | None = None,
    group_partial: Sequence[str] = (),
    min_group_size: int = 100,
    progress: Callable[[str], None] | None = None,
    **fit_kwargs: Any,
) -> PartialInvarianceResult:
    """Free equality constraints of ``step`` one at a time until invariance holds.

    The baseline is the step below (metric for scalar, configural for metric,
    scalar for strict), with ``group_partial`` already freed. At each round
    the most offending still-constrained parameter of the type the step adds
    (loadings, intercepts, residuals, thresholds) is freed for good:

    - ``method="score"`` (default for complete-data ML): the largest score
      test for releasing it (:func:`release_score_tests`, lavaan's
      ``lavTestScore``), one refit per round;
    - ``method="refit"`` (default otherwise): each candidate is released in
      turn and the one that lowers the (scaled) chi-square most is kept.

    The search stops when the criterion holds against the baseline:

    - ``criterion="cfi"`` (default): Chen's (2007) ΔCFI/ΔRMSEA/ΔSRMR cut-offs;
    - ``"chisq"``: the (scaled) chi-square difference test is not significant at ``alpha``;
    - ``"both"``: both.

    ``max_free`` caps the number freed (default: half the constraints of the
    step, since partial invariance with most parameters free is no invariance).
    ``progress``, if given, is called with a short message before each fit.
    """
    say = progress or (lambda message: None)
    est = _check_estimator(estimator)
    if criterion not in ("cfi", "chisq", "both"):
        raise OptionError(f"The 'criterion' parameter must be 'cfi', 'chisq' or 'both'. Got {criterion!r} instead.")
    complete_ml = est == "ML" and str(fit_kwargs.get("missing", "listwise")).lower() == "listwise"
    if method is None:
        method = "score" if complete_ml else "refit"
    if method not in ("score", "refit"):
        raise OptionError(f"The 'method' parameter must be 'score' or 'refit'. Got {method!r} instead.")
    if method == "score" and not complete_ml:
        raise OptionError("method='score' needs complete-data ML; use method='refit' with robust or ordinal estimators.")
    est, ordered_list, ordinal, table = _setup(model, data, est, ordered)
    if step not in _STEP_ADDS or step not in table:
        raise OptionError(f"The 'step' parameter must be one of {', '.join(s for s in table if s in _STEP_ADDS)}. Got {step!r} instead.")
    names = list(table)
    base_name = names[names.index(step) - 1]
    check_groups(model, data, group, ordered=ordered_list if ordinal else (), min_group_size=min_group_size,
                          missing=fit_kwargs.get("missing", "listwise"))
    from analysis.sem.partable import latent_names

    base_partial = list(group_partial)
    say(f"partial {step}: fitting the {base_name} baseline and the {step} model")
    base = _fit_step(model, data, group, table[base_name], base_partial if table[base_name] else [], est, ordered_list, fit_kwargs)
    freed: list[str] = []
    current = _fit_step(model, data, group, table[step], base_partial, est, ordered_list, fit_kwargs)
    lvs = set(latent_names(current.params))
    candidates = _constrained_keys(current, _STEP_ADDS[step], lvs, ordered_list)
    if ordinal and _STEP_ADDS[step] == "intercepts":
        # Wu & Estabrook's scalar step fixes the intercepts to 0 in every group: freeing one
        # lets it differ beyond group 1
        candidates = [f"{i}~1" for i in ordered_list if i in set(current.params["lhs"])]
    cap = max_free if max_free is not None else max(1, len(candidates) // 2)
    history = []

    def judge(fit: Any) -> tuple[dict[str, Any], bool]:
        comp = _comparison(base_name, step, base, fit, est)
        ok_cfi = comp["holds"]
        ok_chi = not (comp["pvalue"] < alpha) if not math.isnan(comp["pvalue"]) else False
        ok = ok_cfi if criterion == "cfi" else ok_chi if criterion == "chisq" else (ok_cfi and ok_chi)
        return comp, ok

    comp, ok = judge(current)
    history.append({"freed": "", "score": math.nan, **_hist(current, comp, ok)})
    while not ok and len(freed) < cap:
        remaining = [c for c in candidates if c not in freed]
        if not remaining:
            break
        score = math.nan
        rnd = f"partial {step}, round {len(freed) + 1} (at most {cap})"
        if method == "score":
            say(f"{rnd}: score tests for {len(remaining)} constraint(s)")
            tests = release_score_tests(current, remaining)
            top = tests.loc[tests["X2"].idxmax()]
            best, score = str(top["param"]), float(top["X2"])
            best_fit = _fit_step(model, data, group, table[step], base_partial + freed + [best], est, ordered_list, fit_kwargs)
        else:
            best, best_fit, best_chisq = None, None, math.inf
            for k, c in enumerate(remaining, 1):
                say(f"{rnd}: releasing {c} ({k} of {len(remaining)})")
                f = _fit_step(model, data, group, table[step], base_partial + freed + [c], est, ordered_list, fit_kwargs)
                chisq = _get(_fi(f), "chisq.scaled", "chisq") if _robust(est) else _get(_fi(f), "chisq")
                if chisq < best_chisq:
                    best, best_fit, best_chisq = c, f, chisq
        freed.append(best)
        current = best_fit
        comp, ok = judge(current)
        history.append({"freed": best, "score": score, **_hist(current, comp, ok)})
    crit = {"cfi": _criterion_text(_criterion_kind(step)), "chisq": f"chi-square difference p >= {alpha}"}
    crit_text = crit["cfi"] if criterion == "cfi" else crit["chisq"] if criterion == "chisq" else f"{crit['cfi']}; and {crit['chisq']}"
    return PartialInvarianceResult(
        step=step,
        freed=tuple(freed),
        history=pd.DataFrame(history),
        holds=ok,
        fit=current,
        baseline=base_name,
        criterion=crit_text,
        method=method,
    )


def _hist(fit: Any, comp: dict[str, Any], ok: bool) -> dict[str, Any]:
    fi = _fi(fit)
    return {
        "chisq": _get(fi, "chisq"),
        "df": _get(fi, "df"),
        "cfi": _get(fi, "cfi"),
        "chisq.diff": comp["chisq.diff"],
        "df.diff": comp["df.diff"],
        "pvalue": comp["pvalue"],
        "delta.cfi": comp["delta.cfi"],
        "delta.rmsea": comp["delta.rmsea"],
        "delta.srmr": comp["delta.srmr"],
        "holds": ok,
    }


# ---------------------------------------------------------------- group comparisons


@dataclass(frozen=True, eq=False)
class GroupComparison:
    """Latent means and structural paths across groups on a (partially) scalar-invariant model."""

    latent_means: pd.DataFrame
    paths: pd.DataFrame
    means_test: dict[str, Any]
    fit: Any = None
    group: str = ""
    reference_group: Any = None
    freed: tuple[str, ...] = ()

    def summary(self) -> str:
        fmt = lambda v: f"{v:.3f}"  # noqa: E731
        lines = [
            f"Group comparison across '{self.group}' (reference group {self.reference_group}: latent means fixed at 0)",
            "" if not self.freed else f"Partial invariance: freed {', '.join(self.freed)}",
            "Latent means (difference from the reference group)",
            self.latent_means.to_string(index=False, float_format=fmt),
            "",
            "All latent means equal: "
            + f"chisq = {self.means_test.get('chisq.diff', math.nan):.3f}, df = {self.means_test.get('df.diff', math.nan):.0f}, "
            + f"p = {self.means_test.get('pvalue', math.nan):.4g}",
        ]
        if len(self.paths):
            lines += ["", "Structural paths (equal across groups?)", self.paths.to_string(index=False, float_format=fmt)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        fmt = lambda v: f"{v:.3f}"  # noqa: E731
        return (
            f"<h4>Latent means across {html.escape(self.group)}</h4>"
            + self.latent_means.to_html(index=False, float_format=fmt)
            + ("<h4>Structural paths</h4>" + self.paths.to_html(index=False, float_format=fmt) if len(self.paths) else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "group": self.group,
                "reference_group": str(self.reference_group),
                "freed": list(self.freed),
                "latent_means": self.latent_means.to_dict("records"),
                "means_test": self.means_test,
                "paths": self.paths.to_dict("records"),
            }
        )


def _wald_equal(fit: Any, rows: pd.DataFrame) -> tuple[float, int, float]:
    """Wald test that a parameter is equal across groups: R b = 0 with successive differences."""
    idx = [int(f) - 1 for f in rows["free"]]
    if len(set(idx)) < len(idx) or any(i < 0 for i in idx):
        return math.nan, 0, math.nan
    v = np.asarray(fit.vcov)
    b = rows["est"].to_numpy(float)
    k = len(idx)
    r = np.zeros((k - 1, k))
    for j in range(k - 1):
        r[j, j], r[j, j + 1] = 1.0, -1.0
    rb = r @ b
    cov = r @ v[np.ix_(idx, idx)] @ r.T
    w = float(rb @ np.linalg.solve(cov, rb))
    return w, k - 1, float(stats.chi2.sf(w, k - 1))


def compare_groups(
    model: str,
    data: pd.DataFrame,
    *,
    group: str,
    estimator: str = "ML",
    ordered: Any = None,
    group_partial: Sequence[str] = (),
    paths: Sequence[str] | None = None,
    lrt: bool = True,
    min_group_size: int = 100,
    **fit_kwargs: Any,
) -> GroupComparison:
    """Latent means and structural paths across groups, once scalar invariance holds.

    Fits the scalar model (loadings and intercepts, or thresholds, equal;
    ``group_partial`` frees what a partial search found). Latent means of the
    other groups are differences from the first (reference) group, with SEs,
    z and p; a joint test of equal latent means is the (scaled) chi-square
    difference against the model with means also equal. Each structural path
    (``paths``, lavaan syntax like ``"TRUST ~ CULT"``; default every latent
    regression) gets a Wald test of equality across groups and, with ``lrt``,
    the likelihood-ratio test of constraining it.
    """
    est, ordered_list, ordinal, table = _setup(model, data, estimator, ordered)
    check_groups(model, data, group, ordered=ordered_list if ordinal else (), min_group_size=min_group_size,
                          missing=fit_kwargs.get("missing", "listwise"))
    scalar_eq = table["scalar"]
    base = _fit_step(model, data, group, scalar_eq, list(group_partial), est, ordered_list, fit_kwargs)
    from analysis.sem.partable import latent_names

    pt = base.params
    lvs = latent_names(pt)
    labels = list(getattr(base, "group_labels", ()) or _group_labels(data, group))
    means = pt[(pt["op"] == "~1") & pt["lhs"].isin(lvs) & (pt["group"] > 1)]
    lm = pd.DataFrame(
        {
            "construct": means["lhs"].to_numpy(),
            "group": [labels[int(g) - 1] for g in means["group"]],
            "est": means["est"].to_numpy(float),
            "se": means["se"].to_numpy(float),
            "z": means["z"].to_numpy(float),
            "pvalue": means["pvalue"].to_numpy(float),
            "ci.lower": means["ci.lower"].to_numpy(float),
            "ci.upper": means["ci.upper"].to_numpy(float),
        }
    )
    # standardised difference: over the reference group's latent SD (residual SD for an endogenous factor)
    ref_var = {r.lhs: r.est for r in pt[(pt["op"] == "~~") & (pt["lhs"] == pt["rhs"]) & pt["lhs"].isin(lvs) & (pt["group"] == 1)].itertuples()}
    lm["d"] = [e / math.sqrt(ref_var[c]) if ref_var.get(c, 0) > 0 else math.nan for c, e in zip(lm["construct"], lm["est"])]
    means_fit = _fit_step(model, data, group, tuple(scalar_eq) + ("means",), list(group_partial), est, ordered_list, fit_kwargs)
    means_test = _difference(means_fit, base, est)
    # structural paths among latent variables
    reg = pt[(pt["op"] == "~") & (pt["group"] > 0)]
    keys = list(dict.fromkeys(zip(reg["lhs"], reg["op"], reg["rhs"])))
    all_keys = list(keys)
    if paths is not None:
        wanted = {_key(p) for p in paths}
        unknown = wanted - set(keys)
        if unknown:
            raise OptionError(f"path(s) not in the model: {', '.join(' '.join(k) for k in sorted(unknown))}.")
        keys = [k for k in keys if k in wanted]
    prow = []
    for key in keys:
        rows = reg[(reg["lhs"] == key[0]) & (reg["rhs"] == key[2])].sort_values("group")
        rec: dict[str, Any] = {"lhs": key[0], "op": "~", "rhs": key[2]}
        for g, e, s in zip(rows["group"], rows["est"], rows["se"]):
            rec[f"est.{labels[int(g) - 1]}"] = float(e)
            rec[f"se.{labels[int(g) - 1]}"] = float(s)
        w, wdf, wp = _wald_equal(base, rows) if base.vcov is not None else (math.nan, 0, math.nan)
        rec.update({"wald": w, "wald.df": wdf, "wald.pvalue": wp})
        if lrt:
            others = [f"{k[0]}~{k[2]}" for k in all_keys if k != key]
            eq_fit = _fit_step(model, data, group, tuple(scalar_eq) + ("regressions",), list(group_partial) + others, est, ordered_list, fit_kwargs)
            d = _difference(eq_fit, base, est)
            rec.update({"lrt.chisq": d["chisq.diff"], "lrt.df": d["df.diff"], "lrt.pvalue": d["pvalue"]})
        prow.append(rec)
    return GroupComparison(
        latent_means=lm,
        paths=pd.DataFrame(prow),
        means_test=means_test,
        fit=base,
        group=group,
        reference_group=labels[0],
        freed=tuple(group_partial),
    )
