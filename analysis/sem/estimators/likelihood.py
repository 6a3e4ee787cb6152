"""The likelihood estimators' factory: ML, MLR and MLM on complete data or with
FIML, plain or with robust (sandwich) SEs and a scaled test, as lavaan's
``se=``/``test=`` ask (analysis.sem.estimators.inference resolves them).
"""
from __future__ import annotations

from analysis.sem.estimators.fiml import FIMLEstimator, fiml_extra_fit_measures
from analysis.sem.estimators.inference import EstimatorCombinationError, Inference, refuse_combination
from analysis.sem.estimators.robust import mlm_estimator
from analysis.sem.estimators.scaling import group_arrays, group_rows

__all__ = ["make_estimator"]


def make_estimator(model, stats, *, data=None, options=None):
    """Robust ML estimators for fit_sem: MLR (complete data or FIML), MLM, ML with robust SEs."""
    options = options or {}
    est_name = options.get("estimator", "MLR").upper()
    missing = options.get("missing", "listwise")
    refuse_combination(est_name, missing, bool(options.get("ordered")))
    if data is None:
        raise EstimatorCombinationError(f"estimator {est_name} needs the raw data, not a covariance matrix")
    arrays = group_arrays(data, model)
    inf = Inference.from_options(est_name, {**options, "missing": missing})
    if inf.information == "expected" and inf.test != "yuan.bentler.mplus" and not options.get("survey"):
        # Satorra-Bentler family tests and robust.sem SEs: ADF Gamma at the expected information
        est = mlm_estimator(model, stats, arrays)
        est.se_kind = "robust.sem" if inf.se == "robust.sem" else "standard"
        est.test_kind = inf.test if inf.scaled else None
        return est
    robust = inf.se == "robust.huber.white"
    weights = designs = None
    if options.get("survey") is not None:   # sampling weights / clusters / strata (analysis.design)
        designs = [options["survey"].subset(rows) for rows in group_rows(data, model)]
        weights = [d.weights for d in designs]
    est = FIMLEstimator(model, arrays, robust=robust, group_labels=tuple(stats.group_labels),
                        weights=weights, designs=designs)
    est.fiml = missing == "fiml"
    est.test_kind = inf.test if inf.test in ("yuan.bentler.mplus", "satorra.bentler", "yuan.bentler",
                                             "scaled.shifted", "mean.var.adjusted") else None
    est.se_information = "expected" if inf.information == "expected" else "hessian"
    est.test_information = inf.test_information if inf.test_information != "observed" else "hessian"
    if options.get("survey_test_information"):
        est.test_information = options["survey_test_information"]
    est.extra_fit_measures = lambda x, test, fit: fiml_extra_fit_measures(est, x, test, fit)
    return est
