"""Exceptions and warnings of the statistics engine.

A user's mistake raises one of the ``*Error`` classes below with a message
that names the line, variable or option at fault. Problems with a fit that
still produced numbers (Heywood cases, non-convergence, ...) are warnings,
emitted with :mod:`warnings` *and* stored on the result (``result.warnings``)
as dicts, so that reports can show them as data.
"""

from __future__ import annotations

__all__ = [
    "AnalysisError",
    "ModelSyntaxError",
    "ModelSpecificationError",
    "IdentificationError",
    "DataError",
    "SampleCovarianceError",
    "EstimatorNotAvailableError",
    "OptionError",
    "SEMWarning",
    "HeywoodCaseWarning",
    "StandardizedLoadingWarning",
    "NotPositiveDefiniteWarning",
    "NonConvergenceWarning",
    "IdentificationWarning",
    "warning_record",
]


class AnalysisError(ValueError):
    """Base class: the input cannot be analysed as given."""


class ModelSyntaxError(AnalysisError):
    """lavaan model syntax that cannot be parsed.

    ``str(err)`` reads ``line 3, col 12: unexpected '~'`` followed by the
    source line and a caret under the problem.
    """

    def __init__(self, message: str, line: int | None = None, col: int | None = None,
                 source_line: str | None = None):
        self.message, self.line, self.col, self.source_line = message, line, col, source_line
        text = message
        if line is not None:
            text = f"line {line}, col {col}: {message}"
            if source_line is not None:
                text += f"\n  {source_line}\n  {' ' * (max(col, 1) - 1)}^"
        super().__init__(text)


class ModelSpecificationError(AnalysisError):
    """The model parses but cannot be fitted (unknown variables, bad constraints)."""


class IdentificationError(ModelSpecificationError):
    """The model is not identified (df < 0, single-indicator factor, ...)."""


class DataError(AnalysisError):
    """The data cannot be used for this model (missing columns, too few cases, ...)."""


class SampleCovarianceError(DataError):
    """The sample covariance matrix is not positive definite."""


class ReliabilityError(AnalysisError):
    """A reliability statistic cannot be computed from what was given (or the data lack an item)."""


class EstimatorNotAvailableError(AnalysisError):
    """The requested estimator is not (yet) implemented."""


class OptionError(AnalysisError, TypeError):
    """An argument of a public function has an invalid value."""


class SEMWarning(UserWarning):
    """Base class of the engine's warnings."""

    kind = "warning"


class HeywoodCaseWarning(SEMWarning):
    """A variance estimate is negative (Heywood case)."""

    kind = "heywood-case"


class StandardizedLoadingWarning(SEMWarning):
    """A standardized loading or correlation exceeds 1 in absolute value."""

    kind = "standardized-loading"


class NotPositiveDefiniteWarning(SEMWarning):
    """An implied (latent) covariance matrix is not positive definite."""

    kind = "not-positive-definite"


class IdentificationWarning(SEMWarning):
    """The information matrix is singular: the model is probably not identified."""

    kind = "not-identified"


class NonConvergenceWarning(SEMWarning):
    """The optimizer stopped before convergence."""

    kind = "non-convergence"


def warning_record(category: type[SEMWarning], message: str, **fields) -> dict:
    """A warning as data: ``{"type": ..., "message": ..., **fields}``."""
    return {"type": category.kind, "category": category.__name__, "message": message, **fields}
