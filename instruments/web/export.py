"""Submitted web responses in the suite's own import shape.

The CSV has the meta columns :mod:`instruments.ingest` reads
(``respondent_id``, ``form_version``, ``language``, ``submitted_at``,
``started_at``, ``ended_at``, ``duration_s``) and then one column per item of
the instrument, holding codes (missing codes such as -9 kept as codes), numbers
or text. ``resilience import responses.csv --instrument crs --study DIR`` reads
it back unchanged; text that a spreadsheet would run as a formula is written
with a leading apostrophe, which the importer removes again.

Per-page seconds go to a second, long table (``respondent_id, page,
seconds``) so that the response file holds only columns the importer knows.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from instruments.export_data import neutralise_frame, write_csv

__all__ = ["responses_frame", "timings_frame", "responses_csv", "write_responses_csv"]

META = ["respondent_id", "form_version", "language", "submitted_at", "started_at", "ended_at", "duration_s"]


def responses_frame(storage, instrument) -> pd.DataFrame:
    """One row per submitted response; item columns in the instrument's order."""
    rows = storage.responses()
    item_ids = [it.id for it in instrument.items]
    extra = sorted({k for r in rows for k in r["answers"]} - set(item_ids))  # items of other versions
    records = []
    for r in rows:
        rec = {"respondent_id": r["response_id"], "form_version": r["instrument_version"],
               "language": r["language"], "submitted_at": r["ended_at"], "started_at": r["started_at"],
               "ended_at": r["ended_at"], "duration_s": r["duration_s"]}
        rec.update({k: r["answers"].get(k) for k in item_ids + extra})
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=META + item_ids + extra)
    for it in instrument.items:  # numeric answers as numbers (codes, counts); text stays text
        if instrument.scales[it.scale].type not in ("text", "date"):
            frame[it.id] = pd.to_numeric(frame[it.id], errors="coerce").astype("float64")
    return frame


def timings_frame(storage) -> pd.DataFrame:
    """Seconds spent on each page: ``respondent_id, page, seconds`` (for speeder checks)."""
    rows = [{"respondent_id": r["response_id"], "page": page, "seconds": float(sec)}
            for r in storage.responses() for page, sec in r["timings"].items()]
    return pd.DataFrame(rows, columns=["respondent_id", "page", "seconds"])


def responses_csv(storage, instrument) -> str:
    """The export as CSV text (formula cells neutralised), for downloads."""
    from instruments.export_data import whole_numbers

    safe = neutralise_frame(whole_numbers(responses_frame(storage, instrument)))
    buf = io.StringIO()
    safe.to_csv(buf, index=False)
    return buf.getvalue()


def write_responses_csv(storage, instrument, path: str | Path) -> Path:
    """Write the export to ``path`` atomically."""
    return write_csv(responses_frame(storage, instrument), path)
