"""Estimators: one class per estimator with the surface of :class:`base.Estimator`.

    registry    the one list of estimator names and lavaan's se/test defaults
    factory     make_estimator: the estimator object fit_sem and bootstrap refits use
    base, ml    the ML discrepancy, gradient and information (complete data)
    fiml        casewise likelihood (missing data), sampling weights and clusters
    robust      MLM (Satorra-Bentler) and the scaled difference tests
    scaling     sandwich SEs and scaled statistics shared by MLM, MLR and WLSMV
    likelihood  the factory of ML, MLR and MLM (complete data or FIML)
    wls         WLSMV / ULSMV on polychoric statistics
    inference   lavaan's se=/test= semantics, refusals, and the SE/z/p/CI columns

To add an estimator: a module with ``make_estimator(model, stats, *, data,
options)`` and one line in ``registry.ESTIMATORS``. The estimator classes
import numpy, so they load only when asked for.
"""

from __future__ import annotations

from analysis.sem.estimators.registry import (
    ESTIMATOR_NAMES,
    ESTIMATORS,
    ML_ESTIMATORS,
    EstimatorSpec,
    get_estimator_module,
)

__all__ = ["Estimator", "MLEstimator", "EstimatorSpec", "ESTIMATORS", "ESTIMATOR_NAMES", "ML_ESTIMATORS",
           "get_estimator_module", "make_estimator"]


def __getattr__(name: str):
    if name == "Estimator":
        from analysis.sem.estimators.base import Estimator
        return Estimator
    if name == "MLEstimator":
        from analysis.sem.estimators.ml import MLEstimator
        return MLEstimator
    if name == "make_estimator":
        from analysis.sem.estimators.factory import make_estimator
        return make_estimator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
