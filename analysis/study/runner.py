"""A run's state and the running of one step: its cache key, the cache, the capture of its
failure as data (never an exception that stops the run), its progress tick.
"""

from __future__ import annotations

import os
import re
import time
import traceback
import warnings
from typing import Any, Callable

from analysis.study.cache import CacheWarning, StepCache
from analysis.study.disclosure import SUPPRESSED
from analysis.study.hashing import code_fingerprint, hash_json, suite_version
from analysis.study.progress import Progress
from analysis.study.records import RESULTS_SCHEMA, StepFailure, StepOutput, StepRecord, Unavailable
from analysis.study.spec import Study, StudyError, StudyIssue


class Run:
    """One run of a study: its steps' records, outputs and cache keys, the instrument, the progress bar."""

    def __init__(self, study: Study, progress: bool):
        self.study = study
        self.results_dir = study.results_dir
        self.cache = StepCache(self.results_dir / ".cache")
        self.records: dict[str, StepRecord] = {}
        self.outputs: dict[str, StepOutput] = {}
        self.keys: dict[str, str] = {}
        self.instrument = None
        self.instrument_hash = ""
        self.progress = Progress(progress, 1)
        self.fingerprint = code_fingerprint()
        self.issues = study.check()

    # -- one step ---------------------------------------------------------
    def step(self, name: str, title: str, fn: Callable[[], StepOutput], *, deps: tuple[str, ...] = (),
             options: Any = None, inputs: Any = None) -> StepRecord:
        self.progress.start(title)
        start = time.perf_counter()
        blocked = [d for d in deps if self.records.get(d) is None or self.records[d].status != "ok"]
        if blocked:
            rec = StepRecord(name, title, "skipped", error_type="Skipped",
                             message=f"needs {', '.join(blocked)}, which did not succeed")
        else:
            key = hash_json({"step": name, "options": options, "inputs": inputs,
                             "deps": {d: self.keys[d] for d in deps}, "code": self.fingerprint,
                             "suite": suite_version(), "schema": RESULTS_SCHEMA})
            rec = StepRecord(name, title, "ok", key=key)
            out, problem = self.cache.load(name, key)
            if problem:
                warnings.warn(f"{problem}; recomputed", CacheWarning, stacklevel=2)
            if out is not None:
                rec.cached = True
            else:
                try:
                    # problems with a fit are kept on the results (and shown in the report);
                    # printing them again, from every bootstrap worker too, would only be noise
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        out = fn()
                except StepFailure as exc:
                    rec.status, rec.error_type, rec.message = "failed", exc.kind, str(exc)
                except StudyError as exc:
                    rec.status, rec.error_type, rec.message = "failed", "StudyError", str(exc)
                except Unavailable as exc:
                    rec.status, rec.error_type, rec.message = "unavailable", "Unavailable", str(exc)
                except ModuleNotFoundError as exc:
                    rec.status, rec.error_type = "unavailable", "Unavailable"
                    rec.message = f"{title} needs {exc.name}, which is not installed or not built yet"
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # errors are data: the report shows them
                    rec.status, rec.error_type = "failed", type(exc).__name__
                    rec.message = str(exc).strip() or repr(exc)
                    if os.environ.get("RESILIENCE_DEBUG"):
                        traceback.print_exc()
                else:
                    self.cache.save(name, key, out)
                    if problem:
                        rec.message = f"{problem}; recomputed"
            if rec.status == "ok":
                self.outputs[name] = out
                self.keys[name] = key
        rec.message = _scrub_counts(rec.message, self.study.disclosure.threshold)
        rec.seconds = time.perf_counter() - start
        self.records[name] = rec
        self.progress.done(rec)
        return rec

    def out(self, name: str) -> StepOutput:
        return self.outputs[name]

    def ok(self, name: str) -> bool:
        return name in self.records and self.records[name].status == "ok"


_COUNT_WORDS = re.compile(r"\b(\d+)(\s+(?:complete\s+)?(?:case|respondent|observation|row|response)s?(?:\(s\))?)",
                          re.IGNORECASE)


def _scrub_counts(message: str, threshold: int) -> str:
    """Disclosure control for error messages: counts of people under the threshold become [s]."""
    return _COUNT_WORDS.sub(lambda m: (SUPPRESSED if 0 < int(m.group(1)) < threshold else m.group(1)) + m.group(2),
                            message)


def issue_failure(issues: list[StudyIssue], kind: str = "StudyError") -> StepFailure:
    return StepFailure(kind, "\n".join(str(i) for i in issues))
