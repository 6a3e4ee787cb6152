"""Simulate survey respondents from a population model.

A *population model* is lavaan syntax with values, read in a standardized
metric (as lavaan's ``simulateData(standardized = TRUE)``): every variable has
variance 1, ``=~`` values are standardized loadings, ``~`` values standardized
paths, ``~~`` values correlations (between residuals for endogenous
variables). Residual variances follow: ``1 - R²``. Labels and ``:=`` effects
are kept, so the same file also gives the analysis model
(:meth:`PopulationModel.analysis_syntax`).

With an instrument, latent constructs without an ``=~`` line get their items
as indicators (standardized loadings .60–.85), and respondents come out in the
instrument's own shape: a continuous latent response per item cut into the
scale's codes by thresholds, reverse-keyed items recorded reversed, labelled
missing codes, careless responders, demographics and groups with mean
differences and chosen non-invariance. Deterministic for a seed.

>>> pop = PopulationModel.from_syntax("F =~ 0.8*x1 + 0.7*x2 + 0.6*x3\\nY ~ 0.4*F\\nY =~ 0.8*y1 + 0.8*y2 + 0.8*y3")
>>> round(float(pop.covariance().loc["Y", "Y"]), 6)
1.0
>>> simulate_responses(pop, n=3, seed=1).shape
(3, 6)
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from analysis.sem.distributions import norm

from analysis.errors import ModelSpecificationError, OptionError
from analysis.sem.syntax import EXPRESSION_OPS, Statement, parse_model

__all__ = [
    "PopulationModel",
    "GroupSpec",
    "simulate_responses",
    "population_model",
    "population_names",
    "default_groups",
    "analysis_frame",
    "POPULATION_DIR",
]

POPULATION_DIR = Path(__file__).resolve().parents[1] / "models" / "population"
DEFAULT_LOADINGS = (0.60, 0.85)


# ---------------------------------------------------------------- population

@dataclass
class GroupSpec:
    """One group of respondents and how its population differs from the first.

    ``means``: latent mean shifts in SD units (``{"TRUST": -0.3}``);
    ``intercepts``: shifts of an item's latent response (scalar non-invariance);
    ``loadings``: a different standardized loading for an item (metric
    non-invariance); ``codes``: codes of the grouping item this group answers
    (drawn evenly), e.g. the detailed ethnic groups of a collapsed group.
    """

    name: str
    share: float
    means: dict[str, float] = field(default_factory=dict)
    intercepts: dict[str, float] = field(default_factory=dict)
    loadings: dict[str, float] = field(default_factory=dict)
    codes: list[int] = field(default_factory=list)


@dataclass
class PopulationModel:
    """A standardized population model compiled to RAM matrices.

    ``A[i, j]``: directed effect of variable j on variable i; ``S``: residual
    (co)variances, solved so that every variable has variance 1.
    """

    statements: list[Statement]
    variables: list[str]
    latent: list[str]
    A: np.ndarray
    S: np.ndarray
    source: str = ""

    # -- construction --------------------------------------------------------
    @classmethod
    def from_syntax(cls, text: str, instrument=None, *, source: str = "") -> PopulationModel:
        statements = parse_model(text)
        if instrument is not None:
            statements = _add_instrument_measurement(statements, instrument)
        model_st = [s for s in statements if s.op not in EXPRESSION_OPS]
        for s in model_st:
            if s.op not in ("=~", "~", "~~"):
                raise ModelSpecificationError(
                    f"{source or 'population model'} line {s.line}: '{s.lhs} {s.op} {s.rhs}' is not "
                    "supported in a population model (use =~, ~, ~~ and :=; group means go in groups=)"
                )
            if s.op == "~~" and s.lhs == s.rhs:
                raise ModelSpecificationError(
                    f"{source or 'population model'} line {s.line}: '{s.lhs} ~~ {s.rhs}' — variances are not "
                    "given in a standardized population model; they follow from the paths (1 - R²)"
                )
            if s.fixed is None or len(s.fixed) != 1 or not np.isfinite(s.fixed[0]):
                raise ModelSpecificationError(
                    f"{source or 'population model'} line {s.line}: '{s.lhs} {s.op} {s.rhs}' needs a population "
                    "value, e.g. 'TRUST ~ 0.3*CULT'"
                )
        latent = _unique([s.lhs for s in model_st if s.op == "=~"])
        variables = _unique([v for s in model_st for v in (s.lhs, s.rhs)])
        idx = {v: k for k, v in enumerate(variables)}
        k = len(variables)
        A = np.zeros((k, k))
        R = np.full((k, k), np.nan)  # residual correlations given
        for s in model_st:
            value = float(s.fixed[0])
            if s.op == "=~":
                A[idx[s.rhs], idx[s.lhs]] = value
            elif s.op == "~":
                A[idx[s.lhs], idx[s.rhs]] = value
            else:
                R[idx[s.lhs], idx[s.rhs]] = R[idx[s.rhs], idx[s.lhs]] = value
        S = _solve_residuals(A, R, variables, source or "population model")
        return cls(statements, variables, latent, A, S, source)

    # -- moments ---------------------------------------------------------------
    @property
    def observed(self) -> list[str]:
        """Variables that are columns of the data (everything not latent)."""
        return [v for v in self.variables if v not in self.latent]

    def moments(self, group: GroupSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Population means and covariance matrix of all variables (in ``group``'s version)."""
        A = self.A.copy()
        alpha = np.zeros(len(self.variables))
        if group is not None:
            idx = {v: k for k, v in enumerate(self.variables)}
            for item, lam in group.loadings.items():
                rows = [j for j in range(len(self.variables)) if self.A[idx[self._check(item)], j] != 0]
                fac = [j for j in rows if self.variables[j] in self.latent]
                if len(fac) != 1:
                    raise ModelSpecificationError(f"group {group.name!r}: {item!r} is not an indicator of one factor")
                A[idx[item], fac[0]] = lam
            for name, shift in {**group.means, **group.intercepts}.items():
                alpha[idx[self._check(name)]] += shift
        inv = np.linalg.inv(np.eye(len(alpha)) - A)
        return inv @ alpha, inv @ self.S @ inv.T

    def _check(self, name: str) -> str:
        if name not in self.variables:
            raise ModelSpecificationError(
                f"{name!r} is not a variable of the population model {self.source!r}; "
                f"known: {', '.join(self.variables)}"
            )
        return name

    def covariance(self, group: GroupSpec | None = None) -> pd.DataFrame:
        """Population covariance (= correlation in group 1) of all variables."""
        return pd.DataFrame(self.moments(group)[1], index=self.variables, columns=self.variables)

    def means(self, group: GroupSpec | None = None) -> pd.Series:
        return pd.Series(self.moments(group)[0], index=self.variables)

    def r_squared(self) -> pd.Series:
        """R² of every endogenous variable (1 - residual variance)."""
        endo = [k for k in range(len(self.variables)) if np.any(self.A[k] != 0)]
        return pd.Series([1.0 - self.S[k, k] for k in endo], index=[self.variables[k] for k in endo])

    def values(self) -> pd.DataFrame:
        """The population values, one row per statement (lhs, op, rhs, label, value)."""
        rows = []
        for s in self.statements:
            if s.op in EXPRESSION_OPS:
                continue
            rows.append({"lhs": s.lhs, "op": s.op, "rhs": s.rhs,
                         "label": (s.label or [""])[0], "value": float(s.fixed[0])})
        return pd.DataFrame(rows)

    def analysis_syntax(self) -> str:
        """The model to fit: the same statements with values freed, labels and := kept."""
        lines: dict[tuple[str, str], list[str]] = {}
        out = []
        for s in self.statements:
            if s.op in EXPRESSION_OPS:
                continue
            term = f"{s.label[0]}*{s.rhs}" if s.label else s.rhs
            lines.setdefault((s.lhs, s.op), []).append(term)
        for (lhs, op), terms in lines.items():
            out.append(f"{lhs} {op} " + " + ".join(terms))
        out += [f"{s.lhs} {s.op} {s.rhs}" for s in self.statements if s.op in EXPRESSION_OPS]
        return "\n".join(out)


def _unique(seq):
    return list(dict.fromkeys(seq))


def _solve_residuals(A: np.ndarray, R: np.ndarray, names: list[str], where: str) -> np.ndarray:
    """Residual (co)variances that give every variable variance 1."""
    k = len(names)
    order, state = [], [0] * k  # topological order of the directed graph

    def visit(i, path):
        if state[i] == 1:
            cycle = " -> ".join(names[j] for j in path[path.index(i):] + [i])
            raise ModelSpecificationError(f"{where}: feedback loop {cycle}; population models must be recursive")
        if state[i] == 2:
            return
        state[i] = 1
        for j in np.flatnonzero(A[i]):
            visit(j, path + [i])
        state[i] = 2
        order.append(i)

    for i in range(k):
        visit(i, [])
    S = np.zeros((k, k))
    inv = np.eye(k)
    for i in order:  # predictors of i are final before i
        b = A[i]
        if np.any(b != 0):
            sigma = inv @ S @ inv.T
            explained = float(b @ sigma @ b)
            # residual covariances with earlier variables add to the variance
            if explained >= 1.0:
                preds = ", ".join(names[j] for j in np.flatnonzero(b))
                raise ModelSpecificationError(
                    f"{where}: the paths into {names[i]} (from {preds}) explain {explained:.0%} of its "
                    "variance; standardized values must leave room for a residual — lower them"
                )
            S[i, i] = 1.0 - explained
        else:
            S[i, i] = 1.0
        for j in order[: order.index(i)]:
            if np.isfinite(R[i, j]):
                S[i, j] = S[j, i] = R[i, j] * np.sqrt(S[i, i] * S[j, j])
        inv = np.linalg.inv(np.eye(k) - A)
    sigma = inv @ S @ inv.T
    if np.min(np.linalg.eigvalsh(sigma)) <= 0:
        raise ModelSpecificationError(f"{where}: the correlations given make the population covariance "
                                      "not positive definite")
    # residual correlations of endogenous pairs change variances: rescale exactly
    d = np.sqrt(np.diag(sigma))
    if np.max(np.abs(d - 1)) > 1e-10:
        raise ModelSpecificationError(f"{where}: residual correlations between endogenous variables that "
                                      "predict each other are not supported")
    return S


def _measurement_loadings(m: int) -> np.ndarray:
    lo, hi = DEFAULT_LOADINGS
    return np.linspace(hi - 0.03, lo + 0.02, m) if m > 1 else np.array([0.75])


def _add_instrument_measurement(statements: list[Statement], instrument) -> list[Statement]:
    """Indicators from the instrument for constructs without an ``=~`` line."""
    measured = {s.lhs for s in statements if s.op == "=~"}
    used = _unique([v for s in statements if s.op not in EXPRESSION_OPS for v in (s.lhs, s.rhs)])
    extra = []
    for name in used:
        if name in measured or name not in instrument.construct_ids:
            continue
        items = [it for it in instrument.items_of(name) if it.role in ("item", "repr")]
        if not items:
            continue
        items.sort(key=lambda it: it.reverse)  # the reverse-keyed item gets the lowest loading
        for it, lam in zip(items, _measurement_loadings(len(items))):
            extra.append(Statement(name, "=~", it.id, fixed=[float(round(lam, 3))], line=0,
                                   source=f"{instrument.id} items"))
    # a construct neither measured in the model nor in the instrument would be simulated as pure
    # noise that no column shows: refuse it (the shipped figure1 on another questionnaire)
    measured |= {s.lhs for s in extra}
    lacking = [v for v in used if v not in measured and v not in instrument.item_ids
               and v not in {s.rhs for s in statements if s.op == "=~"}]
    if lacking:
        raise ModelSpecificationError(
            f"the population model uses {', '.join(lacking)}, which instrument '{instrument.id}' does not have "
            f"(its constructs: {', '.join(instrument.construct_ids) or 'none'}); write a population model over "
            "the instrument's constructs (--model FILE.lav) or give their items with =~ lines")
    return extra + list(statements)


# ---------------------------------------------------------------- shipped models

def population_names() -> list[str]:
    """Names of the shipped population models (analysis/models/population/*.lav)."""
    return sorted(p.stem for p in POPULATION_DIR.glob("*.lav"))


def population_model(model: str | PopulationModel, instrument=None) -> PopulationModel:
    """A shipped population model by name (``"figure1"``), a .lav path, or syntax."""
    if isinstance(model, PopulationModel):
        return model
    path = Path(model)
    if "\n" not in model and "~" not in model:
        if not path.suffix:
            path = POPULATION_DIR / f"{model}.lav"
        if not path.exists():
            raise ModelSpecificationError(
                f"no population model {model!r}: give a .lav file or one of {', '.join(population_names())}"
            )
        return PopulationModel.from_syntax(path.read_text(), instrument, source=str(path))
    return PopulationModel.from_syntax(model, instrument, source="population syntax")


def _grouping_item(instrument):
    for it in instrument.grouping_items:
        if it.collapsed is not None:
            return it
    return None


def default_groups(instrument, minority_trust: float = -0.3) -> list[GroupSpec]:
    """Groups from the instrument's collapsed grouping item (ethnic group).

    The reference group is the one labelled "White..." (the UK majority) or
    else the first; it gets 60% of respondents, the minority groups share the
    rest evenly and start with lower TRUST (``minority_trust`` SD)."""
    item = _grouping_item(instrument) if instrument is not None else None
    if item is None:
        return []
    lang = instrument.default_language
    groups = list(item.collapsed.groups)
    ref = next((g for g in groups if str(g.label.get(lang, "")).lower().startswith("white")), groups[0])
    groups.remove(ref)
    out = [GroupSpec(name=str(ref.label.get(lang, ref.code)), share=0.6 if groups else 1.0, codes=list(ref.codes))]
    for g in groups:
        out.append(GroupSpec(name=str(g.label.get(lang, g.code)), share=0.4 / len(groups),
                             means={"TRUST": minority_trust}, codes=list(g.codes)))
    return out


# ---------------------------------------------------------------- generation

@functools.lru_cache(maxsize=4096)
def _item_thresholds(item_id: str, n_cat: int) -> np.ndarray:
    """Fixed population thresholds: categories lean a little towards agreement,
    with a per-item offset from the item id (not from the seed)."""
    jitter = (zlib.crc32(item_id.encode()) % 1000) / 1000 * 0.3 - 0.15
    return norm.ppf(np.arange(1, n_cat) / n_cat) - 0.25 + jitter


def _cut(z: np.ndarray, codes: list[int], item_id: str) -> np.ndarray:
    t = _item_thresholds(item_id, len(codes))
    return np.asarray(codes)[np.searchsorted(t, z)]


def _draw_group(rng, groups: list[GroupSpec], n: int) -> np.ndarray:
    shares = np.array([g.share for g in groups], float)
    if np.any(shares < 0) or shares.sum() <= 0:
        raise OptionError("group shares must be >= 0 and not all 0")
    return rng.choice(len(groups), size=n, p=shares / shares.sum())


def simulate_responses(
    model: str | PopulationModel,
    n: int,
    *,
    seed: int | np.random.Generator | None = None,
    instrument=None,
    groups: list[GroupSpec] | None = None,
    missing: float = 0.0,
    mar: float = 0.0,
    careless: float = 0.0,
    missing_as: str = "code",
    likert: bool = True,
    truth: bool = False,
    items: list[str] | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate ``n`` respondents.

    ``missing``: MCAR share of item answers set missing; ``mar``: share set
    missing at random, more often for respondents low on the first observed
    grouping/demographic variable (or on the first item when there is none);
    ``careless``: share of careless respondents (half straight-line one code,
    half answer at random); ``missing_as``: ``"code"`` writes the scale's
    labelled missing code (e.g. -9), ``"blank"`` leaves the cell empty.
    ``likert=False`` keeps item responses continuous (for recovery studies).
    ``truth=True`` also returns a frame with each respondent's group,
    careless flag and latent scores. ``items``: generate only these items
    (and those their skip logic refers to), for fast Monte Carlo work.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise OptionError(f"The 'n' parameter of simulate_responses must be an int >= 1. Got {n!r} instead.")
    for name, v in (("missing", missing), ("mar", mar), ("careless", careless)):
        if not 0 <= v < 1:
            raise OptionError(f"The {name!r} parameter of simulate_responses must be in [0, 1). Got {v!r} instead.")
    if missing_as not in ("code", "blank"):
        raise OptionError(f"The 'missing_as' parameter must be 'code' or 'blank'. Got {missing_as!r} instead.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    pop = population_model(model, instrument)
    if groups is None:
        groups = default_groups(instrument) if instrument is not None else []
    specs = groups or [GroupSpec("all", 1.0)]
    g = _draw_group(rng, specs, n)

    # continuous responses: all variables, then keep the observed ones
    z = np.empty((n, len(pop.variables)))
    for k, spec in enumerate(specs):
        rows = np.flatnonzero(g == k)
        mu, sigma = pop.moments(spec if k > 0 or spec.means or spec.intercepts or spec.loadings else None)
        chol = np.linalg.cholesky(sigma + 1e-12 * np.eye(len(mu)))
        z[rows] = mu + rng.standard_normal((len(rows), len(mu))) @ chol.T
    zdf = pd.DataFrame(z, columns=pop.variables)

    if instrument is None:
        data = zdf[pop.observed].copy()
        if len(specs) > 1:
            data.insert(0, "group", [specs[k].name for k in g])
        careless_flag = np.zeros(n, bool)
        _apply_missing_plain(data, rng, missing, mar, [c for c in data.columns if c != "group"])
    else:
        data, careless_flag = _instrument_frame(instrument, pop, zdf, g, specs, rng, careless, likert, items)
        _apply_missing_instrument(instrument, data, rng, missing, mar, missing_as)
    if not truth:
        return data
    tr = pd.DataFrame({"group": [specs[k].name for k in g], "careless": careless_flag})
    for v in pop.latent:
        tr[v] = zdf[v].to_numpy()
    if "respondent_id" in data:
        tr.insert(0, "respondent_id", data["respondent_id"].to_numpy())
    return data, tr


def _mar_weights(driver: np.ndarray) -> np.ndarray:
    """Relative missingness: 2x average for the lowest, 0 for the highest."""
    ranks = pd.Series(driver).rank(method="average").to_numpy()
    return 2.0 * (1.0 - (ranks - 0.5) / len(ranks))


def _apply_missing_plain(data, rng, missing, mar, cols):
    n = len(data)
    if not cols or (missing == 0 and mar == 0):
        return
    p = np.full((n, 1), missing)
    if mar:
        driver = data[cols[0]].to_numpy()
        p = p + (mar * _mar_weights(driver))[:, None]
        cols = cols[1:]  # the driver stays complete: missing at random, not MNAR
    hit = rng.random((n, len(cols))) < np.clip(p, 0, 0.95)
    for j, c in enumerate(cols):
        data.loc[hit[:, j], c] = np.nan


def _reverse_codes(scale, values: np.ndarray) -> np.ndarray:
    codes = np.asarray(scale.codes)
    out = values.copy()
    for c, r in zip(codes, codes[::-1]):
        out[values == c] = r
    return out


def _instrument_frame(instrument, pop, zdf, g, specs, rng, careless, likert, only=None):
    """One column per item, vectorised: codes as floats (NaN = not asked) until the end."""
    n = len(zdf)
    cols: dict[str, Any] = {}
    keep = None
    if only is not None:
        from instruments.relevance import referenced_items

        keep = set(only)
        for it in instrument.items:
            if it.id in keep and it.relevant:
                keep.update(referenced_items(it.relevant))
    else:
        cols["respondent_id"] = np.array([f"SIM{k + 1:05d}" for k in range(n)], dtype=object)
    n_careless = int(round(careless * n))
    careless_flag = np.zeros(n, bool)
    careless_flag[rng.choice(n, size=n_careless, replace=False)] = True
    straight = careless_flag & (rng.random(n) < 0.5)
    rnd = careless_flag & ~straight
    line_pos = rng.random(n)  # straight-liners' position on every scale (0 low .. 1 high)
    group_item = _grouping_item(instrument)
    codes_cols: set[str] = set()

    def careless_answers(val, codes):
        val[rnd] = rng.choice(codes, size=int(rnd.sum()))
        val[straight] = np.asarray(codes)[np.minimum((line_pos[straight] * len(codes)).astype(int), len(codes) - 1)]
        return val

    for it in instrument.items:
        if keep is not None and it.id not in keep:
            continue
        scale = instrument.scales[it.scale]
        codes = scale.codes
        categorical = scale.type in ("ordinal", "nominal") and bool(codes)
        if it.id in zdf.columns and categorical:
            z = zdf[it.id].to_numpy()
            construct = instrument.construct(it.construct) if it.construct is not None else None
            if likert and construct is not None and construct.count_codes:
                # count items (REPR): "yes" for about a third, by propensity
                cc = construct.count_codes
                other = [c for c in codes if c not in cc] or codes
                val = np.where(z > norm.ppf(0.65), cc[0], other[0]).astype(float)
                codes_cols.add(it.id)
            elif likert:
                val = _cut(z, codes, it.id).astype(float)
                if it.reverse and scale.ordered:
                    val = _reverse_codes(scale, val)
                if scale.ordered:
                    val = careless_answers(val, codes)
                codes_cols.add(it.id)
            else:
                val = -z if (it.reverse and scale.ordered) else z.copy()
        elif it.id in zdf.columns:
            val = zdf[it.id].to_numpy().copy()
        elif group_item is not None and it.id == group_item.id and specs and specs[0].codes:
            u = rng.random(n)
            val = np.empty(n)
            for k, spec in enumerate(specs):
                rows = g == k
                c = np.asarray(spec.codes)
                val[rows] = c[np.minimum((u[rows] * len(c)).astype(int), len(c) - 1)]
            codes_cols.add(it.id)
        elif it.role == "attention" and it.expected is not None and codes:
            val = np.where(rng.random(n) < 0.97, it.expected, rng.choice(codes, size=n)).astype(float)
            val = careless_answers(val, codes)
            codes_cols.add(it.id)
        elif it.role == "consent" and codes:
            val = np.full(n, float(codes[0]))
            codes_cols.add(it.id)
        elif categorical:
            val = rng.choice(codes, size=n).astype(float)
            codes_cols.add(it.id)
        elif scale.type == "numeric":
            lo = scale.min if scale.min is not None else 0
            hi = scale.max if scale.max is not None else lo + 100
            val = rng.uniform(lo, hi, size=n)
            if scale.integer:
                val = np.floor(val)
                codes_cols.add(it.id)
        elif scale.type == "date":
            days = rng.integers(0, 60, n)
            val = np.array((pd.Timestamp("2026-03-01") + pd.to_timedelta(days, unit="D")).strftime("%Y-%m-%d"),
                           dtype=object)
        elif it.role == "grouping":  # free-text areas: a handful of neighbourhoods
            val = np.array([f"Area {k}" for k in rng.integers(1, 6, n)], dtype=object)
        else:
            val = np.full(n, "", dtype=object)
        cols[it.id] = val
    # skip logic: answers to items that were not asked are blank
    relevant = [it for it in instrument.items if it.relevant and it.id in cols]
    if relevant:
        from instruments.relevance import evaluate, parse, referenced_items

        asked_by: dict[str, np.ndarray] = {}
        for it in relevant:
            if it.relevant not in asked_by:  # evaluate once per distinct answer combination
                expr = parse(it.relevant)
                refs = [r for r in referenced_items(expr) if r in cols]
                if refs:
                    keys = pd.DataFrame({r: cols[r] for r in refs})
                    combos = keys.drop_duplicates()
                    verdict = {row: evaluate(expr, dict(zip(refs, row)))
                               for row in combos.itertuples(index=False, name=None)}
                    asked_by[it.relevant] = np.array([verdict[t] for t in keys.itertuples(index=False, name=None)])
                else:
                    asked_by[it.relevant] = np.full(n, evaluate(expr, {}))
            asked = asked_by[it.relevant]
            if not asked.all():
                col = cols[it.id]
                if col.dtype == object:
                    col = col.copy()
                    col[~asked] = None
                else:
                    col = np.where(asked, col, np.nan)
                cols[it.id] = col
    data = pd.DataFrame(cols)
    if only is None:  # Monte Carlo work keeps plain floats (NaN = blank)
        for c in codes_cols:
            data[c] = data[c].astype("Int64")
    return data, careless_flag


def _apply_missing_instrument(instrument, data, rng, missing, mar, missing_as):
    if missing == 0 and mar == 0:
        return
    n = len(data)
    # items that gate others (skip logic) keep their answers: blanking one would leave the
    # items it opens answered though no longer applicable, which the validator rightly rejects
    from instruments.relevance import referenced_items

    gates = {r for it in instrument.items if it.relevant for r in referenced_items(it.relevant)}
    items = [it for it in instrument.items if it.role in ("item", "repr") and it.id in data and it.id not in gates]
    p = np.full(n, missing)
    if mar:
        drivers = [it.id for it in instrument.demographic_items if it.id in data and it.required]
        driver = pd.to_numeric(data[drivers[0]] if drivers else data[items[0].id], errors="coerce").fillna(0)
        p = p + mar * _mar_weights(driver.to_numpy(dtype=float))
        if not drivers:
            items = items[1:]
    hit = rng.random((n, len(items))) < np.clip(p, 0, 0.95)[:, None]
    for j, it in enumerate(items):
        col = data[it.id]
        rows = hit[:, j] & col.notna().to_numpy()
        codes = instrument.scales[it.scale].missing_codes
        is_int = str(col.dtype) == "Int64"
        arr = col.to_numpy(dtype=float, na_value=np.nan).copy()
        if missing_as == "code" and codes:
            arr[rows] = rng.choice(codes, size=int(rows.sum()))
        else:
            arr[rows] = np.nan
        data[it.id] = pd.array(arr, dtype="Float64").astype("Int64") if is_int else arr


# ---------------------------------------------------------------- analysis frame

def analysis_frame(data: pd.DataFrame, instrument) -> pd.DataFrame:
    """Items ready for a model: missing codes to NaN, reverse-keyed items
    re-reversed, and a score column for each observed construct (REPR)."""
    out = pd.DataFrame(index=data.index)
    for it in instrument.items:
        if it.id not in data:
            continue
        scale = instrument.scales[it.scale]
        col = pd.to_numeric(data[it.id], errors="coerce").astype(float)
        col[col.isin(scale.missing_codes)] = np.nan
        if it.reverse and scale.ordered and scale.codes:
            lo, hi = min(scale.codes), max(scale.codes)
            col = lo + hi - col
        out[it.id] = col
    for c in instrument.constructs:
        if c.kind != "observed":
            continue
        ids = [it.id for it in instrument.items_of(c.id) if it.id in out]
        if not ids:
            continue
        block = out[ids]
        if c.score == "count":
            score = block.isin(c.count_codes).sum(axis=1).astype(float)
            score[block.isna().all(axis=1)] = np.nan
        elif c.score == "sum":
            score = block.sum(axis=1, min_count=1)
        else:
            score = block.mean(axis=1)
        out[c.id] = score
    return out
