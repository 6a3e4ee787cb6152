"""Withdrawal by reference code, across a study folder's two stores.

A respondent quotes the reference code shown at the end of the survey (the
consent text promises this). Withdrawing it

* erases the answers in the web survey's store (``DIR/web/responses.sqlite``)
  and keeps an audit record there (``web_withdrawals``: code, when submitted,
  when withdrawn, how), and
* deletes the responses and their validation issues from the study store
  (``DIR/study.duckdb``), with an audit record in its ``withdrawals`` table;
  later imports of an export made before the withdrawal leave the code out.

The web page ``/withdraw`` does the first at once (the server never writes
the DuckDB store, which the analysis may hold open); :func:`sync_withdrawals`
carries such withdrawals into the study store, and ``resilience withdraw``
and ``resilience serve-export`` call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Withdrawal", "withdraw", "sync_withdrawals", "withdrawn_codes"]


@dataclass
class Withdrawal:
    """What one withdrawal did."""

    code: str
    web: bool | None = None    # found (and erased) in the web survey's store; None: the folder has none
    store_rows: int | None = None  # responses deleted from the study store; None: no store touched
    synced: list[str] = field(default_factory=list)  # earlier web withdrawals carried into the store
    recorded: bool = False     # an audit record was written to the study store

    @property
    def found(self) -> bool:
        return bool(self.web) or bool(self.store_rows)

    def summary(self) -> str:
        where = []
        if self.web is not None:
            where.append(f"web survey store: {'answers erased' if self.web else 'no response with this code'}")
        if self.store_rows is not None:
            where.append(f"study store: {self.store_rows} response{'' if self.store_rows == 1 else 's'} deleted")
        return f"{self.code}: " + ("; ".join(where) or "no store in this folder")

    def to_dict(self) -> dict:
        return {"code": self.code, "web": self.web, "store_rows": self.store_rows, "synced": self.synced,
                "recorded": self.recorded}


def withdrawn_codes(study_dir: str | Path) -> set[str]:
    """Every reference code withdrawn in a study folder, from either store (read only).

    The pipeline leaves these respondents out of every analysis, whatever file
    their answers come from (an export made before the withdrawal still has them).
    """
    import sqlite3

    from instruments.store import Study

    study_dir = Path(study_dir)
    codes: set[str] = set()
    if (study_dir / "study.duckdb").is_file():
        codes |= Study(study_dir).withdrawn_ids()
    web = study_dir / "web" / "responses.sqlite"
    if web.is_file():
        con = sqlite3.connect(f"{web.resolve().as_uri()}?mode=ro", uri=True)
        try:
            codes |= {row[0] for row in con.execute("SELECT response_id FROM web_withdrawals")}
        except sqlite3.OperationalError:  # a store from before withdrawals existed
            pass
        finally:
            con.close()
    return codes


def _web_storage(study_dir: Path):
    from instruments.web.storage import Storage

    path = study_dir / "web" / "responses.sqlite"
    return Storage(path=path) if path.is_file() else None


def _stored_ids(store) -> set[str]:
    rows = store.responses()
    return set(rows["respondent_id"].astype(str)) if "respondent_id" in rows else set()


def sync_withdrawals(storage, study) -> list[str]:
    """Carry the web survey's withdrawals into the study store; the codes newly applied."""
    done = study.withdrawn_ids()
    todo = [code for code in storage.withdrawals()["response_id"] if code not in done]
    for code in todo:
        study.withdraw(code, channel="web")
    return todo


def withdraw(study_dir: str | Path, code: str, *, channel: str = "cli", record: bool = False) -> Withdrawal:
    """Withdraw ``code`` from the study folder's stores.

    When neither store holds it, nothing is recorded (a mistyped code must not
    look withdrawn) unless ``record``: then the withdrawal is recorded in the
    study store anyway, for answers still in a data file or an export not yet
    imported, which every later import and analysis then leaves out.
    """
    from instruments.store import Study

    study_dir = Path(study_dir)
    out = Withdrawal(code=code)
    storage = _web_storage(study_dir)
    store = Study(study_dir) if (study_dir / "study.duckdb").is_file() else None
    try:
        if storage is not None:
            out.web = storage.withdraw(code, channel=channel)
        stored = store is not None and code in _stored_ids(store)
        if record and store is None:
            store = Study(study_dir)
        if stored or (store is not None and (out.web or record)):
            out.store_rows = store.withdraw(code, channel=channel)
            out.recorded = True
        if storage is not None and store is not None:
            out.synced = [c for c in sync_withdrawals(storage, store) if c != code]
    finally:
        if storage is not None:
            storage.dispose()
    return out
