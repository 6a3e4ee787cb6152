"""Estimators: one class per estimator with the surface of :class:`base.Estimator`.

``ESTIMATORS`` is the one registry of estimator names: for each, the module
whose ``make_estimator`` builds it and lavaan's default SE and test. ``fit_sem``,
the command line and the psychometrics read it. Modules owned by other parts of
the suite (``fiml``, ``wls``, ``robust``) are looked up lazily (so that the
command line starts without numpy) and a missing one gives a clear "not yet
available" error. To add an estimator: a module with ``make_estimator(model,
stats, *, data, options)`` and one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import EstimatorNotAvailableError

__all__ = ["Estimator", "MLEstimator", "EstimatorSpec", "ESTIMATORS", "ESTIMATOR_NAMES", "ML_ESTIMATORS",
           "get_estimator_module"]


@dataclass(frozen=True)
class EstimatorSpec:
    """An estimator: its module, lavaan's ``se``/``test`` defaults, and whether it is
    maximum likelihood on continuous data (fixed.x, FIML and ML bootstrap refits)."""

    name: str
    module: str
    se: str
    test: str
    likelihood: bool


ESTIMATORS: dict[str, EstimatorSpec] = {spec.name: spec for spec in (
    EstimatorSpec("ML", "fiml", "standard", "standard", likelihood=True),
    EstimatorSpec("MLR", "robust", "robust.huber.white", "yuan.bentler.mplus", likelihood=True),
    EstimatorSpec("MLM", "robust", "robust.sem", "satorra.bentler", likelihood=True),
    EstimatorSpec("WLSMV", "wls", "robust.sem", "scaled.shifted", likelihood=False),
    EstimatorSpec("ULSMV", "wls", "robust.sem", "scaled.shifted", likelihood=False),
)}
ESTIMATOR_NAMES = tuple(ESTIMATORS)
ML_ESTIMATORS = tuple(name for name, spec in ESTIMATORS.items() if spec.likelihood)


def get_estimator_module(module: str):
    """Import ``analysis.estimators.<module>`` or raise EstimatorNotAvailableError."""
    try:
        return importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as err:
        if err.name and err.name.endswith(module):
            raise EstimatorNotAvailableError(
                f"this estimator needs analysis.estimators.{module}, which is not yet available") from None
        raise


def __getattr__(name: str):
    # the estimator classes import numpy: only when asked for
    if name == "Estimator":
        from .base import Estimator
        return Estimator
    if name == "MLEstimator":
        from .ml import MLEstimator
        return MLEstimator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
