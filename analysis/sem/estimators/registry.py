"""The one registry of estimator names: for each, the module whose
``make_estimator(model, stats, *, data, options)`` builds it, lavaan's default
``se`` and ``test``, and whether it is maximum likelihood on continuous data.
Reading it imports no numpy, so the command line can list estimators cheaply.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from analysis.errors import EstimatorNotAvailableError

__all__ = ["EstimatorSpec", "ESTIMATORS", "ESTIMATOR_NAMES", "ML_ESTIMATORS", "get_estimator_module"]


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
    EstimatorSpec("ML", "likelihood", "standard", "standard", likelihood=True),
    EstimatorSpec("MLR", "likelihood", "robust.huber.white", "yuan.bentler.mplus", likelihood=True),
    EstimatorSpec("MLM", "likelihood", "robust.sem", "satorra.bentler", likelihood=True),
    EstimatorSpec("WLSMV", "wls", "robust.sem", "scaled.shifted", likelihood=False),
    EstimatorSpec("ULSMV", "wls", "robust.sem", "scaled.shifted", likelihood=False),
)}
ESTIMATOR_NAMES = tuple(ESTIMATORS)
ML_ESTIMATORS = tuple(name for name, spec in ESTIMATORS.items() if spec.likelihood)


def get_estimator_module(module: str):
    """Import ``analysis.sem.estimators.<module>`` or raise EstimatorNotAvailableError."""
    try:
        return importlib.import_module(f"analysis.sem.estimators.{module}")
    except ModuleNotFoundError as err:
        if err.name and err.name.endswith(module):
            raise EstimatorNotAvailableError(
                f"this estimator needs analysis.sem.estimators.{module}, which is not yet available") from None
        raise
