"""make_estimator: the estimator object for a compiled model and its data.

fit_sem and the bootstrap's refits both build their estimator here: plain ML
when lavaan's defaults hold (expected information, standard SEs and test),
else the module the registry names for the estimator.
"""
from __future__ import annotations

from analysis.errors import EstimatorNotAvailableError
from analysis.sem.estimators.inference import Inference
from analysis.sem.estimators.ml import MLEstimator
from analysis.sem.estimators.registry import ESTIMATORS as REGISTRY
from analysis.sem.estimators.registry import get_estimator_module

__all__ = ["make_estimator"]


def make_estimator(estimator, missing, mdl, stats, check, options):
    """The estimator object for a compiled model and its data (fit_sem, bootstrap refits)."""

    likelihood = REGISTRY[estimator].likelihood
    if mdl.th_names and any(mdl.th_names) and likelihood:
        raise EstimatorNotAvailableError(
            f"estimator {estimator!r} cannot fit ordered variables; use estimator='WLSMV'")
    inf = Inference.from_options(estimator, {**options, "missing": missing})
    if (likelihood and missing == "listwise" and not options.get("survey")
            and inf.information == "expected" and inf.se in ("standard", "none", "bootstrap")
            and inf.test in ("standard", "none", "bollen.stine")):
        return MLEstimator(mdl, stats)      # the estimates and inference of plain ML
    module = REGISTRY[estimator].module
    mod = get_estimator_module(module)
    make = getattr(mod, "make_estimator", None)
    if make is None:
        raise EstimatorNotAvailableError(
            f"estimator {estimator!r} with missing={missing!r} is not yet available "
            f"(analysis.sem.estimators.{module} has no make_estimator)")
    return make(mdl, stats, data=check, options={**options, "estimator": estimator, "missing": missing})
