"""Hostile files at the importer and its writers (issue 12, items 8-11).

8: XLSX zip bombs (per-member size and ratio caps, a cell cap, streaming reads);
9: a UTF-8 file with a stray Windows-1252 byte far down; 10: SPSS value labels
that contradict the instrument; 11: ``import -o`` with control characters
(.xlsx) and column names SPSS cannot hold (.sav).
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pyreadstat
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app
from instruments import load_instrument
import instruments.ingest as ingest
from instruments.ingest import ImportError_, import_responses
from instruments.validate import validate

HEADER = "respondent_id,language,CONSENT,CULT1,CULT2,CULT3,CULT4,AREA\n"


@pytest.fixture(scope="module")
def crs():
    return load_instrument("crs")


# --- 8: XLSX zip bombs ---------------------------------------------------------

def _workbook_parts(zf: zipfile.ZipFile, sheet_xml: bytes | None = None) -> None:
    """A minimal valid workbook (made by openpyxl) with its sheet XML replaced."""
    buf = io.BytesIO()
    wb = openpyxl.Workbook()
    wb.active.append(["respondent_id", "CULT1"])
    wb.save(buf)
    with zipfile.ZipFile(buf) as src:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "xl/worksheets/sheet1.xml" and sheet_xml is not None:
                data = sheet_xml
            zf.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)


def _sheet(rows: str, dimension: str = "A1:B1") -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
            b'spreadsheetml/2006/main"><dimension ref="' + dimension.encode() + b'"/><sheetData>'
            + rows.encode() + b"</sheetData></worksheet>")


def test_padded_xlsx_bomb_is_refused_quickly(crs, tmp_path):
    # the issue's bomb: ~47 MB of sheet XML from a small file, padded with a random
    # member so that the archive's overall ratio looks harmless
    body = '<row><c t="inlineStr"><is><t>r</t></is></c><c><v>1</v></c></row>' * 800_000
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        _workbook_parts(zf, _sheet('<row r="1"><c r="A1" t="inlineStr"><is><t>respondent_id</t></is></c></row>' + body))
        zf.writestr("xl/media/padding.bin", os.urandom(2 * 1024**2), compress_type=zipfile.ZIP_STORED)
    sheet = zipfile.ZipFile(path).getinfo("xl/worksheets/sheet1.xml")
    assert sheet.file_size > 40 * 1024**2 and sheet.file_size / sheet.compress_size > ingest.MAX_XLSX_RATIO
    started = time.monotonic()
    with pytest.raises(ImportError_) as info:
        import_responses(path, crs)
    assert time.monotonic() - started < 5
    issue = info.value.issue
    assert issue.type == "zip-bomb" and "bomb.xlsx" in issue.message
    assert "xl/worksheets/sheet1.xml" in issue.message and f"{ingest.MAX_XLSX_RATIO}" in issue.message


def test_xlsx_member_over_the_size_cap_is_refused(crs, tmp_path, monkeypatch):
    assert ingest.MAX_XLSX_MEMBER >= 512 * 1024**2  # the shipped cap leaves room for a full worksheet
    monkeypatch.setattr(ingest, "MAX_XLSX_MEMBER", 1024**2, raising=False)
    path = tmp_path / "big.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        _workbook_parts(zf)
        zf.writestr("xl/media/noise.bin", os.urandom(2 * 1024**2), compress_type=zipfile.ZIP_STORED)
    with pytest.raises(ImportError_) as info:
        import_responses(path, crs)
    assert "xl/media/noise.bin" in info.value.issue.message and "1 MB" in info.value.issue.message


def test_declared_dimension_does_not_inflate_cells(crs, tmp_path):
    # a tiny sheet that claims to span every row and column Excel has
    rows = ('<row r="1"><c r="A1" t="inlineStr"><is><t>respondent_id</t></is></c>'
            '<c r="B1" t="inlineStr"><is><t>CULT1</t></is></c></row>'
            '<row r="2"><c r="A2" t="inlineStr"><is><t>r1</t></is></c><c r="B2"><v>3</v></c></row>'
            '<row r="1048576"><c r="A1048576" t="inlineStr"><is><t>r2</t></is></c></row>')
    path = tmp_path / "wide.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        _workbook_parts(zf, _sheet(rows, "A1:XFD1048576"))
    started = time.monotonic()
    result = import_responses(path, crs)
    assert time.monotonic() - started < 10
    assert result.data["respondent_id"].tolist() == ["r1", "r2"]
    assert result.data["source_row"].tolist() == [2, 1048576]
    assert "blank-header" not in {i.type for i in result.issues}  # no 16,382 invented columns


def test_cell_cap_is_named(crs, tmp_path, monkeypatch):
    assert ingest.MAX_XLSX_CELLS >= 20_000_000  # the shipped cap: room for real exports
    monkeypatch.setattr(ingest, "MAX_XLSX_CELLS", 1000, raising=False)
    wb = openpyxl.Workbook()
    wb.active.append(["respondent_id", "CULT1", "CULT2", "CULT3"])
    for i in range(400):
        wb.active.append([f"r{i}", 1, 2, 3])
    path = tmp_path / "many.xlsx"
    wb.save(path)
    with pytest.raises(ImportError_) as info:
        import_responses(path, crs)
    assert info.value.issue.type == "too-many-cells"
    assert "many.xlsx" in info.value.issue.message and "1,000 cells" in info.value.issue.message


def test_small_workbooks_are_streamed_too(crs, tmp_path):
    # merged header cells are found without loading the whole workbook
    fixture = Path(__file__).parents[1] / "fixtures" / "bad_data" / "merged_header.xlsx"
    result = import_responses(fixture, crs)
    assert "merged-header" in {i.type for i in result.issues}
    assert {"CULT1", "CULT4"} <= set(result.data.columns)
    calls = []
    real = openpyxl.load_workbook

    def spy(*args, **kwargs):
        calls.append(kwargs.get("read_only"))
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(openpyxl, "load_workbook", spy)
        import_responses(fixture, crs)
    assert calls and all(calls), "every workbook is opened read-only (streaming)"


# --- 9: a stray Windows-1252 byte after the first 64 KB -----------------------

def _late_byte_file(path: Path, with_urdu: bool) -> Path:
    lines = []
    for i in range(3000):  # ~130 KB: the bad byte lies far beyond the 64 KB sniffed
        area = ("اردو بازار" if with_urdu and i % 2 else "Café Ähm ūr")
        lines.append(f"r{i + 1},en,1,{1 + i % 5},2,3,-9,{area}")
    body = (HEADER + "\n".join(lines) + "\n").encode("utf-8")
    bad = b"r3001,en,1,2,2,3,-9,Caf\xe9 Quarter\n"  # one byte written by a Windows program
    path.write_bytes(body + bad + "r3002,en,1,2,2,3,-9,Ähm\n".encode())
    return path


@pytest.mark.parametrize("with_urdu", [True, False])
def test_stray_cp1252_byte_names_the_row_and_keeps_utf8(crs, tmp_path, with_urdu):
    path = _late_byte_file(tmp_path / "late.csv", with_urdu)
    result = import_responses(path, crs)
    data = result.data.set_index("respondent_id")
    assert len(data) == 3002
    assert data.loc["r3001", "AREA"] == "Caf\ufffd Quarter"  # a replacement character in the bad cell
    assert data.loc["r3002", "AREA"] == "Ähm" and data.loc["r1", "AREA"] == "Café Ähm ūr"
    if with_urdu:
        assert data.loc["r2", "AREA"] == "اردو بازار"
    assert not data.drop(index="r3001")["AREA"].str.contains("\ufffd|Ã").any()  # nothing garbled
    enc = [i for i in result.issues if i.type == "encoding"]
    assert len(enc) == 1 and enc[0].row == 3002 and enc[0].item == "AREA"
    assert "late.csv row 3002" in enc[0].message and "UTF-8" in enc[0].message
    assert result.encoding == "utf-8"


def test_stray_byte_through_the_cli_is_no_traceback(crs, tmp_path):
    path = _late_byte_file(tmp_path / "late.csv", True)
    res = CliRunner().invoke(app, ["import", str(path), "-i", "crs", "--json"])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert '"encoding"' in res.stdout and "row 3002" in res.stdout


# --- 10: SPSS value labels against the instrument -----------------------------

def _sav(path: Path, labels: dict[float, str]) -> Path:
    frame = pd.DataFrame({"respondent_id": ["a", "b", "c"], "language": ["en"] * 3, "CONSENT": [1.0] * 3,
                          "CULT1": [1.0, 5.0, 2.0], "CULT2": [4.0, 4.0, 5.0]})
    pyreadstat.write_sav(frame, str(path), variable_value_labels={"CULT1": labels, "CULT2": labels,
                                                                  "CONSENT": {1.0: "Yes", 0.0: "No"}})
    return path


def test_reversed_sav_labels_are_an_error(crs, tmp_path):
    scale = crs.scale_of("CULT1")
    own = {float(c.code): c.label["en"] for c in scale.categories}
    reversed_ = dict(zip(sorted(own), [own[k] for k in sorted(own, reverse=True)]))
    result = import_responses(_sav(tmp_path / "reversed.sav", reversed_), crs)
    bad = [i for i in result.issues if i.type == "value-labels"]
    assert {i.item for i in bad} == {"CULT1", "CULT2"} and all(i.severity == "error" for i in bad)
    msg = next(i.message for i in bad if i.item == "CULT1")
    lowest, highest = min(own), max(own)
    assert f"{int(lowest)} = {own[highest]!r}" in msg and f"{int(lowest)} = {own[lowest]!r}" in msg
    assert "reversed.sav" in msg
    assert validate(result, crs).exit_code == 1
    res = CliRunner().invoke(app, ["import", str(tmp_path / "reversed.sav"), "-i", "crs"])
    assert res.exit_code == 1 and "value-labels" in res.output


def test_matching_sav_labels_pass(crs, tmp_path):
    scale = crs.scale_of("CULT1")
    own = {float(c.code): c.label["en"] for c in [*scale.categories, *scale.missing]}
    result = import_responses(_sav(tmp_path / "fine.sav", own), crs)
    assert not [i for i in result.issues if i.type == "value-labels"]


# --- 11: import -o with control characters and names SPSS cannot hold --------

def test_import_to_xlsx_with_control_characters(crs, tmp_path):
    src = tmp_path / "ctrl.csv"
    src.write_text(HEADER.rstrip("\n") + ",bell\x07col\n"
                   "r1,en,1,2,3,4,5,Northfield\x01,x\n"
                   "r2,en,1,2,3,4,5,Old Town,y,surplus,cells\n", encoding="utf-8")  # ragged: '_extra' holds \x1f
    out = tmp_path / "out.xlsx"
    res = CliRunner().invoke(app, ["import", str(src), "-i", "crs", "-o", str(out)])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert out.is_file() and "control character" in res.output
    ws = openpyxl.load_workbook(out).active
    cells = {c.value for row in ws.iter_rows() for c in row if isinstance(c.value, str)}
    assert "Northfield\u2401" in cells and "surplus\u241fcells" in cells and "bell\u2407col" in cells


def test_import_to_sav_renames_what_spss_cannot_hold(crs, tmp_path):
    src = tmp_path / "names.csv"
    long = "a very long header " * 5
    src.write_text(HEADER.rstrip("\n") + f',2nd wave,{long},note" x,all,Note"x\n'
                   "r1,en,1,2,3,4,5,Northfield,a,b,c,d,e\n", encoding="utf-8")
    out = tmp_path / "out.sav"
    res = CliRunner().invoke(app, ["import", str(src), "-i", "crs", "-o", str(out)])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "renamed" in res.output and "2nd wave" in res.output
    frame, meta = pyreadstat.read_sav(str(out))
    assert frame["CULT1"].tolist() == [2.0] and frame["AREA"].tolist() == ["Northfield"]
    names = list(frame.columns)
    assert len({n.casefold() for n in names}) == len(names)
    import re

    assert all(re.fullmatch(r"[A-Za-z@][A-Za-z0-9_.@#$]{0,63}", n) and not n.endswith(".") for n in names)
    assert "ALL" not in {n.upper() for n in names}
    # the original header is kept as the variable label
    labels = dict(zip(meta.column_names, meta.column_labels))
    assert "2nd wave" in labels.values() and long.strip() in {str(v).strip() for v in labels.values()}


def test_xlsx_cells_beyond_excels_limit_are_cut_with_a_warning(tmp_path):
    from instruments.export_data import XLSX_MAX_CELL, ExportWarning, write_table

    with pytest.warns(ExportWarning, match="longer than 32,767 characters"):
        write_table(pd.DataFrame({"AREA": ["x" * 40_000, "short"]}), tmp_path / "long.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "long.xlsx").active
    assert len(ws["A2"].value) == XLSX_MAX_CELL and ws["A2"].value.endswith("\u2026")
    assert ws["A3"].value == "short"
