"""The study pipeline: from ``study.yaml`` to a results bundle and a report.

    import -> validate -> score -> quality flags -> sample description
           -> reliability -> CFA (measurement) -> invariance across groups
           -> structural models -> model comparison -> bootstrap of defined effects
           -> group comparison of key paths -> results bundle -> report

Every step is cached under ``results/.cache`` by the sha256 of its inputs: the
bytes of the data files and the instrument, the step's options, the keys of
the steps it depends on, and the suite's code. A re-run after a change redoes
only what depends on it; touching only the report template re-renders the
report and refits nothing. A step that fails is recorded (step, error type,
message naming the file, line or field) and the steps that need it are
skipped; nothing stops the run, and the report says what failed.

``results/results.json`` holds every result at full precision with sorted keys
and no timestamps, so the same inputs and seed give the same bytes;
``results/run-log.json`` holds what varies between runs (times, which steps
came from the cache, paths, the command line, tool versions).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import platform
import re
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from instruments.atomic import write_bytes
from analysis.study.disclosure import SUPPRESSED, suppress_counts
from analysis.study.spec import Study, StudyError, StudyIssue, load_study

__all__ = ["run_study", "render_study_report", "StudyRun", "StepRecord", "StepFailure", "code_fingerprint",
           "CacheWarning", "cache_key_path", "DEFAULT_TEMPLATE", "RESULTS_SCHEMA"]

RESULTS_SCHEMA = 1
DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "reports" / "community_resilience.py"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
STAT_PACKAGES = ("numpy", "scipy", "pandas", "statsmodels", "pingouin", "semopy", "factor_analyzer", "pyarrow",
                 "matplotlib", "jupytext", "papermill", "nbconvert")


class StepFailure(Exception):
    """A step could not produce its result; ``kind`` is the error type shown in the report."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


class _Unavailable(Exception):
    """A part of the suite that a step needs is not installed or not built yet."""


# ---------------------------------------------------------------- records

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


# ---------------------------------------------------------------- hashing and JSON

def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hash(obj: Any) -> str:
    return _sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


_FINGERPRINT: str | None = None


def code_fingerprint() -> str:
    """sha256 of the suite's statistics and data code (not the CLI, not report templates)."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        h = hashlib.sha256()
        for pkg in ("analysis", "instruments"):
            base = _PACKAGE_ROOT / pkg
            for p in sorted(base.rglob("*")):
                if p.suffix not in (".py", ".lav", ".yaml", ".json") or "cli" in p.relative_to(base).parts:
                    continue
                if p.name in ("render.py",) or "__pycache__" in p.parts:
                    continue
                h.update(str(p.relative_to(_PACKAGE_ROOT)).encode())
                h.update(p.read_bytes())
        _FINGERPRINT = h.hexdigest()
    return _FINGERPRINT


def suite_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("community-resilience-suite")
    except PackageNotFoundError:
        return "0.1.0"


def _clean(obj: Any) -> Any:
    """JSON-ready: NaN/inf -> None, numpy scalars -> Python, tuples -> lists, keys -> str."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, pd.DataFrame):
        return _clean(obj.to_dict("records"))
    if isinstance(obj, pd.Series):
        return _clean(obj.to_dict())
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (pd.Timestamp,)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _dumps(obj: Any) -> str:
    return json.dumps(_clean(obj), sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Mixed object columns become text so that Parquet can store them."""
    out = df.copy()
    out.columns = [str(c) for c in out.columns]
    for c in out.columns:
        if out[c].dtype == object or str(out[c].dtype).startswith(("string", "category")):
            out[c] = out[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA
                                else str(v)).astype("string")
    return out


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _parquet_safe(df).to_parquet(path, index=False)


# ---------------------------------------------------------------- cache

@dataclass
class _Output:
    data: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)


class CacheWarning(UserWarning):
    """A cache entry failed its integrity check (tampered, damaged or signed elsewhere) and was recomputed."""


def cache_key_path() -> Path:
    """The file holding the key that signs cache entries; outside any study folder.

    ``RESILIENCE_CACHE_KEY`` names it; else ``$XDG_CONFIG_HOME/resilience/cache.key``
    (``~/.config/resilience/cache.key``).
    """
    named = os.environ.get("RESILIENCE_CACHE_KEY")
    if named:
        return Path(named).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "resilience" / "cache.key"


def _cache_key() -> bytes | None:
    """This user's secret for signing cache entries, made on first use (mode 0600); None if it cannot be."""
    path = cache_key_path()
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(os.urandom(32).hex())
    except FileExistsError:  # another run made it first
        pass
    except OSError:
        return None
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


class _Cache:
    """Step outputs on disk: JSON, Parquet and (for objects a later step reuses) a pickle.

    A study folder is shared, so anyone may have written into it. Every entry
    carries an HMAC-SHA256 over its files, made with a key kept outside the
    study folder (:func:`cache_key_path`); nothing, and above all no pickle, is
    read before the signature matches. Without a key (no writable place for it), nothing is cached.
    """

    SIGNATURE = "signature"

    def __init__(self, root: Path):
        self.root = root
        self.secret = _cache_key()

    def _dir(self, step: str, key: str) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in step)
        return self.root / safe / key

    def _sign(self, d: Path) -> str:
        import hmac

        mac = hmac.new(self.secret, digestmod="sha256")
        for p in sorted(d.iterdir()):
            if p.name != self.SIGNATURE:
                mac.update(p.name.encode() + b"\0" + _sha256_file(p).encode() + b"\0")
        return mac.hexdigest()

    def _authentic(self, d: Path) -> bool:
        import hmac

        try:
            signature = (d / self.SIGNATURE).read_text(encoding="ascii").strip()
            return self.secret is not None and hmac.compare_digest(signature, self._sign(d))
        except (OSError, UnicodeDecodeError):
            return False

    def load(self, step: str, key: str) -> tuple[_Output | None, str]:
        """(output, problem): the output when the entry is there and authentic, else why not ("" if absent)."""
        d = self._dir(step, key)
        if not (d / "data.json").is_file():
            return None, ""
        if not self._authentic(d):
            return None, f"the cache entry of step '{step}' failed its integrity check (changed, damaged or " \
                          "made with another key)"
        try:
            out = _Output(data=json.loads((d / "data.json").read_text(encoding="utf-8")))
            for p in sorted(d.glob("*.parquet")):
                out.tables[p.stem] = pd.read_parquet(p)
            if (d / "objects.pkl").is_file():
                with open(d / "objects.pkl", "rb") as fh:
                    out.objects = pickle.load(fh)  # authenticated above: written by this user's runs
        except Exception as exc:  # a damaged entry is recomputed, never trusted
            return None, f"the cache entry of step '{step}' could not be read ({type(exc).__name__})"
        return out, ""

    def save(self, step: str, key: str, out: _Output) -> None:
        if self.secret is None:  # an entry nobody can check would never be read back
            return
        d = self._dir(step, key)
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=d.parent))
        try:
            for name, table in out.tables.items():
                _write_parquet(table, tmp / f"{name}.parquet")
            if out.objects:
                try:
                    with open(tmp / "objects.pkl", "wb") as fh:
                        pickle.dump(out.objects, fh, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:  # unpicklable results are recomputed when needed
                    (tmp / "objects.pkl").unlink(missing_ok=True)
            (tmp / "data.json").write_text(_dumps(out.data), encoding="utf-8")
            (tmp / self.SIGNATURE).write_text(self._sign(tmp), encoding="ascii")
            if d.exists():
                shutil.rmtree(d)
            os.replace(tmp, d)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- progress

class _Progress:
    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.console = Console(stderr=True)
            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description:<36}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=False)
            self.bar.start()
            self.task = self.bar.add_task("study", total=total)

    def start(self, title: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=title)

    def done(self, record: StepRecord) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)
            if record.status != "ok":
                self.console.print(f"[red]✗[/red] {record.title}: {record.status} — {record.message.splitlines()[0] if record.message else ''}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description="done")
            self.bar.stop()


# ---------------------------------------------------------------- the run

class _Run:
    def __init__(self, study: Study, progress: bool):
        self.study = study
        self.results_dir = study.results_dir
        self.cache = _Cache(self.results_dir / ".cache")
        self.records: dict[str, StepRecord] = {}
        self.outputs: dict[str, _Output] = {}
        self.keys: dict[str, str] = {}
        self.instrument = None
        self.instrument_hash = ""
        self.progress = _Progress(progress, 1)
        self.fingerprint = code_fingerprint()
        self.issues = study.check()

    # -- one step ---------------------------------------------------------
    def step(self, name: str, title: str, fn: Callable[[], _Output], *, deps: tuple[str, ...] = (),
             options: Any = None, inputs: Any = None) -> StepRecord:
        self.progress.start(title)
        start = time.perf_counter()
        blocked = [d for d in deps if self.records.get(d) is None or self.records[d].status != "ok"]
        if blocked:
            rec = StepRecord(name, title, "skipped", error_type="Skipped",
                             message=f"needs {', '.join(blocked)}, which did not succeed")
        else:
            key = _hash({"step": name, "options": options, "inputs": inputs,
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
                except _Unavailable as exc:
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

    def out(self, name: str) -> _Output:
        return self.outputs[name]

    def ok(self, name: str) -> bool:
        return name in self.records and self.records[name].status == "ok"


_COUNT_WORDS = re.compile(r"\b(\d+)(\s+(?:complete\s+)?(?:case|respondent|observation|row|response)s?(?:\(s\))?)",
                         re.IGNORECASE)


def _scrub_counts(message: str, threshold: int) -> str:
    """Disclosure control for error messages: counts of people under the threshold become [s]."""
    return _COUNT_WORDS.sub(lambda m: (SUPPRESSED if 0 < int(m.group(1)) < threshold else m.group(1)) + m.group(2),
                            message)


def _issue_failure(issues: list[StudyIssue], kind: str = "StudyError") -> StepFailure:
    return StepFailure(kind, "\n".join(str(i) for i in issues))


# ---------------------------------------------------------------- steps

def _load_instrument(run: _Run) -> None:
    from instruments import InstrumentError, load_instrument

    ref = run.study.instrument
    path = run.study.instrument_path()
    if path is None:
        raise StudyError([run.study.issue("unknown-instrument", f"instrument not found: '{ref}' is neither a "
                                          "file nor a shipped instrument", "instrument")])
    try:
        run.instrument = load_instrument(path)
    except InstrumentError as exc:
        raise StepFailure("InstrumentError", f"{run.study.where('instrument')}: the instrument has errors:\n{exc}") from None
    run.study._instrument = run.instrument  # the measurement model is built from this one
    run.instrument_hash = _sha256_file(path)
    run.instrument_path = path


def _source_inputs(run: _Run) -> list[dict[str, Any]]:
    out = []
    for i, src in enumerate(run.study.data):
        entry: dict[str, Any] = {"index": i, "format": src.format}
        if src.file is not None:
            p = run.study.resolve(src.file)
            entry.update(file=src.file, sha256=_sha256_file(p) if p.is_file() else None)
            if src.mapping is not None:
                mp = run.study.resolve(src.mapping)
                entry["mapping_sha256"] = _sha256_file(mp) if mp.is_file() else None
        else:
            root = run.study.resolve(src.store)
            manifest = root / "data" / "raw" / "manifest.json"
            db = root / "study.duckdb"
            entry.update(store=src.store, sha256=_sha256_file(db) if db.is_file() else None,
                         manifest=_sha256_file(manifest) if manifest.is_file() else None)
        out.append(entry)
    return out


def _step_import(run: _Run) -> _Output:
    from instruments.ingest import ImportError_, import_responses

    study, inst = run.study, run.instrument
    problems = [i for i in run.issues if i.field.startswith("data")]
    if problems:
        raise _issue_failure(problems, "MissingDataFile")
    frames, sources, imports = [], [], []
    withdrawn = _withdrawn(study)
    for i, src in enumerate(study.data):
        if src.file is not None:
            path = study.resolve(src.file)
            try:
                res = import_responses(path, inst, format=src.format,
                                       mapping=study.resolve(src.mapping) if src.mapping else None)
            except ImportError_ as exc:
                raise StepFailure("ImportError", f"{study.where('data', i, 'file')}: {exc}") from None
            res.data = _attach_design_columns(path, study, res.data)
            if withdrawn:  # respondents who withdrew: their answers (and issues quoting them) go
                res.issues = [x for x in res.issues if str(x.respondent_id) not in withdrawn]
                res.data = _without(res.data, withdrawn)
            data = res.data.copy()
            issue_types = pd.Series([x.type for x in res.issues], dtype=object).value_counts()
            sources.append({"file": src.file, "name": path.name, "sha256": res.sha256, "format": res.format,
                            "n_rows": res.n_rows, "n_errors": len(res.errors), "n_warnings": len(res.warnings),
                            "issues": {str(k): int(v) for k, v in issue_types.items()}})
            # what the validate step needs to rebuild this import's result from the stacked table:
            # the problems met while reading, the mapping's not-asked items, the file's own columns
            imports.append({"format": res.format, "sha256": res.sha256, "issues": list(res.issues),
                            "column_map": res.column_map, "platform_columns": res.platform_columns,
                            "unknown_columns": res.unknown_columns, "encoding": res.encoding,
                            "delimiter": res.delimiter, "absent": res.absent, "columns": list(data.columns)})
        else:
            try:
                from instruments.store import Study as Store
            except ImportError as exc:
                raise _Unavailable(f"the study store needs instruments.store ({exc})") from None
            store = Store(study.resolve(src.store))
            data = _without(store.responses(), withdrawn)
            if data.empty:
                raise StepFailure("EmptyStore", f"{study.where('data', i, 'store')}: the study store "
                                  f"{store.db_path} holds no responses; import files with `resilience import`")
            sources.append({"store": src.store, "name": store.db_path.name, "n_rows": len(data),
                            "sha256": _sha256_file(store.db_path), "format": "store"})
            imports.append({"columns": list(data.columns)})
        data.insert(0, "source", i)
        frames.append(data)
    responses = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if len(responses) == 0:
        raise StepFailure("NoData", "the data sources hold no responses")
    return _Output(data={"sources": sources, "n_rows": len(responses)}, tables={"responses": responses},
                   objects={"imports": imports})


def _attach_design_columns(path: Path, study: Study, frame: pd.DataFrame) -> pd.DataFrame:
    """Design columns (weights, clusters, strata) that the instrument does not define are left out
    by the import; take them from the file, row for row, when it is a plain table that has them."""
    if study.design is None:
        return frame
    wanted = [c for c in study.design.to_design().columns if c not in frame.columns]
    if not wanted:
        return frame
    from analysis.sem.data import read_table

    try:
        raw = read_table(path)
    except Exception:  # noqa: BLE001 - not a plain table: the design steps name the missing column
        return frame
    if len(raw) != len(frame) or any(c not in raw.columns for c in wanted):
        return frame
    frame = frame.copy()
    for c in wanted:
        frame[c] = raw[c].to_numpy()
    return frame


def _withdrawn(study) -> set[str]:
    """Reference codes withdrawn in the study folder or its stores: left out of every analysis."""
    from instruments.web.withdraw import withdrawn_codes

    folders = {study.root} | {study.resolve(s.store) for s in study.data if s.store is not None}
    return set().union(*(withdrawn_codes(f) for f in folders))


def _without(data: pd.DataFrame, withdrawn: set[str]) -> pd.DataFrame:
    if not withdrawn or "respondent_id" not in data:
        return data
    return data[~data["respondent_id"].astype("string").isin(withdrawn).fillna(False).to_numpy()]


def _responses(run: _Run) -> pd.DataFrame:
    """The answers analysed: after the disclosure rule once it ran (``drop`` removes rows), else as imported."""
    if run.ok("disclosure") and "responses" in run.out("disclosure").tables:
        return run.out("disclosure").tables["responses"]
    return run.out("import").tables["responses"]


def _step_validate(run: _Run) -> _Output:
    """Each source validated as imported (its reading problems and the mapping's not-asked items
    included, rows numbered as in its file); the issues merged with the source named in each."""
    from instruments.ingest import ImportResult
    from instruments.validate import ISSUE_COLUMNS, validate

    responses = _responses(run)
    imports = run.out("import").objects.get("imports")
    if imports is None or len(imports) != len(run.study.data):
        raise StepFailure("StaleCache", "the import step's cached result predates per-source validation; "
                          "delete results/.cache/import and run again")
    frames, per_source = [], []
    for i, (src, meta) in enumerate(zip(run.study.data, imports)):
        name = src.file or src.store
        part = responses[responses["source"] == i]
        # a column another source has is not this source's column
        part = part[[c for c in meta["columns"] if c in part.columns]].reset_index(drop=True)
        if "issues" in meta:
            fields = {k: v for k, v in meta.items() if k != "columns"}
            report = validate(ImportResult(data=part, source=name, **fields), run.instrument, source=name)
        else:  # the study store: its answers were checked when they were stored
            report = validate(part, run.instrument, source=name)
        frames.append(report.issues.assign(source=name))
        per_source.append({"source": name, "n_rows": len(part), "n_errors": report.n_errors,
                           "n_warnings": report.n_warnings, "valid": report.valid, "counts": _clean(report.counts())})
    issues = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ISSUE_COLUMNS + ["source"])
    issues = issues[["source"] + ISSUE_COLUMNS]
    n_errors = int((issues["severity"] == "error").sum())
    counts = (issues.groupby(["type", "severity"]).size().rename("n").reset_index()
              .sort_values(["severity", "n", "type"], ascending=[True, False, True]) if len(issues)
              else pd.DataFrame(columns=["type", "severity", "n"]))
    return _Output(data={"n_rows": int(len(responses)), "n_errors": n_errors,
                         "n_warnings": int((issues["severity"] == "warning").sum()), "valid": n_errors == 0,
                         "counts": _clean(counts), "sources": per_source},
                   tables={"issues": issues})


def _labels_for(inst, column: str) -> dict[float, str] | None:
    """Code -> label (default language) for an item or a collapsed grouping column."""
    lang = inst.default_language
    for it in inst.items:
        if it.id == column:
            scale = inst.scales[it.scale]
            cats = getattr(scale, "categories", None) or []
            return {float(c.code): str(c.label.get(lang, c.code)) for c in cats} or None
        col = getattr(it, "collapsed", None)
        if col is not None and col.id == column:
            return {float(g.code): str(g.label.get(lang, g.code)) for g in col.groups}
    return None


def _step_score(run: _Run) -> _Output:
    from instruments.score import score

    res = score(_responses(run), run.instrument)
    table = res.table.copy()
    return _Output(data={"n_rows": len(table), "constructs": res.constructs, "min_items": res.min_items,
                         "summary": _clean(res.summary())},
                   tables={"scored": table})


def _scored(run: _Run) -> pd.DataFrame:
    """The scored table analysed: with the disclosure rule applied once it ran."""
    return run.out("disclosure" if run.ok("disclosure") else "score").tables["scored"]


def _present(run: _Run, columns: list[str]) -> list[str]:
    """The columns the data hold (a group naming an absent column changes nothing the rule does)."""
    if not (run.ok("import") and run.ok("score")):
        return list(columns)
    have = set(run.out("score").tables["scored"].columns) | set(run.out("import").tables["responses"].columns)
    return [c for c in columns if c in have]


def _labelled(run: _Run, column: str) -> pd.Series | None:
    """A grouping or described column as labelled by the disclosure rule (None before it ran)."""
    if not run.ok("disclosure") or column not in run.out("disclosure").tables["groups"].columns:
        return None
    col = run.out("disclosure").tables["groups"][column]
    return col.astype(object).where(col.notna(), None)


# the demographics the sample description tabulates, besides the study's groups
_DESCRIBED = (("language", "Interview language"), ("AGEBAND", "Age"), ("GENDER", "Gender"))


def _step_disclosure(run: _Run) -> _Output:
    """The study-wide small-groups rule (``disclosure`` in study.yaml), before any analysis.

    Every grouping and described variable is labelled (table ``groups``, which
    the group steps and the sample description read), and each category with
    fewer than k respondents is merged into the residual category or dropped
    (rows and all), so that no total, margin, ``ntotal`` or mean published
    later can be subtracted down to a small group (analysis.study.disclosure). The
    scored columns themselves stay as they are: a model may use a code as a covariate.
    """
    from analysis.study.disclosure import apply_small_groups, category_sizes

    rule = run.study.disclosure
    scored = run.out("score").tables["scored"]
    responses = run.out("import").tables["responses"]
    if len(scored) != len(responses):
        raise StepFailure("Misaligned", "the scored table and the responses differ in length")
    labelled = pd.DataFrame(index=scored.index)
    for i, g in enumerate(run.study.groups):
        try:
            labelled[g] = _group_column(run, i).to_numpy()
        except StepFailure:  # the steps that use this group say why it cannot be used
            continue
    for col, _ in _DESCRIBED:
        src = scored[col] if col in scored.columns else responses[col] if col in responses.columns else None
        if src is None or col in labelled.columns:
            continue
        labels = _labels_for(run.instrument, col)
        if labels and pd.api.types.is_numeric_dtype(src):
            src = pd.to_numeric(src, errors="coerce").map(labels)
        labelled[col] = src.astype(object).where(src.notna(), None).to_numpy()
    columns = list(labelled.columns)
    sizes = {c: category_sizes(labelled[c]) for c in columns}
    groups, handled = apply_small_groups(labelled, columns, k=rule.k, rule=rule.small_groups,
                                         residual=rule.residual)
    kept = scored.index.isin(groups.index)
    tables = {"scored": scored[kept].reset_index(drop=True), "groups": groups.reset_index(drop=True)}
    # names only: the sizes of what was merged or dropped are exactly what must not be published
    # and which of them were under k (the others only joined them so that the residual holds k)
    below = {c: [cat for cat in cats if sizes[c].get(cat, 0) < rule.k] for c, cats in handled.items()}
    data = {"k": rule.k, "small_groups": rule.small_groups, "residual": rule.residual, "variables": columns,
            "handled": handled, "below_k": below}
    if rule.small_groups == "drop":
        tables["responses"] = responses[kept].reset_index(drop=True)
        # the scoring summary (means, n scored) of the respondents kept: over everyone, minus the
        # group means, it would give the dropped ones' means
        from instruments.score import score

        res = score(tables["responses"], run.instrument)
        data["scoring"] = {"n_rows": len(res.table), "constructs": res.constructs, "min_items": res.min_items,
                           "summary": _clean(res.summary())}
    return _Output(data=data, tables=tables)


def _group_column(run: _Run, index: int) -> pd.Series:
    """The labelled grouping column ``groups[index]``; StepFailure naming the line if absent."""
    name = run.study.groups[index]
    labelled = _labelled(run, name)
    if labelled is not None:
        return labelled
    scored = _scored(run)
    if name in scored.columns:
        col = scored[name]
    elif name in _responses(run).columns:
        col = _responses(run)[name]
    else:
        import difflib

        cols = [c for c in scored.columns]
        hint = difflib.get_close_matches(name, cols, n=1)
        raise StepFailure("MissingGroupColumn", f"{run.study.where('groups', index)}: group column '{name}' is not in "
                          "the data" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                          + f"; data files: {', '.join(s.file or s.store for s in run.study.data)}")
    item = next((it for it in run.instrument.items if it.id == name), None)
    if item is not None and run.instrument.scales[item.scale].type == "text":
        raise StepFailure("FreeTextGroup", f"{run.study.where('groups', index)}: '{name}' holds free-text answers; "
                          "free text never enters a report, so it cannot define groups (code it into categories first)")
    labels = _labels_for(run.instrument, name)
    if labels and pd.api.types.is_numeric_dtype(col):
        mapped = pd.to_numeric(col, errors="coerce").map(labels)
        return mapped.where(mapped.notna(), None).astype(object)
    return col.astype(object).where(col.notna(), None)


def _step_quality(run: _Run) -> _Output:
    from instruments.quality import quality_flags

    res = quality_flags(_responses(run), run.instrument)
    summary = res.summary()
    thr = run.study.disclosure.threshold
    summary = _mask_small_counts(summary, "n_flagged", ["pct_flagged"], thr)
    flags = res.table[[c for c in res.table.columns if c.startswith("flag_") or c == "n_flags"]].copy()
    return _Output(data={"summary": _clean(summary), "rules": res.rules, "notes": res.notes,
                         "n_any": _safe_count(int((res.table["n_flags"] > 0).sum()), thr)},
                   tables={"flags": flags.astype(float)})


def _safe_count(n: int, threshold: int) -> int | str:
    return SUPPRESSED if 0 < n < threshold else n


def _mask_small_counts(df: pd.DataFrame, count_col: str, also: list[str], threshold: int) -> pd.DataFrame:
    """Counts of fewer than ``threshold`` (and what reveals them) shown as the suppression marker."""
    out = df.copy().astype({count_col: object})
    small = pd.to_numeric(df[count_col], errors="coerce").between(1, threshold - 1)
    out.loc[small, count_col] = SUPPRESSED
    for c in also:
        if c in out:
            out[c] = out[c].astype(object)
            out.loc[small, c] = None
    return out


def _language_recorded(run: _Run) -> bool:
    """Whether the data say which language each interview was in: the instrument has several and
    no source lacked a language column (the import then assumes the default language)."""
    if len(run.instrument.languages) < 2:
        return False
    imports = run.out("import").objects.get("imports") or []
    return not any(getattr(issue, "type", "") == "language-assumed" for meta in imports
                   for issue in meta.get("issues", []))


def _step_describe(run: _Run) -> _Output:
    """Sample description and item distributions, with disclosure control applied here."""
    inst, study = run.instrument, run.study
    thr = study.disclosure.threshold
    scored = _scored(run)
    n = len(scored)
    out: dict[str, Any] = {"n": n, "threshold": thr, "tables": {}}
    tables: dict[str, pd.DataFrame] = {}

    def one_way(series: pd.Series, name: str) -> dict[str, Any]:
        counts = series.fillna("(missing)").astype(str).value_counts().sort_index()
        table = suppress_counts(counts.to_frame("n"), threshold=thr)
        shown = table.formatted(totals=True)
        return {"title": name, "rows": [{"category": str(k), "n": v} for k, v in shown["n"].items()],
                "n_suppressed": table.n_suppressed}

    described = []
    for col, title in _DESCRIBED:
        if col == "language" and not _language_recorded(run):
            continue  # "Interview language: en 900" would only restate the import's assumption
        if _labelled(run, col) is not None:
            described.append((col, title, _labelled(run, col)))
        elif col in scored.columns or col in _responses(run).columns:
            src = scored[col] if col in scored.columns else _responses(run)[col]
            labels = _labels_for(inst, col)
            if labels and pd.api.types.is_numeric_dtype(src):
                src = pd.to_numeric(src, errors="coerce").map(labels)
            described.append((col, title, src))
    group_cols = {}
    for i, g in enumerate(study.groups):
        try:
            group_cols[g] = _group_column(run, i)
        except StepFailure:
            continue
        described.append((g, f"Group: {g}", group_cols[g]))
    for col, title, src in described:
        out["tables"][col] = one_way(src, title)
    # crosstab of each grouping variable by gender: the classic small-cell risk
    gender = dict((c, s) for c, _, s in described).get("GENDER")
    crosstabs = {}
    for g, gcol in group_cols.items():
        if gender is None:
            break
        ct = pd.crosstab(gcol.fillna("(missing)").astype(str), gender.fillna("(missing)").astype(str))
        table = suppress_counts(ct, threshold=thr)
        shown = table.formatted(totals=True)
        crosstabs[g] = {"title": f"{g} by gender", "index": [str(i) for i in shown.index],
                        "columns": [str(c) for c in shown.columns],
                        "cells": [[str(v) for v in row] for row in shown.to_numpy()],
                        "n_suppressed": table.n_suppressed}
    out["crosstabs"] = crosstabs

    # construct means by group: a group statistic, hidden for groups under the threshold
    from analysis.study.disclosure import suppress_by_n

    score_cols = [c for c in (run.out("score").data.get("constructs") or []) if c in scored.columns]
    wanted = _study_constructs(run)
    if wanted is not None:
        score_cols = [c for c in score_cols if c in wanted]
    means = {}
    for g, gcol in group_cols.items():
        frame = scored[score_cols].astype(float).assign(__g=gcol.to_numpy())
        frame = frame[frame["__g"].notna()]
        stats = frame.groupby("__g")[score_cols].mean()
        stats.insert(0, "n", frame.groupby("__g").size())
        shown = suppress_by_n(stats, "n", threshold=thr)
        means[g] = {"title": f"Mean construct scores by {g}", "columns": ["group", "n"] + score_cols,
                    "rows": [[str(idx), SUPPRESSED if row["suppressed"] else int(row["n"])]
                             + [None if row["suppressed"] else float(row[c]) for c in score_cols]
                             for idx, row in shown.iterrows()]}
    out["group_means"] = means

    # item response distributions, per construct, suppressed per item x category
    rows = []
    for c, items, counts in _answer_counts(run):
        scale = inst.scales[items[0].scale]
        codes = list(counts.columns)
        labels = {float(cat.code): str(cat.label.get(inst.default_language, cat.code)) for cat in scale.categories}
        table = suppress_counts(counts, threshold=thr)
        answered = counts.sum(axis=1)
        for it in items:
            for code in codes:
                hidden = bool(table.mask.loc[it.id, code])
                k = float(counts.loc[it.id, code])
                rows.append({"construct": c.id, "item": it.id, "reverse": bool(it.reverse), "code": code,
                             "label": labels.get(code, str(code)), "n": None if hidden else k,
                             "pct": None if hidden else (100 * k / answered[it.id] if answered[it.id] else None),
                             "suppressed": hidden,
                             "text": str(it.text.get(inst.default_language, it.id))})
    dist = pd.DataFrame(rows)
    tables["item_distributions"] = dist
    out["item_distributions"] = {"n_items": int(dist["item"].nunique()) if len(dist) else 0,
                                 "n_suppressed": int(dist["suppressed"].sum()) if len(dist) else 0}
    return _Output(data=out, tables=tables)


def _answer_counts(run: _Run):
    """(construct, items, items x codes counts) of the answers as given (before reverse-keying),
    missing codes excluded: the table published, suppressed, as item_distributions."""
    inst = run.instrument
    scored, raw = _scored(run), _responses(run)
    wanted = _study_constructs(run)
    for c in inst.constructs:
        if getattr(c, "kind", "latent") == "observed" or (wanted is not None and c.id not in wanted):
            continue
        items = [it for it in inst.items_of(c.id) if it.id in scored.columns]
        if not items:
            continue
        codes = [float(k) for k in inst.scales[items[0].scale].codes]
        counts = pd.DataFrame({it.id: pd.to_numeric(raw[it.id], errors="coerce").value_counts().reindex(codes, fill_value=0)
                               for it in items}).T
        yield c, items, counts


def _items_with_hidden_answers(run: _Run) -> set[str]:
    """Items whose published answer distribution hides a cell (primary or complementary): with
    their mean and SD beside the shown cells, a reader could solve the hidden ones."""
    hidden: set[str] = set()
    for _, _, counts in _answer_counts(run):
        mask = suppress_counts(counts, threshold=run.study.disclosure.threshold).mask
        hidden |= {item for item in counts.index if mask.loc[item].any()}
    return hidden


def _study_constructs(run: _Run) -> list[str] | None:
    """The constructs the study's measurement model measures (None: every latent one)."""
    syntax = _safe_syntax(run.study, "measurement")
    if not syntax:
        return None
    from analysis.sem.syntax import parse_model

    try:
        latent = list(dict.fromkeys(s.lhs for s in parse_model(syntax) if s.op == "=~"))
    except Exception:  # a broken measurement model fails in its own step
        return None
    known = {c.id for c in run.instrument.constructs}
    return [c for c in latent if c in known] or None


def _step_reliability(run: _Run) -> _Output:
    from analysis.psychometrics.reliability import reliability_report

    res = reliability_report(_responses(run), run.instrument, constructs=_study_constructs(run))
    d = _clean(res.to_dict())
    hidden = _items_with_hidden_answers(run)
    for item in d.get("items") or []:
        # the distributions are published once, suppressed, in tables/item_distributions
        item.pop("dist", None)
        if item.get("item") in hidden:
            item.update(mean=None, sd=None, floor=None, ceiling=None)
    return _Output(data=d)


def _fit_options(study: Study) -> dict[str, Any]:
    opts: dict[str, Any] = {"estimator": study.estimator, "missing": study.missing}
    if study.design is not None:   # in the steps' cache keys; _with_design takes it out
        opts["design"] = study.design.model_dump()
    if study.ordered:
        opts["ordered"] = study.ordered
    if study.missing == "impute":   # in the steps' cache keys; _fit takes it out
        opts["imputations"] = study.imputations
    return opts


def _model_data(run: _Run, group_index: int | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Numeric model data; with a group, its labelled column and only groups big enough to analyse."""
    scored = _scored(run)
    # Scores of latent constructs are never model data: the models estimate those constructs.
    latent_scores = [c.id for c in run.instrument.latent_constructs if c.id in scored.columns]
    data = scored.drop(columns=latent_scores).select_dtypes(include=["number", "bool"]).astype(float)
    info: dict[str, Any] = {}
    if group_index is not None:
        gcol = _group_column(run, group_index)
        name = "__group__"
        data[name] = gcol.to_numpy()
        data = data[data[name].notna()]
        sizes = data[name].value_counts()
        floor = max(run.study.min_group_size, run.study.disclosure.threshold)
        small = sizes[sizes < floor]
        data = data[~data[name].isin(small.index)].copy()
        data[name] = data[name].astype(str)
        info = {"left_out": len(small), "floor": floor, "groups": sorted(str(g) for g in sizes.index if g not in small.index)}
        if len(info["groups"]) < 2:
            raise StepFailure("TooFewGroups", f"{run.study.where('groups', group_index)}: fewer than two groups of "
                              f"'{run.study.groups[group_index]}' have at least {floor} respondents; "
                              "no multi-group comparison is possible")
    return data, info


def _syntax(run: _Run, name: str) -> tuple[int, str]:
    """(position in models, syntax) of a model; measurement falls back to the instrument's own."""
    names = run.study.model_names()
    if name in names:
        i = names.index(name)
        return i, run.study.model_syntax(i)
    from analysis.study.spec import MODELS_DIR, measurement_model

    if name == "measurement":
        return -1, measurement_model(run.instrument)

    path = MODELS_DIR / f"{name}.lav"
    if path.is_file():
        return -1, path.read_text(encoding="utf-8")
    raise StudyError([run.study.issue("unknown-model", f"model '{name}' is not in 'models'", "models")])


def _settings(study: Study) -> dict[str, Any]:
    """study.yaml's settings for the bundle; inline model text that does not parse is left out too."""
    settings = _clean(study.model_dump())
    for model in settings.get("models") or []:
        if isinstance(model, dict) and model.get("syntax") is not None:
            model["syntax"] = _parsed_text(model["syntax"])
    return settings


def _parsed_text(syntax: str) -> str | None:
    """The model text if it parses as lavaan syntax; text that does not is never copied into the bundle."""
    from analysis.errors import ModelSyntaxError
    from analysis.sem.syntax import parse_model

    try:
        parse_model(syntax)
    except ModelSyntaxError:
        return None
    return syntax


def _error_text(exc: Exception) -> str:
    """An exception as a message for the bundle: a syntax error gives its line and column,
    not the source line (model text that does not parse may be any file)."""
    from analysis.errors import ModelSyntaxError

    if isinstance(exc, ModelSyntaxError) and exc.line is not None:
        # quoted fragments longer than an operator are the file's text, not the grammar's
        message = re.sub(r"'[^']{4,}'", "'…'", exc.message)
        return f"line {exc.line}, col {exc.col}: {message} (the text is not copied into the results)"
    return str(exc)


def _fit(run: _Run, name: str, **extra) -> Any:
    from analysis.sem.fit import fit_sem

    index, syntax = _syntax(run, name)
    where = run.study.where("models", index) if index >= 0 else f"shipped model {name}"
    data, _ = _model_data(run)
    _check_variables(run, name, where, syntax, data)
    data, extra = _two_level_data(run, syntax, data, extra)
    opts = _fit_options(run.study)
    data, extra = _with_design(run, data, opts, extra)
    try:
        if opts["missing"] == "impute":   # the model's items imputed m times, the fits pooled
            opts["missing"] = "listwise"
            opts.pop("imputations")
            data = _imputed(run, syntax, data)
        fit = fit_sem(syntax, data, warn=False, **opts, **extra)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"model '{name}' ({where}): {_error_text(exc)}") from None
    if not fit.converged:
        why = next((w.get("message") for w in fit.warnings if isinstance(w, dict)
                    and w.get("type") == "non-convergence"), "the optimizer stopped early")
        raise StepFailure("NonConvergence", f"model '{name}' ({where}) did not converge: {why}")
    return fit


def _with_design(run: _Run, data: pd.DataFrame, opts: dict, extra: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """study.yaml's ``design:`` for a one-level fit: its columns joined to the model data and
    ``design=`` for fit_sem (sampling weights, clusters and strata, analysis.design). A two-level
    model (``cluster`` already in ``extra``) uses the cluster as its level instead."""
    extra = dict(extra or {})
    spec = opts.pop("design", None)
    if not spec or "cluster" in extra:
        return data, extra
    design = run.study.design.to_design()
    if design.is_empty:
        return data, extra
    data = data.copy()
    for col in design.columns:
        data[col] = _design_column(run, col).reindex(data.index).to_numpy()
    return data, {**extra, "design": design}


def _design_column(run: _Run, col: str) -> pd.Series:
    for table in (_scored(run), _responses(run)):
        if col in table.columns:
            return table[col]
    raise StepFailure("UnknownDesignColumn", f"the design variable '{col}' ({run.study.where('design')}) is not a "
                                             "column of the data; mark it in the instrument (role weight, cluster "
                                             "or stratum) so that import keeps it")


def _step_design(run: _Run) -> _Output:
    """The report's sample-design section (analysis.design.report): the weights, effective n, design
    effects, and construct scores and groups weighted and unweighted side by side."""
    from analysis.design.report import design_summary

    scored = _scored(run)
    data = scored.copy()
    design = run.study.design.to_design()
    for col in design.columns:
        data[col] = _design_column(run, col).reindex(data.index).to_numpy()
    scores = [c.id for c in run.instrument.constructs if c.id in scored.columns
              and pd.api.types.is_numeric_dtype(scored[c.id])]
    groups = []
    for i, g in enumerate(run.study.groups):
        try:
            data[g] = _group_column(run, i).reindex(data.index).to_numpy()
            groups.append(g)
        except StepFailure:
            continue
    try:
        out = design_summary(data, design, scores, categorical=groups, threshold=run.study.disclosure.threshold)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"sample design ({run.study.where('design')}): "
                          f"{_error_text(exc)}") from None
    return _Output(data=_clean(out))


def _imputed(run: _Run, syntax: str, data: pd.DataFrame) -> list[pd.DataFrame]:
    """``missing: impute``: the model's variables imputed ``imputations`` times by chained equations
    (analysis.psychometrics.impute; ordered items by predictive mean matching), seeded by the study's seed."""
    from analysis.psychometrics.impute import impute
    from analysis.sem.partable import build_partable, observed_names

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        observed = [v for v in observed_names(build_partable(syntax)) if v in data.columns]
    ordered = run.study.ordered
    ordered = True if ordered is True else [v for v in (ordered or []) if v in observed]
    res = impute(data, items=observed, ordered=ordered, m=run.study.imputations, seed=run.study.seed)
    return list(res.datasets)


def _complete_cases(opts: dict[str, Any]) -> str | None:
    """Steps without a pooled version use complete cases under ``missing: impute``; the note says so."""
    if opts.get("missing") != "impute":
        return None
    opts["missing"] = "listwise"
    opts.pop("imputations", None)
    return ("missing: impute pools the CFA and model fits; this step has no pooled version yet and "
            "uses the complete cases (listwise)")


def _check_variables(run: _Run, name: str, where: str, syntax: str, data: pd.DataFrame) -> None:
    """A model naming items the instrument does not have is refused with what it lacks
    (a shipped crs model on another questionnaire, a typo in an item id)."""
    from analysis.sem.syntax import parse_model

    try:
        statements = parse_model(syntax)
    except Exception:  # a syntax error is the fit's to report, with its line
        return
    latent = {s.lhs for s in statements if s.op == "=~"}
    used = {v for s in statements if s.op in ("=~", "~", "~~")
            for v in ((s.rhs,) if s.op == "=~" else (s.lhs, s.rhs))}
    missing = sorted(v for v in used - latent if v not in data.columns and re.fullmatch(r"[A-Za-z_][\w.]*", v))
    if not missing:
        return
    inst = run.instrument
    absent = [v for v in missing if v not in set(inst.item_ids) | set(inst.construct_ids)]
    spec = dict((sp.name, sp) for _, sp in run.study.model_specs()).get(name)
    shipped = spec is not None and spec.file is None and spec.syntax is None and name != "measurement"
    if absent:
        raise StepFailure("UnknownVariables", f"model '{name}' ({where}) uses {len(absent)} variable(s) that "
                          f"instrument '{inst.id}' does not have: {', '.join(absent[:12])}"
                          + (" ..." if len(absent) > 12 else "")
                          + (f"; the shipped model '{name}' is written for crs" if shipped and inst.id != "crs" else ""))
    raise StepFailure("MissingColumns", f"model '{name}' ({where}) needs {', '.join(missing[:12])}, which the data "
                      f"do not hold; data files: {', '.join(s.file or s.store for s in run.study.data)}")


def _two_level_data(run: _Run, syntax: str, data: pd.DataFrame, extra: dict) -> tuple[pd.DataFrame, dict]:
    """A model with ``level:`` blocks is lavaan's two-level model on the study's cluster variable
    (``design: {cluster: COL}``): its data gain that column and the fit gets ``cluster=``."""
    from analysis.sem.syntax import has_levels

    try:
        if not has_levels(syntax):
            return data, extra
    except Exception:  # a syntax error is the fit's to report, with its line
        return data, extra
    cluster = run.study.design.cluster if run.study.design is not None else None
    if cluster is None:
        raise StepFailure("NoCluster", "the model has 'level:' blocks (a two-level model) but study.yaml names "
                                       "no cluster variable: add design: {cluster: COLUMN}")
    data = data.copy()
    data[cluster] = _cluster_column(run, cluster).reindex(data.index).to_numpy()
    return data, {**extra, "cluster": cluster}


def _cluster_column(run: _Run, cluster: str) -> pd.Series:
    for table in (_scored(run), _responses(run)):
        if cluster in table.columns:
            return table[cluster]
    raise StepFailure("UnknownCluster", f"the cluster variable '{cluster}' (design.cluster in study.yaml) is not a "
                                        "column of the data")


def _step_icc(run: _Run) -> _Output:
    """ICC(1) of every item and construct score by the study's cluster variable (analysis.sem.twolevel)."""
    from analysis.sem.twolevel import icc_report

    cluster = run.study.design.cluster
    scored = _scored(run)
    answers = _responses(run)
    answers = answers[answers.index.isin(scored.index)].copy()
    answers[cluster] = _cluster_column(run, cluster).reindex(answers.index).to_numpy()
    try:
        table = icc_report(answers, run.instrument, cluster=cluster)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"ICCs by '{cluster}': {_error_text(exc)}") from None
    return _Output(data={"cluster": cluster, "n_clusters": int(table["n_clusters"].max()),
                         "rows": _clean(table.to_dict(orient="records"))})


def _fit_output(fit) -> _Output:
    return _Output(data=_clean(fit.to_dict()), objects={"fit": fit})


def _get_fit(run: _Run, step: str):
    out = run.out(step)
    fit = out.objects.get("fit")
    if fit is None:  # not picklable in the cache: refit (deterministic)
        name = step.split(":", 1)[1] if ":" in step else "measurement"
        fit = _fit(run, name)
        out.objects["fit"] = fit
    return fit


def _step_invariance(run: _Run, index: int) -> _Output:
    from analysis.psychometrics.invariance import invariance_ladder

    _, syntax = _syntax(run, "measurement")
    data, info = _model_data(run, index)
    opts = _fit_options(run.study)
    data, design = _with_design(run, data, opts)
    opts.update(design)
    note = _complete_cases(opts)
    try:
        res = invariance_ladder(syntax, data, group="__group__", estimator=opts.pop("estimator"),
                                ordered=opts.pop("ordered", None), min_group_size=run.study.min_group_size, **opts)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"invariance across '{run.study.groups[index]}' "
                          f"({run.study.where('groups', index)}): {_error_text(exc)}") from None
    d = res.to_dict()
    d["group"] = run.study.groups[index]
    d["fits"] = {name: fit.to_dict() for name, fit in res.fits.items()}  # every fit in the bundle
    d.update(info)
    if note:
        d["note"] = note
    # where metric or scalar invariance fails, free the most offending constraints one at a time
    failing = next((c["to"] for c in d["comparisons"] if not c.get("holds") and c["to"] in ("metric", "scalar")), None)
    if failing is not None:
        from analysis.psychometrics.invariance import partial_invariance_search

        opts = _fit_options(run.study)
        opts.update(_with_design(run, data, opts)[1])
        _complete_cases(opts)
        try:
            part = partial_invariance_search(syntax, data, group="__group__", step=failing,
                                             estimator=opts.pop("estimator"), ordered=opts.pop("ordered", None),
                                             min_group_size=run.study.min_group_size, **opts)
        except Exception as exc:  # the ladder stands; say why the search did not
            d["partial"] = {"step": failing, "error": f"{type(exc).__name__}: {exc}"}
        else:
            d["partial"] = part.to_dict()
    return _Output(data=_clean(d))


def _step_compare(run: _Run, a: str, b: str) -> _Output:
    from analysis.sem.compare import compare

    if run.study.missing == "impute":
        raise StepFailure("NotAvailable", f"comparing {a} with {b}: a test of the difference between models pooled "
                          "over imputations (semTools' lavTestLRT.mi with h1) is not available yet; each model's "
                          "pooled fit indices are in its results")
    fa, fb = _get_fit(run, f"model:{a}"), _get_fit(run, f"model:{b}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = compare({a: fa, b: fb}, warn=False)
    d = _clean(res.to_dict())
    table = res.table.reset_index()
    d["table"] = _clean(table)
    hypothesis = next((h for h in run.study.hypotheses if (h.model, h.against) == (a, b)), None)
    labels = {c.id: str(c.label) for c in run.instrument.constructs} if run.instrument is not None else {}
    d["verdict"] = _verdict(a, b, table, res, fa, hypothesis=hypothesis,
                            describe=run.study.model_description, construct=lambda c: labels.get(c, c))
    return _Output(data=d)


def _path_estimate(fit, path: str | None) -> dict[str, Any] | None:
    """The estimate of ``path`` (``Y ~ X``) in a fit: est, standardized, p."""
    if not path or "~" not in path:
        return None
    lhs, rhs = (x.strip() for x in path.split("~", 1))
    pt = fit.params
    row = pt[(pt["op"] == "~") & (pt["lhs"] == lhs) & (pt["rhs"] == rhs)]
    if not len(row):
        return None
    r = row.iloc[0]
    return {"path": f"{lhs} ~ {rhs}", "lhs": lhs, "rhs": rhs, "est": float(r["est"]), "pvalue": float(r["pvalue"]),
            "std.all": float(r["std.all"])}


def _p_apa(p: float) -> str:
    return "p < .001" if p < 0.001 else "p = " + f"{p:.3f}".lstrip("0")


def _verdict(a: str, b: str, table: pd.DataFrame, res, fit_a, *, hypothesis=None,
             describe: Callable[[str], str] = str, construct: Callable[[str], str] = str) -> dict[str, Any]:
    """A plain-language reading of a comparison; with a hypothesis of study.yaml, whether the claim holds.

    ``construct`` names a construct as the report does (its label); coefficients are in APA style (.45)."""
    t = table.set_index("model")
    d_aic = float(t.loc[b, "aic"] - t.loc[a, "aic"])
    d_bic = float(t.loc[b, "bic"] - t.loc[a, "bic"])
    lrt_p = None
    if res.nested and len(res.tests):
        p = res.tests[0].pvalue
        lrt_p = float(p) if p is not None and math.isfinite(p) else None
    favour_a = (d_aic > 0) + (d_bic > 0)
    if favour_a == 2:
        answer = "yes"
    elif favour_a == 0:
        answer = "no"
    else:
        answer = "unclear"
    out: dict[str, Any] = {"a": a, "b": b, "delta_aic": d_aic, "delta_bic": d_bic, "nested": bool(res.nested),
                           "lrt_pvalue": lrt_p, "prefers": a if favour_a == 2 else b if favour_a == 0 else None,
                           "answer": answer}
    if hypothesis is not None:
        path = _path_estimate(fit_a, hypothesis.path)
        out.update(hypothesis=hypothesis.model_dump(), path=path)
        lead = {"yes": "supported", "no": "not supported", "unclear": "unclear (the criteria disagree)"}[answer]
        name = f"{hypothesis.id}: " if hypothesis.id else ""
        text = (f"{name}{hypothesis.claim.rstrip('.')} — {lead}. The model that embodies the claim "
                f"({a}: {describe(a)}) "
                f"{'fits better than' if favour_a == 2 else 'fits worse than' if favour_a == 0 else 'is not clearly better than'} "
                f"its rival ({b}: {describe(b)}): AIC is {abs(d_aic):.1f} points {'lower' if d_aic > 0 else 'higher'} "
                f"and BIC {abs(d_bic):.1f} points {'lower' if d_bic > 0 else 'higher'} for {a}.")
        if lrt_p is not None:
            text += f" The likelihood-ratio test gives {_p_apa(lrt_p)}."
        if path is not None:
            sig = "significant" if path["pvalue"] < 0.05 else "not significant"
            beta = re.sub(r"^(-?)0\.", r"\1.", f"{path['std.all']:.2f}").replace("-.00", ".00")  # APA: .45
            text += (f" In {a}, {construct(path['rhs'])} → {construct(path['lhs'])} has a standardized coefficient "
                     f"of {beta} ({sig}, {_p_apa(path['pvalue'])}).")
        if not res.nested:
            text += " The two models are not nested, so the comparison rests on AIC and BIC, not on a chi-square test."
    else:
        text = (f"{a} vs {b}: AIC difference {d_aic:.1f}, BIC difference {d_bic:.1f} "
                f"(positive favours {a})" + (f"; likelihood-ratio test p = {lrt_p:.3f}" if lrt_p is not None else "") + ".")
    out["text"] = text
    return out


def _step_sensitivity(run: _Run, model: str) -> _Output:
    """``model`` refitted on the respondents no quality flag marked, beside the fit on everyone."""
    from analysis.sem.fit import fit_sem

    data, _ = _model_data(run)
    flags = run.out("quality").tables["flags"]
    if len(flags) != len(data):  # both come from the same rows; anything else would pair the wrong people
        raise StepFailure("Misaligned", f"the quality flags cover {len(flags)} rows and the model data {len(data)}")
    clean = data[(flags["n_flags"].to_numpy() == 0)]
    excluded = len(data) - len(clean)
    _, syntax = _syntax(run, model)
    opts = _fit_options(run.study)
    clean, extra = _with_design(run, clean, opts)
    try:
        fit = fit_sem(syntax, clean, warn=False, **opts, **extra)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"model '{model}' without flagged respondents: {exc}") from None
    full = _get_fit(run, f"model:{model}").params
    keys = ["lhs", "op", "rhs"]
    both = full[full["op"].isin(["~", ":="])][keys + ["est", "std.all", "pvalue"]].merge(
        fit.params[keys + ["est", "std.all", "pvalue", "ci.lower", "ci.upper"]], on=keys, suffixes=("", ".clean"))
    thr = run.study.disclosure.threshold
    return _Output(data={"model": model, "n_excluded": _safe_count(excluded, thr), "converged": bool(fit.converged),
                         "fit": _clean(fit.fit_dict()), "paths": _clean(both)})


def _step_bootstrap(run: _Run, model: str) -> _Output:
    from analysis.sem.bootstrap import bootstrap_fit

    if run.study.missing == "impute":
        raise StepFailure("NotAvailable", f"bootstrap of {model}: bootstrapping pooled imputations is not available; "
                          "the pooled standard errors and t tests (Rubin's rules) are in the model's results")
    fit = _get_fit(run, f"model:{model}")
    if getattr(fit, "twolevel", None) is not None:
        raise StepFailure("NotAvailable", f"bootstrap of {model}: a two-level model is not bootstrapped (its "
                          "replications would have to resample whole clusters); its ML or MLR (cluster-robust) "
                          "standard errors are in the model's results")
    b = run.study.bootstrap
    data, _ = _model_data(run)
    if (fit.options or {}).get("sampling_weights") or (fit.options or {}).get("cluster"):
        return _design_bootstrap(run, model, fit, data)
    res = bootstrap_fit(fit, n_boot=int(b.replications), ci=b.ci, seed=int(run.study.seed), data=data, progress=False)
    pt = res.params
    effects = pt[pt["op"] == ":="][["lhs", "est", "se", "ci.lower", "ci.upper", "pvalue"]].rename(columns={"lhs": "effect"})
    std = fit.params[fit.params["op"] == ":="].set_index("lhs")["std.all"]
    effects["std.all"] = effects["effect"].map(std)
    d = _clean(res.to_dict())
    d["effects"] = _clean(effects)
    d["model"] = model
    return _Output(data=d, tables={"effects": effects.reset_index(drop=True)})


def _design_bootstrap(run: _Run, model: str, fit, data: pd.DataFrame) -> _Output:
    """With a sample design: Rao-Wu rescaled bootstrap replicate weights (PSUs resampled within
    strata, survey's subbootstrap), the model refitted with each; normal intervals from the replicate SEs."""
    from scipy import stats

    from analysis.design.replicate import rao_wu_bootstrap, replicate_fit

    b = run.study.bootstrap
    data, extra = _with_design(run, data, _fit_options(run.study))
    design = extra["design"]
    try:
        reps = rao_wu_bootstrap(design, data, replicates=int(b.replications), seed=int(run.study.seed))
        pt = replicate_fit(fit, data.reset_index(drop=True), reps)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"bootstrap of {model} with the sample design: {_error_text(exc)}") from None
    z = stats.norm.ppf(0.975)
    pt["ci.lower"], pt["ci.upper"] = pt["est"] - z * pt["se"], pt["est"] + z * pt["se"]
    pt["pvalue"] = 2 * stats.norm.sf(np.abs(pt["est"] / pt["se"].where(pt["se"] > 0)))
    effects = pt[pt["op"] == ":="][["lhs", "est", "se", "ci.lower", "ci.upper", "pvalue"]].rename(columns={"lhs": "effect"})
    std = fit.params[fit.params["op"] == ":="].set_index("lhs")["std.all"]
    effects["std.all"] = effects["effect"].map(std)
    failed = int(pt.attrs.get("failed", 0))
    d = {"bootstrap": {"R": reps.replicates, "ci": "norm", "level": 0.95, "seed": int(run.study.seed),
                       "ok": reps.replicates - failed, "failed": failed, "improper": 0, "method": "rao-wu"},
         "estimates": _clean(pt), "effects": _clean(effects), "model": model}
    return _Output(data=_clean(d), tables={"effects": effects.reset_index(drop=True)})


_LABEL = re.compile(r"(?<![\w.])(?!NA\s*\*)[A-Za-z_][A-Za-z0-9_.]*\s*\*")


def _unlabelled(syntax: str) -> str:
    """The model without parameter labels and := effects: in a multi-group model a
    label would hold its path equal across groups (lavaan's rule), hiding the differences."""
    lines = []
    for line in syntax.splitlines():
        line = line.split("#", 1)[0]
        if ":=" in line:
            continue
        lines.append(_LABEL.sub("", line))
    return "\n".join(lines) + "\n"


def _freed(run: _Run, group: str) -> list[str]:
    """Constraints a partial scalar-invariance search freed for this grouping variable."""
    name = f"invariance:{group}"
    if not run.ok(name):
        return []
    part = run.out(name).data.get("partial") or {}
    return list(part.get("freed") or []) if part.get("step") == "scalar" and part.get("holds") else []


def _check_group_paths(run: _Run, syntax: str, model: str) -> None:
    """Every path of ``group_paths`` is a regression of the model; a wrong one is blamed on its own line."""
    from analysis.errors import ModelSyntaxError
    from analysis.sem.syntax import parse_model

    paths = {(s.lhs, s.rhs) for s in parse_model(syntax) if s.op == "~"}
    for j, written in enumerate(run.study.group_paths):
        try:
            stated = [(s.lhs, s.rhs) for s in parse_model(written) if s.op == "~"]
        except ModelSyntaxError as exc:
            raise StepFailure("UnknownPath", f"{run.study.where('group_paths', j)}: '{written}' is not a "
                              f"path ({exc})") from None
        missing = [f"{lhs} ~ {rhs}" for lhs, rhs in stated if (lhs, rhs) not in paths] if stated else [written]
        if missing:
            known = ", ".join(f"{lhs} ~ {rhs}" for lhs, rhs in sorted(paths)) or "none"
            raise StepFailure("UnknownPath", f"{run.study.where('group_paths', j)}: {', '.join(missing)} is not "
                              f"a path of the model '{model}' (its paths: {known})")


def _step_group_paths(run: _Run, index: int, model: str) -> _Output:
    from analysis.psychometrics.invariance import compare_groups

    _, syntax = _syntax(run, model)
    syntax = _unlabelled(syntax)
    _check_group_paths(run, syntax, model)
    freed = _freed(run, run.study.groups[index])
    data, info = _model_data(run, index)
    opts = _fit_options(run.study)
    data, design = _with_design(run, data, opts)
    opts.update(design)
    note = _complete_cases(opts)
    try:
        res = compare_groups(syntax, data, group="__group__", estimator=opts.pop("estimator"),
                             ordered=opts.pop("ordered", None), paths=list(run.study.group_paths) or None, lrt=False,
                             group_partial=freed, min_group_size=run.study.min_group_size, **opts)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"group comparison across '{run.study.groups[index]}' "
                          f"({run.study.where('groups', index)}): {_error_text(exc)}") from None
    d = res.to_dict()
    d["group"] = run.study.groups[index]
    d["model"] = model
    if res.fit is not None:
        d["fit"] = res.fit.to_dict()
    d.update(info)
    if note:
        d["note"] = note
    return _Output(data=_clean(d))


# ---------------------------------------------------------------- bundle

def _environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    pkgs = {}
    for name in ("community-resilience-suite",) + STAT_PACKAGES:
        try:
            pkgs[name] = version(name)
        except PackageNotFoundError:
            pkgs[name] = None
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(terse=True), "packages": pkgs}


def _bundle(run: _Run) -> dict[str, Any]:
    study = run.study
    res_dir = run.results_dir
    (res_dir / "tables").mkdir(parents=True, exist_ok=True)
    (res_dir / "figures").mkdir(parents=True, exist_ok=True)
    data = lambda name: run.out(name).data if run.ok(name) else None  # noqa: E731

    results: dict[str, Any] = {
        "schema": RESULTS_SCHEMA,
        "suite": {"name": "community-resilience-suite", "version": suite_version(), "code_sha256": run.fingerprint},
        "study": {"file": study.path.name, "sha256": _sha256_file(study.path) if study.path.is_file() else None,
                  "title": study.title, "settings": _settings(study), "seed": study.seed,
                  "disclosure_threshold": study.disclosure.threshold,
                  "problems": [i.to_dict() for i in run.issues]},
        "steps": {name: rec.result_dict() for name, rec in run.records.items()},
        "step_order": list(run.records),  # the keys above are sorted; the report lists failures in run order
    }
    if run.instrument is not None:
        results["instrument"] = {"id": run.instrument.id, "version": run.instrument.version,
                                 "title": run.instrument.title, "sha256": run.instrument_hash,
                                 "file": Path(run.instrument_path).name,
                                 "languages": list(run.instrument.languages),
                                 "default_language": run.instrument.default_language,
                                 "constructs": _glossary(run.instrument),
                                 "references": [r.citation for r in run.instrument.references]}
    results["inputs"] = _clean([{k: v for k, v in s.items() if k != "index"} for s in _source_inputs(run)])
    syntax = {}
    for i, spec in run.study.model_specs():
        try:
            syntax[spec.name] = _parsed_text(study.model_syntax(i))
        except StudyError:
            syntax[spec.name] = None
    results["model_syntax"] = syntax
    results["model_sha256"] = {k: (_sha256_bytes(v.encode()) if v else None) for k, v in syntax.items()}
    results["import"] = data("import")
    results["validation"] = data("validate")
    results["disclosure"] = data("disclosure")
    results["scoring"] = data("score")
    if run.ok("disclosure") and run.study.disclosure.small_groups == "drop":
        _count_kept_rows(results, _responses(run))
        results["scoring"] = run.out("disclosure").data["scoring"]
    results["quality"] = data("quality")
    results["sample"] = data("describe")
    results["reliability"] = data("reliability")
    results["icc"] = data("icc") if "icc" in run.records else None
    results["design"] = data("design") if "design" in run.records else None
    results["cfa"] = data("cfa")
    results["models"] = {n.split(":", 1)[1]: run.out(n).data for n in run.records if n.startswith("model:") and run.ok(n)}
    results["comparisons"] = {n.split(":", 1)[1]: run.out(n).data for n in run.records
                              if n.startswith("compare:") and run.ok(n)}
    results["bootstrap"] = next((run.out(n).data for n in run.records if n.startswith("bootstrap:") and run.ok(n)), None)
    results["invariance"] = {n.split(":", 1)[1]: run.out(n).data for n in run.records
                             if n.startswith("invariance:") and run.ok(n)}
    results["group_paths"] = {n.split(":", 1)[1]: run.out(n).data for n in run.records
                              if n.startswith("groups:") and run.ok(n)}
    results["sensitivity"] = next((run.out(n).data for n in run.records
                                   if n.startswith("sensitivity:") and run.ok(n)), None)
    # the verdicts on the study's hypotheses, in study.yaml's order; the first leads the report
    results["hypotheses"] = []
    for h in study.hypotheses:
        comp = results["comparisons"].get(f"{h.model}-vs-{h.against}")
        results["hypotheses"].append({**h.model_dump(), "verdict": comp["verdict"] if comp else None})
    results["verdict"] = next((h["verdict"] for h in results["hypotheses"] if h["verdict"]), None)
    results["model_descriptions"] = {name: study.model_description(name) for name in study.model_names()}

    # tables for the report (Parquet) and figures
    tables: dict[str, str] = {}
    if run.ok("describe"):
        dist = run.out("describe").tables["item_distributions"]
        _write_parquet(dist, res_dir / "tables" / "item_distributions.parquet")
        tables["item_distributions"] = "tables/item_distributions.parquet"
    for name in list(results["models"]) + (["measurement"] if results["cfa"] else []):
        d = results["cfa"] if name == "measurement" else results["models"][name]
        est = pd.DataFrame(d.get("estimates", []))
        if len(est):
            _write_parquet(est, res_dir / "tables" / f"estimates_{name}.parquet")
            tables[f"estimates_{name}"] = f"tables/estimates_{name}.parquet"
    if results["bootstrap"]:
        eff = pd.DataFrame(results["bootstrap"]["effects"])
        _write_parquet(eff, res_dir / "tables" / "bootstrap_effects.parquet")
        tables["bootstrap_effects"] = "tables/bootstrap_effects.parquet"
    results["tables"] = tables
    results["figures"] = _figures(run, results)
    return results


def _glossary(inst) -> list[dict[str, Any]]:
    """The instrument's constructs for the report: label, definition and item wording in each language."""
    out = []
    for c in inst.constructs:
        items = [{"id": it.id, "reverse": bool(it.reverse), "text": {k: str(v) for k, v in it.text.items()}}
                 for it in inst.items_of(c.id)]
        out.append({"id": c.id, "label": c.label, "definition": c.definition, "kind": c.kind, "items": items})
    return out


def _count_kept_rows(results: dict[str, Any], kept: pd.DataFrame) -> None:
    """Under ``small_groups: drop`` the dropped respondents leave every total, the import's too:
    the raw count minus the analysed one would be the size of the dropped groups."""
    per_source = kept["source"].value_counts()
    for section in ("import", "validation"):
        part = results.get(section)
        if not part:
            continue
        part = results[section] = json.loads(json.dumps(_clean(part)))  # a copy: the step's output stays whole
        part["n_rows"] = len(kept)
        for i, src in enumerate(part.get("sources") or []):
            src["n_rows"] = int(per_source.get(i, 0))


def _figures(run: _Run, results: dict[str, Any]) -> dict[str, Any]:
    from analysis.study import figures as figs

    fig_dir = run.results_dir / "figures"
    made: dict[str, Any] = {}
    problems: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], Any]) -> None:
        try:
            value = fn()
        except Exception as exc:  # a figure that cannot be drawn is reported, not fatal
            problems[name] = f"{type(exc).__name__}: {exc}"
        else:
            if value:
                made[name] = value

    # one path diagram per structural model; "path_diagram" is the first (the report's lead figure)
    diagrams: dict[str, Any] = {}
    for name, d in results["models"].items():
        params = pd.DataFrame(d["estimates"])
        try:
            if "level" in params.columns:   # a two-level model: one diagram per level
                for lev in (1, 2):
                    diagrams[f"{name} (level {lev})"] = figs.path_diagram(
                        params[params["level"] == lev], fig_dir, f"{name}_level{lev}")
                continue
            diagrams[name] = figs.path_diagram(params, fig_dir, name,
                                               labels={c.id: c.label for c in run.instrument.constructs})
        except Exception as exc:  # a figure that cannot be drawn is reported, not fatal
            problems[f"path_diagram:{name}"] = f"{type(exc).__name__}: {exc}"
    if diagrams:
        made["path_diagrams"] = diagrams
        made["path_diagram"] = next(iter(diagrams.values()))
    if run.ok("describe"):
        dist = run.out("describe").tables["item_distributions"]
        attempt("item_distributions", lambda: figs.diverging_bars(dist, fig_dir, run.instrument))
    if results["bootstrap"]:
        attempt("forest", lambda: figs.forest_plot(pd.DataFrame(results["bootstrap"]["effects"]), fig_dir,
                                                   results["bootstrap"]["bootstrap"]))
    if results["invariance"]:
        attempt("invariance", lambda: figs.invariance_plot(results["invariance"], fig_dir))
    if problems:
        made["problems"] = problems
    return made


# ---------------------------------------------------------------- report

def is_shipped_template(template: str | Path) -> bool:
    """A report template shipped with the suite (``reports/``), the only code a study may run unasked."""
    return Path(template).resolve().parent == DEFAULT_TEMPLATE.parent


def untrusted_template_message(template: str | Path) -> str:
    return (f"{template} is not a shipped report template; a template is Python that runs while the report "
            "renders, so it runs only when you trust it: pass --trust-template (trust_template=True)")


def render_study_report(results_dir: str | Path, out_dir: str | Path | None = None, *,
                        formats: tuple[str, ...] | None = None, template: str | Path | None = None,
                        engine: str = "auto", force: bool = False, trust_template: bool = False) -> dict[str, Any]:
    """Render the report from a results bundle (``results.json`` + tables + figures).

    Cached: the report is re-rendered only when results.json, the template
    or the formats changed (or ``force``). Returns ``{"engine", "outputs",
    "skipped", "cached"}``. A template is Python that runs while rendering:
    one other than the shipped ones runs only with ``trust_template=True``.
    """
    from analysis.study.render import find_quarto, render_report

    results_dir = Path(results_dir).resolve()
    rj = results_dir / "results.json"
    if not rj.is_file():
        raise StepFailure("MissingResults", f"no results.json in {results_dir}; run `resilience run study.yaml` first")
    results = json.loads(rj.read_text(encoding="utf-8"))
    settings = (results.get("study") or {}).get("settings") or {}
    formats = tuple(formats or settings.get("report", {}).get("formats") or ("html",))
    template = Path(template) if template else DEFAULT_TEMPLATE
    if not trust_template and not is_shipped_template(template):
        raise StepFailure("UntrustedTemplate", untrusted_template_message(template))
    if out_dir is None:
        out_dir = results_dir.parent / (settings.get("output", {}).get("reports") or "reports")
    out_dir = Path(out_dir)
    quarto_yml = template.parent / "_quarto.yml"
    key = _hash({"results": _sha256_file(rj), "template": _sha256_file(template),
                 "quarto_yml": _sha256_file(quarto_yml) if quarto_yml.is_file() else None,
                 "figures": sorted((p.name, _sha256_file(p)) for p in (results_dir / "figures").glob("*")
                                   if p.is_file()),
                 "formats": formats, "engine": engine, "quarto": bool(find_quarto()),
                 "render": _sha256_file(Path(__file__).with_name("render.py"))})
    stamp = results_dir / ".cache" / "report.json"
    if not force and stamp.is_file():
        prev = json.loads(stamp.read_text(encoding="utf-8"))
        if prev.get("key") == key and all(Path(p).is_file() for p in prev.get("outputs", {}).values()):
            return {**prev, "cached": True}
    title = (settings.get("report") or {}).get("title") or (results.get("study") or {}).get("title")
    res = render_report(template, out_dir, parameters={"results_dir": str(results_dir)}, formats=formats,
                        engine=engine, output_name=template.stem, title=title)
    info = {"key": key, **res.to_dict()}
    write_bytes(stamp, _dumps(info).encode())
    return {**info, "cached": False}


# ---------------------------------------------------------------- entry point

def run_study(study_path: str | Path | Study, *, progress: bool = True, report: bool = True,
              command: list[str] | None = None, trust_template: bool = False) -> StudyRun:
    """Run the whole study; never raises for a failed step (see :class:`StudyRun`).

    ``trust_template``: run ``report.template`` although it is not a shipped one.

    Raises :class:`~analysis.study.StudyError` only when the study file itself
    cannot be read (a YAML or schema error) or its hypotheses or comparisons name a
    model it does not define, with every problem's line and field.
    """
    t0 = time.perf_counter()
    study = study_path if isinstance(study_path, Study) else load_study(study_path)
    if study.reference_issues():  # the comparison the report is about would silently be missing
        raise StudyError(study.reference_issues())
    run = _Run(study, progress=False)
    models = [n for n in study.model_names()]
    structural = study.structural_models()
    pairs = [(a, b) for a, b in study.comparison_pairs() if a in models and b in models]
    boot_model = study.bootstrap_model()
    group_model = boot_model or (structural[0] if structural else None)
    # one tick per step below: 8 fixed steps, cfa, invariance and key paths per group, models,
    # comparisons, bootstrap, the bundle and (when asked for) the report
    # the model refitted without flagged respondents: the first hypothesis's, else the first structural one
    lead = next((h.model for h in study.hypotheses if h.model in structural), structural[0] if structural else None)
    n_steps = (8 + ("measurement" in models) + len(study.groups) * (1 + (group_model is not None))
               + len(structural) + (lead is not None) + len(pairs) + (boot_model is not None) + 1 + bool(report))
    run.progress = _Progress(progress, n_steps)
    try:
        inst_rec = run.step("instrument", "Load the instrument", lambda: (_load_instrument(run), _Output(
            data={"id": run.instrument.id, "version": run.instrument.version, "sha256": run.instrument_hash}))[1],
            options={"instrument": study.instrument},
            inputs={"file": _instrument_input(study)})
        if inst_rec.status == "ok" and run.instrument is None:  # cached: load it anyway (cheap)
            _load_instrument(run)
        src_inputs = _source_inputs(run)
        run.step("import", "Import the data", lambda: _step_import(run), deps=("instrument",),
                 options=[s.model_dump() for s in study.data] + (
                     [study.design.model_dump()] if study.design is not None else []),
                 inputs={"sources": src_inputs, "withdrawn": sorted(_withdrawn(study))})
        validated = run.step("validate", "Validate the answers", lambda: _step_validate(run), deps=("import",))
        if validated.status == "ok" and run.out("validate").data.get("n_errors"):
            # the analyses still run (the report shows them), but the run is not a success
            validated.message = (f"the data break the instrument's rules: {run.out('validate').data['n_errors']} "
                                 "error(s); see results.json 'validation' and the report")
        run.step("score", "Score the constructs", lambda: _step_score(run), deps=("import",))
        run.step("disclosure", "Disclosure control (small groups)", lambda: _step_disclosure(run),
                 deps=("import", "score"), options={**study.disclosure.model_dump(), "groups": _present(run, study.groups)})
        run.step("quality", "Data-quality flags", lambda: _step_quality(run), deps=("import", "disclosure"),
                 options={"threshold": study.disclosure.threshold})
        run.step("describe", "Describe the sample", lambda: _step_describe(run), deps=("import", "disclosure"),
                 options={"threshold": study.disclosure.threshold, "groups": study.groups,
                          "measurement": _safe_syntax(study, "measurement")})
        run.step("reliability", "Reliability and validity", lambda: _step_reliability(run), deps=("import", "disclosure"),
                 options={"measurement": _safe_syntax(study, "measurement")})
        if study.design is not None and (study.design.weights or study.design.cluster or study.design.strata):
            run.step("design", "Sample design", lambda: _step_design(run), deps=("import", "disclosure"),
                     options={"design": study.design.model_dump(), "threshold": study.disclosure.threshold,
                              "groups": study.groups})
        if study.design is not None and study.design.cluster:
            run.step("icc", f"ICCs by {study.design.cluster}", lambda: _step_icc(run), deps=("import", "disclosure"),
                     options={"cluster": study.design.cluster})
        if "measurement" in models:
            m_opts = {"syntax": _safe_syntax(study, "measurement"), **_fit_options(study)}
            run.step("cfa", "CFA (measurement model)",
                     lambda: _fit_output(_fit(run, "measurement")), deps=("disclosure",), options=m_opts)
        for i, g in enumerate(study.groups):
            run.step(f"invariance:{g}", f"Invariance across {g}", lambda i=i: _step_invariance(run, i),
                     deps=("disclosure",), options={"group": g, "syntax": _safe_syntax(study, "measurement"),
                                               "min": study.min_group_size, "thr": study.disclosure.threshold,
                                               **_fit_options(study)})
        for name in structural:
            run.step(f"model:{name}", f"Model {name}", lambda name=name: _fit_output(_fit(run, name)),
                     deps=("disclosure",), options={"syntax": _safe_syntax(study, name), **_fit_options(study)})
        # the lead model refitted without the respondents any quality flag marked:
        # do the findings hang on careless answers?
        if lead is not None:
            run.step(f"sensitivity:{lead}", f"Model {lead} without flagged respondents",
                     lambda: _step_sensitivity(run, lead), deps=(f"model:{lead}", "quality"),
                     options={"syntax": _safe_syntax(study, lead), **_fit_options(study)})
        for a, b in pairs:
            run.step(f"compare:{a}-vs-{b}", f"Compare {a} vs {b}", lambda a=a, b=b: _step_compare(run, a, b),
                     deps=(f"model:{a}", f"model:{b}"))
        if boot_model is not None and boot_model not in structural:
            problems = [i for i in run.issues if i.field == "bootstrap.model"]
            run.step(f"bootstrap:{boot_model}", f"Bootstrap ({study.bootstrap.replications} reps)",
                     lambda: (_ for _ in ()).throw(_issue_failure(problems, "UnknownModel")))
        elif boot_model is not None:
            run.step(f"bootstrap:{boot_model}", f"Bootstrap ({study.bootstrap.replications} reps)",
                     lambda: _step_bootstrap(run, boot_model), deps=(f"model:{boot_model}",),
                     options={**study.bootstrap.model_dump(), "seed": study.seed})
        if group_model is not None:
            for i, g in enumerate(study.groups):
                run.step(f"groups:{g}", f"Key paths across {g}", lambda i=i: _step_group_paths(run, i, group_model),
                         deps=("disclosure",), options={"group": g, "model": group_model, "paths": study.group_paths,
                                                   "freed": _freed(run, g),
                                                   "syntax": _safe_syntax(study, group_model),
                                                   "min": study.min_group_size, "thr": study.disclosure.threshold,
                                                   **_fit_options(study)})
        # the bundle is always rewritten (cheap, deterministic)
        run.progress.start("Write the results bundle")
        tb = time.perf_counter()
        results = _bundle(run)
        write_bytes(run.results_dir / "results.json", _dumps(results).encode())
        bundle_rec = StepRecord("bundle", "Write the results bundle", "ok", seconds=time.perf_counter() - tb)
        run.records["bundle"] = bundle_rec
        run.progress.done(bundle_rec)
        report_info: dict[str, Any] = {}
        # the report's reproducibility appendix reads the run log: write it before rendering
        _write_run_log(StudyRun(study, run.results_dir, list(run.records.values()), results,
                                seconds=time.perf_counter() - t0), command)
        if report:
            run.progress.start("Render the report")
            tr = time.perf_counter()
            rec = StepRecord("report", "Render the report", "ok")
            try:
                template = study.resolve(study.report.template) if study.report.template else None
                if template is not None and not trust_template and not is_shipped_template(template):
                    raise StepFailure("UntrustedTemplate", f"{study.where('report', 'template')}: "
                                      + untrusted_template_message(study.report.template))
                report_info = render_study_report(run.results_dir, study.reports_dir, trust_template=trust_template,
                                                  formats=tuple(study.report.formats), template=template)
                rec.cached = bool(report_info.get("cached"))
                rec.key = report_info.get("key", "")
                if report_info.get("skipped"):  # a format asked for and not made is a failure, with why
                    rec.status, rec.error_type = "failed", "FormatNotMade"
                    rec.message = "; ".join(f"{k}: {v}" for k, v in report_info["skipped"].items())
            except Exception as exc:  # the bundle is there; say why the report is not
                kind = exc.kind if isinstance(exc, StepFailure) else type(exc).__name__
                rec.status, rec.error_type, rec.message = "failed", kind, str(exc)
            rec.seconds = time.perf_counter() - tr
            run.records["report"] = rec
            run.progress.done(rec)
    finally:
        run.progress.close()
    sr = StudyRun(study=study, results_dir=run.results_dir, steps=list(run.records.values()), results=results,
                  report=report_info, seconds=time.perf_counter() - t0)
    _write_run_log(sr, command)
    return sr


def _instrument_input(study: Study) -> str | None:
    from instruments import library_path

    p = study.resolve(study.instrument)
    if not p.is_file():
        p = library_path(study.instrument)
    return _sha256_file(p) if p.is_file() else None


def _safe_syntax(study: Study, name: str) -> str | None:
    from analysis.study.spec import MODELS_DIR, measurement_model

    try:
        names = study.model_names()
        if name in names:
            return study.model_syntax(names.index(name))
        if name == "measurement":
            return measurement_model(study.load_instrument())
    except StudyError:
        return None

    p = MODELS_DIR / f"{name}.lav"
    return p.read_text(encoding="utf-8") if p.is_file() else None


def _write_run_log(sr: StudyRun, command: list[str] | None) -> None:
    from analysis.study.render import find_quarto, pandoc_version, quarto_version

    quarto = find_quarto()
    template = sr.study.resolve(sr.study.report.template) if sr.study.report.template else DEFAULT_TEMPLATE
    log = {
        "report_template": {"file": template.name,
                            "sha256": _sha256_file(template) if template.is_file() else None},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(sr.seconds, 3),
        "study": str(sr.study.path),
        "results_dir": str(sr.results_dir),
        "command": command if command is not None else [Path(sys.argv[0]).name] + sys.argv[1:],
        "environment": {**_environment(), "quarto": quarto_version(quarto) if quarto else None,
                        "pandoc": pandoc_version()},
        "report": sr.report,
        "steps": [s.log_dict() for s in sr.steps],
    }
    write_bytes(sr.run_log, _dumps(log).encode())


# ---------------------------------------------------------------- the demo study

def simulate_community_survey(n: int = 1200, *, seed: int = 20260401, missing: float = 0.05,
                              careless: float = 0.07, instrument=None) -> pd.DataFrame:
    """A simulated community survey in the shape of ``crs``: three ethnic groups, two interview languages.

    Population values are those of docs/figure1.md (``analysis/models/population/figure1.lav``);
    minority groups start with lower TRUST and one item is not invariant
    (a shifted intercept in one group); ``missing`` of the item answers are
    missing (as "Prefer not to say"/"Don't know" codes, clustered in a fifth of
    the respondents, as item nonresponse is) and
    ``careless`` of the respondents answer carelessly (straight-lining or at random).
    """
    from instruments import load_instrument

    from analysis.simulation.simulate import GroupSpec, simulate_responses

    inst = instrument if instrument is not None else load_instrument("crs")
    groups = [
        GroupSpec("White", 0.40, codes=[13, 14, 17]),
        GroupSpec("Asian", 0.35, means={"TRUST": -0.30}, intercepts={"CULT3": 0.35}, codes=[1, 3, 4]),
        GroupSpec("Black", 0.25, means={"TRUST": -0.40}, codes=[6, 7]),
    ]
    data, truth = simulate_responses("figure1", int(n), seed=seed, instrument=inst, groups=groups,
                                     missing=0.0, careless=careless, truth=True)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    # item nonresponse clusters in respondents: a fifth of them skip some items,
    # so that `missing` of all answers are "Prefer not to say" / "Don't know"
    items = [it for it in inst.items if it.role in ("item", "repr") and it.id in data]
    skippers = rng.random(len(data)) < 0.2
    hit = (rng.random((len(data), len(items))) < min(missing / 0.2, 0.9)) & skippers[:, None]
    for j, it in enumerate(items):
        codes = inst.scales[it.scale].missing_codes
        rows = hit[:, j] & data[it.id].notna().to_numpy()
        if codes and rows.any():
            col = data[it.id].astype(object)
            col[rows] = rng.choice(codes, size=int(rows.sum()))
            data[it.id] = pd.array(col.to_numpy(), dtype="Int64")
    # two interview languages: Urdu mostly among Asian respondents
    p_urdu = np.where(truth["group"].to_numpy() == "Asian", 0.60, 0.05)
    data["LANG"] = np.where(rng.random(len(data)) < p_urdu, 2, 1)
    data["GENDER"] = rng.choice([1, 2, 3], size=len(data), p=[0.50, 0.47, 0.03])
    # interview timings: about 15 minutes; careless respondents rush
    minutes = rng.lognormal(np.log(15), 0.3, len(data))
    minutes = np.where(truth["careless"].to_numpy(), minutes / 6, minutes)
    start = pd.Timestamp("2026-03-02 09:00") + pd.to_timedelta(rng.integers(0, 60 * 24 * 40, len(data)), unit="min")
    data["started_at"] = start
    data["ended_at"] = start + pd.to_timedelta(np.round(minutes * 60), unit="s")
    data["submitted_at"] = data["ended_at"]
    data["duration_s"] = np.round(minutes * 60)
    return data


DEMO_REPLICATIONS = {"fiml": 200, "listwise": 500}


def create_demo_study(out: str | Path, *, n: int = 1200, seed: int = 20260401, replications: int | None = None,
                      groups: tuple[str, ...] = ("ETHNIC5", "LANG"), data_format: str = "kobo",
                      missing: str = "fiml", design: bool = False) -> Path:
    """Write a simulated survey as a Kobo export plus a ``study.yaml`` that analyses it; returns the study file.

    The demo uses every answer (FIML, a real study's default). A FIML bootstrap
    refits each resample over all its missing-data patterns, so the demo draws
    200 replications (``DEMO_REPLICATIONS``; the report states R) to finish in a
    few minutes on two cores; ``missing="listwise"`` analyses complete cases only.
    ``design=True`` makes it a complex sample (:func:`_demo_design`): minorities
    oversampled, neighbourhoods as clusters within areas (strata), weights raked to
    census-style margins, declared in study.yaml's ``design:``.
    """
    from instruments import load_instrument

    from analysis.study.spec import init_study

    out = Path(out)
    inst = load_instrument("crs")
    data = simulate_community_survey(n, seed=seed, instrument=inst)
    raw = out / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    extra = None
    if design:
        extra, census = _demo_design(data, seed)
        census.to_csv(raw / "census_margins.csv", index=False)
    name = "community_survey_kobo.csv" if data_format == "kobo" else "community_survey.csv"
    try:
        from instruments.export_data import write_responses

        write_responses(data, inst, raw / name, format=data_format)
        fmt = data_format
        if extra is not None:   # design columns the instrument does not define, beside its answers
            _append_columns(raw / name, extra)
    except ImportError:  # fielding writers not installed: a plain CSV
        (data if extra is None else data.join(extra)).to_csv(raw / name, index=False)
        fmt = "csv"
    path = init_study(out, title="Demo: a simulated community survey", data_name=name, seed=seed, overwrite=True)
    text = path.read_text(encoding="utf-8")
    text = text.replace("    # format: kobo", f"    format: {fmt}")
    reps = int(replications) if replications is not None else DEMO_REPLICATIONS.get(missing, 500)
    text = text.replace("  replications: 500", f"  replications: {reps}" + (
        "    # the demo: fewer refits, to run in minutes; use 1000 or more to publish" if reps < 500 else ""))
    text = text.replace("groups: [ETHNIC5, LANG]", f"groups: [{', '.join(groups)}]")
    if missing != "fiml":
        text = text.replace("missing: fiml", f"missing: {missing}    # complete cases only")
    if design:
        text += ("\n# The sample design: minority groups oversampled, respondents recruited in neighbourhoods\n"
                 "# (clusters) within the areas (strata); the weights are raked to census-style margins\n"
                 "# (data/raw/census_margins.csv: resilience weights ... --targets census_margins.csv).\n"
                 "design:\n  weights: weight\n  cluster: NBHD\n  strata: AREA\n")
    path.write_text(text, encoding="utf-8")
    return path


# census-style margins of the demo's population: the minority groups are oversampled in the survey
DEMO_CENSUS = [("ETHGROUP", "White", 0.80), ("ETHGROUP", "Asian", 0.12), ("ETHGROUP", "Black", 0.08),
               ("GENDER", "1", 0.49), ("GENDER", "2", 0.49), ("GENDER", "3", 0.02)]


def _demo_design(data: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo's design columns: ETHGROUP (the simulator's three groups), NBHD (8 neighbourhoods per
    area, the clusters) and ``weight`` raked to DEMO_CENSUS (analysis.design.calibrate)."""
    from analysis.design.calibrate import calibrate

    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    eth = pd.to_numeric(data["ETHNIC"], errors="coerce")
    group = np.select([eth.isin([13, 14, 17]), eth.isin([1, 3, 4]), eth.isin([6, 7])],
                      ["White", "Asian", "Black"], "Other")
    area = data["AREA"].astype(str).str.replace("Area ", "A", regex=False)
    extra = pd.DataFrame({"ETHGROUP": group, "NBHD": area + "-" + rng.integers(1, 9, size=len(data)).astype(str)},
                         index=data.index)
    census = pd.DataFrame(DEMO_CENSUS, columns=["variable", "category", "proportion"])
    frame = extra.assign(GENDER=pd.to_numeric(data["GENDER"], errors="coerce").astype("Int64").astype(str))
    extra["weight"] = np.round(calibrate(frame, census, method="rake").weights, 6)
    return extra, census


def _append_columns(path: Path, extra: pd.DataFrame) -> None:
    """Append columns to a delimited export in place, row for row (quoted fields kept as they are)."""
    import csv
    import io

    text = path.read_text(encoding="utf-8-sig")
    delimiter = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t").delimiter
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if len(rows) != len(extra) + 1:
        raise StepFailure("DemoDesign", f"{path}: {len(rows) - 1} rows for {len(extra)} respondents")
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(rows[0] + list(extra.columns))
    for row, values in zip(rows[1:], extra.astype(str).itertuples(index=False)):
        writer.writerow(row + list(values))
    path.write_text(out.getvalue(), encoding="utf-8")
