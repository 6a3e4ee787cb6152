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

__all__ = ["Withdrawal", "withdraw", "sync_withdrawals"]


@dataclass
class Withdrawal:
    """What one withdrawal did."""

    code: str
    web: bool = False          # found (and erased) in the web survey's store
    store_rows: int = 0        # responses deleted from the study store
    synced: list[str] = field(default_factory=list)  # earlier web withdrawals carried into the store

    @property
    def found(self) -> bool:
        return self.web or self.store_rows > 0

    def summary(self) -> str:
        where = [f"web survey store: {'answers erased' if self.web else 'no response with this code'}",
                 f"study store: {self.store_rows} response{'' if self.store_rows == 1 else 's'} deleted"]
        return f"{self.code}: " + "; ".join(where)

    def to_dict(self) -> dict:
        return {"code": self.code, "web": self.web, "store_rows": self.store_rows, "synced": self.synced}


def _web_storage(study_dir: Path):
    from .storage import Storage

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


def withdraw(study_dir: str | Path, code: str, *, channel: str = "cli") -> Withdrawal:
    """Withdraw ``code`` from the study folder's stores (nothing is recorded when neither holds it)."""
    from ..store import Study

    study_dir = Path(study_dir)
    out = Withdrawal(code=code)
    storage = _web_storage(study_dir)
    store = Study(study_dir) if (study_dir / "study.duckdb").is_file() else None
    try:
        if storage is not None:
            out.web = storage.withdraw(code, channel=channel)
        stored = store is not None and code in _stored_ids(store)
        if stored or (out.web and store is not None):
            out.store_rows = store.withdraw(code, channel=channel)
        if storage is not None and store is not None:
            out.synced = [c for c in sync_withdrawals(storage, store) if c != code]
    finally:
        if storage is not None:
            storage.dispose()
    return out
