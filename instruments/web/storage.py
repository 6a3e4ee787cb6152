"""Where the web survey keeps drafts and submitted responses.

SQLite (one file, WAL journal, ``synchronous=FULL``) is the embedded default;
any SQLAlchemy URL (``postgresql+psycopg://user@host/db``) selects another
server. Every statement goes through SQLAlchemy Core with bound parameters.

Three tables:

``web_drafts``     one row per respondent session, keyed by the sha256 of the
                   session id: answers so far, the page reached, the language,
                   per-page seconds, and the sha256 of the draft's live resume
                   token (a separate secret, never the session id). Only hashes
                   are stored, so a copy of the database can neither resume a
                   survey nor act as a respondent.
``web_responses``  one row per submission. ``session_hash`` is unique (a
                   retried submit returns the first acknowledgement instead of a
                   second row) and so is ``token_hash`` (one response per
                   personal token, whatever the race).
``web_settings``   the signing secret, created on first start, so CSRF and
                   page tokens survive a restart.
``web_withdrawals`` the audit record of each withdrawal: reference code, when the
                   response was submitted and withdrawn, and how (web page or
                   command line). The response's answers are erased.

Drafts not touched for ``draft_days`` (default 30) count as gone and are
purged: abandoned answers are not kept indefinitely.

Nothing identifies the device: no IP address, no user agent.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import json
import logging
import queue
import re
import secrets
import threading
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text, create_engine, delete,
                        event, func, insert, inspect, select, text, update)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

__all__ = ["Storage", "StorageError", "redact_url", "TokenUsed", "sha256_hex", "utc_now", "days_ago"]

metadata = MetaData()
log = logging.getLogger(__name__)

settings_table = Table(
    "web_settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

drafts_table = Table(
    "web_drafts", metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("instrument_id", String(64), nullable=False),
    Column("instrument_version", String(32), nullable=False),
    Column("language", String(16), nullable=False),
    Column("token_hash", String(64)),
    Column("answers", Text, nullable=False, default="{}"),
    Column("page", Integer, nullable=False, default=0),
    Column("timings", Text, nullable=False, default="{}"),
    Column("started_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("submitted", Boolean, nullable=False, default=False),
    Column("resume_hash", String(64)),  # sha256 of the one live resume token; NULL once used or submitted
)
resume_index = Index("ix_web_drafts_resume_hash", drafts_table.c.resume_hash, unique=True)

responses_table = Table(
    "web_responses", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("response_id", String(32), nullable=False, unique=True),
    Column("session_hash", String(64), nullable=False, unique=True),
    Column("token_hash", String(64), unique=True),
    Column("instrument_id", String(64), nullable=False),
    Column("instrument_version", String(32), nullable=False),
    Column("language", String(16), nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("ended_at", String(40), nullable=False),
    Column("duration_s", Float),
    Column("timings", Text, nullable=False),
    Column("answers", Text, nullable=False),
    Column("attention_failed", Integer, nullable=False, default=0),
)

withdrawals_table = Table(
    "web_withdrawals", metadata,
    Column("response_id", String(32), primary_key=True),
    Column("instrument_id", String(64), nullable=False),
    Column("instrument_version", String(32), nullable=False),
    Column("submitted_at", String(40), nullable=False),
    Column("withdrawn_at", String(40), nullable=False),
    Column("channel", String(16), nullable=False),
)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def days_ago(days: float) -> str:
    """The UTC time ``days`` ago, in the format of :func:`utc_now` (so strings compare as times)."""
    t = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=days)
    return t.isoformat(timespec="milliseconds")


class TokenUsed(Exception):
    """The personal token already has a submitted response."""


class StorageError(Exception):
    """The store cannot be written (read-only file system, full disk, no permission, server down)."""


def _sqlite_engine(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 60, "check_same_thread": False},
                           pool_size=8, max_overflow=8)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_con, _record):
        dbapi_con.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_con.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # the WAL is fsynced at every commit
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # writers take the lock up front (no deadlock when two readers both try to
        # upgrade); readers never wait for writers in WAL mode
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("immediate") else "BEGIN")

    return engine


class _Writer:
    """One thread does every write, many at a time: group commit.

    Requests queue up while a commit is being made; the thread then runs all of
    them in one transaction (each in its own savepoint, so one failure does not
    undo the others) and commits once. With ``synchronous=FULL`` one fsync then
    covers a whole batch of submissions, so throughput grows with the number of
    respondents instead of being one fsync per request. A caller's future is
    resolved only after the commit: an acknowledgement means durable.
    """

    def __init__(self, storage: "Storage", max_batch: int = 256):
        self.storage, self.max_batch = storage, max_batch
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="survey-writer", daemon=True)
        self.thread.start()

    def call(self, fn, *, durable: bool) -> Future:
        fut: Future = Future()
        self.queue.put((fn, durable, fut))
        return fut

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(10)

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < self.max_batch:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.queue.put(None)
                    break
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch) -> None:
        results: list[tuple[bool, Any]] = []
        try:
            with self.storage._transaction(durable=any(d for _, d, _ in batch)) as con:
                for fn, _, _ in batch:
                    sp = con.begin_nested()
                    try:
                        value = fn(con)
                        sp.commit()
                        results.append((True, value))
                    except Exception as exc:  # this request only (e.g. a used token)
                        try:
                            sp.rollback()
                        except Exception:  # the database undid the whole transaction (SQLite on a full disk)
                            raise exc from None
                        results.append((False, exc))
        except Exception as exc:  # the commit itself failed: nobody is acknowledged
            for _, _, fut in batch:
                fut.set_exception(exc)
            return
        for (ok, value), (_, _, fut) in zip(results, batch):
            fut.set_result(value) if ok else fut.set_exception(value)


class Storage:
    """Drafts and responses of one instrument in SQLite (default) or PostgreSQL.

    Reads run where they are called; writes go through one writer thread
    (:class:`_Writer`). The ``*_async`` methods await the writer without
    blocking an event loop.
    """

    def __init__(self, database_url: str | None = None, *, path: str | Path | None = None):
        if database_url:
            self.url = database_url
            try:
                self.engine = create_engine(database_url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            except (SQLAlchemyError, ValueError, TypeError, ImportError) as exc:  # not a URL, an unknown driver
                raise StorageError(f"{redact_url(database_url)} is not a usable database URL "
                                   f"(e.g. postgresql://user@host:5432/survey): {_reason(exc)}") from None
        else:
            self.path = Path(path or "responses.sqlite")
            self.url = f"sqlite:///{self.path}"
            self.engine = _sqlite_engine(self.path)
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:  # the server is down, refuses us, or the file cannot be opened
            self.engine.dispose()
            raise StorageError(f"cannot open the response store {redact_url(self.url)}: {_reason(exc)}") from None
        self._upgrade_schema()
        self._writer = _Writer(self)

    def _upgrade_schema(self) -> None:
        """Give a store made by an older version the resume-token column (its old links, which
        were session ids, stop working; the drafts stay with their browsers' cookies)."""
        def has_column() -> bool:
            return "resume_hash" in {c["name"] for c in inspect(self.engine).get_columns("web_drafts")}

        try:
            if not has_column():
                with self.engine.begin() as con:
                    con.execute(text("ALTER TABLE web_drafts ADD COLUMN resume_hash VARCHAR(64)"))
            resume_index.create(self.engine, checkfirst=True)
        except SQLAlchemyError as exc:  # another process upgraded it first, or the store is read-only
            if not has_column():  # reading responses still works; saving drafts will say why it fails
                log.warning("could not add the resume-token column to web_drafts: %s", _reason(exc))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self._writer.stop()
        self.engine.dispose()

    @contextmanager
    def _transaction(self, *, durable: bool = True):
        """A write transaction, committed on leaving the block (used by the writer thread).

        SQLite: a batch holding a submission is committed with ``synchronous=FULL``
        (the WAL is fsynced before anyone is acknowledged). Batches of draft saves
        only use ``NORMAL``: they survive a crash of the server process (the tests
        kill it with SIGKILL); only the last drafts could be lost to a power cut.
        """
        if self.dialect != "sqlite":
            with self.engine.begin() as con:
                yield con
            return
        with self.engine.connect() as con:
            con.connection.dbapi_connection.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            con.info["immediate"] = True
            try:
                with con.begin():
                    yield con
            finally:
                con.info.pop("immediate", None)

    # --- settings ------------------------------------------------------------
    def secret(self) -> bytes:
        """The signing key, made once and kept in the database."""
        def make(con):
            row = con.execute(select(settings_table.c.value).where(settings_table.c.key == "secret")).first()
            if row is None:
                con.execute(insert(settings_table).values(key="secret", value=secrets.token_hex(32)))

        try:
            self._writer.call(make, durable=True).result()
        except IntegrityError:  # another server process made it first
            pass
        with self.engine.connect() as con:
            row = con.execute(select(settings_table.c.value).where(settings_table.c.key == "secret")).first()
        return bytes.fromhex(row[0])

    # --- drafts ----------------------------------------------------------------
    def draft(self, session_hash: str, *, newer_than: str | None = None) -> dict[str, Any] | None:
        """The draft of a session; None when there is none or it was last saved before ``newer_than``."""
        with self.engine.connect() as con:
            row = con.execute(select(drafts_table).where(drafts_table.c.session_hash == session_hash)).mappings().first()
        if row is None or (newer_than is not None and row["updated_at"] < newer_than):
            return None
        out = dict(row)
        out["answers"] = json.loads(out["answers"])
        out["timings"] = json.loads(out["timings"])
        return out

    def _save_job(self, session_hash: str, *, instrument_id: str, instrument_version: str, language: str,
                  answers: dict, page: int, timings: dict, started_at: str | None = None,
                  token_hash: str | None = None):
        values = {"instrument_id": instrument_id, "instrument_version": instrument_version,
                  "language": language, "answers": json.dumps(answers), "page": page,
                  "timings": json.dumps(timings), "updated_at": utc_now()}

        def job(con):
            done = con.execute(update(drafts_table)
                               .where(drafts_table.c.session_hash == session_hash)
                               .where(drafts_table.c.submitted.is_(False))
                               .values(**values)).rowcount
            if not done:
                con.execute(insert(drafts_table).values(
                    session_hash=session_hash, token_hash=token_hash, submitted=False,
                    started_at=started_at or values["updated_at"], **values))
        return job

    def save_draft(self, session_hash: str, **fields) -> None:
        """Create or update a draft (committed before returning)."""
        self._writer.call(self._save_job(session_hash, **fields), durable=False).result()

    async def save_draft_async(self, session_hash: str, **fields) -> None:
        await asyncio.wrap_future(self._writer.call(self._save_job(session_hash, **fields), durable=False))

    def purge_drafts(self, older_than: str, *, wait: bool = True) -> int | None:
        """Delete drafts last saved before ``older_than`` (ISO UTC); how many went (None if not waited for)."""
        def job(con):
            return con.execute(delete(drafts_table).where(drafts_table.c.updated_at < older_than)).rowcount
        fut = self._writer.call(job, durable=False)
        return fut.result() if wait else None

    def count_drafts_since(self, since: str) -> int:
        """Drafts started at or after ``since`` (ISO UTC)."""
        with self.engine.connect() as con:
            return int(con.execute(select(func.count()).select_from(drafts_table)
                                   .where(drafts_table.c.started_at >= since)).scalar_one())

    def check_writable(self) -> None:
        """Commit one durable write, or raise :class:`StorageError` saying why it failed."""
        def job(con):
            stamp = {"key": "write_check", "value": utc_now()}
            if not con.execute(update(settings_table).where(settings_table.c.key == "write_check")
                               .values(value=stamp["value"])).rowcount:
                con.execute(insert(settings_table).values(**stamp))
        try:
            self._writer.call(job, durable=True).result(timeout=30)
        except Exception as exc:  # noqa: BLE001 - any failure means: not writable
            raise StorageError(_reason(exc)) from None

    async def issue_resume_token_async(self, session_hash: str, token_hash: str) -> bool:
        """Bind a new resume token to a session's unsubmitted draft, replacing any earlier one
        (one live link per draft); False if there is no such draft."""
        def job(con):
            return con.execute(update(drafts_table)
                               .where(drafts_table.c.session_hash == session_hash)
                               .where(drafts_table.c.submitted.is_(False))
                               .values(resume_hash=token_hash)).rowcount == 1
        return await asyncio.wrap_future(self._writer.call(job, durable=False))

    def draft_for_resume(self, token_hash: str, *, newer_than: str | None = None) -> dict[str, Any] | None:
        """The unsubmitted draft a resume token opens (None if used, replaced, submitted or expired)."""
        with self.engine.connect() as con:
            row = con.execute(select(drafts_table.c.session_hash)
                              .where(drafts_table.c.resume_hash == token_hash)
                              .where(drafts_table.c.submitted.is_(False))).first()
        return self.draft(row[0], newer_than=newer_than) if row else None

    async def redeem_resume_token_async(self, token_hash: str, new_session_hash: str, *,
                                        newer_than: str | None = None) -> bool:
        """Use a resume token up: its draft moves to a new session id, so the link and the
        draft's previous session id both stop working. False if the token opens nothing."""
        def job(con):
            q = (update(drafts_table)
                 .where(drafts_table.c.resume_hash == token_hash)
                 .where(drafts_table.c.submitted.is_(False)))
            if newer_than is not None:
                q = q.where(drafts_table.c.updated_at >= newer_than)
            return con.execute(q.values(session_hash=new_session_hash, resume_hash=None,
                                        updated_at=utc_now())).rowcount == 1
        return await asyncio.wrap_future(self._writer.call(job, durable=False))

    # --- responses ---------------------------------------------------------------
    def token_used(self, token_hash: str) -> bool:
        with self.engine.connect() as con:
            return con.execute(select(responses_table.c.seq)
                               .where(responses_table.c.token_hash == token_hash)).first() is not None

    def response_for_session(self, session_hash: str) -> dict | None:
        with self.engine.connect() as con:
            row = con.execute(select(responses_table)
                              .where(responses_table.c.session_hash == session_hash)).mappings().first()
        return dict(row) if row else None

    def _submit_job(self, session_hash: str, *, instrument_id: str, instrument_version: str, language: str,
                    answers: dict, timings: dict, started_at: str, token_hash: str | None,
                    attention_failed: int = 0):
        response_id = secrets.token_hex(8)

        def job(con):
            ended = utc_now()
            duration = (_dt.datetime.fromisoformat(ended) - _dt.datetime.fromisoformat(started_at)).total_seconds()
            con.execute(insert(responses_table).values(
                response_id=response_id, session_hash=session_hash, token_hash=token_hash,
                instrument_id=instrument_id, instrument_version=instrument_version, language=language,
                started_at=started_at, ended_at=ended, duration_s=duration,
                timings=json.dumps(timings), answers=json.dumps(answers),
                attention_failed=attention_failed))
            # the draft's answers now live in the response; keep no second copy
            con.execute(update(drafts_table).where(drafts_table.c.session_hash == session_hash)
                        .values(submitted=True, answers="{}", resume_hash=None, updated_at=ended))
            return response_id
        return job

    def _resolve_conflict(self, session_hash: str, token_hash: str | None) -> str:
        earlier = self.response_for_session(session_hash)
        if earlier is not None:
            return earlier["response_id"]
        raise TokenUsed(token_hash)

    def submit(self, session_hash: str, **fields) -> str:
        """Store a response and close its draft in one transaction; the response id.

        Returns only after the commit (fsynced), so an acknowledged submission is
        durable. Submitting a session twice returns the first response's id; a
        personal token that already has a response raises :class:`TokenUsed`.
        """
        try:
            return self._writer.call(self._submit_job(session_hash, **fields), durable=True).result()
        except IntegrityError:
            return self._resolve_conflict(session_hash, fields.get("token_hash"))

    async def submit_async(self, session_hash: str, **fields) -> str:
        try:
            return await asyncio.wrap_future(self._writer.call(self._submit_job(session_hash, **fields), durable=True))
        except IntegrityError:
            return self._resolve_conflict(session_hash, fields.get("token_hash"))

    # --- withdrawal ----------------------------------------------------------------
    def withdraw(self, response_id: str, *, channel: str) -> bool:
        """Erase a response's answers and keep an audit record; False if no such response.

        Withdrawing twice is harmless (True, one record). The row itself stays,
        emptied, so that its session and personal token stay used.
        """
        return self._writer.call(self._withdraw_job(response_id, channel), durable=True).result()

    async def withdraw_async(self, response_id: str, *, channel: str) -> bool:
        return await asyncio.wrap_future(self._writer.call(self._withdraw_job(response_id, channel), durable=True))

    @staticmethod
    def _withdraw_job(response_id: str, channel: str):
        def job(con):
            row = con.execute(select(responses_table).where(responses_table.c.response_id == response_id)).mappings().first()
            if row is None:
                return False
            con.execute(update(responses_table).where(responses_table.c.response_id == response_id)
                        .values(answers="{}", timings="{}", attention_failed=0))
            if con.execute(select(withdrawals_table.c.response_id)
                           .where(withdrawals_table.c.response_id == response_id)).first() is None:
                con.execute(insert(withdrawals_table).values(
                    response_id=response_id, instrument_id=row["instrument_id"],
                    instrument_version=row["instrument_version"], submitted_at=row["ended_at"],
                    withdrawn_at=utc_now(), channel=channel))
            return True
        return job

    def withdrawals(self) -> pd.DataFrame:
        """The audit record: one row per withdrawn response (no answers)."""
        with self.engine.connect() as con:
            rows = con.execute(select(withdrawals_table).order_by(withdrawals_table.c.withdrawn_at)).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=[c.name for c in withdrawals_table.columns])

    def _kept(self):
        """Submitted responses that were not withdrawn."""
        return responses_table.c.response_id.not_in(select(withdrawals_table.c.response_id))

    def count(self) -> int:
        with self.engine.connect() as con:
            return int(con.execute(select(func.count()).select_from(responses_table).where(self._kept())).scalar_one())

    def counts(self) -> pd.DataFrame:
        """Responses per instrument version and language (with failed attention checks)."""
        t = responses_table
        with self.engine.connect() as con:
            rows = con.execute(
                select(t.c.instrument_version, t.c.language, func.count().label("n"),
                       func.sum(t.c.attention_failed).label("attention_failed"))
                .where(self._kept())
                .group_by(t.c.instrument_version, t.c.language)
                .order_by(t.c.instrument_version, t.c.language)).all()
        return pd.DataFrame([tuple(r) for r in rows],
                            columns=["instrument_version", "language", "n", "attention_failed"])

    def drafts_open(self) -> int:
        with self.engine.connect() as con:
            return int(con.execute(select(func.count()).select_from(drafts_table)
                                   .where(drafts_table.c.submitted.is_(False))).scalar_one())

    def responses(self, *, limit: int | None = None, newest_first: bool = False) -> list[dict[str, Any]]:
        """Submitted responses as dicts (answers and timings decoded)."""
        t = responses_table
        q = select(t).where(self._kept()).order_by(t.c.seq.desc() if newest_first else t.c.seq)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as con:
            rows = [dict(r) for r in con.execute(q).mappings()]
        for r in rows:
            r["answers"] = json.loads(r["answers"])
            r["timings"] = json.loads(r["timings"])
        return rows


def redact_url(url: str) -> str:
    """A database URL without its password (for messages)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", str(url))


def _reason(exc: BaseException) -> str:
    """What the database said, without SQLAlchemy's statement and link."""
    orig = getattr(exc, "orig", None) or exc
    return str(orig).splitlines()[0] if str(orig) else type(orig).__name__
