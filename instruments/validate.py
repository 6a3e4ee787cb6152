"""Check imported responses against their instrument; every problem is data.

A :class:`ValidationReport` is a table with one row per problem::

    row  respondent_id  item   value  type              severity  message

``row`` is the record's row as a spreadsheet shows it (header = row 1).
Checks are vectorised (no Python loop over respondents), so a million rows
validate in seconds. Error types:

================== ======== ====================================================
type               severity meaning
================== ======== ====================================================
unknown-column     warning  a column that is not an item or known metadata
missing-column     error    a required item has no column at all (warning if optional)
missing-required   warning  a required, relevant item left blank
out-of-range       error    a code outside the scale (and its missing codes),
                            a number outside min/max, a fraction for a whole number
unknown-label      error    text that is neither a code nor a label (from import)
wrong-type         error    text where a number or date belongs (from import)
duplicate-respondent error  the same respondent id more than once
relevance-violation error   answered although its relevance condition was false
unknown-language   error    a response in a language the instrument lacks
other-language     warning  how many answered the interview-language item with
                            an option that is no language of the form
                            ('Another language'): offered, so not an error
================== ======== ====================================================

The import's own problems (encoding, ragged rows, duplicate headers ...) are
carried into the same report.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ISSUE_COLUMNS",
    "ValidationIssue",
    "ValidationReport",
    "issues_frame",
    "validate",
    "relevance_mask",
]

from instruments.issues import ISSUE_COLUMNS, ValidationIssue, issues_frame


class ValidationReport:
    """All problems of one data set; ``valid`` when there is no error."""

    def __init__(self, issues: pd.DataFrame, *, source: str | None = None, n_rows: int = 0):
        frame = issues_frame(issues).reset_index(drop=True)
        frame["row"] = pd.to_numeric(frame["row"], errors="coerce").astype("Int64")
        for col in ("respondent_id", "item", "value", "type", "severity", "message"):
            frame[col] = frame[col].astype("string")
        self.issues = frame
        self.source = source
        self.n_rows = n_rows

    @property
    def errors(self) -> pd.DataFrame:
        return self.issues[self.issues["severity"] == "error"]

    @property
    def warnings(self) -> pd.DataFrame:
        return self.issues[self.issues["severity"] == "warning"]

    @property
    def n_errors(self) -> int:
        return int((self.issues["severity"] == "error").sum())

    @property
    def n_warnings(self) -> int:
        return int((self.issues["severity"] == "warning").sum())

    @property
    def valid(self) -> bool:
        return self.n_errors == 0

    @property
    def exit_code(self) -> int:
        """1 when there are errors, else 0 (warnings do not fail)."""
        return int(not self.valid)

    @property
    def types(self) -> list[str]:
        return sorted(set(self.issues["type"].dropna()))

    def counts(self) -> pd.DataFrame:
        """How many problems of each type and severity."""
        if self.issues.empty:
            return pd.DataFrame(columns=["type", "severity", "n"])
        return (self.issues.groupby(["type", "severity"]).size()
                .rename("n").reset_index().sort_values(["severity", "n"], ascending=[True, False]))

    def summary(self) -> str:
        head = f"{self.source or 'data'}: {self.n_rows} responses, "
        head += "valid" if self.valid else f"{self.n_errors} error(s)"
        if self.n_warnings:
            head += f", {self.n_warnings} warning(s)"
        lines = [head]
        for rec in self.counts().itertuples(index=False):
            lines.append(f"  {rec.type:<22} {rec.severity:<8} {rec.n}")
        return "\n".join(lines)

    __str__ = summary

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        frame = self.issues if limit is None else self.issues.head(limit)
        records = json.loads(frame.to_json(orient="records", force_ascii=False))
        return {
            "source": self.source,
            "valid": self.valid,
            "n_rows": self.n_rows,
            "n_errors": self.n_errors,
            "n_warnings": self.n_warnings,
            "counts": json.loads(self.counts().to_json(orient="records")),
            "issues": records,
        }

    def to_json(self, indent: int | None = 2, limit: int | None = None) -> str:
        return json.dumps(self.to_dict(limit), indent=indent, ensure_ascii=False)

    def as_table(self, limit: int = 50):
        """A rich Table (Row, Respondent, Item, Value, Type, Message)."""
        from rich.table import Table

        status = "valid" if self.valid else "INVALID"
        table = Table(title=f"{self.source or 'data'}: {status} ({self.n_errors} error(s), "
                      f"{self.n_warnings} warning(s))")
        for col in ("Row", "Respondent", "Item", "Value", "Type", "Message"):
            # short columns stay whole ('unknown-language', not 'unknown-langua / ge')
            table.add_column(col, overflow="fold", no_wrap=col in ("Row", "Type"))
        ordered = pd.concat([self.errors, self.warnings])
        for rec in ordered.head(limit).itertuples(index=False):
            style = "red" if rec.severity == "error" else "yellow"
            table.add_row(*("" if pd.isna(v) else str(v) for v in
                            (rec.row, rec.respondent_id, rec.item, rec.value)),
                          f"[{style}]{rec.type}[/{style}]", str(rec.message))
        if len(ordered) > limit:
            table.caption = f"{len(ordered) - limit} more; use --json for all"
        return table

    def _repr_html_(self) -> str:
        from html import escape

        return f"<p>{escape(self.summary().splitlines()[0])}</p>" + self.issues.head(200).to_html(index=False)

    def __repr__(self) -> str:
        return f"<ValidationReport {self.summary().splitlines()[0]}>"


# ---------------------------------------------------------------------------
# relevance, vectorised over respondents
# ---------------------------------------------------------------------------

def relevance_mask(expr, data: pd.DataFrame) -> np.ndarray:
    """Boolean array: where the condition holds (an unanswered item compares false).

    Same semantics as :func:`instruments.relevance.evaluate`, one numpy pass per
    comparison instead of a Python call per respondent.
    """
    from instruments import relevance as rel

    expr = rel.parse(expr) if isinstance(expr, str) else expr
    n = len(data)
    if isinstance(expr, rel.Compare):
        return _compare(data, expr.item, expr.op, expr.value, n)
    if isinstance(expr, rel.In):
        hit = np.zeros(n, dtype=bool)
        for v in expr.values:
            hit |= _compare(data, expr.item, "==", v, n)
        answered = _answered(data, expr.item, n)
        return answered & (hit != expr.negate)
    if isinstance(expr, rel.Not):
        return ~relevance_mask(expr.term, data)
    masks = [relevance_mask(t, data) for t in expr.terms]
    return np.logical_and.reduce(masks) if isinstance(expr, rel.And) else np.logical_or.reduce(masks)


def _answered(data, item, n) -> np.ndarray:
    if item not in data:
        return np.zeros(n, dtype=bool)
    return data[item].notna().to_numpy()


def _compare(data, item, op, value, n) -> np.ndarray:
    import operator

    if item not in data:
        return np.zeros(n, dtype=bool)
    col = data[item]
    if isinstance(value, str):
        try:  # form tools hand over codes as text: '1' compares with 1
            value = float(value) if pd.api.types.is_numeric_dtype(col) else value
        except ValueError:
            return np.zeros(n, dtype=bool)
    if isinstance(value, str):
        col = col.astype("string")
    elif not pd.api.types.is_numeric_dtype(col):
        col = pd.to_numeric(col, errors="coerce")
    fn = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
          ">": operator.gt, ">=": operator.ge}[op]
    try:
        out = fn(col, value)
    except TypeError:
        return np.zeros(n, dtype=bool)
    return (col.notna() & out.fillna(False).astype(bool)).to_numpy()


# ---------------------------------------------------------------------------
# the checks
# ---------------------------------------------------------------------------

_META = {"respondent_id", "form_version", "language", "submitted_at", "started_at",
         "ended_at", "duration_s", "event", "source_row", "_extra",
         "import_id", "wave", "raw_sha256", "_unknown_columns",  # columns of the study store
         "source"}  # the data source of a study run (analysis/study/pipeline.py)


def _cells(data: pd.DataFrame, mask: np.ndarray, item: str | None, values, type_: str,
           severity: str, message: pd.Series | str) -> pd.DataFrame:
    idx = np.flatnonzero(mask)
    if not len(idx):
        return pd.DataFrame(columns=ISSUE_COLUMNS)
    sub = data.iloc[idx]
    rows = sub["source_row"].to_numpy() if "source_row" in sub else idx + 2
    vals = None if values is None else pd.Series(np.asarray(values)[idx]).map(_fmt_value).to_numpy()
    out = pd.DataFrame({
        "row": rows,
        "respondent_id": sub["respondent_id"].astype("string").to_numpy() if "respondent_id" in sub else None,
        "item": item,
        "value": vals,
        "type": type_,
        "severity": severity,
    })
    if isinstance(message, str):
        out["message"] = message
    else:
        out["message"] = np.asarray(message)[idx]
    return out


def _fmt_value(v) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def validate(data, instrument, *, source: str | None = None,
             absent: dict[str, list[str]] | None = None) -> ValidationReport:
    """Validate responses (a DataFrame in the suite's shape or an ImportResult).

    ``absent`` (form version -> items that version did not ask; from the mapping
    file of an import) keeps those items from counting as missing in its rows.
    """
    from instruments.ingest import ImportResult

    pieces: list[pd.DataFrame] = []
    if isinstance(data, ImportResult):
        source = source or data.source
        pieces.append(issues_frame(data.issues))
        absent = absent if absent is not None else data.absent
        data = data.data
    n = len(data)
    versions = (data["form_version"].astype("string").fillna("").to_numpy(dtype=object)
                if "form_version" in data else np.full(n, "", dtype=object))

    def not_asked(item_id: str) -> np.ndarray:
        """Rows whose form version did not ask the item."""
        vs = [v for v, items in (absent or {}).items() if item_id in items]
        return np.isin(versions, vs) if vs else np.zeros(n, dtype=bool)
    items = instrument.items
    item_ids = {it.id for it in items}
    # columns
    for col in data.columns:
        base = col.split("___")[0]
        if col not in item_ids and col not in _META and base not in item_ids and not (
            any(c.collapsed and c.collapsed.id == col for c in items)
        ):
            if not any(p is not None and not p.empty and ((p["type"] == "unknown-column") & (p["item"] == col)).any()
                       for p in pieces):
                pieces.append(pd.DataFrame([{"row": None, "respondent_id": None, "item": col, "value": None,
                                             "type": "unknown-column", "severity": "warning",
                                             "message": f"column {col!r} is not an item of {instrument.id}"}]))
    for it in items:
        if it.id not in data:
            skipped = not_asked(it.id)
            if n and skipped.all():  # an older form version that did not ask it (mapping 'absent')
                shown = ", ".join(sorted(set(versions[skipped])))
                pieces.append(pd.DataFrame([{
                    "row": None, "respondent_id": None, "item": it.id, "value": None,
                    "type": "not-asked", "severity": "warning",
                    "message": f"{it.id} was not asked in form version {shown} (mapping 'absent')"}]))
                continue
            sev = "error" if it.required else "warning"
            pieces.append(pd.DataFrame([{
                "row": None, "respondent_id": None, "item": it.id, "value": None,
                "type": "missing-column", "severity": sev,
                "message": f"no column for {'required ' if it.required else ''}item {it.id}"
                           + (f" (answered by form versions other than {', '.join(sorted(set(versions[skipped])))})"
                              if skipped.any() else "")}]))
    # relevance per item (None: always relevant)
    relevant: dict[str, np.ndarray] = {}
    # per gating item: how many answered items it opens, in rows where the gate itself is blank
    blank_gates: dict[str, np.ndarray] = {}
    for it in items:
        if it.relevant and it.id in data:
            from instruments.relevance import referenced_items

            refs = referenced_items(it.relevant)
            if all(r in data for r in refs):
                relevant[it.id] = relevance_mask(it.relevant, data)
    for it in items:
        if it.id not in data:
            continue
        col = data[it.id]
        scale = instrument.scales[it.scale]
        if scale.type in ("ordinal", "nominal", "numeric") and not pd.api.types.is_numeric_dtype(col):
            # a frame built by hand (not through ingest) may hold text: check what it holds
            num = pd.to_numeric(col, errors="coerce")
            text = col.astype("string")
            bad = (num.isna() & text.notna() & (text.str.strip() != "")).to_numpy()
            if bad.any():
                pieces.append(_cells(data, bad, it.id, col.to_numpy(dtype=object), "wrong-type", "error",
                                     f"{it.id}: not a number"))
            col = num
        answered = col.notna().to_numpy()
        rel = relevant.get(it.id)
        if it.required:
            need = ~answered if rel is None else (~answered & rel)
            need = need & ~not_asked(it.id)
            if need.any():
                pieces.append(_cells(data, need, it.id, None, "missing-required", "warning",
                                     f"required item {it.id} left blank"))
        if rel is not None:
            wrong = answered & ~rel
            # a blank gate (one blank consent) makes every item it opens look answered out of turn:
            # that is one problem, reported once at the gate, not once per item (57 errors)
            from instruments.relevance import referenced_items

            for gate in [r for r in referenced_items(it.relevant) if r in data]:
                hit = wrong & data[gate].isna().to_numpy()
                if hit.any():
                    blank_gates[gate] = blank_gates.get(gate, np.zeros(len(data), int)) + hit
                    wrong = wrong & ~hit
            if wrong.any():
                pieces.append(_cells(data, wrong, it.id, col.to_numpy(dtype=object), "relevance-violation", "error",
                                     f"{it.id} answered although its condition ({it.relevant}) is false"))
        if scale.type in ("ordinal", "nominal") and pd.api.types.is_numeric_dtype(col):
            allowed = set(scale.codes) | set(scale.missing_codes)
            vals = col.to_numpy(dtype="float64", na_value=np.nan)
            bad = answered & ~np.isin(vals, list(allowed))
            if bad.any():
                pieces.append(_cells(data, bad, it.id, vals, "out-of-range", "error",
                                     f"{it.id}: not a code of scale {scale.id} "
                                     f"(valid {_code_range(scale.codes)}; missing {scale.missing_codes})"))
        elif scale.type == "numeric" and pd.api.types.is_numeric_dtype(col):
            vals = col.to_numpy(dtype="float64", na_value=np.nan)
            miss = np.isin(vals, scale.missing_codes) if scale.missing_codes else np.zeros(n, bool)
            bad = np.zeros(n, bool)
            with np.errstate(invalid="ignore"):
                if scale.min is not None:
                    bad |= vals < scale.min
                if scale.max is not None:
                    bad |= vals > scale.max
                if scale.integer:
                    bad |= answered & (np.mod(vals, 1) != 0)
            bad &= answered & ~miss
            if bad.any():
                pieces.append(_cells(data, bad, it.id, vals, "out-of-range", "error",
                                     f"{it.id}: outside {scale.min}..{scale.max}"
                                     + (" or not a whole number" if scale.integer else "")))
    for gate, opened in blank_gates.items():
        rows = opened > 0
        pieces.append(_cells(data, rows, gate, None, "relevance-violation", "error",
                             np.array([f"{gate} is blank, yet {k} item(s) that depend on it were answered"
                                       for k in opened], dtype=object)))
    # respondents and languages
    if "respondent_id" in data and n:
        # in a longitudinal export a respondent comes once per event
        key = ["respondent_id", "event"] if "event" in data else ["respondent_id"]
        dup = data.duplicated(subset=key, keep=False).to_numpy()
        if dup.any():
            pieces.append(_cells(data, dup, "respondent_id", data["respondent_id"].to_numpy(dtype=object),
                                 "duplicate-respondent", "error", "respondent id occurs more than once"
                                 + (" in the same event" if "event" in data else "")))
    if "language" in data and n:
        lang = data["language"].astype("string")
        bad = (~lang.isin(instrument.languages) & lang.notna()).to_numpy().copy()
        # an answer the instrument itself offers (LANG = 'Another language') is not a
        # data error: the respondent said so; one warning says how many
        offered = _offered_languages(instrument)
        own = bad & lang.isin(offered).to_numpy()
        if own.any():
            counts = lang[own].value_counts()
            said = ", ".join(f"{v!r} ({k})" for v, k in counts.items())
            n_own = int(own.sum())
            pieces.append(pd.DataFrame([{
                "row": None, "respondent_id": None, "item": "language", "value": None,
                "type": "other-language", "severity": "warning",
                "message": f"{n_own} response{'s' * (n_own != 1)} in a language the form does not carry: {said}; "
                           "an answer the instrument offers, kept as given"}]))
        bad &= ~own
        if bad.any():
            pieces.append(_cells(data, bad, "language", lang.to_numpy(dtype=object), "unknown-language", "error",
                                 f"interview language not declared by {instrument.id} "
                                 f"(languages: {', '.join(instrument.languages)})"))
    pieces = [p for p in pieces if p is not None and not p.empty]
    frame = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(columns=ISSUE_COLUMNS)
    return ValidationReport(frame, source=source, n_rows=n)


def _offered_languages(instrument) -> set[str]:
    """Labels (any language) of the interview-language item's categories, e.g. 'Another language'."""
    from instruments.ingest import language_item

    item = language_item(instrument)
    if item is None:
        return set()
    return {text for cat in instrument.scales[item.scale].categories for text in cat.label.values()}


def _code_range(codes: list[int]) -> str:
    if codes and codes == list(range(codes[0], codes[-1] + 1)):
        return f"{codes[0]}-{codes[-1]}"
    return ", ".join(map(str, codes))
