"""The ParameterTable: one row per parameter, from model syntax to report.

``build_partable`` applies lavaan's ``sem()``/``cfa()`` defaults to the parsed
syntax (see ``docs/engine.md`` for the columns). Variable lists are derived
from the table by the ``*_names`` functions, never kept alongside it.
Equality constraints (shared labels, ``group_equal``, ``a == b``) are encoded
by rows sharing a ``free`` index, so the free vector ``x`` has one entry per
distinct parameter.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import IdentificationError, ModelSpecificationError, SEMWarning
from analysis.sem.syntax import EXPRESSION_OPS, MODEL_LIMITS, Statement, parse_model

__all__ = [
    "COLUMNS",
    "GROUP_EQUAL_TYPES",
    "build_partable",
    "check_partable",
    "observed_names",
    "latent_names",
    "endogenous_names",
    "exogenous_names",
    "ordered_names",
    "exo_names",
    "n_free",
    "df_of",
]

COLUMNS = ["id", "lhs", "op", "rhs", "user", "block", "group", "free", "ustart", "start", "exo",
           "label", "plabel", "est", "se", "z", "pvalue", "ci.lower", "ci.upper", "std.lv", "std.all"]

GROUP_EQUAL_TYPES = ("loadings", "intercepts", "means", "thresholds", "residuals",
                     "residual.covariances", "lv.variances", "lv.covariances", "regressions")


# --------------------------------------------------------------------------
# variable names (from the rows of one group, lavaan's lav_partable_vnames)
# --------------------------------------------------------------------------
def _unique(seq: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(seq))


def vnames(rows: Sequence[tuple[str, str, str]], ordered: Iterable[str] = ()) -> dict[str, list[str]]:
    """Variable sets of one block, from (lhs, op, rhs) rows."""
    lv = _unique(l for l, o, r in rows if o == "=~")
    lv_set = set(lv)
    v_ind = _unique(r for l, o, r in rows if o == "=~")
    eqs_y = _unique(l for l, o, r in rows if o == "~")
    eqs_x = _unique(r for l, o, r in rows if o == "~")
    v_ind_set, eqs_y_set, eqs_x_set = set(v_ind), set(eqs_y), set(eqs_x)
    ov_ind = [v for v in v_ind if v not in lv_set]
    ov_ind_set = set(ov_ind)
    ov_y = [v for v in eqs_y if v not in lv_set and v not in ov_ind_set]
    ov_y_set = set(ov_y)
    ov_x = [v for v in eqs_x if v not in lv_set and v not in ov_ind_set and v not in ov_y_set]
    extra = _unique([l for l, o, r in rows if o == "~~" and l not in lv_set]
                    + [r for l, o, r in rows if o == "~~" and r not in lv_set]
                    + [l for l, o, r in rows if o in ("~1", "|") and l not in lv_set])
    base = ov_ind + ov_y + ov_x
    base_set = set(base)
    ov = base + [v for v in extra if v not in base_set]
    ordered = set(ordered) | {l for l, o, r in rows if o == "|"}
    ov_x_set = set(ov_x)
    return {
        "lv": lv,
        "ov": ov,
        "ov.x": ov_x,
        "ov.nox": [v for v in ov if v not in ov_x_set],
        "ov.ord": [v for v in ov if v in ordered],
        "lv.x": [v for v in lv if v not in v_ind_set and v not in eqs_y_set],
        "lv.y": [v for v in lv if v in eqs_y_set and v not in v_ind_set and v not in eqs_x_set],
        "ov.y": [v for v in ov if v in eqs_y_set and v not in v_ind_set and v not in eqs_x_set
                 and v not in lv_set],
    }


def _rows(pt: pd.DataFrame, group: int | None) -> list[tuple[str, str, str]]:
    op = pt["op"].to_numpy()
    mask = ~np.isin(op, EXPRESSION_OPS)
    if group is not None:
        mask &= pt["group"].to_numpy() == group
    return list(zip(pt["lhs"].to_numpy()[mask], op[mask], pt["rhs"].to_numpy()[mask]))


def observed_names(pt: pd.DataFrame, group: int | None = None) -> list[str]:
    """Observed variables in lavaan's order (indicators, y, x, others)."""
    return vnames(_rows(pt, group or 1))["ov"]


def latent_names(pt: pd.DataFrame, group: int | None = None) -> list[str]:
    """Latent variables (left-hand sides of ``=~``)."""
    return vnames(_rows(pt, group or 1))["lv"]


def ordered_names(pt: pd.DataFrame, group: int | None = None) -> list[str]:
    """Observed variables with thresholds (``|`` rows)."""
    return vnames(_rows(pt, group or 1))["ov.ord"]


def exo_names(pt: pd.DataFrame, group: int | None = None) -> list[str]:
    """Observed exogenous covariates treated as fixed (``exo == 1``)."""
    mask = (pt["exo"].to_numpy() == 1) & (pt["op"].to_numpy() == "~~") & (pt["group"].to_numpy() == (group or 1))
    names = set(pt["lhs"].to_numpy()[mask]) | set(pt["rhs"].to_numpy()[mask])
    return [v for v in observed_names(pt, group) if v in names]


def endogenous_names(pt: pd.DataFrame, group: int | None = None) -> list[str]:
    """Variables (observed or latent) with an incoming path (``~`` lhs or ``=~`` rhs)."""
    rows = _rows(pt, group or 1)
    names = {l for l, o, r in rows if o == "~"} | {r for l, o, r in rows if o == "=~"}
    v = vnames(rows)
    return [n for n in v["ov"] + v["lv"] if n in names]


def exogenous_names(pt: pd.DataFrame, group: int | None = None) -> list[str]:
    """Variables (observed or latent) without incoming paths."""
    endo = set(endogenous_names(pt, group))
    v = vnames(_rows(pt, group or 1))
    return [n for n in v["ov"] + v["lv"] if n not in endo]


def n_free(pt: pd.DataFrame) -> int:
    """Number of distinct free parameters."""
    return int(pt["free"].max()) if (pt["free"] > 0).any() else 0


def df_of(pt: pd.DataFrame, meanstructure: bool) -> int:
    """Degrees of freedom: sample moments (minus fixed.x moments) minus free parameters
    (see :attr:`analysis.sem.model.Model.df`)."""
    groups = sorted(g for g in pt["group"].unique() if g > 0)
    moments = 0
    for g in groups:
        rows = _rows(pt, g)
        v = vnames(rows)
        p, po = len(v["ov"]), len(v["ov.ord"])
        px = len(exo_names(pt, g))
        nth = sum(1 for l, o, r in rows if o == "|")
        # ordered variables contribute correlations and thresholds, not variances and means
        moments += p * (p + 1) // 2 - po - px * (px + 1) // 2 + nth
        if meanstructure:
            moments += p - px - po
    # each general equality constraint (a == 2*b) takes one parameter off (analysis.sem.constraints)
    from analysis.sem.constraints import general_constraint_rows

    n_eq = int((general_constraint_rows(pt) & (pt["op"] == "==").to_numpy()).sum())
    return moments - n_free(pt) + n_eq


# --------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------
class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, a):
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _per_group(values: list | None, n_groups: int, st: Statement, what: str) -> list | None:
    if values is None:
        return None
    if len(values) == 1:
        return values * n_groups
    if len(values) != n_groups:
        raise ModelSpecificationError(
            f"line {st.line}: '{st.source}': {len(values)} {what} values in c(...) "
            f"but the model has {n_groups} group{'s' if n_groups > 1 else ''}")
    return list(values)


def _check_constraint(s: Statement, known: set[str]) -> None:
    """A general constraint (analysis.sem.constraints) may use labels and := parameters only."""
    from analysis.sem.defined import expression_names

    try:
        names = expression_names(s.lhs) + expression_names(s.rhs)
    except ModelSpecificationError as exc:
        raise ModelSpecificationError(f"line {s.line}: constraint '{s.lhs} {s.op} {s.rhs}': {exc}") from None
    unknown = [t for t in names if t not in known]
    if unknown:
        raise ModelSpecificationError(
            f"line {s.line}: constraint '{s.lhs} {s.op} {s.rhs}' uses unknown label(s): "
            + ", ".join(repr(t) for t in unknown) + suggest(unknown[0], sorted(known)))
    if not names:
        raise ModelSpecificationError(f"line {s.line}: constraint '{s.lhs} {s.op} {s.rhs}' has no labelled "
                                      "parameter in it")


def _number(text: str) -> float | None:
    try:
        return float(str(text).replace(" ", ""))
    except ValueError:
        return None


def suggest(name: str, pool: Sequence[str]) -> str:
    """" (did you mean 'x'?)" for the closest name in ``pool``, or ""."""
    close = difflib.get_close_matches(name, list(pool), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def build_partable(model, *, observed: Sequence[str] | None = None, n_groups: int = 1,
                   group_labels: Sequence | None = None, meanstructure: bool | None = None,
                   std_lv: bool = False, ordered: Iterable[str] = (), fixed_x: bool = True,
                   group_equal: Iterable[str] = (), group_partial: Iterable[str] = (),
                   estimator: str = "ML", n_thresholds: dict[str, int] | None = None,
                   auto_fix_first: bool | None = None, int_ov_free: bool = True,
                   int_lv_free: bool = False, parameterization: str = "delta") -> pd.DataFrame:
    """Parameter table of ``model`` with lavaan's ``sem()``/``cfa()`` defaults.

    ``model`` is lavaan syntax, a list of :class:`~analysis.sem.syntax.Statement`
    or an existing ParameterTable (returned checked, unchanged).
    ``observed``: column names of the data, used to report unknown variables.
    ``n_thresholds``: number of thresholds per ordered variable (categories - 1).

    >>> pt = build_partable("f =~ x1 + x2 + x3")
    >>> pt[["lhs", "op", "rhs", "free"]].head(3).values.tolist()
    [['f', '=~', 'x1', 0], ['f', '=~', 'x2', 1], ['f', '=~', 'x3', 2]]
    """
    if isinstance(model, pd.DataFrame):
        check_partable(model)
        return model.copy()
    statements = parse_model(model) if isinstance(model, str) else list(model)
    ordered = list(ordered or ())
    group_equal = _check_group_equal(group_equal)
    group_partial = _parse_partial(group_partial)
    if meanstructure is None:
        meanstructure = any(s.op == "~1" for s in statements) or n_groups > 1 or bool(ordered) or estimator.upper() in ("WLSMV", "ULSMV")
    if auto_fix_first is None:
        auto_fix_first = not std_lv

    user_st = _without_duplicates([s for s in statements if s.op not in EXPRESSION_OPS])
    expr_st = [s for s in statements if s.op in EXPRESSION_OPS]
    v = vnames([(s.lhs, s.op, s.rhs) for s in user_st], ordered)
    _check_ordered(ordered, v["ov"], observed)
    base = [(s.lhs, s.op, s.rhs, 1, s) for s in user_st] + \
        [(l, o, r, 0, None) for l, o, r in _default_rows(v, user_st, n_thresholds, meanstructure)]
    rules = _BlockRules.of(base, v, fixed_x=fixed_x, std_lv=std_lv, auto_fix_first=auto_fix_first,
                           int_ov_free=int_ov_free, int_lv_free=int_lv_free, group_equal=group_equal,
                           parameterization=parameterization)
    rows = [_row(rules, g, i, item, n_groups) for g in range(1, n_groups + 1) for i, item in enumerate(base)]
    _fix_rows_sharing_a_fixed_label(rows)
    uf = _UnionFind()
    rows += _expression_rows(expr_st, rows, uf)

    pt = pd.DataFrame(rows)
    pt.insert(0, "id", np.arange(1, len(pt) + 1))
    pt["plabel"] = [f".p{i}." for i in pt["id"]]
    if n_groups > 1 and group_equal:
        _equal_across_groups(pt, v["lv"], group_equal, group_partial, uf)
    pt["free"] = _free_indices(pt, uf)
    pt["start"] = pt["ustart"]
    for col in ("est", "se", "z", "pvalue", "ci.lower", "ci.upper", "std.lv", "std.all"):
        pt[col] = np.nan
    if group_labels is not None:
        pt.attrs["group_labels"] = list(group_labels)
    lines = pt.pop("_line")
    pt = pt[COLUMNS].copy()
    _check_size(pt, meanstructure=bool((pt["op"] == "~1").any()))
    _check_defined(pt)
    _check_identification(pt, lines)
    if observed is not None:
        check_observed(pt, observed)
    return pt


def _without_duplicates(user_st: list[Statement]) -> list[Statement]:
    """The user's statements, a repeated element dropped with a warning (as lavaan)."""
    seen: dict[tuple, Statement] = {}
    kept: list[Statement] = []
    for s in user_st:
        key = (s.lhs, s.op, s.rhs)
        if s.op == "~~":
            key = (min(s.lhs, s.rhs), s.op, max(s.lhs, s.rhs))
        if key in seen:
            warnings.warn(f"line {s.line}: duplicated element '{s.lhs} {s.op} {s.rhs}' ignored "
                          f"(first given on line {seen[key].line})", SEMWarning, stacklevel=3)
            continue
        seen[key] = s
        kept.append(s)
    return kept


def _check_ordered(ordered: list[str], ov: list[str], observed: Sequence[str] | None) -> None:
    """Every ordered variable is one of the model's (or, at least, of the data's)."""
    if not ordered:
        return
    unknown = [o for o in ordered if o not in ov]
    if unknown and observed is not None:
        unknown = [o for o in unknown if o not in observed]
    if unknown:
        raise ModelSpecificationError(
            "ordered variable(s) not in the model: " + ", ".join(unknown))


def _default_rows(v: dict[str, list[str]], user_st: list[Statement], n_thresholds: dict[str, int] | None,
                  meanstructure: bool) -> list[tuple[str, str, str]]:
    """The rows lavaan adds (lav_partable_flat): thresholds, (residual) variances, covariances of
    exogenous latent variables, of endogenous ones, of observed covariates, scales of ordered
    items, intercepts and means; those the user wrote are left out."""
    ov, lv, ov_ord = v["ov"], v["lv"], v["ov.ord"]
    defaults: list[tuple[str, str, str]] = []
    for o in ov_ord:
        nth = (n_thresholds or {}).get(o, 0)
        defaults += [(o, "|", f"t{k}") for k in range(1, nth + 1)]
    for name in [x for x in ov if x not in v["ov.x"]] + lv:
        defaults.append((name, "~~", name))
    for i, a in enumerate(v["lv.x"]):
        for b in v["lv.x"][i + 1:]:
            defaults.append((a, "~~", b))
    y = v["lv.y"] + v["ov.y"]
    for i, a in enumerate(y):
        for b in y[i + 1:]:
            defaults.append((a, "~~", b))
    nx = v["ov.x"]
    for j, a in enumerate(nx):
        for b in nx[j:]:
            defaults.append((a, "~~", b))
    for o in ov_ord:
        defaults.append((o, "~*~", o))
    if meanstructure:
        defaults += [(name, "~1", "") for name in ov + lv]

    user_keys = set()
    for s in user_st:
        user_keys.add((s.lhs, s.op, s.rhs))
        if s.op == "~~":
            user_keys.add((s.rhs, s.op, s.lhs))
    return [d for d in _unique(defaults) if d not in user_keys]


@dataclass(frozen=True)
class _BlockRules:
    """What decides a row's free/fixed value in a group: lavaan's auto.* options and the model's
    variable sets."""

    lv: list[str]
    ov_x: list[str]
    ov_ord: list[str]
    first_loading: dict[str, int]
    single_ind: set[str]
    multi_use: set[str]
    std_lv: bool
    auto_fix_first: bool
    int_ov_free: bool
    int_lv_free: bool
    group_equal: tuple[str, ...]
    parameterization: str

    @classmethod
    def of(cls, base: list[tuple], v: dict[str, list[str]], *, fixed_x: bool, **options) -> _BlockRules:
        ov_x = v["ov.x"] if fixed_x else []
        ov_ord = v["ov.ord"]
        if ov_ord and ov_x:
            ov_x = [x for x in ov_x if x not in ov_ord]
        first_loading = {}
        for i, (l, o, r, u, s) in enumerate(base):
            if o == "=~" and l not in first_loading:
                first_loading[l] = i
        indicators: dict[str, list[str]] = {}
        for l, o, r, u, s in base:
            if o == "=~":
                indicators.setdefault(l, []).append(r)
        single_ind = {ind[0] for f, ind in indicators.items() if len(ind) == 1}
        multi_use = {r for l, o, r, u, s in base if o == "=~" and
                     sum(1 for b in base if b[1] == "=~" and b[2] == r) > 1}
        return cls(lv=v["lv"], ov_x=ov_x, ov_ord=ov_ord, first_loading=first_loading,
                   single_ind=single_ind, multi_use=multi_use, **options)


def _row(rules: _BlockRules, g: int, i: int, item: tuple, n_groups: int) -> dict:
    """Row ``i`` of the block in group ``g``: lavaan's defaults, then what the user wrote."""
    l, o, r, u, s = item
    free, ustart, exo = _default_free(rules, g, i, l, o, r, u)
    label = ""
    if s is not None:
        fixed = _per_group(s.fixed, n_groups, s, "fixed")
        labels = _per_group(s.label, n_groups, s, "label")
        starts = _per_group(s.start, n_groups, s, "start")
        if fixed is not None:
            if math.isnan(fixed[g - 1]):
                free, ustart = 1, math.nan
            else:
                free, ustart = 0, fixed[g - 1]
        if labels is not None:
            label = labels[g - 1]
        if starts is not None and free:
            ustart = starts[g - 1]
    return dict(lhs=l, op=o, rhs=r, user=u, block=g, group=g, free=free, ustart=ustart, start=math.nan,
                exo=exo, label=label, _line=s.line if s is not None else 0)


def _default_free(rules: _BlockRules, g: int, i: int, l: str, o: str, r: str, u: int) -> tuple[int, float, int]:
    """(free, ustart, exo) of a row by lavaan's defaults (auto.fix.first, std.lv, auto.fix.single,
    fixed.x, intercepts and means, ordered items' scales, group.equal's freed parameters)."""
    lv, ov_x, ov_ord, group_equal = rules.lv, rules.ov_x, rules.ov_ord, rules.group_equal
    free, ustart, exo = 1, math.nan, 0
    if o == "=~" and rules.auto_fix_first and rules.first_loading.get(l) == i:
        free, ustart = 0, 1.0
    if o == "~~" and l == r and l in lv and rules.std_lv:
        free, ustart = 0, 1.0
    if u == 0 and o == "~~" and l == r and l in rules.single_ind and l not in rules.multi_use:
        free, ustart = 0, 0.0           # lavaan's auto.fix.single
    if o == "~~" and l in ov_x and r in ov_x and u == 0:
        free, exo = 0, 1
    if o == "~1":
        if l in lv and not rules.int_lv_free and u == 0:
            free, ustart = 0, 0.0
            # lavaan: equal intercepts or thresholds leave the latent means free in groups 2+
            if (g > 1 and ("intercepts" in group_equal or "thresholds" in group_equal)
                    and "means" not in group_equal):
                free, ustart = 1, math.nan
        elif l in ov_x and u == 0:
            free, exo = 0, 1
        elif l in ov_ord and u == 0:
            free, ustart = 0, 0.0
        elif not rules.int_ov_free and u == 0:
            free, ustart = 0, 0.0
    if u == 0 and o == "~~" and l == r and l in ov_ord:
        free, ustart = 0, 1.0
    if u == 0 and o == "~*~":
        free, ustart = 0, 1.0
    if g > 1 and "thresholds" in group_equal:
        # lavaan: once thresholds are equal, groups 2+ free the scale factors (delta) or the
        # latent responses' residual variances (theta)
        if (rules.parameterization == "theta" and o == "~~" and l == r and l in ov_ord and u == 0
                and "residuals" not in group_equal):    # strict: equal to group 1's, i.e. 1
            free, ustart = 1, math.nan
        elif rules.parameterization != "theta" and o == "~*~":
            free, ustart = 1, math.nan
    if (g > 1 and rules.std_lv and "loadings" in group_equal and "lv.variances" not in group_equal
            and o == "~~" and l == r and l in lv and u == 0):
        free, ustart = 1, math.nan
    return free, ustart, exo


def _expression_rows(expr_st: list[Statement], rows: list[dict], uf: _UnionFind) -> list[dict]:
    """Rows of :=, ==, <, >: ``label == label`` unites the labels' parameters, ``label == number``
    fixes them; any other constraint is checked to name known labels."""
    labels_all = {row["label"] for row in rows if row["label"]}
    defined_names = {s.lhs for s in expr_st if s.op == ":="}
    out = []
    for s in expr_st:
        if s.op in ("==", "<", ">"):
            lhs_is_label, rhs_is_label = s.lhs in labels_all, s.rhs in labels_all
            number = _number(s.rhs if lhs_is_label else s.lhs)
            if s.op == "==" and lhs_is_label and rhs_is_label:
                uf.union(("label", s.lhs), ("label", s.rhs))
            elif s.op == "==" and (lhs_is_label or rhs_is_label) and number is not None:
                lab = s.lhs if lhs_is_label else s.rhs
                for row in rows:
                    if row["label"] == lab:
                        row["free"], row["ustart"] = 0, number
            else:
                _check_constraint(s, labels_all | defined_names)
        out.append(dict(lhs=s.lhs, op=s.op, rhs=s.rhs, user=2, block=0, group=0, free=0,
                        ustart=math.nan, start=math.nan, exo=0, label="", _line=s.line))
    return out


def _equal_across_groups(pt: pd.DataFrame, lv: list[str], group_equal: tuple[str, ...],
                         group_partial: set, uf: _UnionFind) -> None:
    """group.equal: the rows of one kind are united across groups (group.partial excepted); rows
    without a label take the first group's plabel, as lavaan shows them."""
    key_rows: dict[tuple, list[int]] = {}
    for i, row in pt.iterrows():
        if row["free"] == 0 or row["exo"] == 1 or row["group"] == 0:
            continue
        kind = _equal_kind(row, lv)
        if kind not in group_equal:
            continue
        key = (row["lhs"], row["op"], row["rhs"])
        if _is_partial(key, group_partial):
            continue
        key_rows.setdefault(key, []).append(i)
    for key, idx in key_rows.items():
        first = idx[0]
        for i in idx[1:]:
            uf.union(("row", first), ("row", i))
        if not pt.at[first, "label"]:
            for i in idx:
                if not pt.at[i, "label"]:
                    pt.at[i, "label"] = pt.at[first, "plabel"]


def _free_indices(pt: pd.DataFrame, uf: _UnionFind) -> np.ndarray:
    """The 1-based free index of every row (0: fixed): rows with the same label, or united by
    group.equal or label == label, share one."""
    for i, row in pt.iterrows():
        if row["free"] > 0 and row["label"]:
            uf.union(("label", row["label"]), ("row", i))
    mapping: dict = {}
    final = []
    for i, free in zip(pt.index, pt["free"]):
        if free == 0:
            final.append(0)
            continue
        root = uf.find(("row", i))
        final.append(mapping.setdefault(root, len(mapping) + 1))
    return np.asarray(final, dtype=int)


def _fix_rows_sharing_a_fixed_label(rows: list[dict]) -> None:
    """A label shared with a fixed row fixes every row carrying it at that row's value.

    lavaan (lavaanify) reads ``F1 =~ a*y1; F2 =~ a*y5`` with the marker ``y1`` fixed at 1 as
    ``F2 =~ 1*y5``: equal to a fixed parameter means fixed.  The first fixed row's value wins.
    """
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        if row["label"]:
            by_label.setdefault(row["label"], []).append(row)
    for label, shared in by_label.items():
        fixed = [row for row in shared if row["free"] == 0]
        if len(shared) < 2 or not fixed:
            continue
        value = fixed[0]["ustart"]
        if any(row["ustart"] != value and not (math.isnan(row["ustart"]) and math.isnan(value))
               for row in fixed[1:]):
            warnings.warn(f"label '{label}' is shared by fixed parameters with different values; "
                          f"all are fixed at the first one's value {value:g} (as lavaan)", stacklevel=3)
        for row in shared:
            row["free"], row["ustart"] = 0, value


def _check_group_equal(group_equal) -> tuple[str, ...]:
    if isinstance(group_equal, str):
        group_equal = [g.strip() for g in group_equal.split(",") if g.strip()]
    group_equal = tuple(group_equal or ())
    bad = [g for g in group_equal if g not in GROUP_EQUAL_TYPES]
    if bad:
        raise ModelSpecificationError(
            f"unknown group_equal type(s): {', '.join(map(repr, bad))}; "
            f"choose from {', '.join(GROUP_EQUAL_TYPES)}")
    return group_equal


def _parse_partial(items) -> set[tuple[str, str, str]]:
    if isinstance(items, str):
        items = [items]
    out = set()
    for item in items or ():
        st = parse_model(item)
        for s in st:
            out.add((s.lhs, s.op, s.rhs))
            if s.op == "~~":
                out.add((s.rhs, s.op, s.lhs))
    return out


def _is_partial(key, partial) -> bool:
    return key in partial


def _equal_kind(row, lv: Sequence[str]) -> str:
    op, l, r = row["op"], row["lhs"], row["rhs"]
    if op == "=~":
        return "loadings"
    if op == "~":
        return "regressions"
    if op == "|":
        return "thresholds"
    if op == "~1":
        return "means" if l in lv else "intercepts"
    if op == "~~":
        if l in lv:
            return "lv.variances" if l == r else "lv.covariances"
        return "residuals" if l == r else "residual.covariances"
    return ""


def _check_defined(pt: pd.DataFrame) -> None:
    from analysis.sem.defined import expression_names  # local: defined imports partable helpers

    labels = {lab for lab in pt["label"].tolist() if lab}
    defined: list[str] = []
    for lhs, op, rhs in zip(pt["lhs"].tolist(), pt["op"].tolist(), pt["rhs"].tolist()):
        if op != ":=":
            continue
        unknown = [n for n in expression_names(rhs) if n not in labels and n not in defined]
        if unknown:
            raise ModelSpecificationError(
                f"defined parameter '{lhs} := {rhs}' uses unknown label(s): "
                + ", ".join(repr(n) for n in unknown) + suggest(unknown[0], sorted(labels)))
        if lhs in labels:
            raise ModelSpecificationError(
                f"defined parameter name '{lhs}' is already a parameter label")
        defined.append(lhs)


def _check_size(pt: pd.DataFrame, *, meanstructure: bool) -> None:
    """Refuse a model whose derivatives would not fit in memory (MODEL_LIMITS of analysis.sem.syntax)."""
    q = n_free(pt)
    moments = 0
    for g in sorted(x for x in pt["group"].unique() if x > 0):
        p = len(vnames(_rows(pt, g))["ov"])
        moments += p * (p + 1) // 2 + (p if meanstructure else 0)
    if q > MODEL_LIMITS["free_parameters"] or q * moments > MODEL_LIMITS["moments_x_parameters"]:
        raise ModelSpecificationError(
            f"the model is too large to estimate: {q:,} free parameters and {moments:,} sample moments "
            f"(at most {MODEL_LIMITS['free_parameters']:,} parameters, and moments x parameters at most "
            f"{MODEL_LIMITS['moments_x_parameters']:,}: MODEL_LIMITS in analysis/sem/syntax.py)")


def _check_identification(pt: pd.DataFrame, lines: pd.Series) -> None:
    rows = list(zip(pt["lhs"], pt["op"], pt["rhs"], pt["group"], pt["free"], pt["label"]))
    for g in sorted(x for x in pt["group"].unique() if x > 0):
        loads: dict[str, list] = {}
        variances: dict[str, int] = {}
        for l, o, r, grp, free, label in rows:
            if grp != g:
                continue
            if o == "=~":
                loads.setdefault(l, []).append((r, free, label))
            elif o == "~~" and l == r:
                variances[l] = free
        for f, load in loads.items():
            var_free = variances.get(f, 0) > 0
            scaled = any(fr == 0 for _, fr, _ in load) or not var_free
            if not scaled and not any(lab for _, _, lab in load):
                raise IdentificationError(
                    f"latent variable '{f}' has no scale: all its loadings and its variance are free; "
                    "fix one loading (1*x) or its variance (f ~~ 1*f), or use std_lv=True")
            if len(load) == 1 and load[0][1] == 0:
                ind = load[0][0]
                if variances.get(ind, 0) > 0 and var_free:
                    raise IdentificationError(
                        f"latent variable '{f}' has a single indicator ('{ind}') and both the residual "
                        f"variance of '{ind}' and the variance of '{f}' are free: the model is not "
                        f"identified; fix one of them (e.g. '{ind} ~~ 0*{ind}')")


def check_observed(pt: pd.DataFrame, observed: Sequence[str]) -> None:
    """Raise if the model uses observed variables that are not in the data."""
    observed = [str(c) for c in observed]
    obs = set(observed)
    missing = [v for v in observed_names(pt) if v not in obs]
    if not missing:
        return
    lv = set(latent_names(pt))
    regress = {r for r in pt.loc[pt["op"] == "~", "rhs"]} | {l for l in pt.loc[pt["op"] == "~", "lhs"]}
    parts = []
    for m in missing:
        hint = suggest(m, observed)
        if not hint and m in regress and lv:
            hint = " (not a column of the data and not defined as a latent variable with =~)"
        parts.append(f"'{m}'{hint}")
    raise ModelSpecificationError(
        f"{len(missing)} variable(s) of the model not found in the data: " + ", ".join(parts))


def check_partable(pt: pd.DataFrame) -> None:
    """Check the invariants of a ParameterTable; messages name the rows at fault."""
    missing = [c for c in ("lhs", "op", "rhs", "group", "free", "ustart", "label") if c not in pt.columns]
    if missing:
        raise ModelSpecificationError(f"parameter table lacks column(s): {', '.join(missing)}")
    model_rows = pt[~pt["op"].isin(EXPRESSION_OPS)]
    bad_op = model_rows[~model_rows["op"].isin(["=~", "~", "~~", "~1", "|", "~*~"])]
    if len(bad_op):
        r = bad_op.iloc[0]
        raise ModelSpecificationError(f"unknown operator {r['op']!r} in row '{r['lhs']} {r['op']} {r['rhs']}'")
    fixed_nan = model_rows[(model_rows["free"] == 0) & model_rows["ustart"].isna() & (model_rows["exo"] == 0)]
    if len(fixed_nan):
        r = fixed_nan.iloc[0]
        raise ModelSpecificationError(
            f"fixed parameter '{r['lhs']} {r['op']} {r['rhs']}' (group {r['group']}) has no value")
    free = model_rows.loc[model_rows["free"] > 0, "free"].unique()
    if len(free) and set(free) != set(range(1, int(free.max()) + 1)):
        raise ModelSpecificationError("free indices of the parameter table are not 1..n without gaps")
    dup = model_rows.duplicated(["lhs", "op", "rhs", "group"])
    if dup.any():
        r = model_rows[dup].iloc[0]
        raise ModelSpecificationError(f"duplicated row '{r['lhs']} {r['op']} {r['rhs']}' in group {r['group']}")
