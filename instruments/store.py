"""A study folder: raw files kept byte for byte, responses in one DuckDB file.

::

    study/
      study.yaml            (the study's settings; not written here)
      data/raw/             every imported file, copied unchanged, read-only
      data/raw/manifest.json  name, sha256, size, format, rows, time of each import
      study.duckdb          tables `responses` (all waves and form versions), `imports`
                            (the record of each import: the manifest's source of truth)
                            and `issues` (each import's validation report)
      .store.lock           taken while the store is written (imports wait their turn)

Importing is idempotent: a file whose sha256 is already recorded adds nothing.
Platform exports are cumulative (this week's Kobo export repeats last week's
submissions): a response whose respondent id is already stored for the same
instrument and wave is not added again, and one warning says how many.

An acknowledged import is never lost or doubled, whenever the process dies
(the guarantee ODK Central gives for a submission):

1. the raw copy is written to a temporary file, fsynced, checked against the
   source's sha256, made read-only and renamed into ``data/raw`` (the folder
   fsynced too); a copy with the same sha256 left by an import that died
   before recording it is reused, never duplicated;
2. responses, validation issues and the import record (the manifest's row)
   change in one database transaction: all of them or none;
3. ``manifest.json`` is then rewritten from the database atomically (temporary
   file, fsync, rename); a manifest left behind by a crash is rebuilt from
   the database by the next import.

The whole import holds an exclusive lock on the study (``.store.lock``):
a second import waits for it, at most :attr:`Study.LOCK_TIMEOUT` seconds,
then stops with a :class:`StoreBusy` error that says who holds it. Readers
take the lock shared.

Test hook: with the environment variable ``RESILIENCE_KILL_AT`` set to one of
the stages below, the importing process kills itself (SIGKILL) there, so the
tests can show that running the import again stores every response once:
``raw-written`` (temporary copy complete, not yet renamed), ``raw-copied``,
``responses-inserted``, ``issues-inserted``, ``import-recorded`` (the
transaction not yet committed), ``committed`` (before the manifest is
written), ``manifest-written``.

No identifier or value from a data file ever becomes SQL text: values are
bound parameters or registered data frames, and columns that are neither
items nor metadata (a header is untrusted input) are kept together in one
column ``_unknown_columns``, a JSON object {original header: value} per
response. Responses from different form versions share one table: new item
columns are added as the instrument grows, older rows hold NULL there.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import signal
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from instruments.atomic import atomic_write, fsync_dir
from instruments.ingest import META_COLUMNS, ImportError_, ImportResult, file_sha256, import_responses
from instruments.validate import ValidationIssue, ValidationReport, validate

__all__ = ["Study", "StoreResult", "StoreBusy", "MANIFEST_NAME", "DB_NAME", "LOCK_NAME",
           "UNKNOWN_COLUMNS", "KILL_ENV", "KILL_STAGES"]

MANIFEST_NAME = "manifest.json"
DB_NAME = "study.duckdb"
LOCK_NAME = ".store.lock"
UNKNOWN_COLUMNS = "_unknown_columns"
KILL_ENV = "RESILIENCE_KILL_AT"
KILL_STAGES = ("raw-written", "raw-copied", "responses-inserted", "issues-inserted",
               "import-recorded", "committed", "manifest-written")
_TEMP_PREFIXES = (".incoming.", ".manifest.")


def _stage(name: str) -> None:
    """The kill-point test hook (see the module docs)."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    if wanted not in KILL_STAGES:
        raise ValueError(f"{KILL_ENV}={wanted!r} is not a stage of an import; "
                         f"choose one of {', '.join(KILL_STAGES)}")
    if wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)


class StoreBusy(ImportError_):
    """Another process kept the study's store locked for longer than we waited."""


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


# The import record; its rows are the manifest (columns added over time reach
# older stores through the constant ALTER TABLE ... IF NOT EXISTS in Study._store).
_IMPORTS_TABLE = """CREATE TABLE IF NOT EXISTS imports (
    import_id INTEGER, name VARCHAR, sha256 VARCHAR, format VARCHAR, n_rows BIGINT,
    n_errors BIGINT, n_warnings BIGINT, instrument VARCHAR, instrument_version VARCHAR,
    wave VARCHAR, imported_at VARCHAR, original_name VARCHAR, bytes BIGINT)"""
# the audit record of withdrawals: who (the reference code), when, how many rows went; never answers
_WITHDRAWALS_TABLE = """CREATE TABLE IF NOT EXISTS withdrawals (
    respondent_id VARCHAR, withdrawn_at VARCHAR, n_removed BIGINT, channel VARCHAR)"""
_MANIFEST_FIELDS = ("name", "original_name", "sha256", "bytes", "format", "n_rows", "import_id",
                    "instrument", "instrument_version", "wave", "imported_at")


class Study:
    """A study folder (created on first use)."""

    LOCK_TIMEOUT = 120.0  # seconds an import waits for another one to finish

    def __init__(self, path: str | Path, *, lock_timeout: float | None = None):
        self.path = Path(path)
        self.raw_dir = self.path / "data" / "raw"
        self.manifest_path = self.raw_dir / MANIFEST_NAME
        self.db_path = self.path / DB_NAME
        self.lock_path = self.path / LOCK_NAME
        self.lock_timeout = lock_timeout

    # --- the lock ----------------------------------------------------------
    @contextmanager
    def lock(self, *, shared: bool = False, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the study's lock (exclusive to write the store, shared to read it).

        Waits at most ``lock_timeout`` (default :attr:`LOCK_TIMEOUT`) seconds,
        then raises :class:`StoreBusy`; ``on_wait(holder)`` hears once that it
        waits. The operating system releases the lock of a process that dies,
        so a killed import never leaves the study locked.
        """
        timeout = self.LOCK_TIMEOUT if self.lock_timeout is None else self.lock_timeout
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            if not shared:
                raise
            yield  # a read-only study folder: nobody can be writing it
            return
        try:
            op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, op)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreBusy(self._busy(timeout)) from None
                    if on_wait is not None:
                        on_wait(self._holder())
                        on_wait = None
                    time.sleep(0.05)
            if not shared:  # who holds it, for the message of anyone who waits
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} since {_now()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _holder(self) -> str:
        """Who holds the lock, as its holder wrote it ("pid 123 since ...")."""
        try:
            return self.lock_path.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def _busy(self, waited: float) -> ValidationIssue:
        holder = self._holder()
        return ValidationIssue(
            type="store-busy", severity="error",
            message=(f"{self.path}: another import into this study is running"
                     + (f" ({holder})" if holder else "")
                     + f"; waited {waited:g} s. Run the command again when it has finished"))

    # --- manifest ----------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """Every import's raw file: name, sha256, size, format, rows, time."""
        if self.db_path.is_file():
            with self.lock(shared=True), self.connect(read_only=True) as con:
                if _has_table(con, "imports"):
                    return self._manifest_from(con)
        if not self.manifest_path.is_file():
            return {"files": []}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def _manifest_from(self, con) -> dict[str, Any]:
        """The manifest as the database records it (older stores: sizes and original
        names the database lacks come from manifest.json)."""
        rows = con.execute("SELECT * FROM imports ORDER BY import_id").df()
        old = {}
        if self.manifest_path.is_file():
            try:
                old = {f["sha256"]: f for f in json.loads(self.manifest_path.read_text(encoding="utf-8"))["files"]}
            except (OSError, ValueError, KeyError, TypeError):
                old = {}
        files = []
        for rec in rows.to_dict("records"):
            entry = {}
            for key in _MANIFEST_FIELDS:
                value = rec.get(key)
                if value is None or (not isinstance(value, str) and pd.isna(value)):
                    value = old.get(rec["sha256"], {}).get(key)
                if key == "original_name" and value is None:
                    value = rec["name"]
                if key == "bytes" and value is None:
                    p = self.raw_dir / rec["name"]
                    value = p.stat().st_size if p.is_file() else None
                entry[key] = int(value) if key in ("bytes", "n_rows", "import_id") and value is not None else value
            files.append(entry)
        return {"files": files}

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, ensure_ascii=False)
        atomic_write(self.manifest_path, lambda tmp: tmp.write_text(text, encoding="utf-8"),
                     durable=True, prefix=".manifest.")

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
        """A DuckDB connection; a file DuckDB cannot open is an :class:`ImportError_`."""
        import duckdb

        self.path.mkdir(parents=True, exist_ok=True)
        timeout = self.LOCK_TIMEOUT if self.lock_timeout is None else self.lock_timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                return duckdb.connect(str(self.db_path), read_only=read_only)
            except duckdb.Error as exc:
                reason = str(exc).splitlines()[0]
                if "lock" not in reason.lower():
                    raise ImportError_(ValidationIssue(
                        type="store-unreadable", severity="error",
                        message=f"{self.db_path}: cannot open the study's store ({reason})")) from None
                # a program that does not take .store.lock (a DuckDB shell) has the file open
                if time.monotonic() >= deadline:
                    raise StoreBusy(ValidationIssue(
                        type="store-busy", severity="error",
                        message=(f"{self.db_path}: in use by another program ({reason}); waited {timeout:g} s. "
                                 "Close it and run the command again"))) from None
                time.sleep(0.1)

    def _read(self, table: str, sql: str, params=()) -> pd.DataFrame:
        if not self.db_path.is_file():
            return pd.DataFrame()
        with self.lock(shared=True), self.connect(read_only=True) as con:
            if not _has_table(con, table):
                return pd.DataFrame()
            return con.execute(sql, params).df()

    def responses(self, *, wave: str | None = None, import_id: int | None = None) -> pd.DataFrame:
        """All stored responses, or those of one wave and/or import.

        Columns that were neither items nor metadata come back under their
        original headers too (as text; a header that names a column of the
        store stays only in ``_unknown_columns``).
        """
        rows = self._read("responses", """SELECT * FROM responses
            WHERE ($1 IS NULL OR wave = $1) AND ($2 IS NULL OR import_id = $2)
            ORDER BY import_id, source_row""", [wave, import_id])
        return _unpack_unknown(rows)

    def issues(self) -> pd.DataFrame:
        """Every validation problem of every import (column ``import_id`` says which)."""
        return self._read("issues", "SELECT * FROM issues ORDER BY import_id, row")

    def imports(self) -> pd.DataFrame:
        return self._read("imports", "SELECT * FROM imports ORDER BY import_id")

    # --- withdrawal --------------------------------------------------------
    def withdraw(self, respondent_id: str, *, channel: str = "cli") -> int:
        """Delete a respondent's responses and validation issues; keep an audit record.

        The record (table ``withdrawals``: respondent id, time, rows removed,
        channel) holds no answers, and later imports leave this respondent out.
        Returns the number of responses removed (0 when none was stored yet).
        """
        with self.lock(), self.connect() as con:
            con.begin()
            try:
                con.execute(_WITHDRAWALS_TABLE)
                n = 0
                if _has_table(con, "responses"):
                    n = con.execute("SELECT count(*) FROM responses WHERE CAST(respondent_id AS VARCHAR) = ?",
                                    [respondent_id]).fetchall()[0][0]
                    con.execute("DELETE FROM responses WHERE CAST(respondent_id AS VARCHAR) = ?", [respondent_id])
                if _has_table(con, "issues"):  # issues quote values: they go too
                    con.execute("DELETE FROM issues WHERE CAST(respondent_id AS VARCHAR) = ?", [respondent_id])
                con.execute("INSERT INTO withdrawals VALUES (?, ?, ?, ?)", [respondent_id, _now(), n, channel])
                con.commit()
            except BaseException:
                con.rollback()
                raise
        return int(n)

    def withdrawals(self) -> pd.DataFrame:
        """The audit record of withdrawals (no answers)."""
        return self._read("withdrawals", "SELECT * FROM withdrawals ORDER BY withdrawn_at")

    def withdrawn_ids(self) -> set[str]:
        """Respondent ids whose answers were withdrawn (left out of every later import)."""
        w = self.withdrawals()
        return set(w["respondent_id"].astype(str)) if len(w) else set()

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
        _stage("start")  # (not a kill point: a misspelt RESILIENCE_KILL_AT is refused before any write)
        if progress is not None:
            progress("checking sha256, copying to data/raw", 0, None)
        sha = file_sha256(source)

        def waiting(holder: str) -> None:
            if progress is not None:
                progress(f"waiting for another import into {self.path.name} ({holder or 'running'})", 0, None)

        with self.lock(on_wait=waiting):
            self._tidy()
            recorded = self._recorded(sha)
            if recorded is not None:
                return StoreResult(False, sha, str(self.raw_dir / recorded["name"]), 0, recorded.get("format"),
                                   reason=f"already imported as {recorded['name']} on {recorded['imported_at']}")
            raw = self._keep_raw(source, sha)
            try:
                stored = self._store(raw, source, sha, instrument, format=format, mapping=mapping, wave=wave,
                                     progress=progress, **read_options)
            except BaseException:
                raw.unlink(missing_ok=True)  # our unrecorded copy; the user's file is untouched
                raise
            fsync_dir(self.path)  # a new study.duckdb (and its WAL) survives a power cut too
            _stage("committed")
            with self.connect(read_only=False) as con:
                self._write_manifest(self._manifest_from(con))
            _stage("manifest-written")
            return stored

    def _store(self, raw: Path, source: Path, sha: str, instrument, *, format, mapping, wave,  # noqa: A002
               progress, **read_options) -> StoreResult:
        """Read ``raw`` and commit its responses, issues and import record in one transaction."""
        result = import_responses(raw, instrument, format=format, mapping=mapping,
                                  progress=progress, **read_options)
        if progress is not None:
            progress("validating", 0, None)
        report = validate(result, instrument, source=source.name)
        if progress is not None:
            progress("storing", 0, None)
        import duckdb

        data = _pack_unknown(result.data, instrument)
        with self.connect() as con:
            con.begin()
            try:
                con.execute(_IMPORTS_TABLE)
                for ddl in ("ALTER TABLE imports ADD COLUMN IF NOT EXISTS original_name VARCHAR",
                            "ALTER TABLE imports ADD COLUMN IF NOT EXISTS bytes BIGINT"):
                    con.execute(ddl)
                import_id = con.execute("SELECT coalesce(max(import_id), 0) + 1 FROM imports").fetchall()[0][0]
                data, report = _without_withdrawn(con, data, report)
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
                _stage("responses-inserted")
                if len(report.issues):  # the validation report is kept as data too
                    issues = report.issues.astype(object).where(report.issues.notna(), None)
                    issues.insert(0, "import_id", import_id)
                    _append(con, "issues", issues.astype({"row": "Int64"}))
                _stage("issues-inserted")
                con.execute("""INSERT INTO imports (import_id, name, sha256, format, n_rows, n_errors,
                                   n_warnings, instrument, instrument_version, wave, imported_at,
                                   original_name, bytes)
                               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                            [import_id, raw.name, sha, result.format, len(data), report.n_errors,
                             report.n_warnings, instrument.id, instrument.version, wave or "", _now(),
                             source.name, raw.stat().st_size])
                _stage("import-recorded")
                con.commit()
            except BaseException as exc:
                with contextlib.suppress(Exception):  # a failed commit has rolled back already
                    con.rollback()
                if isinstance(exc, duckdb.Error):  # a full disk, a damaged store ...
                    raise ImportError_(ValidationIssue(
                        type="store-write-failed", severity="error",
                        message=(f"{self.db_path}: the import could not be stored and nothing of it was "
                                 f"kept ({str(exc).splitlines()[0]})"))) from None
                raise
        return StoreResult(True, sha, str(raw), len(data), result.format, report, result)

    def _recorded(self, sha256: str) -> dict | None:
        """The import record of a file with this sha256 (the database is the truth)."""
        if not self.db_path.is_file():
            return None
        with self.connect(read_only=True) as con:
            if not _has_table(con, "imports"):
                return None
            rows = con.execute("SELECT name, format, imported_at FROM imports WHERE sha256 = ? "
                               "ORDER BY import_id LIMIT 1", [sha256]).df()
        return rows.iloc[0].to_dict() if len(rows) else None

    def _tidy(self) -> None:
        """Clear what a killed import left (under the lock, nobody else is writing):
        temporary files, and a manifest.json behind the database."""
        if not self.raw_dir.is_dir():
            return
        for p in self.raw_dir.iterdir():
            if p.name.startswith(_TEMP_PREFIXES):
                p.unlink(missing_ok=True)
        if not self.db_path.is_file():
            return
        with self.connect(read_only=True) as con:
            if not _has_table(con, "imports"):
                return
            truth = self._manifest_from(con)
        try:
            current = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            current = None
        if current != truth:
            self._write_manifest(truth)

    def _keep_raw(self, source: Path, sha: str) -> Path:
        """The raw copy in data/raw: an unrecorded copy with this sha256 (left by an
        import that died) if there is one, else a new one, written durably."""
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        size = source.stat().st_size
        recorded = set()
        if self.db_path.is_file():  # (not self.imports(): its shared lock would wait for ours)
            with self.connect(read_only=True) as con:
                if _has_table(con, "imports"):
                    recorded = {r[0] for r in con.execute("SELECT name FROM imports").fetchall()}
        for p in sorted(self.raw_dir.iterdir()):
            if (p.name != MANIFEST_NAME and not p.name.startswith(".") and p.name not in recorded
                    and p.is_file() and p.stat().st_size == size and file_sha256(p) == sha):
                return p
        target = self.raw_dir / source.name
        if target.exists() or source.name == MANIFEST_NAME or source.name.startswith("."):
            # same name, other content (or a name the store uses): keep both, never overwrite
            target = self.raw_dir / f"{source.stem.lstrip('.') or 'data'}.{sha[:12]}{source.suffix}"

        def copy_checked(tmp: Path) -> None:
            # the bytes copied are the bytes hashed: a file changed since it was read is refused
            digest = hashlib.sha256()
            with open(tmp, "wb") as out, open(source, "rb") as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != sha:
                raise ImportError_(_changed(source))
            _stage("raw-written")

        # durable: the file and the folder's entry fsynced; read-only from now on
        atomic_write(target, copy_checked, durable=True, mode=stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH,
                     prefix=".incoming.")
        _stage("raw-copied")
        return target


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _pack_unknown(data: pd.DataFrame, instrument) -> pd.DataFrame:
    """Columns that are neither items nor metadata, as one JSON column {header: value}.

    A header is untrusted input: it never becomes a column (or SQL) of the store.
    """
    items = {it.id for it in instrument.items}
    multi = re.compile(r"(.+)___-?\d+")

    def trusted(col: str) -> bool:
        m = multi.fullmatch(col)
        return col in items or col in META_COLUMNS or col == "_extra" or bool(m and m.group(1) in items)

    unknown = [c for c in data.columns if not trusted(c)]
    if not unknown:
        return data
    cells = data[unknown].astype("string")
    packed = pd.Series([None] * len(data), index=data.index, dtype=object)
    answered = cells.notna().any(axis=1).to_numpy()
    if answered.any():
        lines = cells[answered].to_json(orient="records", lines=True, force_ascii=False).splitlines()
        packed[answered] = [json.dumps({k: v for k, v in json.loads(ln).items() if v is not None},
                                       ensure_ascii=False) for ln in lines]
    out = data.drop(columns=unknown)
    out[UNKNOWN_COLUMNS] = packed.astype("string")
    return out


# The stored responses whose key (respondent, and event in a longitudinal export) is
# among the incoming ones; one whole statement per kind of key.
_STORED_KEYS = {
    kind: f"""SELECT {key} AS k, min(r.respondent_id) AS respondent_id, min(r.import_id) AS import_id
              FROM responses r JOIN imports i USING (import_id)
              WHERE i.instrument = ? AND coalesce(r.wave, '') = ?
                AND {key} IN (SELECT k FROM incoming_ids)
              GROUP BY 1"""
    for kind, key in {"id": "r.respondent_id",
                      "id and event": "r.respondent_id || chr(31) || coalesce(r.event, '')",
                      "id, no event stored": "r.respondent_id || chr(31)"}.items()
}


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
    keys, sql = ids, _STORED_KEYS["id"]
    if "event" in data:
        keys = ids + "\x1f" + data["event"].astype("string").fillna("")
        has_event = bool(con.execute("SELECT count(*) FROM information_schema.columns "
                                     "WHERE table_name = 'responses' AND column_name = 'event'").fetchall()[0][0])
        sql = _STORED_KEYS["id and event" if has_event else "id, no event stored"]
    con.register("incoming_ids", pd.DataFrame({"k": keys[real].dropna().unique()}))
    try:
        stored = con.execute(sql, [instrument_id, wave]).df()
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


def _without_withdrawn(con, data: pd.DataFrame, report: ValidationReport):
    """Leave out respondents who withdrew (an export made earlier still holds them), with one warning."""
    if "respondent_id" not in data or not _has_table(con, "withdrawals"):
        return data, report
    gone = {r[0] for r in con.execute("SELECT respondent_id FROM withdrawals").fetchall()}
    out = data["respondent_id"].astype("string").isin(gone).fillna(False).to_numpy()
    if not out.any():
        return data, report
    issues = report.issues
    issues = issues[~issues["respondent_id"].astype("string").isin(gone).fillna(False)]
    note = pd.DataFrame([{"row": None, "respondent_id": None, "item": "respondent_id", "value": None,
                          "type": "withdrawn", "severity": "warning",
                          "message": f"{int(out.sum())} of {len(data)} responses were withdrawn by their "
                                     "respondents; they are not stored"}])
    return data[~out], ValidationReport(pd.concat([issues, note], ignore_index=True), source=report.source,
                                        n_rows=report.n_rows)


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()[0][0])


def _unpack_unknown(rows: pd.DataFrame) -> pd.DataFrame:
    """The ``_unknown_columns`` JSON back as columns named by their original headers."""
    if UNKNOWN_COLUMNS not in rows or rows[UNKNOWN_COLUMNS].isna().all():
        return rows
    cells = [json.loads(v) if isinstance(v, str) else {} for v in rows[UNKNOWN_COLUMNS]]
    headers = [h for h in dict.fromkeys(k for c in cells for k in c) if h not in rows.columns]
    extra = pd.DataFrame({h: [c.get(h) for c in cells] for h in headers}, index=rows.index, dtype="string")
    return pd.concat([rows, extra], axis=1)


# The validation report's table has fixed column types: a first import whose issues all lack a
# row id or value must not fix those columns to DuckDB's type NULL (later issues could not be added).
_ISSUES_TABLE = """CREATE TABLE IF NOT EXISTS issues (
    import_id BIGINT, "row" BIGINT, respondent_id VARCHAR, item VARCHAR, value VARCHAR,
    type VARCHAR, severity VARCHAR, message VARCHAR)"""
# a store written before the table was typed: its NULL-typed columns get their type back
_ISSUES_RETYPE = """CREATE OR REPLACE TABLE issues AS SELECT * REPLACE (
    CAST(import_id AS BIGINT) AS import_id, CAST("row" AS BIGINT) AS "row",
    CAST(respondent_id AS VARCHAR) AS respondent_id, CAST(item AS VARCHAR) AS item,
    CAST(value AS VARCHAR) AS value, CAST(type AS VARCHAR) AS type,
    CAST(severity AS VARCHAR) AS severity, CAST(message AS VARCHAR) AS message) FROM issues"""
_NULL_TYPED = ("SELECT count(*) FROM information_schema.columns "
               "WHERE table_name = ? AND data_type IN ('NULL', '\"NULL\"')")

# Whole statements, one per table and purpose: no name is ever spliced into SQL.
_APPEND_SQL = {
    "responses": ("CREATE TABLE responses AS SELECT * FROM incoming",
                  "INSERT INTO responses BY NAME SELECT * FROM incoming",
                  "CREATE OR REPLACE TABLE responses AS "
                  "SELECT * FROM responses UNION ALL BY NAME SELECT * FROM incoming"),
    "issues": ("CREATE TABLE issues AS SELECT * FROM incoming",
               "INSERT INTO issues BY NAME SELECT * FROM incoming",
               "CREATE OR REPLACE TABLE issues AS "
               "SELECT * FROM issues UNION ALL BY NAME SELECT * FROM incoming"),
}


def _append(con, table: str, frame: pd.DataFrame) -> None:
    """Append by column name; new columns (a grown instrument) widen the table."""
    create, insert, widen = _APPEND_SQL[table]
    if table == "issues":
        # text columns as text (a value may be a number in one issue and a word in another)
        frame = frame.copy()
        for col in ("respondent_id", "item", "value", "type", "severity", "message"):
            if col in frame:
                frame[col] = [None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
                              for v in frame[col]]
        con.execute(_ISSUES_TABLE)
        if con.execute(_NULL_TYPED, [table]).fetchall()[0][0]:
            con.execute(_ISSUES_RETYPE)
    con.register("incoming", frame)
    try:
        if not _has_table(con, table):
            con.execute(create)
            return
        have = {r[0].casefold() for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}
        new = [c for c in frame.columns if str(c).casefold() not in have]
        # a column of type NULL (all missing when the table was made) takes the incoming type
        # only when the table is rebuilt from both
        null_typed = con.execute(_NULL_TYPED, [table]).fetchall()[0][0]
        con.execute(widen if new or null_typed else insert)
    finally:
        # after a failed statement the transaction is aborted and unregistering fails too:
        # that follow-up error must not hide the first one
        with contextlib.suppress(Exception):
            con.unregister("incoming")


def _missing(path: Path):
    from instruments.validate import ValidationIssue

    return ValidationIssue(type="file-not-found", message=f"{path}: no such file")


def _changed(path: Path):
    from instruments.validate import ValidationIssue

    return ValidationIssue(type="unreadable", message=f"{path.name}: the file changed while it was being copied")
