"""Results objects: what a fit hands back, in the linearmodels style.

A :class:`FitResult` is read-only. ``.params`` is the ParameterTable (lavaan's
columns, full precision), ``.fit_indices`` a Series keyed by lavaan's
``fitMeasures()`` names. Printing a result shows ``summary()`` in lavaan's
familiar layout; notebooks and Quarto get ``_repr_html_``; ``to_dict()`` and
``to_json()`` give the JSON contract of docs/architecture.md (NaN -> null).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.sem.estimators import ESTIMATORS, ML_ESTIMATORS
from analysis.format import fmt_number, fmt_pvalue, jsonable

if TYPE_CHECKING:   # annotations only: a fit's pieces, imported where they are made
    from analysis.sem.bootstrap import BootstrapResult
    from analysis.sem.data import DataCheck
    from analysis.sem.estimators.inference import Inference
    from analysis.sem.optimize import OptimizeResult

__all__ = ["TestStatistic", "InvalidTestStatistic", "FitResult", "ComparisonResult"]

class Summary(str):
    """A text summary: a ``str`` whose repr is the text itself, so that a notebook shows
    ``fit.summary()`` as lavaan prints it, not as one line of escaped newlines."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython
        printer.text(str(self))


# Columns of one estimate in the JSON contract (lavaan parameterEstimates()).
ESTIMATE_COLUMNS = [
    "lhs", "op", "rhs", "group", "label", "est", "se", "z", "pvalue",
    "ci.lower", "ci.upper", "std.lv", "std.all", "std.all.se",
]
# Fit keys always reported, in this order, before any others.
CORE_FIT_KEYS = [
    "npar", "chisq", "df", "pvalue", "cfi", "tli", "rmsea", "rmsea.ci.lower",
    "rmsea.ci.upper", "rmsea.pvalue", "srmr", "logl", "unrestricted.logl",
    "aic", "bic", "bic2", "ntotal",
]
_NON_PARAMETER_OPS = {"==", "<", ">"}
# The line lavaan's summary prints under each scaled test.
_TEST_NAMES = {"yuan.bentler.mplus": "Yuan-Bentler correction (Mplus variant)",
               "yuan.bentler": "Yuan-Bentler correction",
               "satorra.bentler": "Satorra-Bentler correction",
               "scaled.shifted": "simple second-order correction",
               "mean.var.adjusted": "Satterthwaite correction"}


# --------------------------------------------------------------------------- tests

@dataclass(frozen=True)
class TestStatistic:
    """A chi-square test: statistic, degrees of freedom and p-value.

    ``method`` names the variant as lavaan does ("standard",
    "satorra.bentler", "yuan.bentler.mplus", "scaled.shifted", ...);
    scaled tests carry their ``scaling_factor`` (and ``shift`` when
    scaled-and-shifted).
    """

    __test__ = False  # not a pytest class

    stat: float
    df: float
    pvalue: float
    name: str = "chisq"
    null: str = "the model fits as well as the unrestricted model"
    method: str = "standard"
    scaling_factor: float | None = None
    shift: float | None = None
    unscaled: float | None = None       # a scaled difference test: the plain difference T0 - T1

    # lavaan's names for the fields (lavTestLRT's columns), so a test reads like lavaan's lists
    _LAVAAN_KEYS = {"chisq.diff.scaled": "stat", "stat": "stat", "df.diff": "df", "df": "df",
                    "pvalue": "pvalue", "method": "method", "scaling.factor": "scaling_factor",
                    "shift": "shift", "shift.parameter": "shift", "chisq.diff": "unscaled"}

    def __getitem__(self, key: str):
        if key not in self._LAVAAN_KEYS:
            raise KeyError(key)
        return getattr(self, self._LAVAAN_KEYS[key])

    def __str__(self) -> str:
        lines = [
            f"{self.name} ({self.method})",
            f"H0: {self.null}",
            f"Statistic: {fmt_number(self.stat, 4)}",
            f"P-value: {fmt_pvalue(self.pvalue, 4)}",
            f"Distributed: chi2({fmt_number(self.df, 0 if float(self.df).is_integer() else 3)})",
        ]
        if self.scaling_factor is not None:
            lines.append(f"Scaling factor: {fmt_number(self.scaling_factor, 4)}")
        if self.shift is not None:
            lines.append(f"Shift parameter: {fmt_number(self.shift, 4)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"TestStatistic(stat={self.stat!r}, df={self.df!r}, pvalue={self.pvalue!r}, "
                f"method={self.method!r})")

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "name": self.name, "method": self.method, "stat": self.stat, "df": self.df,
            "pvalue": self.pvalue, "scaling_factor": self.scaling_factor,
            "shift": self.shift, "null": self.null,
        })


@dataclass(frozen=True)
class InvalidTestStatistic:
    """A test that cannot be computed here, with the reason (returned, not raised)."""

    reason: str
    name: str = "chisq"
    stat: float = float("nan")
    df: float = float("nan")
    pvalue: float = float("nan")
    method: str = "invalid"

    def __str__(self) -> str:
        return f"{self.name}: not available ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "stat": None, "df": None,
                "pvalue": None, "reason": self.reason}


# --------------------------------------------------------------------------- helpers

def _kv(label: str, *values: Any, digits: int = 3, width: int = 54, col: int = 12) -> str:
    """One 'label ..... value' line of a lavaan-style header."""
    texts = []
    for v in values:
        if isinstance(v, str):
            texts.append(v)
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            texts.append(str(int(v)))
        else:
            texts.append(fmt_number(v, digits))
    if len(texts) <= 1:
        text = texts[0] if texts else ""
        return "  " + label.ljust(max(width - 2 - len(text), len(label) + 1)) + text
    first, rest = texts[0], texts[1:]
    line = "  " + label.ljust(max(width - 2 - len(first), len(label) + 1)) + first
    return line + "".join(t.rjust(col) for t in rest)


def _fit_value(fi: pd.Series, key: str) -> float:
    v = fi.get(key, np.nan)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _n_equality_constraints(pt: pd.DataFrame) -> int:
    """Equality constraints as lavaan counts them: each row sharing a free parameter with an
    earlier one (shared labels, label == label), plus each ``label == number``."""
    if "free" not in pt.columns:
        return 0
    free = pt.loc[(pt["free"] > 0) & ~pt["op"].isin([":=", "==", "<", ">"]), "free"]
    shared = int(len(free) - free.nunique())

    def numeric(text: Any) -> bool:
        try:
            float(str(text))
        except ValueError:
            return False
        return True

    # label == number, and each general constraint (a == 2*b); label == label is counted as shared
    labels = set(pt["label"].astype(str)) - {""}
    eq = pt[pt["op"] == "=="]
    fixed = int(sum(not (lhs in labels and rhs in labels) for lhs, rhs in zip(eq["lhs"], eq["rhs"])))
    return shared + fixed


def _warning_text(w: Mapping[str, Any] | str) -> str:
    return w if isinstance(w, str) else str(w.get("message", w))


def _has(fi: pd.Series, key: str) -> bool:
    return key in fi.index and not pd.isna(fi[key])


# --------------------------------------------------------------------------- FitResult

@dataclass(frozen=True, eq=False)
class FitResult:
    """A fitted structural equation model.

    Produced by :func:`analysis.sem.fit_sem`. Fields hold full precision;
    rounding happens only in :meth:`summary` and :meth:`_repr_html_`.
    """

    params: pd.DataFrame
    """The ParameterTable with estimates (lavaan's columns)."""
    fit_indices: pd.Series
    """Fit measures under lavaan's ``fitMeasures()`` names."""
    estimator: str = "ML"
    converged: bool = True
    iterations: int | None = None
    optimizer: str = ""
    nobs: tuple[int, ...] = ()
    """Cases used per group."""
    group_labels: tuple[str, ...] = ()
    group: str | None = None
    """Name of the grouping column (None for a single group)."""
    tests: tuple[TestStatistic | InvalidTestStatistic, ...] = ()
    """Model tests: the standard test first, then any scaled one."""
    warnings: tuple[Mapping[str, Any] | str, ...] = ()
    """Problems found (dicts from :func:`analysis.errors.warning_record`, or text)."""
    r2: pd.DataFrame | None = None
    """R-square of endogenous variables (columns ``lhs, group, r2``)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Options of the fit (missing, se, information, std_lv, ordered, ...)."""
    missing: Mapping[str, Any] = field(default_factory=dict)
    """Missing-data summary (cases read, used, dropped listwise; FIML patterns)."""
    model: Any = None
    """The compiled :class:`analysis.sem.model.Model`."""
    x: np.ndarray | None = None
    """Free-parameter vector at the solution."""
    sample_stats: Any = None
    """The :class:`analysis.sem.data.SampleStats` the model was fitted to."""
    vcov: np.ndarray | None = None
    """Covariance matrix of the free parameters."""
    estimator_object: Any = None
    """The fitted estimator (objective, information; robust pieces for scaled tests)."""
    syntax: str = ""
    """The model syntax as given."""
    inference: Inference | None = None
    """The standard errors, test and information used (lavaan's ``se``, ``test``,
    ``information``, as resolved from the options; ``se`` "bootstrap" after bootstrapping)."""
    optimization: OptimizeResult | None = None
    """What the optimizer did (iterations, gradient, message); ``optimizer`` is its method name."""
    data_check: DataCheck | None = None
    """The data as checked for the model (cases kept, missing-data patterns); None from moments."""
    bootstrap: BootstrapResult | None = None
    """The bootstrap behind bootstrap SEs and CIs (``se="bootstrap"``, ``bootstrap=N`` draws)."""
    bollen_stine: Mapping[str, Any] | None = None
    """The Bollen-Stine bootstrap of ``test="bootstrap"`` (chisq, pvalue, n_ok, n_larger, n_failed)."""
    imputations: tuple[FitResult, ...] | None = None
    """A pooled fit's fits of the imputed datasets, in order (all of them, left-out ones included)."""
    twolevel: Any = None
    """A two-level fit's clusters, ICCs and per-level moments (:class:`analysis.sem.twolevel.TwoLevelSummary`)."""

    # ---- read-only views -------------------------------------------------

    @property
    def ntotal(self) -> int:
        """Total number of cases used."""
        if _has(self.fit_indices, "ntotal"):
            return int(self.fit_indices["ntotal"])
        return int(sum(self.nobs))

    @property
    def n_groups(self) -> int:
        """Number of groups."""
        return max(len(self.nobs), 1)

    @property
    def test(self) -> TestStatistic | InvalidTestStatistic | None:
        """The standard chi-square test of the model."""
        return self.tests[0] if self.tests else None

    @property
    def scaled_test(self) -> TestStatistic | None:
        """The scaled (robust) test, if the estimator has one."""
        for t in self.tests[1:]:
            if isinstance(t, TestStatistic):
                return t
        return None

    @cached_property
    def estimates(self) -> pd.DataFrame:
        """parameterEstimates(): parameter rows with lavaan's reporting columns."""
        pt = self.params
        rows = pt[~pt["op"].isin(_NON_PARAMETER_OPS)]
        cols = [c for c in ESTIMATE_COLUMNS + ["std.nox", "level"] if c in rows.columns]
        out = rows[cols].reset_index(drop=True).copy()
        for c in ESTIMATE_COLUMNS:
            if c not in out.columns:
                out[c] = "" if c == "label" else np.nan
        out["label"] = out["label"].fillna("").astype(str)
        return out[ESTIMATE_COLUMNS + [c for c in out.columns if c not in ESTIMATE_COLUMNS]]

    def standardized_solution(self, type: str = "std.all", level: float = 0.95) -> pd.DataFrame:
        """lavaan's ``standardizedSolution(fit, type=)``: est.std with its delta-method se, z,
        pvalue and confidence interval, for every parameter and ``:=`` effect."""
        if type not in ("std.all", "std.lv"):
            raise ValueError(f"The 'type' parameter of standardized_solution must be 'std.all' or 'std.lv'. "
                             f"Got {type!r} instead.")
        from scipy import stats as sps

        pt = self.params[~self.params["op"].isin(_NON_PARAMETER_OPS)]
        est = pt[type].to_numpy(dtype=float)
        se = pt[f"{type}.se"].to_numpy(dtype=float) if f"{type}.se" in pt else np.full(len(pt), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(se > 0, est / se, np.nan)
        crit = sps.norm.ppf(0.5 + level / 2)
        out = pt[["lhs", "op", "rhs", "group", "label"]].reset_index(drop=True).copy()
        out["est.std"], out["se"], out["z"] = est, se, z
        out["pvalue"] = 2 * sps.norm.sf(np.abs(z))
        out["ci.lower"], out["ci.upper"] = est - crit * se, est + crit * se
        return out

    def modindices(self, **kwargs: Any) -> pd.DataFrame:
        """Modification indices (see :func:`analysis.sem.modindices.modindices`)."""
        from analysis.sem.modindices import modindices

        return modindices(self, **kwargs)

    # ---- JSON ------------------------------------------------------------

    def fit_dict(self) -> dict[str, Any]:
        """Fit measures as a plain dict (lavaan names, full precision)."""
        fi = self.fit_indices
        keys = [k for k in CORE_FIT_KEYS if k in fi.index]
        keys += [k for k in fi.index if k not in keys]
        out: dict[str, Any] = {}
        for k in keys:
            v = fi[k]
            if k in ("df", "npar", "ntotal", "baseline.df") and not pd.isna(v) \
                    and float(v).is_integer():
                v = int(v)
            out[str(k)] = v
        out.setdefault("ntotal", self.ntotal)
        out["converged"] = bool(self.converged)
        return jsonable(out)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract: ``{"fit": {...}, "estimates": [...], "warnings": [...], ...}``."""
        cols = list(ESTIMATE_COLUMNS)
        if "level" in self.estimates.columns:   # two-level: lavaan's level (1 within, 2 between)
            cols.insert(cols.index("group") + 1, "level")
        est = self.estimates[cols]
        records = []
        for rec in est.to_dict(orient="records"):
            rec["group"] = int(rec["group"]) if not pd.isna(rec["group"]) else 0
            if "level" in rec:
                rec["level"] = int(rec["level"]) if not pd.isna(rec["level"]) else 0
            records.append(rec)
        doc: dict[str, Any] = {
            "fit": self.fit_dict(),
            "estimates": records,
            "warnings": list(self.warnings),
            "model": {
                "estimator": self.estimator,
                "optimizer": self.optimizer,
                "iterations": self.iterations,
                "converged": bool(self.converged),
                "ngroups": self.n_groups,
                "nobs": list(self.nobs),
                "group": self.group,
                "group_labels": list(self.group_labels),
                "options": dict(self.options),
            },
            "tests": [t.to_dict() for t in self.tests],
        }
        if self.r2 is not None and len(self.r2):
            doc["r2"] = self.r2.to_dict(orient="records")
        if self.missing:
            doc["missing"] = dict(self.missing)
        if self.twolevel is not None:
            doc["twolevel"] = self.twolevel.to_dict()
        return jsonable(doc)

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string (NaN -> null)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    # ---- text ------------------------------------------------------------

    def _header_lines(self) -> list[str]:
        fi = self.fit_indices
        it = self.iterations if self.iterations is not None else "?"
        state = "ended normally" if self.converged else "did NOT end normally"
        lines = [f"resilience SEM {state} after {it} iterations", ""]
        lines.append(_kv("Estimator", self.estimator))
        if self.options.get("pool"):   # analysis.sem.pool: Rubin's rules; the test is D2 or D3
            lines.append(_kv("Imputed datasets pooled (test)",
                             f"{self.options.get('imputations')} ({self.options['pool']})"))
        if self.optimizer:
            lines.append(_kv("Optimization method", self.optimizer.upper()))
        n_eq = _n_equality_constraints(self.params)
        if _has(fi, "npar"):   # lavaan counts parameters before the equality constraints
            lines.append(_kv("Number of model parameters", int(fi["npar"]) + int(n_eq or 0)))
        if n_eq:
            lines.append(_kv("Number of equality constraints", int(n_eq)))
        lines.append("")
        if self.n_groups > 1:
            lines.append("  Number of observations per group:")
            labels = self.group_labels or tuple(str(g + 1) for g in range(self.n_groups))
            for lab, n in zip(labels, self.nobs):
                lines.append("  " + _kv(str(lab), int(n), width=52))
        else:
            lines.append(_kv("Number of observations", self.ntotal))
        if self.twolevel is not None:
            lines.append(_kv(f"Number of clusters [{self.twolevel.cluster}]", self.twolevel.n_clusters))
        if self.missing:
            n_read = self.missing.get("n_read")
            n_dropped = self.missing.get("n_dropped")
            if n_dropped:
                lines.append(_kv("Number of cases read", int(n_read)))
                why = "listwise" if self.missing.get("method", "listwise") == "listwise" \
                    else "no data"   # FIML keeps partial cases; only empty ones are dropped
                lines.append(_kv(f"Number of cases dropped ({why})", int(n_dropped)))
            n_pat = self.missing.get("n_patterns")
            by_group = self.missing.get("n_patterns_by_group")
            if n_pat and self.n_groups > 1 and by_group:
                lines.append("  Number of missing patterns per group:")
                for lab, n in by_group.items():
                    lines.append("  " + _kv(str(lab), int(n), width=52))
            elif n_pat:
                lines.append(_kv("Number of missing patterns", int(n_pat)))
        lines.append("")
        lines.extend(self._test_lines())
        return lines

    def _test_lines(self) -> list[str]:
        fi = self.fit_indices
        if not _has(fi, "chisq"):
            return []
        scaled = _has(fi, "chisq.scaled")
        lines = ["Model Test User Model:"]
        if scaled:
            lines.append(_kv("", "Standard", "Scaled"))
            lines.append(_kv("Test Statistic", _fit_value(fi, "chisq"),
                             _fit_value(fi, "chisq.scaled")))
            lines.append(_kv("Degrees of freedom", _fit_value(fi, "df"),
                             _fit_value(fi, "df.scaled"), digits=3
                             if not float(_fit_value(fi, "df.scaled")).is_integer() else 0))
            lines.append(_kv("P-value (Chi-square)", _fit_value(fi, "pvalue"),
                             _fit_value(fi, "pvalue.scaled")))
            if _has(fi, "chisq.scaling.factor"):
                lines.append(_kv("Scaling correction factor", "",
                                 fmt_number(fi["chisq.scaling.factor"], 3)))
            if _has(fi, "chisq.shift.parameter"):
                lines.append(_kv("Shift parameter", "",
                                 fmt_number(fi["chisq.shift.parameter"], 3)))
            method = _TEST_NAMES.get(self._scaled_method())
            if method:
                lines.append(f"    {method}")
        else:
            lines.append(_kv("Test statistic", _fit_value(fi, "chisq")))
            lines.append(_kv("Degrees of freedom", _fit_value(fi, "df"), digits=0))
            lines.append(_kv("P-value (Chi-square)", _fit_value(fi, "pvalue")))
        if _has(fi, "bollen.stine.pvalue"):   # lavaan's test = "bootstrap"
            lines.append(_kv("P-value (Bollen-Stine bootstrap)", _fit_value(fi, "bollen.stine.pvalue")))
        for extra in self._second_tests():   # test = c(own, second): the second under its own name
            lines += ["", f"  Second test ({extra.method}, {_TEST_NAMES.get(extra.method, extra.method)}):"]
            lines.append(_kv("  Test statistic", extra.stat))
            lines.append(_kv("  Degrees of freedom", extra.df, digits=0 if float(extra.df).is_integer() else 3))
            lines.append(_kv("  P-value (Chi-square)", extra.pvalue))
            if extra.scaling_factor is not None and np.isfinite(extra.scaling_factor):
                lines.append(_kv("  Scaling correction factor", extra.scaling_factor))
        by_group = self._group_chisq()
        if by_group:
            c = _fit_value(fi, "chisq.scaling.factor") if scaled else float("nan")
            lines.append("  Test statistic for each group:")
            for lab, x2 in by_group:
                values = (x2, x2 / c) if scaled and np.isfinite(c) else (x2,)
                lines.append("  " + _kv(str(lab), *values, width=52))
        lines.append("")
        return lines

    def _second_tests(self) -> list[TestStatistic]:
        """Tests asked for beside the estimator's own (lavaan's ``test = c("scaled.shifted",
        "satorra.bentler")``): neither the standard statistic, the own scaled one nor Bollen-Stine."""
        return [t for t in self.tests[1:] if isinstance(t, TestStatistic)
                and t.name not in ("chisq", "chisq.scaled", "chisq.bootstrap")]

    def _group_chisq(self) -> list[tuple[str, float]]:
        """Each group's share of the ML chi-square (complete data: n_g F_ML,g), as lavaan's
        summary lists it; empty when not a multi-group ML-family fit of complete data."""
        if self.n_groups < 2 or self.estimator.upper() not in ML_ESTIMATORS \
                or str(self.options.get("missing", "listwise")) != "listwise" \
                or self.model is None or self.x is None or self.sample_stats is None:
            return []
        try:
            out = []
            for g, mom in enumerate(self.model.implied(self.x)):
                S, n = self.sample_stats.cov[g], self.sample_stats.nobs[g]
                inv = np.linalg.inv(mom.sigma)
                F = (np.linalg.slogdet(mom.sigma)[1] - np.linalg.slogdet(S)[1]
                     + np.trace(S @ inv) - S.shape[0])
                mean = self.sample_stats.mean[g]
                if mom.mu is not None and mean is not None:
                    r = np.asarray(mean) - mom.mu
                    F += r @ inv @ r
                out.append(n * F)
        except (AttributeError, IndexError, TypeError, ValueError, np.linalg.LinAlgError):
            return []
        # only when the pieces add up to the reported test (e.g. not with fixed.x subtleties)
        if not np.isclose(sum(out), _fit_value(self.fit_indices, "chisq"), rtol=1e-6, atol=1e-8):
            return []
        labels = self.group_labels or tuple(str(g + 1) for g in range(self.n_groups))
        return list(zip(labels, (float(v) for v in out)))

    def _scaled_method(self) -> str:
        """lavaan's name of the scaled test ("yuan.bentler.mplus", ...), from the test or the estimator."""
        t = self.scaled_test
        if t is not None and t.method not in ("scaled", "standard", ""):
            return t.method
        spec = ESTIMATORS.get(self.estimator.upper())      # the estimator's own (scaled) test
        return spec.test if spec is not None and spec.test != "standard" else ""

    def _fit_measure_lines(self) -> list[str]:
        fi = self.fit_indices
        scaled = _has(fi, "chisq.scaled")
        mlr = scaled and self.estimator.upper() == "MLR"

        def row(label: str, key: str, digits: int = 3, alt: str | None = None) -> str | None:
            """Standard (and, for a scaled test, scaled) column of one measure."""
            if not _has(fi, key):
                return None
            if scaled:
                alt = alt or (key + ".scaled" if _has(fi, key + ".scaled") else None)
                if alt is not None and _has(fi, alt):
                    return _kv(label, _fit_value(fi, key), _fit_value(fi, alt), digits=digits)
            return _kv(label, _fit_value(fi, key), digits=digits)

        def second(label: str, key: str) -> str | None:
            """A value in the scaled column only (robust indices, scaling factors)."""
            return _kv(label, "", fmt_number(fi[key], 3)) if scaled and _has(fi, key) else None

        robust_rmsea = [
            second("Robust RMSEA", "rmsea.robust"),
            second("90 Percent confidence interval - lower", "rmsea.ci.lower.robust"),
            second("90 Percent confidence interval - upper", "rmsea.ci.upper.robust"),
            second("P-value H_0: Robust RMSEA <= 0.050", "rmsea.pvalue.robust"),
            second("P-value H_0: Robust RMSEA >= 0.080", "rmsea.notclose.pvalue.robust"),
        ]
        robust_cfi = [second("Robust Comparative Fit Index (CFI)", "cfi.robust"),
                      second("Robust Tucker-Lewis Index (TLI)", "tli.robust")]
        # robust ML: lavaan repeats the likelihoods in the scaled column (MLR: with scaling factors)
        both = scaled
        blocks: list[tuple[str, list[str | None]]] = [
            ("Model Test Baseline Model:", [
                row("Test statistic", "baseline.chisq"),
                row("Degrees of freedom", "baseline.df", 0),
                row("P-value", "baseline.pvalue"),
                second("Scaling correction factor", "baseline.chisq.scaling.factor"),
            ]),
            ("User Model versus Baseline Model:", [
                row("Comparative Fit Index (CFI)", "cfi"),
                row("Tucker-Lewis Index (TLI)", "tli"),
                *([""] + robust_cfi if any(robust_cfi) else []),
            ]),
            ("Loglikelihood and Information Criteria:", [
                row("Loglikelihood user model (H0)", "logl", alt="logl" if both else None),
                second("Scaling correction factor", "scaling.factor.h0") if mlr else None,
                "      for the MLR correction" if mlr and _has(fi, "scaling.factor.h0") else None,
                row("Loglikelihood unrestricted model (H1)", "unrestricted.logl",
                    alt="unrestricted.logl" if both else None),
                second("Scaling correction factor", "scaling.factor.h1") if mlr else None,
                "      for the MLR correction" if mlr and _has(fi, "scaling.factor.h1") else None,
                "" if _has(fi, "aic") else None,
                row("Akaike (AIC)", "aic", alt="aic" if both else None),
                row("Bayesian (BIC)", "bic", alt="bic" if both else None),
                row("Sample-size adjusted Bayesian (SABIC)", "bic2", alt="bic2" if both else None),
            ]),
            ("Root Mean Square Error of Approximation:", [
                row("RMSEA", "rmsea"),
                row("90 Percent confidence interval - lower", "rmsea.ci.lower"),
                row("90 Percent confidence interval - upper", "rmsea.ci.upper"),
                row("P-value H_0: RMSEA <= 0.050", "rmsea.pvalue"),
                row("P-value H_0: RMSEA >= 0.080", "rmsea.notclose.pvalue"),
                *([""] + robust_rmsea if any(robust_rmsea) else []),
            ]),
            ("Standardized Root Mean Square Residual:", [
                row("SRMR", "srmr", alt="srmr" if scaled else None),
            ]),
        ]
        lines: list[str] = []
        for title, rows in blocks:
            body = [r for r in rows if r is not None]
            if not [r for r in body if r]:
                continue
            lines += [title, ""]
            lines.extend(body)
            lines.append("")
        return lines

    def _se_lines(self) -> list[str]:
        """lavaan's 'Parameter Estimates' header: kind of SEs and the information used."""
        used = self.inference
        se = str(used.se if used is not None else self.options.get("se", "standard")).lower()
        est = self.estimator.upper()
        fiml = str(self.options.get("missing", "")).lower() in ("fiml", "ml")
        if se == "bootstrap":
            return [_kv("Standard errors", "Bootstrap"),
                    _kv("Number of requested bootstrap draws",
                        int(self.options.get("bootstrap") or 0))]
        info = str(used.information if used is not None else
                   self.options.get("information", "observed" if (fiml or est == "MLR") else "expected"))
        if se == "none":
            return [_kv("Standard errors", "None")]
        if se == "robust.huber.white" or (est == "MLR" and se in ("default", "robust")):
            if info == "expected":
                return [_kv("Standard errors", "Sandwich"), _kv("Information bread", "Expected"),
                        _kv("Information saturated (h1) model", "Structured")]
            return [_kv("Standard errors", "Sandwich"), _kv("Information bread", "Observed"),
                    _kv("Observed information based on", "Hessian")]
        if se == "robust.sem" or (est in ("MLM", "WLSMV", "ULSMV") and se in ("default", "robust")):
            h1 = "Unstructured" if est in ("WLSMV", "ULSMV") else "Structured"
            return [_kv("Standard errors", "Robust.sem"), _kv("Information", "Expected"),
                    _kv("Information saturated (h1) model", h1)]
        if info == "observed":   # lavaan's default for missing = "ml": observed information
            return [_kv("Standard errors", "Standard"), _kv("Information", "Observed"),
                    _kv("Observed information based on", "Hessian")]
        return [_kv("Standard errors", "Standard"), _kv("Information", "Expected"),
                _kv("Information saturated (h1) model", "Structured")]

    def summary(self, *, fit_measures: bool = True, standardized: bool = True,
                rsquare: bool = True, ci: bool = False) -> str:
        """lavaan's ``summary(fit, fit.measures=TRUE, standardized=TRUE, rsquare=TRUE)``;
        ``ci=True`` adds the ci.lower and ci.upper columns, as ``summary(fit, ci = TRUE)``."""
        lines = self._header_lines()
        if fit_measures:
            lines.extend(self._fit_measure_lines())
        lines += ["Parameter Estimates:", "", *self._se_lines(), ""]
        if self.twolevel is not None:   # lavaan prints one section per level (per group)
            pt, r2 = self.params, self.r2 if rsquare else None
            labels = self.group_labels or ("",)
            for g, glabel in enumerate(labels, start=1):
                if glabel:
                    lines += [f"Group {g} [{glabel}]:", ""]
                for lev, name in ((1, "within"), (2, self.twolevel.cluster)):
                    lines += [f"Level {lev} [{name}]:", ""]
                    sub_r2 = None if r2 is None else r2[(r2["level"] == lev) & (r2["group"] == g)]
                    sub = pt[(pt["level"] == lev) & (pt["group"] == g)]
                    lines.extend(_estimate_lines(sub, sub_r2, (), standardized=standardized))
            lines.extend(_estimate_lines(pt[pt["op"] == ":="], None, (), standardized=standardized))
        else:
            lines.extend(_estimate_lines(self.params, self.r2 if rsquare else None,
                                         self.group_labels, standardized=standardized, ci=ci))
        lines.extend(_constraint_lines(self.params))
        if self.warnings:
            lines.append("Warnings:")
            lines.extend(f"  - {_warning_text(w)}" for w in self.warnings)
            lines.append("")
        return Summary("\n".join(lines).rstrip() + "\n")

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        fi = self.fit_indices
        chisq = fmt_number(fi.get("chisq", np.nan), 3)
        df = fmt_number(fi.get("df", np.nan), 0)
        return (f"<FitResult estimator={self.estimator} n={self.ntotal} "
                f"chisq={chisq} df={df} converged={self.converged}>")

    def _repr_html_(self) -> str:
        return _fit_html(self)


# --------------------------------------------------------------------------- estimates text

_SECTIONS = [
    ("Latent Variables:", "=~"),
    ("Composites:", "<~"),
    ("Regressions:", "~"),
    ("Covariances:", "cov"),
    ("Intercepts:", "~1"),
    ("Thresholds:", "|"),
    ("Variances:", "var"),
    ("Scales y*:", "~*~"),
]
_NAME_W = 18
_COL_W = 9


def _constraint_lines(pt: pd.DataFrame) -> list[str]:
    """lavaan's 'Constraints:' block: each general constraint (a == 2*b, b > 0.3) as lhs - (rhs)
    with its |slack| (analysis.sem.constraints fills their est); label == label rows have none."""
    rows = pt[pt["op"].isin(["==", "<", ">"]) & pt["est"].notna()]
    if not len(rows):
        return []
    out = ["Constraints:", " " * 47 + "|Slack|"]
    for lhs, op, rhs, est in zip(rows["lhs"], rows["op"], rows["rhs"], rows["est"]):
        text = f"{rhs} - ({lhs})" if op == "<" else f"{lhs} - ({rhs})"
        out.append(f"    {text:<40s}{fmt_number(abs(float(est)), 3):>10s}")
    return out + [""]


def _section_rows(pt: pd.DataFrame, key: str) -> pd.DataFrame:
    if key == "cov":
        return pt[(pt["op"] == "~~") & (pt["lhs"] != pt["rhs"])]
    if key == "var":
        return pt[(pt["op"] == "~~") & (pt["lhs"] == pt["rhs"])]
    return pt[pt["op"] == key]


def _residual_names(pt: pd.DataFrame) -> set[str]:
    """Variables whose (co)variances and intercepts are residual ones (lavaan's '.')."""
    ind = set(pt.loc[pt["op"] == "=~", "rhs"])
    eqs_y = set(pt.loc[pt["op"] == "~", "lhs"])
    return ind | eqs_y


def _name_cell(name: str, label: str, indent: int = 4, width: int = _NAME_W) -> str:
    text = " " * indent + name
    if label:
        lab = f"({label})"
        text = text.ljust(max(len(text) + 1, width - len(lab))) + lab
    return text.ljust(width)


def _name_width(pt: pd.DataFrame) -> int:
    """lavaan's 18 characters, wider when a name and its label need more."""
    labels = pt["label"].fillna("").astype(str) if "label" in pt.columns else pd.Series("", index=pt.index)
    names = np.where(pt["op"].isin([":=", "~1"]) | (pt["op"] == "~~") & (pt["lhs"] == pt["rhs"]),
                     pt["lhs"].astype(str), pt["rhs"].astype(str))
    widest = max([4 + len(n) + (len(lab) + 3 if lab else 0) for n, lab in zip(names, labels)],
                 default=0)
    return max(_NAME_W, widest + 1)


def _value_cells(row: pd.Series, std_cols: list[str]) -> str:
    free = row.get("free", 1)
    fixed = (row["op"] != ":=") and (pd.isna(free) or int(free) == 0)
    se = row.get("se", np.nan)
    no_inference = fixed or pd.isna(se) or (se == 0 and row["op"] != ":=")
    cells = [fmt_number(row.get("est", np.nan), 3, width=_COL_W)]
    for col in ("se", "z", "pvalue"):
        v = np.nan if no_inference else row.get(col, np.nan)
        cells.append(fmt_number(v, 3, width=_COL_W))
    for col in std_cols:
        # lavaan's interval of a fixed parameter is the value itself
        v = row.get("est", np.nan) if col.startswith("ci.") and fixed else row.get(col, np.nan)
        cells.append(fmt_number(v, 3, width=_COL_W))
    return "".join(cells).rstrip()


def _column_header(std_cols: list[str], width: int = _NAME_W) -> str:
    heads = ["Estimate", "Std.Err", "z-value", "P(>|z|)"]
    heads += [{"std.lv": "Std.lv", "std.all": "Std.all", "std.nox": "Std.nox", "std.all.se": "Std.SE"}.get(c, c)
              for c in std_cols]
    return " " * width + "".join(h.rjust(_COL_W) for h in heads)


def _estimate_lines(pt: pd.DataFrame, r2: pd.DataFrame | None,
                    group_labels: Sequence[str], *, standardized: bool, ci: bool = False) -> list[str]:
    # Std.SE: the delta-method SE of Std.all (lavaan's standardizedSolution)
    std_cols = [c for c in ("std.lv", "std.all", "std.all.se") if standardized and c in pt.columns
                and pt[c].notna().any()]
    if ci and "ci.lower" in pt.columns:  # summary(ci = TRUE): the interval right after P(>|z|)
        std_cols = ["ci.lower", "ci.upper"] + std_cols
    width = _name_width(pt)
    header = _column_header(std_cols, width)
    resid = _residual_names(pt)
    label_col = pt["label"].fillna("").astype(str) if "label" in pt.columns \
        else pd.Series("", index=pt.index)
    groups = sorted(g for g in pt.loc[~pt["op"].isin({":=", "==", "<", ">"}), "group"].unique()
                    if not pd.isna(g) and int(g) > 0) if "group" in pt.columns else [1]
    lines: list[str] = []
    for g in groups:
        gpt = pt[pt["group"] == g] if "group" in pt.columns else pt
        if len(groups) > 1:
            lab = group_labels[int(g) - 1] if len(group_labels) >= int(g) else str(int(g))
            lines += [f"Group {int(g)} [{lab}]:", ""]
        for title, key in _SECTIONS:
            rows = _section_rows(gpt, key)
            if rows.empty:
                continue
            lines += [title, header]
            if key in ("=~", "<~", "~", "cov"):
                op = "~~" if key == "cov" else key
                for lhs in dict.fromkeys(rows["lhs"]):
                    dot = "." if key == "cov" and lhs in resid else ""
                    lines.append(f"  {dot}{lhs} {op}")
                    for _, row in rows[rows["lhs"] == lhs].iterrows():
                        name = row["rhs"]
                        if key == "cov" and name in resid:
                            cell = _name_cell("." + name, label_col[row.name], 3, width)
                        else:
                            cell = _name_cell(name, label_col[row.name], 4, width)
                        lines.append(cell + _value_cells(row, std_cols))
            else:
                for _, row in rows.iterrows():
                    if key == "|":
                        name, dot = f"{row['lhs']}|{row['rhs']}", False
                    else:
                        name, dot = row["lhs"], row["lhs"] in resid and key in ("~1", "var")
                    cell = _name_cell(("." if dot else "") + name, label_col[row.name],
                                      3 if dot else 4, width)
                    lines.append(cell + _value_cells(row, std_cols))
            lines.append("")
        if r2 is not None and len(r2):
            rg = r2[r2["group"] == g] if "group" in r2.columns else r2
            if len(rg):
                lines += ["R-Square:", " " * width + "Estimate".rjust(_COL_W)]
                for _, row in rg.iterrows():
                    lines.append(_name_cell(str(row["lhs"]), "", 4, width)
                                 + fmt_number(row["r2"], 3, width=_COL_W))
                lines.append("")
    defined = pt[pt["op"] == ":="]
    if not defined.empty:
        lines += ["Defined Parameters:", header]
        for _, row in defined.iterrows():
            lines.append(_name_cell(str(row["lhs"]), "", 4, width) + _value_cells(row, std_cols))
        lines.append("")
    return lines


# --------------------------------------------------------------------------- HTML

_HTML_STYLE = (
    "<style>.resilience-fit table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}"
    ".resilience-fit th,.resilience-fit td{padding:2px 8px;text-align:right}"
    ".resilience-fit td.name,.resilience-fit th.name{text-align:left}"
    ".resilience-fit tr.section td{font-weight:bold;text-align:left;padding-top:0.6em}"
    ".resilience-fit tr.group td{font-weight:bold;text-align:left;padding-top:1em;"
    "border-bottom:1px solid #ccc}"
    ".resilience-fit thead th{border-bottom:1px solid #999}</style>"
)


def _td(value: Any, digits: int = 3, cls: str = "") -> str:
    text = value if isinstance(value, str) else fmt_number(value, digits)
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{html.escape(text)}</td>"


# (label, standard key, scaled/robust key) of the HTML fit table, as summary() pairs them
_HTML_MEASURES = [
    ("Chi-square", "chisq", "chisq.scaled"), ("Degrees of freedom", "df", "df.scaled"),
    ("P-value", "pvalue", "pvalue.scaled"), ("Scaling correction factor", None, "chisq.scaling.factor"),
    ("Shift parameter", None, "chisq.shift.parameter"),
    ("CFI", "cfi", "cfi.scaled"), ("TLI", "tli", "tli.scaled"),
    ("Robust CFI", None, "cfi.robust"), ("Robust TLI", None, "tli.robust"),
    ("RMSEA", "rmsea", "rmsea.scaled"), ("RMSEA 90% CI lower", "rmsea.ci.lower", "rmsea.ci.lower.scaled"),
    ("RMSEA 90% CI upper", "rmsea.ci.upper", "rmsea.ci.upper.scaled"),
    ("Robust RMSEA", None, "rmsea.robust"), ("Robust RMSEA 90% CI lower", None, "rmsea.ci.lower.robust"),
    ("Robust RMSEA 90% CI upper", None, "rmsea.ci.upper.robust"),
    ("SRMR", "srmr", None), ("Log-likelihood", "logl", None), ("AIC", "aic", None), ("BIC", "bic", None),
]


def _fit_html(res: FitResult) -> str:
    fi = res.fit_indices
    labels = res.group_labels or tuple(str(g + 1) for g in range(res.n_groups))
    nobs = ", ".join(f"{lab}: {n}" for lab, n in zip(labels, res.nobs)) if res.n_groups > 1 \
        else str(res.ntotal)
    info_rows = [
        ("Estimator", res.estimator),
        ("Converged", "yes" if res.converged else "NO"),
        ("Iterations", "" if res.iterations is None else str(res.iterations)),
        ("Observations", nobs),
    ]
    scaled = _has(fi, "chisq.scaled")
    parts = [_HTML_STYLE, '<div class="resilience-fit">', "<table>"]
    if scaled:
        parts.append('<thead><tr><th class="name"></th><th>Standard</th><th>Scaled</th></tr></thead>')
    parts.append("<tbody>")
    blank = "<td></td>" if scaled else ""
    for name, value in info_rows:
        parts.append(f'<tr><td class="name">{html.escape(name)}</td>{_td(value)}{blank}</tr>')
    for name, key, alt in _HTML_MEASURES:
        std = key is not None and _has(fi, key)
        rob = scaled and alt is not None and _has(fi, alt)
        if not (std or rob):
            continue
        digits = 0 if key == "df" and float(fi[key]).is_integer() else 3
        cells = _td(fi[key], digits) if std else "<td></td>"
        if scaled:
            cells += _td(fi[alt], digits if alt != "df.scaled" or float(fi[alt]).is_integer() else 3) \
                if rob else "<td></td>"
        parts.append(f'<tr><td class="name">{html.escape(name)}</td>{cells}</tr>')
    parts.append("</tbody></table>")

    pt = res.params
    std_cols = [c for c in ("std.lv", "std.all") if c in pt.columns and pt[c].notna().any()]
    cols = ["est", "se", "z", "pvalue"] + std_cols
    heads = ["Estimate", "Std.Err", "z-value", "P(>|z|)"] + \
        [{"std.lv": "Std.lv", "std.all": "Std.all"}[c] for c in std_cols]
    width = len(cols) + 2
    parts.append('<table><thead><tr><th class="name">Parameter</th><th class="name">Label</th>')
    parts += [f"<th>{html.escape(h)}</th>" for h in heads]
    parts.append("</tr></thead><tbody>")
    multi = res.n_groups > 1
    groups = sorted(int(g) for g in pt.loc[pt["op"] != ":=", "group"].unique() if int(g) > 0) \
        if multi else [None]
    r2 = res.r2 if res.r2 is not None and len(res.r2) else None

    def rows_html(sub: pd.DataFrame, sections) -> None:
        for title, key in sections:
            rows = _section_rows(sub, key)
            if rows.empty:
                continue
            parts.append(f'<tr class="section"><td colspan="{width}">'
                         f"{html.escape(title.rstrip(':'))}</td></tr>")
            for _, row in rows.iterrows():
                if key == "~1":
                    name = f"{row['lhs']} ~1"
                elif key == ":=":
                    name = f"{row['lhs']} := {row['rhs']}"
                else:
                    name = f"{row['lhs']} {row['op']} {row['rhs']}"
                label = str(row.get("label", "") or "")
                fixed = key != ":=" and int(row.get("free", 1) or 0) == 0
                cells = [_td(np.nan if fixed and c in ("se", "z", "pvalue") else row.get(c, np.nan))
                         for c in cols]
                parts.append(f'<tr><td class="name">{html.escape(name)}</td>'
                             f'<td class="name">{html.escape(label)}</td>{"".join(cells)}</tr>')

    for g in groups:
        sub = pt if g is None else pt[pt["group"] == g]
        if g is not None:
            parts.append(f'<tr class="group"><td colspan="{width}">Group {g} '
                         f"[{html.escape(str(labels[g - 1]))}]</td></tr>")
        rows_html(sub, _SECTIONS)
        if r2 is not None:
            rg = r2 if g is None or "group" not in r2.columns else r2[r2["group"] == g]
            if len(rg):
                parts.append(f'<tr class="section"><td colspan="{width}">R-Square</td></tr>')
                for _, row in rg.iterrows():
                    parts.append(f'<tr><td class="name">{html.escape(str(row["lhs"]))}</td>'
                                 f'<td></td>{_td(row["r2"])}</tr>')
    rows_html(pt, [("Defined Parameters:", ":=")])
    parts.append("</tbody></table>")
    if res.warnings:
        parts.append("<ul>" + "".join(f"<li>{html.escape(_warning_text(w))}</li>"
                                      for w in res.warnings)
                     + "</ul>")
    parts.append("</div>")
    return "".join(parts)


# --------------------------------------------------------------------------- comparison

@dataclass(frozen=True, eq=False)
class ComparisonResult:
    """Side-by-side comparison of fitted models (lavaan's ``lavTestLRT``/``anova``).

    ``table`` has one row per model (sorted by df, as lavaan does) with
    ``df, aic, bic, chisq, chisq.diff, df.diff, pvalue``; ``tests`` holds the
    difference tests between consecutive models.
    """

    table: pd.DataFrame
    tests: tuple[TestStatistic | InvalidTestStatistic, ...] = ()
    nested: bool = True
    method: str = "standard"
    warnings: tuple[Mapping[str, Any] | str, ...] = ()
    fits: Mapping[str, FitResult] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.table.index)

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for name, row in self.table.iterrows():
            rec = {"model": name}
            for key, value in row.to_dict().items():
                if key in ("npar", "df", "df.diff") and not pd.isna(value) \
                        and float(value).is_integer():
                    value = int(value)
                rec[key] = value
            rows.append(rec)
        return jsonable({
            "models": rows,
            "tests": [t.to_dict() for t in self.tests],
            "nested": self.nested,
            "method": self.method,
            "warnings": list(self.warnings),
        })

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @property
    def has_tests(self) -> bool:
        """Whether any pair of models got a difference test."""
        return "chisq.diff" in self.table.columns and bool(self.table["chisq.diff"].notna().any())

    def summary(self) -> str:
        """lavaan's ``lavTestLRT`` table (or AIC/BIC only when no pair is nested)."""
        tested = self.has_tests
        title = "Chi-Squared Difference Test" if tested else "Non-nested models: information criteria"
        if self.method != "standard" and tested:
            title = f"Scaled Chi-Squared Difference Test (method = {self.method})"
        cols = [("df", "Df", 0), ("aic", "AIC", 3), ("bic", "BIC", 3), ("chisq", "Chisq", 3)]
        if tested:
            cols += [("chisq.diff", "Chisq diff", 3)]
            if "rmsea" in self.table.columns:
                cols += [("rmsea", "RMSEA", 5)]
            cols += [("df.diff", "Df diff", 0), ("pvalue", "Pr(>Chisq)", 4)]
        name_w = max([len(str(n)) for n in self.table.index] + [8]) + 2
        lines = [title, ""]
        lines.append(" " * name_w + "".join(h.rjust(12) for _, h, _ in cols))
        for name, row in self.table.iterrows():
            cells = []
            for key, _, d in cols:
                v = row.get(key, np.nan)
                if key in ("df", "df.diff") and not pd.isna(v) and not float(v).is_integer():
                    d = 3
                cells.append(fmt_number(v, d, width=12))
            lines.append(str(name).ljust(name_w) + "".join(cells))
        finite = self.table[["aic", "bic"]].dropna(how="all")
        if len(finite) > 1 and finite["aic"].notna().any():
            lines += ["", f"Lowest AIC: {finite['aic'].idxmin()}; lowest BIC: {finite['bic'].idxmin()}"]
        if self.warnings:
            lines.append("")
            lines.extend(f"Warning: {_warning_text(w)}" for w in self.warnings)
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<ComparisonResult models={self.names} nested={self.nested}>"

    def _repr_html_(self) -> str:
        cols = ["df", "aic", "bic", "chisq"] + (["chisq.diff", "df.diff", "pvalue"]
                                                if self.has_tests else [])
        parts = [_HTML_STYLE, '<div class="resilience-fit"><table><thead><tr>'
                 '<th class="name">Model</th>']
        parts += [f"<th>{html.escape(c)}</th>" for c in cols]
        parts.append("</tr></thead><tbody>")
        for name, row in self.table.iterrows():
            parts.append(f'<tr><td class="name">{html.escape(str(name))}</td>')
            parts += [_td(row.get(c, np.nan), 0 if c in ("df", "df.diff") else 3) for c in cols]
            parts.append("</tr>")
        parts.append("</tbody></table>")
        if self.warnings:
            parts.append("<ul>" + "".join(f"<li>{html.escape(_warning_text(w))}</li>"
                                          for w in self.warnings) + "</ul>")
        parts.append("</div>")
        return "".join(parts)
