"""Estimators: one class per estimator with the surface of :class:`base.Estimator`.

``get_estimator(name)`` returns the class for an estimator name; modules owned
by other parts of the suite (``fiml``, ``wls``, ``robust``) are looked up
lazily so that a missing one gives a clear "not yet available" error.
"""

from __future__ import annotations

import importlib

from ..errors import EstimatorNotAvailableError
from .base import Estimator
from .ml import MLEstimator

__all__ = ["Estimator", "MLEstimator", "get_estimator_module"]


def get_estimator_module(module: str):
    """Import ``analysis.estimators.<module>`` or raise EstimatorNotAvailableError."""
    try:
        return importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as err:
        if err.name and err.name.endswith(module):
            raise EstimatorNotAvailableError(
                f"this estimator needs analysis.estimators.{module}, which is not yet available") from None
        raise
