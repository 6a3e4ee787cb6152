"""A study folder: raw files kept byte for byte, responses in one DuckDB file.

::

    study/
      study.yaml            (the study's settings; not written here)
      data/raw/             every imported file, copied unchanged, read-only
      data/raw/manifest.json  name, sha256, size, format, rows, time of each import
      study.duckdb          tables `responses` (all waves and form versions), `imports`
                            and `issues` (each import's validation report)

Importing is idempotent: a file whose sha256 is already in the manifest adds
nothing. Platform exports are cumulative (this week's Kobo export repeats last
week's submissions): a response whose respondent id is already stored for the
same instrument and wave is not added again, and one warning says how many. No import ever writes to a raw file: the copy is made first (to a
temporary name, then renamed), its hash checked against the source, the copy
made read-only, and the responses are read from the copy. The manifest is
written atomically (temporary file + rename), so a crash never leaves half a
manifest. Responses from different form versions share one table: new item
columns are added as the instrument grows, older rows hold NULL there.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .ingest import ImportError_, ImportResult, file_sha256, import_responses
from .validate import ValidationReport, validate

__all__ = ["Study", "StoreResult", "MANIFEST_NAME", "DB_NAME"]

MANIFEST_NAME = "manifest.json"
DB_NAME = "study.duckdb"


@dataclass
class StoreResult:
    """What one import did."""

    added: bool
    sha256: str
    raw_path: str
    n_rows: int
    format: str | None = None
    report: ValidationReport | None = None
    result: ImportResult | None = None
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"added": self.added, "sha256": self.sha256, "raw_path": self.raw_path,
               "n_rows": self.n_rows, "format": self.format, "reason": self.reason}
        if self.report is not None:
            out["validation"] = self.report.to_dict()
        return out


class Study:
    """A study folder (created on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.raw_dir = self.path / "data" / "raw"
        self.manifest_path = self.raw_dir / MANIFEST_NAME
        self.db_path = self.path / DB_NAME

    # --- manifest ----------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {"files": []}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def _write_manifest(self, manifest: Mapping[str, Any]) -> None:
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=self.raw_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        from .export_data import _umask

        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, self.manifest_path)

    def known(self, sha256: str) -> dict | None:
        return next((f for f in self.manifest()["files"] if f["sha256"] == sha256), None)

    def verify(self) -> pd.DataFrame:
        """Each raw file's recorded and current sha256 (``ok`` False if one changed)."""
        rows = []
        for entry in self.manifest()["files"]:
            p = self.raw_dir / entry["name"]
            now = file_sha256(p) if p.is_file() else None
            rows.append({"name": entry["name"], "sha256": entry["sha256"], "current": now,
                         "ok": now == entry["sha256"]})
        return pd.DataFrame(rows, columns=["name", "sha256", "current", "ok"])

    # --- database ----------------------------------------------------------
    def connect(self, read_only: bool = False):
        import duckdb

        self.path.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(str(self.db_path), read_only=read_only)

    def responses(self, where: str | None = None) -> pd.DataFrame:
        """All stored responses (optionally filtered by a SQL condition)."""
        if not self.db_path.is_file():
            return pd.DataFrame()
        with self.connect(read_only=True) as con:
            if not _has_table(con, "responses"):
                return pd.DataFrame()
            sql = "SELECT * FROM responses" + (f" WHERE {where}" if where else "") + " ORDER BY import_id, source_row"
            return con.execute(sql).df()

    def issues(self) -> pd.DataFrame:
        """Every validation problem of every import (column ``import_id`` says which)."""
        if not self.db_path.is_file():
            return pd.DataFrame()
        with self.connect(read_only=True) as con:
            if not _has_table(con, "issues"):
                return pd.DataFrame()
            return con.execute("SELECT * FROM issues ORDER BY import_id, row").df()

    def imports(self) -> pd.DataFrame:
        if not self.db_path.is_file():
            return pd.DataFrame()
        with self.connect(read_only=True) as con:
            if not _has_table(con, "imports"):
                return pd.DataFrame()
            return con.execute("SELECT * FROM imports ORDER BY import_id").df()

    # --- importing ---------------------------------------------------------
    def import_file(self, source: str | Path, instrument, *, format: str | None = None,  # noqa: A002
                    mapping=None, wave: str | None = None, progress=None, **read_options) -> StoreResult:
        """Copy ``source`` into ``data/raw``, read it, validate it, store its responses.

        ``progress(phase, done, total)`` hears of each step (see
        :func:`~instruments.ingest.import_responses`).
        """
        source = Path(source)
        if not source.is_file():
            raise ImportError_(_missing(source))
        if progress is not None:
            progress("checking sha256, copying to data/raw", 0, None)
        sha = file_sha256(source)
        seen = self.known(sha)
        if seen is not None:
            return StoreResult(False, sha, str(self.raw_dir / seen["name"]), 0, seen.get("format"),
                               reason=f"already imported as {seen['name']} on {seen['imported_at']}")
        raw = self._copy_raw(source, sha)
        try:
            result = import_responses(raw, instrument, format=format, mapping=mapping,
                                      progress=progress, **read_options)
        except BaseException:
            raw.unlink(missing_ok=True)  # our unrecorded copy; the user's file is untouched
            raise
        if progress is not None:
            progress("validating", 0, None)
        report = validate(result, instrument, source=source.name)
        if progress is not None:
            progress("storing", 0, None)
        data = result.data
        imported_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with self.connect() as con:
            con.execute("""CREATE TABLE IF NOT EXISTS imports (
                import_id INTEGER, name VARCHAR, sha256 VARCHAR, format VARCHAR, n_rows BIGINT,
                n_errors BIGINT, n_warnings BIGINT, instrument VARCHAR, instrument_version VARCHAR,
                wave VARCHAR, imported_at VARCHAR)""")
            import_id = con.execute("SELECT coalesce(max(import_id), 0) + 1 FROM imports").fetchall()[0][0]
            seen = _already_stored(con, data, instrument.id, wave or "", source)
            if seen is not None:
                keep, note = seen
                data = data[keep]
                report = ValidationReport(pd.concat([report.issues, note], ignore_index=True),
                                          source=report.source, n_rows=report.n_rows)
            data = data.copy()
            data.insert(0, "import_id", import_id)
            data.insert(1, "wave", wave or "")
            data["raw_sha256"] = sha
            _append(con, "responses", data)
            if len(report.issues):  # the validation report is kept as data too
                issues = report.issues.astype(object).where(report.issues.notna(), None)
                issues.insert(0, "import_id", import_id)
                _append(con, "issues", issues.astype({"row": "Int64"}))
            con.execute("INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [import_id, raw.name, sha, result.format, len(data), report.n_errors,
                         report.n_warnings, instrument.id, instrument.version, wave or "", imported_at])
        manifest = self.manifest()
        manifest["files"].append({
            "name": raw.name, "original_name": source.name, "sha256": sha, "bytes": raw.stat().st_size,
            "format": result.format, "n_rows": len(data), "import_id": int(import_id),
            "instrument": instrument.id, "instrument_version": instrument.version,
            "wave": wave or "", "imported_at": imported_at,
        })
        self._write_manifest(manifest)
        return StoreResult(True, sha, str(raw), len(data), result.format, report, result)

    def _copy_raw(self, source: Path, sha: str) -> Path:
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        target = self.raw_dir / source.name
        if target.exists():  # same name, other content: keep both, never overwrite
            target = self.raw_dir / f"{source.stem}.{sha[:12]}{source.suffix}"
        fd, tmp = tempfile.mkstemp(prefix=".incoming.", dir=self.raw_dir)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            if file_sha256(tmp) != sha:
                raise ImportError_(_changed(source))
            os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # read-only from now on
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


def _already_stored(con, data: pd.DataFrame, instrument_id: str, wave: str, source: Path):
    """Rows whose respondent is already stored (same instrument and wave): (rows to keep, warning).

    Ids the reader made up for a file without an id column (``<file>-r<row>``)
    name rows, not people, and are never matched.
    """
    if not len(data) or not _has_table(con, "responses") or "respondent_id" not in data:
        return None
    import re

    ids = data["respondent_id"].astype("string")
    stem = re.sub(r"[^A-Za-z0-9]+", "_", source.stem)[:40]
    real = ~ids.str.fullmatch(re.escape(stem) + r"-r\d+").fillna(False)
    # a longitudinal export: the same record at another event is a new response
    keys, stored_key = ids, "r.respondent_id"
    if "event" in data:
        keys = ids + "\x1f" + data["event"].astype("string").fillna("")
        has_event = any(r[0] == "event" for r in con.execute("DESCRIBE responses").fetchall())
        stored_key = "r.respondent_id || chr(31) || " + ("coalesce(r.event, '')" if has_event else "''")
    con.register("incoming_ids", pd.DataFrame({"k": keys[real].dropna().unique()}))
    try:
        stored = con.execute(
            f"""SELECT {stored_key} AS k, min(r.respondent_id) AS respondent_id, min(r.import_id) AS import_id
               FROM responses r JOIN imports i USING (import_id)
               WHERE i.instrument = ? AND coalesce(r.wave, '') = ?
                 AND {stored_key} IN (SELECT k FROM incoming_ids)
               GROUP BY 1""", [instrument_id, wave]).df()
    finally:
        con.unregister("incoming_ids")
    if stored.empty:
        return None
    dup = (keys.isin(stored["k"]) & real).to_numpy()
    imports = ", ".join(str(i) for i in sorted(stored["import_id"].unique())[:10])
    shown = ", ".join(stored["respondent_id"].head(5))
    note = pd.DataFrame([{
        "row": None, "respondent_id": None, "item": "respondent_id", "value": None,
        "type": "already-stored", "severity": "warning",
        "message": (f"{int(dup.sum())} of {len(data)} responses are already in the study "
                    f"(import {imports}; e.g. {shown}): an export that repeats earlier submissions; "
                    "the stored answers are kept, these are not added again")}])
    return ~dup, note


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()[0][0])


def _append(con, table: str, frame: pd.DataFrame) -> None:
    """Append by column name, adding columns the table does not have yet."""
    con.register("incoming", frame)
    try:
        if not _has_table(con, table):
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM incoming")
            return
        have = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
        types = {r[0]: r[1] for r in con.execute("DESCRIBE incoming").fetchall()}
        for col in frame.columns:
            if col not in have:
                con.execute(f'ALTER TABLE {table} ADD COLUMN "{col}" {types[col]}')
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
    finally:
        con.unregister("incoming")


def _missing(path: Path):
    from .validate import ValidationIssue

    return ValidationIssue(type="file-not-found", message=f"{path}: no such file")


def _changed(path: Path):
    from .validate import ValidationIssue

    return ValidationIssue(type="unreadable", message=f"{path.name}: the file changed while it was being copied")
