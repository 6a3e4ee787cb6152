"""Write responses the way the field platforms export them, and write tables safely.

The writers take responses in the suite's shape (``respondent_id``,
``language``, ``form_version``, optional ``submitted_at``/``started_at``/
``ended_at``/``duration_s``, then item columns holding codes) and produce the
files KoboToolbox, ODK Central, REDCap and LimeSurvey hand to researchers. The
simulator uses them (``resilience simulate --format kobo|odk|redcap|limesurvey``)
and the tests use them for round trips through :mod:`instruments.ingest`.

Every writer that produces a spreadsheet or CSV neutralises cells a spreadsheet
would run as a formula (text starting with ``=``, ``+``, ``-``, ``@``, tab or
carriage return gets a leading apostrophe; numbers are left alone), and XLSX
cells are always written as text, never as formulas.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from instruments.atomic import atomic_write
from instruments.ingest import limesurvey_answer_code, limesurvey_code

__all__ = [
    "ExportWarning",
    "FORMULA_PREFIXES",
    "neutralise",
    "neutralise_frame",
    "write_csv",
    "write_xlsx",
    "write_table",
    "TABLE_SUFFIXES",
    "XLSX_MAX_ROWS",
    "to_kobo",
    "to_odk",
    "to_redcap",
    "to_limesurvey",
    "write_kobo",
    "write_odk",
    "write_redcap",
    "write_limesurvey",
    "DATA_WRITERS",
    "write_responses",
]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class ExportWarning(UserWarning):
    """A written file differs from the data: cells or names the format cannot hold were changed."""


# ---------------------------------------------------------------------------
# formula-injection defence and atomic writing
# ---------------------------------------------------------------------------

def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def neutralise(value):
    """``'=HYPERLINK(...)`` for a cell text a spreadsheet would execute; numbers untouched."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _is_number(value):
        return "'" + value
    return value


def neutralise_frame(frame: pd.DataFrame, exempt: tuple[str, ...] = ()) -> pd.DataFrame:
    """A copy with every text cell neutralised (vectorised over text columns).

    ``exempt`` names columns whose syntax needs a leading ``-`` or ``@`` (REDCap
    choices such as ``-9, Prefer not to say``, action tags ``@HIDDEN``); they
    come from the instrument's author, never from respondents.
    """
    out = frame.copy()
    for col in out.columns:
        if col in exempt:
            continue
        s = out[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s):
            continue
        text = s.astype("string")
        risky = text.str.match(r"^[=+\-@\t\r]", na=False)
        if risky.any():
            numeric = pd.to_numeric(text[risky], errors="coerce").notna()
            fix = risky.copy()
            fix[risky] = ~numeric.to_numpy()
            out[col] = text.where(~fix, "'" + text)
    # column headers are cells too
    out.columns = [neutralise(str(c)) for c in out.columns]
    return out


def whole_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns holding only whole numbers are written as integers (codes: 4, not 4.0)."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_float_dtype(s):
            vals = s.dropna()
            if len(vals) and (vals % 1 == 0).all() and vals.abs().max() < 2**53:
                out[col] = s.astype("Int64")
    return out


def write_csv(frame: pd.DataFrame, path: str | Path, *, sep: str = ",", bom: bool = False,
              date_format: str | None = None, exempt: tuple[str, ...] = ()) -> Path:
    """CSV with formula cells neutralised (except ``exempt`` columns), written atomically."""
    safe = neutralise_frame(whole_numbers(frame), exempt)
    return atomic_write(Path(path), lambda p: safe.to_csv(
        p, index=False, sep=sep, encoding="utf-8-sig" if bom else "utf-8", date_format=date_format))


def write_xlsx(sheets: dict[str, pd.DataFrame] | pd.DataFrame, path: str | Path) -> Path:
    """XLSX where every text cell is stored as text (a leading '=' is never a formula)."""
    import openpyxl

    if isinstance(sheets, pd.DataFrame):
        sheets = {"data": sheets}
    changed, cut = [0], [0]

    def text(v: str) -> str:
        safe = _visible_controls(v)
        changed[0] += safe is not v
        if len(safe) > XLSX_MAX_CELL:  # Excel refuses to open a workbook with a longer cell
            cut[0] += 1
            safe = safe[:XLSX_MAX_CELL - 1] + "\u2026"
        return safe

    def write(p: Path) -> None:
        wb = openpyxl.Workbook()
        wb.remove(wb.active)
        for name, frame in sheets.items():
            ws = wb.create_sheet(title=re.sub(r"[\\/?*\[\]:]", "_", text(str(name)))[:31])
            ws.append([text(str(c)) for c in frame.columns])
            for row in frame.itertuples(index=False, name=None):
                ws.append([text(v) if isinstance(v, str) else _xlsx_value(v) for v in row])
            for row in ws.iter_rows():
                for cell in row:
                    if isinstance(cell.value, str):
                        cell.data_type = "s"  # text, never a formula
        wb.save(p)

    out = atomic_write(Path(path), write)
    if changed[0]:
        warnings.warn(f"{Path(path).name}: {changed[0]} cell(s) held control characters an XLSX file cannot "
                      "store (such as the \\x1f between surplus cells in '_extra'); written as their "
                      "visible symbols (\u241f for \\x1f)", ExportWarning, stacklevel=2)
    if cut[0]:
        warnings.warn(f"{Path(path).name}: {cut[0]} cell(s) longer than {XLSX_MAX_CELL:,} characters (a worksheet "
                      "cell's limit) were cut there and end in \u2026; write .csv or .parquet to keep them whole",
                      ExportWarning, stacklevel=2)
    return out


# The control characters XML 1.0 (so XLSX) cannot hold: tab, newline and carriage return are fine.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _visible_controls(text: str) -> str:
    """Each control character XLSX cannot hold as its Unicode control picture (\\x1f -> \u241f)."""
    if not _XML_ILLEGAL.search(text):
        return text
    return _XML_ILLEGAL.sub(lambda m: chr(0x2400 + ord(m.group())), text)


def _xlsx_value(v):
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return int(v) if float(v).is_integer() else float(v)
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v


TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".parquet", ".json", ".sav", ".dta")
XLSX_MAX_ROWS = 1_048_576  # a worksheet's limit, header included
XLSX_MAX_CELL = 32_767  # characters in one cell


def write_table(frame: pd.DataFrame, path: str | Path, *, instrument=None) -> Path:
    """Write by extension: .csv, .tsv, .xlsx, .parquet, .sav, .dta, .json.

    With ``instrument``, a .sav gets variable labels (question texts, construct
    labels) and value labels (not on reverse-keyed items, whose codes were recoded).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".csv":
        return write_csv(frame, path)
    if ext in (".tsv", ".txt"):
        return write_csv(frame, path, sep="\t")
    if ext == ".xlsx":
        if len(frame) + 1 > XLSX_MAX_ROWS:
            raise ValueError(f"{path.name}: {len(frame):,} rows do not fit in a worksheet "
                             f"({XLSX_MAX_ROWS - 1:,} at most); write .csv or .parquet")
        return write_xlsx(frame, path)
    if ext == ".parquet":
        return atomic_write(path, lambda p: frame.to_parquet(p, index=False))
    if ext == ".json":
        return atomic_write(path, lambda p: frame.to_json(p, orient="records", force_ascii=False, indent=1,
                                                     date_format="iso"))
    if ext in (".sav", ".dta"):
        import pyreadstat

        from instruments.export_sav import spss_names, stata_names

        fn = pyreadstat.write_sav if ext == ".sav" else pyreadstat.write_dta
        renamed = (spss_names if ext == ".sav" else stata_names)([str(c) for c in frame.columns])
        plain = frame.copy()
        plain.columns = [renamed.get(str(c), str(c)) for c in frame.columns]
        for col in plain.columns:
            if isinstance(plain[col].dtype, pd.StringDtype) or plain[col].dtype == object:
                plain[col] = plain[col].astype("string").astype(object).where(plain[col].notna(), "")
        meta = {}
        if instrument is not None and ext == ".sav":
            from instruments.export_sav import sav_metadata

            full = sav_metadata(instrument)
            cols = set(plain.columns)
            reversed_ids = {it.id for it in instrument.reverse_keyed_items}
            labels = {k: v for k, v in full["column_labels"].items() if k in cols}
            labels.update({c.id: c.label for c in instrument.constructs if c.id in cols})
            meta = {"column_labels": labels,
                    "variable_value_labels": {k: v for k, v in full["variable_value_labels"].items()
                                              if k in cols and k not in reversed_ids}}
        if renamed:  # the original header lives on as the variable's label
            if ext == ".sav":
                meta["column_labels"] = {**meta.get("column_labels", {}),
                                         **{new: old[:255] for old, new in renamed.items()}}
            else:
                meta["column_labels"] = {**meta.get("column_labels", {}),
                                         **{new: old[:80] for old, new in renamed.items()}}
        out = atomic_write(path, lambda p: fn(plain, str(p), **meta))
        if renamed:
            shown = ", ".join(f"{old!r} -> {new}" for old, new in list(renamed.items())[:10])
            more = f" and {len(renamed) - 10} more" if len(renamed) > 10 else ""
            warnings.warn(f"{path.name}: {len(renamed)} column name(s) {ext[1:].upper()} cannot hold were renamed "
                          f"({shown}{more}); each original name is kept as its variable label",
                          ExportWarning, stacklevel=2)
        return out
    raise ValueError(f"{path.name}: unknown table format {ext!r} (use .csv, .tsv, .xlsx, .parquet, .json, .sav, .dta)")


# ---------------------------------------------------------------------------
# shaping responses like the platforms
# ---------------------------------------------------------------------------

def _codes_as_text(col: pd.Series) -> pd.Series:
    """1.0 -> '1', NaN -> '' (platforms export codes as text)."""
    num = pd.to_numeric(col, errors="coerce")
    whole = num.notna() & (num % 1 == 0)
    out = num.astype("string")
    out = out.where(~whole, num.where(whole).astype("Int64").astype("string"))
    return out.fillna("")


def _value_column(data: pd.DataFrame, instrument, item, *, labels: str | None = None,
                  code_text: Callable[[int], str] | None = None) -> pd.Series:
    scale = instrument.scales[item.scale]
    if item.id not in data:
        return pd.Series([""] * len(data), index=data.index, dtype="string")
    col = data[item.id]
    if scale.type == "text":
        return col.astype("string").fillna("")
    if scale.type == "date":
        return pd.to_datetime(col, errors="coerce").dt.strftime("%Y-%m-%d").fillna("")
    if scale.is_categorical and (labels or code_text):
        cats = [*scale.categories, *scale.missing]
        if labels:
            table = {float(c.code): c.label.get(labels, "") for c in cats}
        else:
            table = {float(c.code): code_text(c.code) for c in cats}
        num = pd.to_numeric(col, errors="coerce")
        mapped = num.map(table)
        # a code outside the scale is written as it is, for validation to catch
        return mapped.where(mapped.notna(), _codes_as_text(col)).astype("string").fillna("")
    return _codes_as_text(col)


def _times(data: pd.DataFrame):
    """(start, end, submitted) as datetimes, derived where only some are known."""
    n = len(data)
    nat = pd.Series(pd.NaT, index=data.index, dtype="datetime64[ns]")
    sub = pd.to_datetime(data["submitted_at"]) if "submitted_at" in data else nat
    start = pd.to_datetime(data["started_at"]) if "started_at" in data else nat
    end = pd.to_datetime(data["ended_at"]) if "ended_at" in data else nat
    if "duration_s" in data:
        dur = pd.to_timedelta(pd.to_numeric(data["duration_s"], errors="coerce"), unit="s")
        end = end.where(end.notna(), sub)
        start = start.where(start.notna(), end - dur)
    end = end.where(end.notna(), sub)
    sub = sub.where(sub.notna(), end)
    del n
    return start, end, sub


def _iso(ts: pd.Series, fmt: str = "%Y-%m-%dT%H:%M:%S.000+00:00") -> pd.Series:
    return ts.dt.strftime(fmt).fillna("")


def _ids(data: pd.DataFrame) -> pd.Series:
    if "respondent_id" in data:
        return data["respondent_id"].astype("string")
    return pd.Series([f"r{i + 1}" for i in range(len(data))], index=data.index, dtype="string")


def _version(data: pd.DataFrame, instrument) -> pd.Series:
    if "form_version" in data:
        fv = data["form_version"].astype("string").fillna("")
        return fv.where(fv != "", instrument.version)
    return pd.Series([instrument.version] * len(data), index=data.index, dtype="string")


def to_kobo(data: pd.DataFrame, instrument, *, headers: str = "xml", language: str | None = None) -> pd.DataFrame:
    """A KoboToolbox export: ``start``, ``end``, ``group/item`` columns, ``_uuid`` ...

    ``headers="xml"`` gives XML names and codes ("XML values and headers");
    ``headers="labels"`` gives question labels and answer labels in ``language``.
    Checkbox columns ``item___code`` become Kobo's ``group/item/code`` 0/1
    columns next to a space-separated summary column.
    """
    lang = language or instrument.default_language
    labels = lang if headers == "labels" else None
    start, end, sub = _times(data)
    out: dict[str, pd.Series] = {"start": _iso(start), "end": _iso(end)}
    for it in instrument.items:
        name = f"{it.section}/{it.id}" if headers == "xml" else it.text.get(lang, it.id)
        out[name] = _value_column(data, instrument, it, labels=labels)
        _select_multiple(out, name, data, it.id)
    ids = _ids(data)
    out.update({
        "_id": pd.Series(np.arange(1, len(data) + 1), index=data.index).astype("string"),
        "_uuid": ids,
        "_submission_time": _iso(sub, "%Y-%m-%dT%H:%M:%S"),
        "_validation_status": pd.Series([""] * len(data), index=data.index, dtype="string"),
        "_notes": pd.Series([""] * len(data), index=data.index, dtype="string"),
        "_status": pd.Series(["submitted_via_web"] * len(data), index=data.index, dtype="string"),
        "_submitted_by": pd.Series([""] * len(data), index=data.index, dtype="string"),
        "__version__": _version(data, instrument),
        "_tags": pd.Series([""] * len(data), index=data.index, dtype="string"),
        "_index": pd.Series(np.arange(1, len(data) + 1), index=data.index).astype("string"),
    })
    return pd.DataFrame(out)


def _select_multiple(out: dict, name: str, data: pd.DataFrame, item_id: str) -> None:
    """Checkbox columns ``item___code`` as a space-separated summary plus 0/1 columns
    ``name/code`` (blank where the question was not answered, unlike 0)."""
    boxes = sorted((c for c in data.columns if c.startswith(item_id + "___")),
                   key=lambda c: int(c.rsplit("___", 1)[1]))
    if not boxes:
        return
    codes = [c.rsplit("___", 1)[1] for c in boxes]
    ticked = data[boxes].to_numpy(dtype=float)
    answered = ~np.isnan(ticked).all(axis=1)
    summary = [" ".join(code for code, v in zip(codes, row) if v == 1) if ok else ""
               for row, ok in zip(ticked, answered)]
    out[name] = pd.Series(summary, index=data.index, dtype="string")
    for c, code in zip(boxes, codes):
        out[f"{name}/{code}"] = _codes_as_text(data[c])


def to_odk(data: pd.DataFrame, instrument) -> pd.DataFrame:
    """An ODK Central CSV export: ``SubmissionDate``, ``group-item``, ``KEY``, ``FormVersion`` ..."""
    start, end, sub = _times(data)
    blank = pd.Series([""] * len(data), index=data.index, dtype="string")
    out: dict[str, pd.Series] = {
        "SubmissionDate": _iso(sub, "%Y-%m-%dT%H:%M:%S.000Z"),
        "start": _iso(start), "end": _iso(end),
    }
    for it in instrument.items:
        out[f"{it.section}-{it.id}"] = _value_column(data, instrument, it)
        _select_multiple(out, f"{it.section}-{it.id}", data, it.id)
    ids = _ids(data)
    key = ids.where(ids.str.startswith("uuid:"), "uuid:" + ids)
    out.update({
        "meta-instanceID": key, "KEY": key, "SubmitterID": blank, "SubmitterName": blank,
        "AttachmentsPresent": blank.replace("", "0"), "AttachmentsExpected": blank.replace("", "0"),
        "Status": blank, "ReviewState": blank, "DeviceID": blank, "Edits": blank.replace("", "0"),
        "FormVersion": _version(data, instrument),
    })
    return pd.DataFrame(out)


def to_redcap(data: pd.DataFrame, instrument, *, labels: bool = False, language: str | None = None) -> pd.DataFrame:
    """A REDCap records export (raw codes, lower-case field names, ``field___code`` checkboxes)."""
    lang = language or instrument.default_language
    form = instrument.id.lower()
    _, _, sub = _times(data)
    out: dict[str, pd.Series] = {
        "record_id": _ids(data),
        "redcap_survey_identifier": pd.Series([""] * len(data), index=data.index, dtype="string"),
        f"{form}_timestamp": sub.dt.strftime("%Y-%m-%d %H:%M:%S").fillna(""),
    }
    for it in instrument.items:
        name = it.id.lower() if not labels else it.text.get(lang, it.id)
        out[name] = _value_column(data, instrument, it, labels=lang if labels else None)
        for c in sorted(c for c in data.columns if c.startswith(it.id + "___")):
            code = int(c.rsplit("___", 1)[1])
            out[f"{it.id.lower()}___{code if code >= 0 else 'm' + str(-code)}"] = _codes_as_text(data[c].fillna(0))
    # a hidden field (@HIDDEN @DEFAULT in the dictionary) carries the form version
    out["form_version"] = _version(data, instrument)
    out[f"{form}_complete"] = pd.Series(["2"] * len(data), index=data.index, dtype="string")
    return pd.DataFrame(out)


def _start_language(data: pd.DataFrame, instrument) -> pd.Series:
    """The language each response was taken in: a ``language`` column, else the LANG item.

    LimeSurvey knows only the survey's own languages, so an answer such as
    'Another language' is written as the default language (LANG itself keeps it).
    """
    from instruments.ingest import language_item, item_languages

    default = pd.Series([instrument.default_language] * len(data), index=data.index, dtype="string")
    if "language" in data:
        return data["language"].astype("string")
    item = language_item(instrument)
    if item is None or item.id not in data:
        return default
    labels = {float(c.code): c.label.get("en") or next(iter(c.label.values()))
              for c in instrument.scales[item.scale].categories}
    lang = item_languages(pd.to_numeric(data[item.id], errors="coerce").map(labels), instrument)
    return lang.where(lang.isin(instrument.languages), instrument.default_language)


def to_limesurvey(data: pd.DataFrame, instrument) -> pd.DataFrame:
    """A LimeSurvey response export (question codes, answer codes, ``startlanguage``)."""
    start, end, sub = _times(data)
    ids = _ids(data)
    numeric = pd.to_numeric(ids, errors="coerce")
    seq = pd.Series(np.arange(1, len(data) + 1), index=data.index).astype("string")
    out: dict[str, pd.Series] = {
        "id": ids if numeric.notna().all() else seq,
        "token": ids,
        "submitdate": sub.dt.strftime("%Y-%m-%d %H:%M:%S").fillna(""),
        "lastpage": pd.Series([str(len(instrument.sections))] * len(data), index=data.index, dtype="string"),
        "startlanguage": _start_language(data, instrument),
        "seed": pd.Series([""] * len(data), index=data.index, dtype="string"),
        "startdate": start.dt.strftime("%Y-%m-%d %H:%M:%S").fillna(""),
        "datestamp": end.dt.strftime("%Y-%m-%d %H:%M:%S").fillna(""),
    }
    for it in instrument.items:
        out[limesurvey_code(it.id)] = _value_column(data, instrument, it, code_text=limesurvey_answer_code)
    # an equation question `formversion` carries the form version
    out["formversion"] = _version(data, instrument)
    if "duration_s" in data:
        out["interviewtime"] = _codes_as_text(data["duration_s"])
    return pd.DataFrame(out)


def write_kobo(data, instrument, path, *, headers: str = "xml", language: str | None = None,
               sep: str = ";") -> Path:
    """Kobo's CSV export (semicolon-separated by default, as Kobo does)."""
    return write_csv(to_kobo(data, instrument, headers=headers, language=language), path, sep=sep)


def write_odk(data, instrument, path) -> Path:
    return write_csv(to_odk(data, instrument), path)


def write_redcap(data, instrument, path, *, labels: bool = False) -> Path:
    return write_csv(to_redcap(data, instrument, labels=labels), path)


def write_limesurvey(data, instrument, path) -> Path:
    return write_csv(to_limesurvey(data, instrument), path)


DATA_WRITERS = {"kobo": write_kobo, "odk": write_odk, "redcap": write_redcap, "limesurvey": write_limesurvey}


def write_responses(data: pd.DataFrame, instrument, path, *, format: str) -> Path:  # noqa: A002
    """Write responses as a platform export (kobo|odk|redcap|limesurvey) or a plain table."""
    if format in DATA_WRITERS:
        return DATA_WRITERS[format](data, instrument, path)
    return write_table(data, path)
