"""Read survey answers from files and field platforms into one tidy shape.

Whatever the source (a CSV typed by hand, an XLSX, SPSS/Stata files, Parquet,
or the exports of KoboToolbox, ODK Central (its CSV, or the zip of all
submissions), REDCap and LimeSurvey), the result
is a DataFrame with one row per response and these columns:

``respondent_id``  the platform's id (Kobo ``_uuid``, ODK ``KEY``, REDCap
                   ``record_id``, LimeSurvey ``id``) or ``<file>-r<row>``
``form_version``   the form version of the response (Kobo ``__version__``,
                   ODK ``FormVersion``) or ``""``
``language``       interview language (a column ``language``, LimeSurvey
                   ``startlanguage``); the instrument's default when absent
``submitted_at``, ``started_at``, ``ended_at`` (datetimes, where known),
``duration_s``     interview length in seconds (``end - start``, LimeSurvey
                   ``interviewtime``), used by the speeder flag
``event``          REDCap's ``redcap_event_name`` in a longitudinal project (only
                   when present): a record is one respondent per event
``source_row``     the record's row as a spreadsheet shows it (header = 1)
then one column per instrument item (float codes / numbers; text; dates), and
checkbox columns ``item___code`` (0/1, blank kept distinct from 0).

Reading never stops at the first problem: every oddity becomes a
:class:`~instruments.validate.ValidationIssue` (row, respondent, item, value,
type, message) in :attr:`ImportResult.issues`. Rows are never dropped: a
ragged row is padded or its surplus cells kept in ``_extra`` and named in a
warning. Large CSV files are read in blocks with pyarrow's streaming reader and
converted block by block, so the text is never held in memory whole.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd

from instruments.issues import ValidationIssue, issues_frame

__all__ = [
    "FORMATS",
    "META_COLUMNS",
    "ImportError_",
    "ImportResult",
    "RawTable",
    "read_raw",
    "sniff_delimiter",
    "detect_format",
    "import_responses",
    "load_mapping",
    "file_sha256",
    "limesurvey_code",
    "limesurvey_answer_code",
    "EXCEL_EPOCH",
]

FORMATS = ("csv", "xlsx", "sav", "dta", "parquet", "kobo", "odk", "redcap", "limesurvey")
META_COLUMNS = (
    "respondent_id",
    "form_version",
    "language",
    "submitted_at",
    "started_at",
    "ended_at",
    "duration_s",
    "event",
    "source_row",
)
EXCEL_EPOCH = pd.Timestamp("1899-12-30")

# XLSX guard: an .xlsx is a zip; refuse to inflate one that would explode. Each member is
# judged on its own (padding the archive with random bytes cannot dilute a bomb): real
# worksheets pack 10-15 to 1 (cell references differ on every row), bombs 300 to 1000.
MAX_XLSX_UNCOMPRESSED = 2 * 1024**3  # all members together
MAX_XLSX_MEMBER = 1536 * 1024**2  # one member (a full 1,048,576-row sheet of 40 columns is ~1.4 GB)
MAX_XLSX_RATIO = 100  # unpacked / packed, for members over 1 MB
MAX_XLSX_CELLS = 50_000_000  # cells read from a sheet (1M rows x 50 columns)
# CSV text is parsed in blocks of this size (memory stays flat for any file size).
BLOCK_SIZE = 16 * 1024**2


class ImportError_(Exception):  # noqa: N801 - ImportError is a builtin
    """A file that cannot be read at all; carries the issue that says why."""

    def __init__(self, issue: ValidationIssue):
        self.issue = issue
        super().__init__(str(issue))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# names used by the platforms
# ---------------------------------------------------------------------------

def limesurvey_code(item_id: str) -> str:
    """LimeSurvey question codes are letters and digits only (no underscore)."""
    code = re.sub(r"[^A-Za-z0-9]", "", item_id)
    return code if code and code[0].isalpha() else "Q" + code


def limesurvey_answer_code(code: int) -> str:
    """LimeSurvey answer codes are alphanumeric: -9 becomes ``N9``."""
    return str(code) if code >= 0 else f"N{-code}"


_META_ALIASES: dict[str, tuple[str, ...]] = {
    "respondent_id": (
        "respondent_id", "respondent", "respid", "resp_id", "caseid", "case_id",
        "_uuid", "key", "meta-instanceid", "meta/instanceid", "instanceid", "record_id", "id",
    ),
    "form_version": ("form_version", "__version__", "formversion", "version"),
    "language": ("language", "startlanguage", "interview_language", "lang"),
    "submitted_at": ("submitted_at", "_submission_time", "submissiondate", "submitdate"),
    "started_at": ("started_at", "start", "startdate"),
    "ended_at": ("ended_at", "end", "datestamp"),
    "duration_s": ("duration_s", "interviewtime", "duration"),
    # REDCap longitudinal projects: one row per record and event (baseline, follow-up ...)
    "event": ("event", "redcap_event_name"),
}
# Housekeeping columns of the platforms: recognised, kept out of the items.
_PLATFORM_COLUMNS = {
    "kobo": {"_id", "_validation_status", "_notes", "_status", "_submitted_by", "_tags",
             "_index", "_attachments", "_geolocation", "meta/rootuuid", "formhub/uuid",
             "meta/deprecatedid", "audit", "audit_url", "today", "deviceid"},
    "odk": {"submitterid", "submittername", "attachmentspresent", "attachmentsexpected",
            "status", "reviewstate", "deviceid", "edits", "meta-audit", "audit", "today"},
    "redcap": {"redcap_survey_identifier", "redcap_repeat_instrument",
               "redcap_repeat_instance", "redcap_data_access_group"},
    "limesurvey": {"lastpage", "seed", "refurl", "ipaddr"},
}


@dataclass
class RawTable:
    """A source read as text columns, block by block (see :func:`read_raw`)."""

    path: Path
    kind: str  # csv | xlsx | sav | dta | parquet
    columns: list[str]
    blocks: Iterator[pd.DataFrame]  # each with a `__row` column (spreadsheet row)
    issues: list[ValidationIssue] = field(default_factory=list)
    encoding: str | None = None
    delimiter: str | None = None
    value_labels: dict[str, dict[Any, str]] = field(default_factory=dict)
    # how far the blocks handed out so far reach: (done, total) in bytes or rows
    position: Callable[[], tuple[int, int | None]] = lambda: (0, None)


def _issue(type_: str, message: str, *, severity: str = "error", **kw) -> ValidationIssue:
    return ValidationIssue(type=type_, message=message, severity=severity, **kw)


# ---------------------------------------------------------------------------
# sniffing
# ---------------------------------------------------------------------------

def _kind(path: Path, head: bytes) -> str:
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "xlsx"
    if head.startswith(b"$FL2") or head.startswith(b"$FL3"):
        return "sav"
    if head.startswith(b"<stata_dta>") or (len(head) > 1 and head[0] in (0x71, 0x72, 0x73) and head[1] in (1, 2)):
        return "dta"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "xls"
    ext = path.suffix.lower().lstrip(".")
    if ext in ("sav", "zsav", "dta", "parquet", "xlsx", "xlsm"):
        return {"zsav": "sav", "xlsm": "xlsx"}.get(ext, ext)
    return "csv"


def _guess_encoding(sample: bytes, path: Path) -> tuple[str, list[ValidationIssue]]:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", []
    if sample.startswith(codecs.BOM_UTF16_LE) or sample.startswith(codecs.BOM_UTF16_BE):
        return "utf-16", [_issue("encoding", f"{path.name}: UTF-16 text, read as such", severity="warning")]
    if b"\x00" in sample:
        raise ImportError_(_issue("not-a-table", f"{path.name}: binary content (NUL bytes); not a text table"))
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8", []
    except UnicodeDecodeError as exc:
        return "cp1252", [_issue(
            "encoding",
            f"{path.name}: not UTF-8 (byte {exc.start} of the file); read as Windows-1252. "
            "Check accented letters, or pass encoding=",
            severity="warning",
        )]


def sniff_delimiter(text: str) -> str:
    """The delimiter of delimited text (``,``, ``;``, tab or ``|``) from its first 50 non-blank lines;
    when the sniffer cannot tell, the one the header holds most of (``,`` if none). Every reader of
    CSV text in the suite uses this one."""
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in ",;\t|"}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _dedupe_header(names: list[str], path: Path) -> tuple[list[str], list[ValidationIssue]]:
    issues, out, seen = [], [], {}
    for j, raw in enumerate(names, start=1):
        name = (raw or "").strip().lstrip("\ufeff")
        if not name:
            name = f"column_{j}"
            issues.append(_issue("blank-header", f"{path.name}: column {j} has no header; named {name!r}",
                                 severity="warning", item=name, row=1))
        if name in ("_extra", "__row"):  # names the reader uses itself
            seen[name] = seen.get(name, 1)
        key = name.lower()
        if key in seen:
            seen[key] += 1
            new = f"{name}__dup{seen[key]}"
            issues.append(_issue(
                "duplicate-column",
                f"{path.name}: header {name!r} appears more than once (column {j}); "
                f"the copy is kept as {new!r} and not used as the item",
                item=name, row=1,
            ))
            name = new
        else:
            seen[key] = 1
        out.append(name)
    return out, issues


# ---------------------------------------------------------------------------
# readers: every one yields blocks of text columns plus a `__row` column
# ---------------------------------------------------------------------------

class _Recoded(io.RawIOBase):
    """A text file decoded line by line and handed on as UTF-8 (what pyarrow reads).

    Bytes that are not valid in ``encoding`` (a stray Windows-1252 byte far down
    a UTF-8 file) become U+FFFD in their cell instead of stopping the import;
    ``replaced`` says that some did, so the reader names those cells. Valid
    text, Urdu or accented, is never touched.
    """

    def __init__(self, path: Path, encoding: str):
        self._fh = open(path, "rb")
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        try:
            self._literal = "\ufffd".encode(encoding.replace("-sig", ""))
        except (UnicodeError, LookupError):
            self._literal = b""  # the encoding cannot hold U+FFFD: every one is a replacement
        self._out = b""
        self._eof = False
        self.replaced = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._out and not self._eof:
            chunk = self._fh.read(1 << 20)
            self._eof = not chunk
            text = self._decoder.decode(chunk, final=self._eof)
            n_bad = text.count("\ufffd")
            if n_bad and n_bad > (chunk.count(self._literal) if self._literal else 0):
                self.replaced = True
            self._out = text.encode("utf-8")
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def _is_utf8(path: Path, encoding: str) -> bool:
    """Whether the whole file is valid UTF-8 (a fast pass; ~1 s per GB)."""
    if encoding not in ("utf-8", "utf-8-sig"):
        return False
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _note_replaced(frame: pd.DataFrame, columns: list[str], path: Path, encoding: str,
                   issues: list[ValidationIssue], limit: int = 1000) -> None:
    """Name each cell that holds a replacement character (bytes that were not ``encoding``)."""
    shown = sum(i.type == "encoding" and i.row is not None for i in issues)
    for col in columns:
        if col not in frame or shown >= limit:
            continue
        hit = frame[col].astype("string").str.contains("\ufffd", regex=False, na=False).to_numpy()
        for i in np.flatnonzero(hit)[: limit - shown]:
            row = int(frame["__row"].iloc[i])
            name = "UTF-8" if encoding.startswith("utf-8") else encoding
            issues.append(_issue(
                "encoding",
                f"{path.name} row {row}: column {col!r} holds bytes that are not {name} (the rest of "
                "the file is); each was replaced by \ufffd. Check the cell, or if the whole file "
                "comes from a Windows program pass encoding='cp1252'",
                severity="warning", row=row, item=col, value=str(frame[col].iloc[i])[:200]))
            shown += 1


def _read_csv(path: Path, encoding: str | None, delimiter: str | None) -> RawTable:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    size = path.stat().st_size
    with open(path, "rb") as fh:
        sample = fh.read(1 << 16)
    if size == 0 or not sample.replace(codecs.BOM_UTF8, b"").strip():
        raise ImportError_(_issue("empty-file", f"{path.name}: the file is empty (no header, no rows)"))
    issues: list[ValidationIssue] = []
    if encoding is not None:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise ImportError_(_issue("bad-option", f"unknown encoding {encoding!r} (e.g. utf-8, cp1252, latin-1)")) from None
    if delimiter is not None and len(delimiter) != 1:
        raise ImportError_(_issue("bad-option", f"a delimiter is one character, got {delimiter!r}"))
    if encoding is None:
        encoding, enc_issues = _guess_encoding(sample, path)
        issues += enc_issues
    text = sample.decode(encoding, errors="replace")
    text = text.lstrip("\ufeff")
    skip = 0
    # blank lines above the header (each is a row to pyarrow) and Excel's "sep=;" hint
    while True:
        m = re.match(r"[ \t]*(\r\n|\n|\r)", text)
        if not m:
            break
        text = text[m.end():]
        skip += 1
    first = text.split("\n", 1)[0].strip()
    if re.fullmatch(r"sep=.", first):  # Excel's delimiter hint line
        delimiter = delimiter or first[4]
        skip += 1
        text = text.split("\n", 1)[1] if "\n" in text else ""
    if not text.strip():
        raise ImportError_(_issue("empty-file", f"{path.name}: the file has no header row"))
    delimiter = delimiter or sniff_delimiter(text)
    try:
        header = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except (csv.Error, StopIteration) as exc:
        raise ImportError_(_issue("unreadable", f"{path.name}: the header row cannot be read ({exc})", row=1)) from exc
    if not header:
        raise ImportError_(_issue("unreadable", f"{path.name}: the header row is empty", row=skip + 1))
    if skip:
        issues.append(_issue("blank-line", f"{path.name}: {skip} line(s) above the header skipped",
                             severity="warning", row=1))
    columns, hdr_issues = _dedupe_header(header, path)
    issues += hdr_issues
    recovered: list[tuple[int, list[str]]] = []

    def on_invalid(row) -> str:
        try:
            cells = next(csv.reader(io.StringIO(row.text, newline=""), delimiter=delimiter), [])
        except csv.Error:
            cells = row.text.split(delimiter)
        recovered.append((row.number - skip, cells))
        return "skip"

    read_opts = pacsv.ReadOptions(
        encoding="utf8",  # valid UTF-8, or recoded to it (see _Recoded)
        column_names=columns,
        skip_rows=1 + skip,
        use_threads=False,
        block_size=BLOCK_SIZE,
    )
    # empty lines are kept as records so that pyarrow's row numbers match the file's;
    # they come back through on_invalid and are reported, not silently skipped
    parse_opts = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                    ignore_empty_lines=False, invalid_row_handler=on_invalid)
    # Only an empty cell is null here: "NA" typed as a free-text answer is kept; number and
    # code columns read the usual missing markers (NA, NULL, ".") as blank when they are parsed.
    conv_opts = pacsv.ConvertOptions(column_types={c: pa.string() for c in columns}, null_values=[""],
                                     strings_can_be_null=True, quoted_strings_can_be_null=True)

    # progress in bytes, estimated from the records converted so far (pyarrow reads
    # ahead, so the file position runs early); bytes per record from the first 64 KB
    per_row = len(sample) / max(sample.count(b"\n"), 1) if len(sample) < size else size / max(sample.count(b"\n"), 1)
    done = [0]

    def position() -> tuple[int, int]:
        return min(int(done[0] * per_row), size - 1) if done[0] >= 0 else size, size

    def blocks() -> Iterator[pd.DataFrame]:
        # pyarrow reads valid UTF-8 itself, twice as fast as through a Python stream
        stream = None if _is_utf8(path, encoding) else _Recoded(path, encoding)
        try:
            yield from _blocks(stream)
        finally:
            if stream is not None:
                stream.close()
        done[0] = -1  # the end

    def _blocks(stream: _Recoded | None) -> Iterator[pd.DataFrame]:
        row = 1  # spreadsheet row of the last record handed out (header = 1)
        try:
            reader = pacsv.open_csv(stream or path, read_options=read_opts, parse_options=parse_opts,
                                    convert_options=conv_opts)
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            raise ImportError_(_issue("unreadable", f"{path.name}: {exc}")) from exc
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                batch = None
            except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                hint = "; pass encoding='cp1252' (or the right one)" if "UTF8" in str(exc) else ""
                raise ImportError_(_issue(
                    "unreadable", f"{path.name}: cannot read past row {row}: {exc}{hint}", row=row,
                )) from exc
            frame = batch.to_pandas() if batch is not None else pd.DataFrame(columns=columns)
            # rows pyarrow set aside (ragged) go back where they were
            bad = sorted(recovered, key=lambda t: t[0])
            recovered.clear()
            if bad:
                bad_numbers = np.array([b[0] for b in bad])
                span = np.arange(row + 1, row + 1 + len(frame) + len(bad))
                good_numbers = np.setdiff1d(span, bad_numbers)[: len(frame)]
                if len(good_numbers) < len(frame):  # numbering beyond the span: keep counting
                    good_numbers = np.arange(row + 1, row + 1 + len(frame))
                frame["__row"] = good_numbers
                frame = _merge_ragged(frame, bad, columns, path, issues)
                row = int(max(good_numbers.max(initial=row), bad_numbers.max()))
            else:
                if "_extra" not in frame:
                    frame["_extra"] = ""
                frame["__row"] = np.arange(row + 1, row + 1 + len(frame))
                row += len(frame)
            done[0] = row
            if stream is not None and stream.replaced and len(frame):
                _note_replaced(frame, columns, path, encoding, issues)
            if len(frame):
                yield frame
            if batch is None:
                break

    return RawTable(path, "csv", columns, blocks(), issues, encoding, delimiter, position=position)


def _merge_ragged(frame, bad, columns, path, issues) -> pd.DataFrame:
    """Put ragged rows back in file order: short ones padded, long ones kept, blank lines named."""
    n = len(columns)
    fixed, numbers, blank_lines = [], [], []
    for number, cells in bad:
        if not any(c.strip() for c in cells):
            blank_lines.append(number)
            continue
        if len(cells) < n:
            issues.append(_issue(
                "ragged-row",
                f"{path.name} row {number}: {len(cells)} cells for {n} columns; "
                "the missing cells are read as blank",
                severity="warning", row=number,
            ))
            cells = cells + [""] * (n - len(cells))
            extra = ""
        else:
            issues.append(_issue(
                "ragged-row",
                f"{path.name} row {number}: {len(cells)} cells for {n} columns; "
                f"the surplus ({', '.join(repr(c) for c in cells[n:][:5])}) is kept in column '_extra'",
                severity="error", row=number,
            ))
            extra = "\x1f".join(cells[n:])
            cells = cells[:n]
        fixed.append(cells + [extra])
        numbers.append(number)
    if blank_lines:
        shown = ", ".join(map(str, blank_lines[:10])) + (" ..." if len(blank_lines) > 10 else "")
        issues.append(_issue("blank-line", f"{path.name}: {len(blank_lines)} empty line(s) skipped (row {shown})",
                             severity="warning", row=blank_lines[0]))
    frame = frame.copy()
    if "_extra" not in frame:
        frame["_extra"] = ""
    if not fixed:
        return frame
    bad_frame = pd.DataFrame(fixed, columns=[*columns, "_extra"])
    bad_frame["__row"] = numbers
    out = pd.concat([frame, bad_frame], ignore_index=True)
    return out.sort_values("__row", kind="stable").reset_index(drop=True)


def _zip_members(path: Path) -> list[zipfile.ZipInfo]:
    """The members of a zip (XLSX or an ODK Central download), refusing a zip bomb."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ImportError_(_issue("unreadable", f"{path.name}: not a valid XLSX/zip file ({exc})")) from exc
    with zf:
        infos = zf.infolist()
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos) or 1

    def refuse(what: str) -> ImportError_:
        return ImportError_(_issue("zip-bomb", f"{path.name}: refuses to open: {what}; a spreadsheet this "
                                   "inflated is a zip bomb or not a survey export"))

    if total > MAX_XLSX_UNCOMPRESSED:
        raise refuse(f"{_mb(total)} when unpacked from {_mb(packed)} (the limit is {_mb(MAX_XLSX_UNCOMPRESSED)})")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > MAX_XLSX_MEMBER:
            raise refuse(f"member {info.filename} unpacks to {_mb(info.file_size)} "
                         f"(the limit is {_mb(MAX_XLSX_MEMBER)} per member)")
        if info.file_size > 1024**2 and ratio > MAX_XLSX_RATIO:
            raise refuse(f"member {info.filename} unpacks to {_mb(info.file_size)} from "
                         f"{_mb(info.compress_size)} (ratio {ratio:.0f}; the limit is {MAX_XLSX_RATIO})")
    return infos


def _mb(n: int) -> str:
    return f"{n / 1024**2:,.0f} MB" if n >= 1024**2 else f"{n / 1024**2:.2f} MB"


def _check_zip(path: Path) -> None:
    if "xl/workbook.xml" not in {i.filename for i in _zip_members(path)}:
        raise ImportError_(_issue("unreadable", f"{path.name}: a zip file but not an XLSX workbook"))


def _zipped_csv(path: Path, infos: list[zipfile.ZipInfo], encoding, delimiter) -> RawTable:
    """ODK Central's 'all submissions' download: a zip of the form's CSV and one per repeat."""
    import shutil
    import tempfile

    tables = [i for i in infos if not i.is_dir() and "__MACOSX" not in i.filename
              and Path(i.filename).suffix.lower() in (".csv", ".tsv")]
    if not tables:
        raise ImportError_(_issue("unreadable", f"{path.name}: a zip file with neither a workbook nor a CSV"))
    tables.sort(key=lambda i: len(Path(i.filename).stem))
    main, rest = tables[0], tables[1:]
    stem = Path(main.filename).stem
    if any(not Path(i.filename).stem.startswith(stem + "-") for i in rest):
        names = ", ".join(i.filename for i in tables[:6])
        raise ImportError_(_issue("unreadable", f"{path.name}: holds several tables ({names}); unzip it "
                                  "and import the one with the responses"))
    tmp = tempfile.TemporaryDirectory(prefix="resilience-zip-")
    inner = Path(tmp.name) / Path(main.filename).name
    with zipfile.ZipFile(path) as zf, zf.open(main) as src, open(inner, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    raw = _read_csv(inner, encoding, delimiter)
    raw.path = path
    raw.tmp = tmp  # the unpacked copy lives as long as the table is read
    raw.issues.insert(0, _issue("zip", f"{path.name}: read {main.filename} from the zip"
                                + (f"; repeat tables not imported: {', '.join(i.filename for i in rest)}" if rest else ""),
                                severity="warning"))
    return raw


def _cell_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def _scan_sheet(path: Path, member: str) -> tuple[bool, list[str]]:
    """(whether the sheet holds a formula cell, its merged ranges on row 1), read in
    chunks from the sheet's XML so that no workbook is ever loaded whole."""
    formula = re.compile(rb"<(?:\w+:)?f[ >/]")
    merge = re.compile(rb'<(?:\w+:)?mergeCell\s[^>]*ref="([A-Z]+1:[A-Z]+\d+)"')
    found, merged, tail = False, [], b""
    with zipfile.ZipFile(path) as zf, zf.open(member) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            text = tail + chunk
            found = found or bool(formula.search(text))
            merged += [m.group(1).decode() for m in merge.finditer(text)]
            tail = chunk[-200:]
            # a match lying wholly in the carried tail was already counted
            merged = list(dict.fromkeys(merged))
    return found, merged


def _read_xlsx(path: Path, sheet: str | None) -> RawTable:
    import openpyxl

    _check_zip(path)
    try:
        # read-only: the sheet is streamed, never loaded whole (whatever its size);
        # data_only: formulas give their cached value and are never evaluated
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken workbook
        raise ImportError_(_issue("unreadable", f"{path.name}: not a readable XLSX workbook ({exc})")) from exc
    issues: list[ValidationIssue] = []
    if sheet is not None and sheet not in wb.sheetnames:
        raise ImportError_(_issue("unreadable", f"{path.name}: no sheet {sheet!r} (sheets: {wb.sheetnames})"))
    ws = wb[sheet] if sheet else wb.worksheets[0]
    # the sheet's declared dimension: rows for progress, columns so that a column without
    # a header is still read (it may lie: see below, and padding counts against MAX_XLSX_CELLS)
    total_rows, width = ws.max_row, ws.max_column or 0
    ws.reset_dimensions()  # rows are never padded out by openpyxl to a declared A1:XFD1048576
    rows = ws.iter_rows(values_only=True)
    has_formulas, merged = _scan_sheet(path, ws._worksheet_path)
    # a formula saved without its result reads as blank; the formulas themselves
    # (read as text, never computed) say which blanks are really formulas
    formulas = wb_f = None
    if has_formulas:
        wb_f = openpyxl.load_workbook(path, read_only=True, data_only=False)
        ws_f = wb_f[ws.title]
        ws_f.reset_dimensions()
        formulas = ws_f.iter_rows(values_only=True)
        next(formulas, None)
    header = next(rows, None)
    if header is None or all(v is None for v in header):
        raise ImportError_(_issue("empty-file", f"{path.name}: sheet {ws.title!r} is empty"))
    header = [_cell_text(v) for v in header]
    if width <= len(header) + 256:  # a few unheaded columns; a sheet claiming thousands more lies,
        header += [""] * (width - len(header))  # and its surplus cells go to '_extra' as ragged rows
    header_rows = 1
    if merged:
        from openpyxl.utils.cell import range_boundaries

        # merged cells over the header: a two-row header (group over items)
        second = [_cell_text(v) for v in next(rows, ())]
        if formulas is not None:
            next(formulas, None)
        width = max([len(header), len(second)] + [range_boundaries(r)[2] for r in merged])
        header += [""] * (width - len(header))
        second += [""] * (width - len(second))
        for ref in merged:
            min_col, _, max_col, _ = range_boundaries(ref)
            for c in range(min_col, max_col + 1):
                header[c - 1] = header[min_col - 1]
        header = [f"{g}/{s}" if g and s and g != s else (s or g) for g, s in zip(header, second)]
        header_rows = 2
        issues.append(_issue(
            "merged-header",
            f"{path.name}: merged cells in the header ({', '.join(merged)}); "
            "read rows 1-2 as one header 'group/item'",
            severity="warning", row=1,
        ))
    columns, hdr_issues = _dedupe_header(header, path)
    issues += hdr_issues
    n = len(columns)
    done = [0]

    def blocks() -> Iterator[pd.DataFrame]:
        buf, numbers = [], []
        r = header_rows
        n_formulas = 0
        n_cells = 0
        for values in rows:
            r += 1
            done[0] = r
            n_cells += max(len(values), n)
            if n_cells > MAX_XLSX_CELLS:
                raise ImportError_(_issue(
                    "too-many-cells",
                    f"{path.name}: sheet {ws.title!r} holds more than {MAX_XLSX_CELLS:,} cells (at row {r}); "
                    "refused as a spreadsheet bomb. Export the data as CSV, which is read in blocks",
                    row=r))
            if len(values) > n:  # only the surplus cells that hold something are converted
                values = (*values[:n], *(v for v in values[n:] if v is not None))
            cells = [_cell_text(v) for v in values]
            if formulas is not None:
                for j, f in enumerate(next(formulas, ())):
                    if isinstance(f, str) and f.startswith("=") and j < min(n, len(cells)) and values[j] is None:
                        cells[j] = f
                        n_formulas += 1
                        if n_formulas <= 100:
                            issues.append(_issue(
                                "formula-without-value",
                                f"{path.name} row {r}: column {columns[j] if j < n else j + 1} holds a formula "
                                f"({f[:40]}) saved without its result; kept as that text, never computed. "
                                "Open and save the file in a spreadsheet program to store the results",
                                severity="warning", row=r, item=columns[j] if j < n else None, value=f[:200]))
            if len(cells) > n:
                if any(c != "" for c in cells[n:]):
                    issues.append(_issue(
                        "ragged-row",
                        f"{path.name} row {r}: values beyond the last headed column are kept in '_extra'",
                        severity="error", row=r,
                    ))
                extra = "\x1f".join(c for c in cells[n:] if c)
                cells = cells[:n]
            else:
                extra = ""
                cells += [""] * (n - len(cells))
            if all(c == "" for c in cells) and not extra:
                continue  # trailing blank rows of a sheet are not responses
            buf.append(cells + [extra])
            numbers.append(r)
            if len(buf) >= 100_000:
                yield _frame(buf, numbers, columns)
                buf, numbers = [], []
        if buf:
            yield _frame(buf, numbers, columns)
        wb.close()
        if wb_f is not None:
            wb_f.close()

    return RawTable(path, "xlsx", columns, blocks(), issues, position=lambda: (done[0], total_rows))


def _frame(buf, numbers, columns) -> pd.DataFrame:
    frame = pd.DataFrame(buf, columns=[*columns, "_extra"])
    frame["__row"] = numbers
    return frame


def _read_stat(path: Path, kind: str) -> RawTable:
    import pyreadstat

    reader = pyreadstat.read_sav if kind == "sav" else pyreadstat.read_dta
    try:
        frame, meta = reader(str(path), apply_value_formats=False)
    except Exception as exc:  # pyreadstat.ReadstatError and friends
        raise ImportError_(_issue("unreadable", f"{path.name}: not a readable {kind.upper()} file ({exc})")) from exc
    frame = frame.reset_index(drop=True)
    frame["__row"] = np.arange(2, len(frame) + 2)
    labels = {}
    for col, labset in (meta.variable_to_label or {}).items():
        labels[col] = meta.value_labels.get(labset, {})
    return RawTable(path, kind, list(frame.columns[:-1]), iter([frame]), [], value_labels=labels,
                    position=lambda: (len(frame), len(frame)))


def _read_parquet(path: Path) -> RawTable:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise ImportError_(_issue("unreadable", f"{path.name}: not a readable Parquet file ({exc})")) from exc
    columns = pf.schema_arrow.names
    done = [0]

    def blocks():
        start = 2
        for batch in pf.iter_batches(batch_size=500_000):
            frame = batch.to_pandas()
            frame["__row"] = np.arange(start, start + len(frame))
            start += len(frame)
            done[0] += len(frame)
            yield frame

    return RawTable(path, "parquet", columns, blocks(), [],
                    position=lambda: (done[0], pf.metadata.num_rows))


def read_raw(path: str | Path, *, encoding: str | None = None, delimiter: str | None = None,
             sheet: str | None = None) -> RawTable:
    """Open any supported file as blocks of columns (text for CSV/XLSX, typed otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise ImportError_(_issue("file-not-found", f"{path}: no such file"))
    with open(path, "rb") as fh:
        head = fh.read(16)
    kind = _kind(path, head)
    if kind == "xls":
        raise ImportError_(_issue("unsupported-format",
                                  f"{path.name}: legacy .xls workbook; save it as .xlsx or CSV"))
    if kind == "xlsx":
        infos = _zip_members(path)
        if "xl/workbook.xml" not in {i.filename for i in infos}:
            return _zipped_csv(path, infos, encoding, delimiter)
        return _read_xlsx(path, sheet)
    if kind in ("sav", "dta"):
        return _read_stat(path, kind)
    if kind == "parquet":
        return _read_parquet(path)
    return _read_csv(path, encoding, delimiter)


# ---------------------------------------------------------------------------
# format detection and the column map
# ---------------------------------------------------------------------------

def detect_format(columns: list[str], kind: str = "csv") -> str:
    """Guess the platform from the header; falls back to the file kind."""
    low = {c.lower() for c in columns}
    if low & {"_uuid", "_submission_time", "__version__"}:
        return "kobo"
    if "key" in low and low & {"submissiondate", "formversion", "meta-instanceid"}:
        return "odk"
    if ("startlanguage" in low) or {"id", "submitdate", "lastpage"} <= low:
        return "limesurvey"
    if ("record_id" in low or "redcap_survey_identifier" in low
            or any(re.search(r"___[a-z0-9_]+$", c) for c in low)
            or any(c.endswith("_complete") for c in low)):
        return "redcap"
    return kind


def load_mapping(path: str | Path | Mapping | None) -> dict[str, Any]:
    """A mapping file renames items across form versions.

    YAML (or JSON)::

        renames: {Q5: TRUST3, trust_police: TRUST1}   # every version
        versions:                                     # only rows of that version
          "2024031501": {NAV_1: NAVIG1}
        absent:                                       # items a version did not ask
          "2024031501": [NAVIG4, RESIL4]

    or a CSV with columns ``from,to[,form_version]``. Validation does not count
    an item as missing in the rows (or the file) of a version that did not ask it.
    """
    if path is None:
        return {"renames": {}, "versions": {}, "absent": {}}
    if isinstance(path, Mapping):
        spec = dict(path)
    else:
        p = Path(path)
        if not p.is_file():
            raise ImportError_(_issue("file-not-found", f"{p}: mapping file not found"))
        if p.suffix.lower() == ".csv":
            frame = pd.read_csv(p, dtype=str, keep_default_na=False)
            missing = {"from", "to"} - set(frame.columns)
            if missing:
                raise ImportError_(_issue("bad-mapping", f"{p.name}: mapping CSV lacks column(s) {sorted(missing)}"))
            spec = {"renames": {}, "versions": {}, "absent": {}}
            for rec in frame.to_dict("records"):
                ver = rec.get("form_version", "")
                target = spec["versions"].setdefault(ver, {}) if ver else spec["renames"]
                target[rec["from"]] = rec["to"]
        else:
            from ruamel.yaml import YAML

            try:
                spec = YAML(typ="safe").load(p.read_text(encoding="utf-8")) or {}
            except Exception as exc:
                raise ImportError_(_issue("bad-mapping", f"{p.name}: not valid YAML ({exc})")) from exc
    if not isinstance(spec, Mapping) or not set(spec) <= {"renames", "versions", "absent"}:
        raise ImportError_(_issue("bad-mapping", "mapping must have keys 'renames', 'versions' and/or 'absent'"))
    renames = {str(k): str(v) for k, v in (spec.get("renames") or {}).items()}
    versions = {str(v): {str(a): str(b) for a, b in m.items()} for v, m in (spec.get("versions") or {}).items()}
    absent = spec.get("absent") or {}
    if not isinstance(absent, Mapping) or not all(isinstance(v, (list, tuple)) for v in absent.values()):
        raise ImportError_(_issue("bad-mapping", "mapping 'absent' lists items per form version: "
                                  "{\"2024031501\": [NAVIG4]}"))
    absent = {str(v): [str(i) for i in items] for v, items in absent.items()}
    return {"renames": renames, "versions": versions, "absent": absent}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip().casefold()


@dataclass
class _Target:
    kind: str  # item | meta | multi | platform | unknown | extra
    name: str
    code: int | None = None


def _column_map(columns: list[str], fmt: str, instrument, renames: Mapping[str, str]) -> dict[str, _Target]:
    """Decide what each source column is (an item, metadata, a checkbox ...)."""
    items = {it.id.casefold(): it.id for it in instrument.items}
    ls_codes = {limesurvey_code(it.id).casefold(): it.id for it in instrument.items}
    labels = {}
    for it in instrument.items:  # label headers (Kobo/REDCap "labels" exports)
        for text in it.text.values():
            labels.setdefault(_norm(text), it.id)
    renames_cf = {k.casefold(): v for k, v in renames.items()}
    platform = set().union(*_PLATFORM_COLUMNS.values())
    meta_alias = {a: m for m, aliases in _META_ALIASES.items() for a in aliases}
    out: dict[str, _Target] = {}
    taken: set[str] = set()
    lowered = {c.casefold() for c in columns}

    def resolve(name: str) -> str | None:
        key = name.casefold()
        if key in renames_cf:
            return renames_cf[key]
        if key in items:
            return items[key]
        if fmt == "limesurvey" and key in ls_codes:
            return ls_codes[key]
        return None

    if fmt == "limesurvey" and "token" in lowered:
        # LimeSurvey's `id` is a counter; the participant token names the respondent
        meta_alias = {**meta_alias, "token": "respondent_id"}
        platform = platform | {"id"}
        meta_alias.pop("id", None)
    for col in columns:
        if col == "_extra":
            out[col] = _Target("extra", col)
            continue
        low = col.casefold()
        # strip group prefixes: Kobo group/item, ODK group-item
        parts = [col]
        if "/" in col:
            parts = col.split("/")
        elif fmt == "odk" and "-" in col:
            parts = col.split("-")
        leaf = parts[-1]
        target = None
        # Kobo select_multiple 0/1 columns: group/item/code
        if len(parts) >= 2 and re.fullmatch(r"-?\d+", leaf):
            base = resolve(parts[-2]) or (resolve(parts[-2].split("-")[-1]) if fmt == "odk" else None)
            if base:
                target = _Target("multi", base, int(leaf))
        m = re.fullmatch(r"(.+?)___(\d+|m\d+)", col)  # REDCap checkbox field___code
        if target is None and m:
            base = resolve(m.group(1))
            code = m.group(2)
            if base:
                target = _Target("multi", base, -int(code[1:]) if code.startswith("m") else int(code))
        lsm = re.fullmatch(r"(.+?)\[(.+)\]", col)  # LimeSurvey multiple choice Q[SQ]
        if target is None and lsm and fmt == "limesurvey":
            base = resolve(lsm.group(1))
            if base and re.fullmatch(r"N?\d+", lsm.group(2)):
                c = lsm.group(2)
                target = _Target("multi", base, -int(c[1:]) if c.startswith("N") else int(c))
        if target is None:
            item = resolve(col) or resolve(leaf)
            # LimeSurvey's "question code & question text" headings: 'CULT1. Local services ...'
            lsq = re.match(r"([A-Za-z][A-Za-z0-9_]*)\. ", col) if fmt == "limesurvey" else None
            if item is None and lsq:
                item = resolve(lsq.group(1))
            if item is None and fmt in ("kobo", "redcap", "limesurvey", "csv", "xlsx"):
                item = labels.get(_norm(col))
                if item is not None and low in meta_alias:
                    item = None
            if item is not None and item not in taken:
                target = _Target("item", item)
                taken.add(item)
        if target is None:
            meta = meta_alias.get(low) or meta_alias.get(leaf.casefold())
            if meta == "respondent_id" and low == "id" and fmt not in ("limesurvey", "csv", "xlsx", "sav", "dta", "parquet"):
                meta = None  # Kobo's numeric `_id` etc. are not the respondent
            if meta and meta not in {t.name for t in out.values() if t.kind == "meta"}:
                target = _Target("meta", meta)
            elif meta:  # a second alias of metadata already read (ODK meta-instanceID and KEY)
                target = _Target("platform", col)
        if target is None:
            if low in platform or low.endswith("_complete") or low.endswith("_timestamp") or low.startswith("_"):
                target = _Target("platform", col)
            else:
                target = _Target("unknown", col)
        out[col] = target
    return out


# ---------------------------------------------------------------------------
# converting values
# ---------------------------------------------------------------------------

def _value_lookup(instrument, item_id: str, extra_labels: Mapping | None = None) -> dict[str, float]:
    """Text -> code for a categorical item: codes, labels in every language, LimeSurvey codes."""
    scale = instrument.scale_of(item_id)
    table: dict[str, float] = {}
    for cat in [*scale.categories, *scale.missing]:
        table[_norm(cat.code)] = float(cat.code)
        table[_norm(limesurvey_answer_code(cat.code))] = float(cat.code)
        for text in cat.label.values():
            table.setdefault(_norm(text), float(cat.code))
    for code, label in (extra_labels or {}).items():
        try:
            table.setdefault(_norm(label), float(code))
        except (TypeError, ValueError):
            pass
    return table


def _label_conflicts(value_labels: Mapping[str, Mapping], cmap, instrument, path: Path) -> list[ValidationIssue]:
    """An SPSS/Stata file's value labels against the instrument's categories.

    A label that the instrument gives to another code (1 = "Strongly agree" on a
    scale whose 1 is "Strongly disagree") means the codes are not the
    instrument's: read as they are, the scale would be silently reversed.
    """
    out = []
    for col, labels in value_labels.items():
        target = cmap.get(col)
        if target is None or target.kind != "item" or not labels:
            continue
        scale = instrument.scale_of(target.name)
        if not scale.is_categorical:
            continue
        codes_of: dict[str, float] = {}
        shown: dict[float, str] = {}
        for cat in [*scale.categories, *scale.missing]:
            shown[float(cat.code)] = cat.label.get(instrument.default_language) or next(iter(cat.label.values()), "")
            for text in cat.label.values():
                codes_of.setdefault(_norm(text), float(cat.code))
        clashes = []
        for code, label in labels.items():
            try:
                code = float(code)
            except (TypeError, ValueError):
                continue
            meant = codes_of.get(_norm(label))
            if meant is not None and meant != code:
                clashes.append((code, str(label)))
        if not clashes:
            continue

        def fmt(code: float) -> str:
            return str(int(code)) if code.is_integer() else str(code)

        theirs = ", ".join(f"{fmt(c)} = {lab!r}" for c, lab in sorted(clashes))
        ours = ", ".join(f"{fmt(c)} = {shown.get(c, '(no category)')!r}" for c, _ in sorted(clashes))
        out.append(_issue(
            "value-labels",
            f"{path.name}: {target.name} (column {col!r}) is labelled {theirs} in the file, but "
            f"{instrument.id} has {ours}: the codes may be reversed or from another scale. Recode "
            "the file to the instrument's codes (or correct its labels) before importing",
            item=target.name, value=theirs[:200]))
    return out


def _to_number(col: pd.Series) -> pd.Series:
    """Numbers as float64; anything else NaN (the caller decides what that means)."""
    if pd.api.types.is_bool_dtype(col):
        return col.astype("float64")
    if pd.api.types.is_numeric_dtype(col):
        return col.astype("float64")
    import pyarrow as pa
    import pyarrow.compute as pc

    try:  # fast path: pyarrow parses a clean column of numbers in C++
        arr = pa.array(col, from_pandas=True)
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            out = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
            return pd.Series(out, index=col.index, dtype="float64")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    return pd.to_numeric(col, errors="coerce").astype("float64")


def _decimal_comma(s: pd.Series) -> pd.Series:
    """'3,5' -> 3.5 for values that did not parse (European exports)."""
    return pd.to_numeric(s.astype("string").str.strip().str.replace(",", ".", regex=False),
                         errors="coerce").astype("float64")


def _to_datetime(col: pd.Series) -> pd.Series:
    """ISO text, Excel date serials (days since 1899-12-30) or Unix-ish values."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return col.dt.tz_localize(None) if getattr(col.dt, "tz", None) is not None else col
    num = _to_number(col)
    out = pd.to_datetime(col.astype("string").where(num.isna()), errors="coerce", utc=True, format="mixed")
    out = out.dt.tz_convert(None)
    serial = num.where((num > 20000) & (num < 80000))
    if serial.notna().any():
        out = out.where(serial.isna(), EXCEL_EPOCH + pd.to_timedelta(serial, unit="D"))
    return out.astype("datetime64[ns]")


def _blank(col: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_datetime64_any_dtype(col):
        return col.isna()
    s = col.astype("string")
    return s.isna() | (s.str.strip() == "")


@dataclass
class ImportResult:
    """Responses in the suite's shape, with every problem met while reading."""

    data: pd.DataFrame
    format: str
    source: str
    sha256: str
    issues: list[ValidationIssue]
    column_map: dict[str, str]
    platform_columns: list[str]
    unknown_columns: list[str]
    encoding: str | None = None
    delimiter: str | None = None
    absent: dict[str, list[str]] = field(default_factory=dict)  # form version -> items it did not ask

    @property
    def n_rows(self) -> int:
        return len(self.data)

    @property
    def errors(self) -> list[ValidationIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[ValidationIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    def issues_frame(self) -> pd.DataFrame:
        return issues_frame(self.issues)

    def summary(self) -> str:
        # the problems met while reading only; the validator's verdict (valid or not) comes after
        head = f"{Path(self.source).name}: {self.n_rows} responses read as {self.format}"
        if not self.issues:
            return head
        return f"{head}; reading: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "format": self.format, "sha256": self.sha256,
            "n_rows": self.n_rows, "encoding": self.encoding, "delimiter": self.delimiter,
            "column_map": self.column_map, "platform_columns": self.platform_columns,
            "unknown_columns": self.unknown_columns,
            "issues": [i.to_dict() for i in self.issues],
        }

    def __repr__(self) -> str:
        return f"<ImportResult {self.summary()}>"


def import_responses(
    path: str | Path,
    instrument,
    *,
    format: str | None = None,  # noqa: A002 - the CLI option's name
    mapping: str | Path | Mapping | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> ImportResult:
    """Read a data file into the suite's response shape (see the module docs).

    ``format`` overrides detection (one of :data:`FORMATS`); ``mapping`` renames
    items across form versions (see :func:`load_mapping`). ``progress`` is called
    as ``progress("reading", done, total)`` after each block (bytes for text
    files, rows otherwise; total None when unknown). Raises
    :class:`ImportError_` only when the file cannot be read at all.
    """
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise ImportError_(_issue("bad-option", f"unknown format {format!r}; choose one of {', '.join(FORMATS)}"))
    spec = load_mapping(mapping)
    raw = read_raw(path, encoding=encoding, delimiter=delimiter, sheet=sheet)
    fmt = format or detect_format(raw.columns, raw.kind)
    cmap = _column_map(raw.columns, fmt, instrument, spec["renames"])
    # version-specific renames: the old column's values move to the new item for those rows
    version_renames = spec["versions"]
    lookups = {}
    for col, t in cmap.items():
        if t.kind in ("item", "multi") and instrument.scale_of(t.name).is_categorical:
            lookups[col] = _value_lookup(instrument, t.name, raw.value_labels.get(col))
    issues = list(raw.issues) + _label_conflicts(raw.value_labels, cmap, instrument, path)
    frames = []
    for block in raw.blocks:
        frame = _convert_block(block, cmap, instrument, lookups, version_renames, issues, path)
        del block
        frames.append(_to_arrow(frame))  # typed and compact; the block's text is freed
        if progress is not None:
            progress("reading", *raw.position())
    if progress is not None:  # the end of the file
        progress("reading", *raw.position())
    issues[:] = raw.issues + [i for i in issues if i not in raw.issues]
    data = _assemble(frames, cmap, instrument, path, issues, fmt)
    sha = file_sha256(path)
    unknown = [c for c, t in cmap.items() if t.kind == "unknown"]
    for col in unknown:
        issues.append(_issue("unknown-column",
                             f"{path.name}: column {col!r} is not an item of {instrument.id}; kept as text",
                             severity="warning", item=col))
    if len(data) == 0:
        issues.append(_issue("no-rows", f"{path.name}: a header but no responses", severity="warning"))
    return ImportResult(
        data=data, format=fmt, source=str(path), sha256=sha, issues=issues,
        column_map={c: (f"{t.name}___{t.code}" if t.kind == "multi" else t.name)
                    for c, t in cmap.items() if t.kind in ("item", "meta", "multi")},
        platform_columns=[c for c, t in cmap.items() if t.kind == "platform"],
        unknown_columns=unknown, encoding=raw.encoding, delimiter=raw.delimiter, absent=spec["absent"],
    )


def _convert_block(block, cmap, instrument, lookups, version_renames, issues, path) -> pd.DataFrame:
    out: dict[str, pd.Series] = {"source_row": block["__row"].astype("int64").reset_index(drop=True)}
    block = block.reset_index(drop=True)
    rows = out["source_row"]
    for col, t in cmap.items():
        if col not in block.columns:
            continue
        s = block[col]
        if t.kind == "meta":
            out[t.name] = s
        elif t.kind == "item":
            value = _convert_item(s, col, t.name, instrument, lookups.get(col), rows, issues, path)
            # codes fit float32 exactly: half the memory of float64 for big files
            out[t.name] = value.astype("float32") if instrument.scale_of(t.name).is_categorical else value
        elif t.kind == "multi":
            num = _to_number(s)
            bad = num.notna() & ~num.isin([0, 1]) | (num.isna() & ~_blank(s))
            for i in np.flatnonzero(bad.to_numpy())[:1000]:
                issues.append(_issue("wrong-type", f"{path.name} row {rows[i]}: checkbox {col!r} must be 0 or 1, got {s.iloc[i]!r}",
                                     row=int(rows[i]), item=f"{t.name}___{t.code}", value=str(s.iloc[i])))
            out[f"{t.name}___{t.code}"] = num.where(~bad)
        elif t.kind in ("unknown", "extra"):
            if t.kind == "extra" and not _blank(s).all():
                out["_extra"] = s.astype("string")
            elif t.kind == "unknown":
                out[col] = s.astype("string")  # one type across imports of the store
    if "_extra" in block.columns and not _blank(block["_extra"]).all():
        out["_extra"] = block["_extra"].astype("string").where(~_blank(block["_extra"]))
    frame = pd.DataFrame(out)
    if version_renames and "form_version" in frame:
        version = frame["form_version"].astype("string").fillna("")
        for ver, ren in version_renames.items():
            mask = version == ver
            for old, new in ren.items():
                src = next((c for c in frame.columns if c.casefold() == old.casefold()), None)
                if src is None or not mask.any():
                    continue
                if new not in frame:
                    try:
                        instrument.item(new)
                    except KeyError:
                        issues.append(_issue("bad-mapping", f"mapping renames {old!r} to {new!r}, which is not an item"))
                        continue
                    frame[new] = np.nan
                if src in lookups or not pd.api.types.is_numeric_dtype(frame[src]):
                    converted = _convert_item(frame[src].astype("string"), old, new, instrument,
                                              _value_lookup(instrument, new) if instrument.scale_of(new).is_categorical else None,
                                              rows, issues, path)
                else:
                    converted = frame[src]
                frame[new] = frame[new].where(~mask, converted)
    return frame


def _convert_item(s, col, item_id, instrument, lookup, rows, issues, path) -> pd.Series:
    scale = instrument.scale_of(item_id)
    if scale.type == "text":
        text = s.astype("string")
        # undo the apostrophe that defused a formula when the file was written
        text = text.str.replace(r"^'(?=[=+\-@\t\r])", "", regex=True)
        return text.where(~_blank(s))
    if scale.type == "date":
        out = _to_datetime(s)
        bad = out.isna() & ~_blank(s)
        _note_bad(bad, s, rows, col, item_id, "wrong-type", "is not a date", issues, path)
        return out
    num = _to_number(s)
    nan = num.isna()
    if not nan.any() or pd.api.types.is_numeric_dtype(s):
        return num
    # only the cells that did not parse as numbers are looked at again (fast path)
    sub = s[nan].astype("string")
    blank = sub.isna() | sub.str.strip().isin(_MISSING_MARKERS)
    todo = sub[~blank]
    if todo.empty:
        return num
    num = num.copy()
    if scale.type == "numeric":
        fixed = _decimal_comma(todo)
    else:  # categorical: labels in any language, LimeSurvey codes
        fixed = todo.map(_norm, na_action="ignore").map(lookup or {}).astype("float64")
    num[todo.index] = fixed
    bad = pd.Series(False, index=s.index)
    bad[todo.index[fixed.isna().to_numpy()]] = True
    what = "is not a number" if scale.type == "numeric" else "is neither a code nor a label of its scale"
    _note_bad(bad, s, rows, col, item_id, "wrong-type" if scale.type == "numeric" else "unknown-label",
              what, issues, path)
    return num


# What statistical packages write for "no value" in a number or code column.
_MISSING_MARKERS = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", ".", "#N/A"]


def _note_bad(bad, s, rows, col, item_id, type_, what, issues, path, limit=1000):
    idx = np.flatnonzero(bad.to_numpy())
    for i in idx[:limit]:
        issues.append(_issue(type_, f"{path.name} row {rows[i]}: {item_id} value {s.iloc[i]!r} {what}",
                             row=int(rows[i]), item=item_id, value=str(s.iloc[i])))
    if len(idx) > limit:
        issues.append(_issue(type_, f"{path.name}: {len(idx) - limit} more values of {item_id} {what}",
                             item=item_id))


def _to_arrow(frame: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def _assemble(frames, cmap, instrument, path, issues, fmt) -> pd.DataFrame:
    if frames:
        import pyarrow as pa

        table = pa.concat_tables(frames, promote_options="permissive")
        frames.clear()
        table = table.select(_column_order(table.column_names, instrument))  # zero-copy
        # self_destruct frees each Arrow column once converted: peak ~ one copy
        data = table.to_pandas(self_destruct=True, split_blocks=True)
        del table
    else:
        data = pd.DataFrame({"source_row": pd.Series([], dtype="int64")})
    n = len(data)
    stem = re.sub(r"[^A-Za-z0-9]+", "_", path.stem)[:40]
    # respondent id
    if "respondent_id" in data:
        rid = data["respondent_id"]
        if pd.api.types.is_float_dtype(rid) and (rid.dropna() % 1 == 0).all():
            rid = rid.astype("Int64")
        rid = rid.astype("string").str.strip()
        if fmt in ("odk", "kobo"):
            rid = rid.str.replace(r"^uuid:", "", regex=True)  # ODK instance ids carry a scheme
        missing = rid.isna() | (rid == "")
        if missing.any():
            issues.append(_issue("missing-respondent-id",
                                 f"{path.name}: {int(missing.sum())} rows without a respondent id; "
                                 f"named {stem}-r<row>", severity="warning"))
            rid = rid.where(~missing, stem + "-r" + data["source_row"].astype("string"))
        data["respondent_id"] = rid
    else:
        data["respondent_id"] = (stem + "-r" + data["source_row"].astype("string")) if n else pd.Series([], dtype="string")
        if n:
            issues.append(_issue("missing-respondent-id",
                                 f"{path.name}: no respondent id column; rows named {stem}-r<row>", severity="warning"))
    # form version
    if "form_version" in data:
        fv = data["form_version"]
        if pd.api.types.is_float_dtype(fv) and (fv.dropna() % 1 == 0).all():
            fv = fv.astype("Int64")
        data["form_version"] = fv.astype("string").fillna("").str.strip()
    else:
        data["form_version"] = pd.Series("", index=data.index, dtype="string")
    # language of interview
    lang_item = language_item(instrument)
    if "language" in data:
        data["language"] = item_languages(data["language"], instrument)
    elif lang_item is not None and lang_item.id in data:
        # the interviewer's record of the language (an item such as LANG)
        labels = {float(c.code): c.label.get("en") or next(iter(c.label.values()))
                  for c in instrument.scales[lang_item.scale].categories}
        data["language"] = item_languages(data[lang_item.id].map(labels), instrument)
    else:
        data["language"] = pd.Series(instrument.default_language, index=data.index, dtype="string")
        if n and len(instrument.languages) > 1:
            issues.append(_issue("language-assumed",
                                 f"{path.name}: no language column; every response taken as "
                                 f"{instrument.default_language!r}", severity="warning"))
    for col in ("submitted_at", "started_at", "ended_at"):
        if col in data:
            data[col] = _to_datetime(data[col])
    if "duration_s" in data:
        data["duration_s"] = _to_number(data["duration_s"])
    elif "started_at" in data and "ended_at" in data:
        data["duration_s"] = (data["ended_at"] - data["started_at"]).dt.total_seconds()
    # the order: meta, items in questionnaire order, checkboxes, the rest; columns are
    # moved one at a time (data[order] would copy the whole table)
    order = _column_order(list(data.columns), instrument)
    for pos, col in enumerate(order):
        if data.columns[pos] != col:
            data.insert(pos, col, data.pop(col))
    return data


def _column_order(columns: list[str], instrument) -> list[str]:
    items = [it.id for it in instrument.items if it.id in columns]
    multi = sorted(c for c in columns if "___" in c)
    meta = [c for c in META_COLUMNS if c in columns]
    rest = [c for c in columns if c not in set(meta) | set(items) | set(multi)]
    return meta + items + multi + rest


def language_item(instrument):
    """The item recording the interview language (id like LANG), if any."""
    for it in instrument.items:
        if re.fullmatch(r"(interview_)?lang(uage)?", it.id, flags=re.I) and instrument.scales[it.scale].is_categorical:
            return it
    return None


_LANG_NAMES = {
    "english": "en", "urdu": "ur", "arabic": "ar", "somali": "so", "polish": "pl", "bengali": "bn",
    "punjabi": "pa", "welsh": "cy", "french": "fr", "spanish": "es", "gujarati": "gu", "turkish": "tr",
}


def item_languages(col: pd.Series, instrument) -> pd.Series:
    """Language tags as the instrument writes them ('en'); 'English (en)' and 'English' too."""
    s = col.astype("string").str.strip()
    tags = {t.casefold(): t for t in instrument.languages}

    def one(v):
        if v is None or v is pd.NA or v == "":
            return instrument.default_language
        key = str(v).casefold()
        if key in tags:
            return tags[key]
        m = re.search(r"\(([A-Za-z-]+)\)\s*$", str(v))  # XLSForm style 'English (en)'
        if m and m.group(1).casefold() in tags:
            return tags[m.group(1).casefold()]
        if _LANG_NAMES.get(key) in instrument.languages:
            return _LANG_NAMES[key]
        return str(v)

    uniq = {v: one(v) for v in s.dropna().unique()}
    out = s.astype(object).map(uniq)
    return out.where(out.notna(), instrument.default_language).astype("string")
