"""lavaan's ``se=`` / ``test=`` option semantics, resolved once for ``fit_sem``.

As lavaan 0.6 (``lav_options_set``, ``lav_test_rename``): options are matched
case-insensitively and used that way; aliases are lavaan's ("sb", "mlr",
"sandwich", "boot", ...); each estimator fixes its default SE and test, and a
scaled test named by the estimator (MLR's Yuan-Bentler, MLM's Satorra-Bentler,
WLSMV's scaled-shifted) is always computed unless ``test="none"``, while ML adds
the requested test to the standard one. The information matrix is observed
with FIML or Huber-White SEs, expected otherwise.

Combinations lavaan refuses raise :class:`OptionError` with lavaan's reason;
those lavaan accepts but this engine does not compute raise with a clear
message. Those lavaan changes (FIML with a Satorra-Bentler style test or
robust.sem SEs: back to listwise) are changed the same way, with a warning.

>>> resolve_inference("MLR", "listwise", se="standard", test="default").se
'standard'
>>> resolve_inference("ML", "listwise", se="default", test="SB").test
'satorra.bentler'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analysis.errors import OptionError
from analysis.sem.estimators.registry import ESTIMATORS

__all__ = ["Inference", "resolve_inference", "SE_NAMES", "TEST_NAMES"]

SE_NAMES = ("default", "standard", "robust", "robust.sem", "robust.huber.white", "bootstrap", "none",
            "robust.mlm", "robust.mlr", "sandwich", "boot", "observed", "expected")
TEST_NAMES = ("default", "standard", "satorra.bentler", "yuan.bentler", "yuan.bentler.mplus",
              "scaled.shifted", "mean.var.adjusted", "bootstrap", "bollen.stine", "none",
              "chisq", "sb", "satorra", "mean.adjusted", "yuan", "yb", "mv", "satterthwaite",
              "mplus6", "scale.shift", "boot", "browne.residual.adf", "browne.residual.nt")

_TEST_ALIASES = {
    "chisq": "standard", "chi": "standard", "chi-square": "standard", "chi.square": "standard",
    "satorra": "satorra.bentler", "sb": "satorra.bentler", "satorra-bentler": "satorra.bentler",
    "m.adjusted": "satorra.bentler", "m": "satorra.bentler", "mean.adjusted": "satorra.bentler",
    "mean-adjusted": "satorra.bentler",
    "yuan": "yuan.bentler", "yb": "yuan.bentler", "yuan-bentler": "yuan.bentler",
    "yuan-bentler.mplus": "yuan.bentler.mplus", "yuan-bentler-mplus": "yuan.bentler.mplus",
    "mean-var-adjusted": "mean.var.adjusted", "mv": "mean.var.adjusted", "second.order": "mean.var.adjusted",
    "satterthwaite": "mean.var.adjusted", "mv.adjusted": "mean.var.adjusted",
    "mplus6": "scaled.shifted", "scale.shift": "scaled.shifted", "scaled-shifted": "scaled.shifted",
    "bootstrap": "bollen.stine", "boot": "bollen.stine", "bollen-stine": "bollen.stine",
}
_SCALED = ("satorra.bentler", "yuan.bentler", "yuan.bentler.mplus", "scaled.shifted", "mean.var.adjusted")
_KNOWN_TESTS = ("standard", "none", "default", "bollen.stine", *_SCALED)
_BROWNE = ("browne.residual.adf", "browne.residual.nt", "browne", "residual", "residuals",
           "browne.residual", "browne.residuals", "residual-based", "residual.based",
           "browne.residuals.adf", "browne.residuals.nt", "browne.residual.adf.model",
           "browne.residual.nt.model")



@dataclass(frozen=True)
class Inference:
    """What a fit computes: ``se``, ``test`` (the scaled or bootstrap test beside the
    standard one, or "standard"/"none"), ``information`` and the ``missing`` finally used."""

    se: str
    test: str
    information: str
    missing: str
    test_information: str = "expected"
    warnings: tuple[str, ...] = field(default=())
    second_test: str = ""
    """A test lavaan adds beside a robust estimator's own (WLSMV with test="satorra.bentler" or
    "mean.var.adjusted"); the fit measures keep using the own test, as lavaan's."""

    def as_options(self) -> dict:
        """The strings a FitResult's ``options`` records (and refits read back)."""
        out = {"se": self.se, "test": self.test, "information": self.information,
               "test_information": self.test_information}
        if self.second_test:
            out["second_test"] = self.second_test
        return out

    @classmethod
    def from_options(cls, estimator: str, options: dict) -> "Inference":
        """Rebuild from a fit's options (refits), resolving them when they were never resolved."""
        missing = str(options.get("missing", "listwise"))
        if "test_information" in options:
            return cls(se=str(options["se"]), test=str(options["test"]),
                       information=str(options["information"]), missing=missing,
                       test_information=str(options["test_information"]),
                       second_test=str(options.get("second_test", "")))
        return resolve_inference(estimator, missing, se=options.get("se"), test=options.get("test"))

    @property
    def scaled(self) -> bool:
        return self.test in _SCALED


def _se_name(se) -> tuple[str, str | None]:
    """(se, information forced by the alias or None), as lav_options_check_se."""
    s = "default" if se is None else str(se).lower()
    alias = {"robust.mlm": "robust.sem", "robust.mlr": "robust.huber.white",
             "sandwich": "robust.huber.white", "boot": "bootstrap"}
    if s in ("observed", "expected"):
        return "standard", s
    if s == "first.order":
        raise OptionError("se='first.order' (first-order information) is not implemented; "
                          "use se='standard' or se='robust.huber.white'")
    s = alias.get(s, s)
    if s not in ("default", "none", "standard", "bootstrap", "robust", "robust.sem", "robust.huber.white"):
        raise OptionError(f"invalid value in se= argument: {se!r} (lavaan's choices: default, none, "
                          "standard, robust, robust.sem, robust.huber.white, bootstrap)")
    return s, None


def one_test(test, estimator: str):
    """lavaan's ``test = c(...)``: a list naming the estimator's own test (or "standard") and at
    most one more becomes that one test name (fit_sem computes the own test and the one asked
    for beside it); a single name is returned as it is."""
    if isinstance(test, str) or test is None:
        return test
    names = [_test_name(t) for t in test]
    own = ESTIMATORS[estimator.upper()].test if estimator.upper() in ESTIMATORS else "standard"
    rest = list(dict.fromkeys(t for t in names if t not in ("standard", "default", own)))
    if len(rest) > 1:
        raise OptionError(f"test={list(test)!r}: at most one test beside the estimator's own "
                          f"({own}) is computed; ask for one of {', '.join(rest)}")
    if "none" in names and len(names) > 1:
        raise OptionError(f"test={list(test)!r}: 'none' cannot be combined with other tests")
    return rest[0] if rest else ("none" if names == ["none"] else "default")


def _test_name(test) -> str:
    t = "default" if test is None else str(test).lower()
    if t in _BROWNE:
        raise OptionError(f"test={test!r}: Browne's residual-based tests are not implemented; "
                          "use 'standard', 'satorra.bentler', 'scaled.shifted', 'mean.var.adjusted', "
                          "'yuan.bentler.mplus' or 'bootstrap'")
    t = _TEST_ALIASES.get(t, t)
    if t not in _KNOWN_TESTS:
        raise OptionError(f"invalid value(s) in test= argument: {test!r}")
    return t


def resolve_inference(estimator: str, missing: str, *, se=None, test=None) -> Inference:
    """Resolve ``se``/``test`` for ``estimator`` and ``missing`` ("listwise", "fiml", "pairwise")."""
    est = estimator.upper()
    se, info = _se_name(se)
    test = _test_name(test)
    asked = test
    notes: list[str] = []
    if missing == "fiml" and est in ("MLM", "WLSMV", "ULSMV"):
        # lavaan refuses these before anything else
        refuse_combination(est, missing, False)
    ordinal = est in ("WLSMV", "ULSMV")
    if ordinal and se == "robust.huber.white":
        raise OptionError(f"invalid value in se= argument for estimator {est}: 'robust.huber.white' "
                          "(lavaan: only default, none, standard, robust, robust.sem or bootstrap)")
    if se == "bootstrap" and est != "ML":
        base = "ULS" if est == "ULSMV" else "(D)WLS" if ordinal else "ML"
        raise OptionError(f"use {base} estimator for bootstrap (lavaan refuses se='bootstrap' with "
                          f"estimator {est}: bootstrap replications refit the point estimator)")
    if se == "robust":
        se = "robust.sem" if (ordinal or missing != "fiml") else "robust.huber.white"
    own_se, own_test = ESTIMATORS[est].se, ESTIMATORS[est].test   # lavaan's "default"
    if se == "default":
        se = own_se
    # lavaan: FIML cannot give Satorra-Bentler style statistics or robust.sem SEs -> listwise
    if missing == "fiml" and (se == "robust.sem" or test in ("satorra.bentler", "mean.var.adjusted",
                                                             "scaled.shifted")):
        why = f"se = {se!r}" if se == "robust.sem" else "a satorra.bentler style test"
        notes.append(f"missing will be set to 'listwise' for {why} (as lavaan)")
        missing = "listwise"
    second = ""
    if ordinal and test == "bollen.stine":
        raise OptionError("bollen.stine/yuan bootstrap not available for categorical/ordinal data "
                          f"(lavaan; test='bootstrap' with estimator {est})")
    if ordinal and test in ("yuan.bentler", "yuan.bentler.mplus"):
        base = "ULS" if est == "ULSMV" else "DWLS"
        raise OptionError(f'information = "first.order" not available for estimator {base} (lavaan: '
                          f"test={test!r} needs it; {est} reports its scaled.shifted test)")
    if test != "none":
        if est == "ML":
            test = "standard" if test == "default" else test
        elif (ordinal and test in ("satorra.bentler", "mean.var.adjusted")) or \
                (est == "MLR" and test in ("satorra.bentler", "scaled.shifted", "mean.var.adjusted")):
            # lavaan computes the requested test beside the estimator's own (fit measures: the own;
            # MLR: both from the h1 observed information, below)
            second, test = test, own_test
        elif test not in ("default", "standard", own_test):
            alt = (" use estimator='ML' with test=" f"{test!r} (and se=...)" if not ordinal
                   else f" {est} reports lavaan's {own_test} test")
            raise OptionError(f"estimator {est} always computes its {own_test} test; a second test "
                              f"({test}) beside it is not implemented:{alt}")
        else:
            test = own_test
    if test == "bollen.stine" and (missing != "listwise" or se not in ("standard", "none", "bootstrap")):
        raise OptionError("test='bootstrap' (Bollen-Stine) needs complete data and the ML estimator "
                          "(missing='listwise'); it is not implemented with missing data")
    if info is None:
        info = "observed" if (missing == "fiml" or se == "robust.huber.white") else "expected"
    if ordinal and info == "observed":
        raise OptionError(f"se='observed' is not available for estimator {est} (expected information only)")
    if (not ordinal and info == "expected" and test in ("yuan.bentler", "yuan.bentler.mplus")
            and se == "robust.sem"):
        raise OptionError(f"test={test!r} with se='robust.sem' is not implemented; use se='standard' "
                          "or se='robust.huber.white'")
    if test == "yuan.bentler" and missing == "fiml":
        raise OptionError("test='yuan.bentler' with missing='fiml' is not implemented; "
                          "use test='yuan.bentler.mplus' (lavaan's default for MLR)")
    # the information of a Yuan-Bentler (Mplus) test: MLR's own test alone uses the Hessian;
    # beside the standard test lavaan switches to the h1 (saturated) observed information
    test_info = info
    if test == "yuan.bentler.mplus" and info == "observed":
        test_info = "hessian" if (est == "MLR" and asked in ("default", "yuan.bentler.mplus")) else "h1"
    return Inference(se=se, test=test, information=info, missing=missing, test_information=test_info,
                     warnings=tuple(notes), second_test=second)


class EstimatorCombinationError(OptionError):
    """An estimator/missing-data combination lavaan refuses."""


def refuse_combination(estimator: str, missing: str, ordered: bool) -> None:
    """Raise with lavaan's reason when ``estimator`` cannot be used with ``missing``/``ordered``."""
    est = estimator.upper()
    miss = {"fiml": "ml", "direct": "ml", "ml": "ml"}.get(missing.lower(), missing.lower())
    if est == "MLM" and miss == "ml":
        raise EstimatorCombinationError(
            "estimator MLM needs complete data (its Gamma matrix is computed from complete cases); "
            "use estimator='MLR' for robust full-information ML with missing='fiml'")
    if est in ("WLSMV", "ULSMV", "DWLS", "ULS", "WLS") and miss == "ml":
        raise EstimatorCombinationError(
            f"missing='fiml' is a maximum-likelihood method and cannot be used with estimator {est}; "
            "use missing='listwise' or missing='pairwise' with ordered items")
    if ordered and est in ("ML", "MLR", "MLM"):
        raise EstimatorCombinationError(
            f"estimator {est} does not handle ordered items; use estimator='WLSMV' (the default "
            "with ordered=) or 'ULSMV'")
    if est in ("ML", "MLR", "MLM") and miss == "pairwise":
        raise EstimatorCombinationError(
            f"missing='pairwise' is only available for ordered items with WLSMV/ULSMV; "
            f"use missing='fiml' or 'listwise' with estimator {est}")


def set_inference(pt, mask, est, se):
    """Fill se, z, pvalue and the 95% CI for the rows in ``mask`` (one column write each)."""
    import numpy as np

    from analysis.sem import distributions as sps

    se = np.asarray(se, dtype=float)
    z = np.where(se > 0, est / np.where(se > 0, se, 1.0), np.nan)
    crit = sps.norm.ppf(0.975)
    cols = {"se": se, "z": z, "pvalue": 2 * sps.norm.sf(np.abs(z)),
            "ci.lower": est - crit * se, "ci.upper": est + crit * se}
    for col, vals in cols.items():
        out = pt[col].to_numpy(dtype=float).copy()
        out[mask] = vals
        pt[col] = out


def fill_inference(pt, x, vcov):
    """Fill se, z, p and CI of the free rows of ``pt`` from ``vcov``, in place (also two-level fits)."""
    import numpy as np

    from analysis.sem.syntax import EXPRESSION_OPS

    free = pt["free"].to_numpy()
    model_rows = ~pt["op"].isin(EXPRESSION_OPS).to_numpy()
    fixed = (free == 0) & model_rows
    est = pt["est"].to_numpy(float)
    se = pt["se"].to_numpy(float).copy()
    lo, hi = pt["ci.lower"].to_numpy(float).copy(), pt["ci.upper"].to_numpy(float).copy()
    se[fixed], lo[fixed], hi[fixed] = 0.0, est[fixed], est[fixed]
    pt["se"], pt["ci.lower"], pt["ci.upper"] = se, lo, hi
    if vcov is not None:
        se_x = np.sqrt(np.maximum(np.diag(vcov), 0.0))
        mask = free > 0
        set_inference(pt, mask, est[mask], se_x[free[mask] - 1])
    return pt
