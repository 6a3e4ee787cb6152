"""What a study run produces and records: each step's output and record, the run's outcome, a step's failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.study.spec import Study

# the layout of results.json; part of every cache key, so a change of layout recomputes every step
RESULTS_SCHEMA = 1


class StepFailure(Exception):
    """A step could not produce its result; ``kind`` is the error type shown in the report."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


class Unavailable(Exception):
    """A part of the suite that a step needs is not installed or not built yet."""


@dataclass
class StepRecord:
    """What happened to one step in one run."""

    name: str
    title: str
    status: str  # "ok", "failed", "skipped" (a step it needs failed), "unavailable"
    key: str = ""
    cached: bool = False
    seconds: float = 0.0
    error_type: str = ""
    message: str = ""

    def result_dict(self) -> dict[str, Any]:
        """The part that goes into results.json (nothing that varies between runs)."""
        out = {"title": self.title, "status": self.status}
        if self.status != "ok":
            out["error"] = {"type": self.error_type, "message": self.message}
        return out

    def log_dict(self) -> dict[str, Any]:
        return {"step": self.name, "status": self.status, "cached": self.cached, "key": self.key,
                "seconds": round(self.seconds, 3), "error_type": self.error_type, "message": self.message}


@dataclass
class StudyRun:
    """The outcome of :func:`run_study`: where the bundle and report are, and each step's record."""

    study: Study
    results_dir: Path
    steps: list[StepRecord]
    results: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def results_json(self) -> Path:
        return self.results_dir / "results.json"

    @property
    def run_log(self) -> Path:
        return self.results_dir / "run-log.json"

    @property
    def failed(self) -> list[StepRecord]:
        return [s for s in self.steps if s.status in ("failed", "unavailable")]

    @property
    def data_errors(self) -> int:
        """Errors the validator found in the data (the run is not a success while there are any)."""
        return int((self.results.get("validation") or {}).get("n_errors") or 0)

    @property
    def ok(self) -> bool:
        return not self.failed and not any(s.status == "skipped" for s in self.steps) and not self.data_errors

    def step(self, name: str) -> StepRecord:
        return next(s for s in self.steps if s.name == name)

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{"step": s.name, "status": s.status + (" (cached)" if s.cached else ""),
                              "seconds": s.seconds, "message": s.message} for s in self.steps])

    def to_dict(self) -> dict[str, Any]:
        return {"results": str(self.results_json), "run_log": str(self.run_log), "report": self.report,
                "ok": self.ok, "data_errors": self.data_errors, "seconds": round(self.seconds, 3), "steps": [s.log_dict() for s in self.steps]}

    def __repr__(self) -> str:
        n_failed = len(self.failed)
        return f"<StudyRun {len(self.steps)} steps, {n_failed} failed; {self.results_json}>"


@dataclass
class StepOutput:
    """What a step produced: JSON-able results (``data``, into results.json), tables (Parquet in the
    cache) and objects a later step reuses (a fit; pickled in the signed cache)."""

    data: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)
