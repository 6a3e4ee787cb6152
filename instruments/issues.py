"""A problem in a data file, as one row: the shape every importer, validator
and command reports in (row, respondent, item, value, type, severity, message).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Literal

import pandas as pd

__all__ = ["ISSUE_COLUMNS", "ValidationIssue", "issues_frame"]

ISSUE_COLUMNS = ["row", "respondent_id", "item", "value", "type", "severity", "message"]


@dataclass(frozen=True)
class ValidationIssue:
    """One problem in a data file."""

    type: str
    message: str
    severity: Literal["error", "warning"] = "error"
    row: int | None = None
    respondent_id: str | None = None
    item: str | None = None
    value: str | None = None

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else " (warning)"
        return f"{self.message} [{self.type}]{tag}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def issues_frame(issues: Iterable[ValidationIssue] | pd.DataFrame) -> pd.DataFrame:
    """Issues as a DataFrame with :data:`ISSUE_COLUMNS`."""
    if isinstance(issues, pd.DataFrame):
        return issues.reindex(columns=ISSUE_COLUMNS)
    rows = [i.to_dict() for i in issues]
    frame = pd.DataFrame(rows, columns=ISSUE_COLUMNS)
    frame["row"] = frame["row"].astype("Int64")
    return frame
