"""`resilience instrument export`, `import`, `score`, `quality`: exit codes, JSON, files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app
from instruments import load_instrument
from instruments.export_data import write_redcap
from _fielding_data import make_responses

BAD = Path(__file__).parents[1] / "fixtures" / "bad_data"
runner = CliRunner()


@pytest.fixture(scope="module")
def crs():
    return load_instrument("crs")


@pytest.mark.parametrize("target, name", [("xlsform", "crs.xlsx"), ("redcap", "dd.csv"), ("limesurvey", "crs.txt"),
                                          ("paper", "crs.docx"), ("ddi", "crs.xml"), ("sav", "crs.sav")])
def test_instrument_export(tmp_path, target, name):
    out = tmp_path / name
    res = runner.invoke(app, ["instrument", "export", "crs", "--to", target, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and out.stat().st_size > 1000


def test_export_rejects_unknown_target_and_language(tmp_path):
    res = runner.invoke(app, ["instrument", "export", "crs", "--to", "spss", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["instrument", "export", "crs", "--to", "redcap", "--language", "xx",
                              "-o", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "not declared" in res.output


def test_import_json_and_exit_codes(crs, tmp_path):
    good = write_redcap(make_responses(crs, n=20, seed=2), crs, tmp_path / "good.csv")
    res = runner.invoke(app, ["import", str(good), "-i", "crs", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["import"]["format"] == "redcap" and doc["import"]["n_rows"] == 20
    assert doc["validation"]["valid"] is True
    bad = runner.invoke(app, ["import", str(BAD / "out_of_range.csv"), "-i", "crs", "--json"])
    assert bad.exit_code == 1
    issues = json.loads(bad.stdout)["validation"]["issues"]
    hit = next(i for i in issues if i["type"] == "out-of-range")
    assert (hit["row"], hit["respondent_id"], hit["item"], hit["value"]) == (2, "r1", "CULT3", "7")
    table = runner.invoke(app, ["import", str(BAD / "out_of_range.csv"), "-i", "crs"])
    assert table.exit_code == 1 and "out-of-range" in table.output


def test_import_format_override_and_fatal_file(crs, tmp_path):
    res = runner.invoke(app, ["import", str(BAD / "zip_bomb.xlsx"), "-i", "crs"])
    assert res.exit_code == 1 and "zip bomb" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["import", str(BAD / "semicolon.csv"), "-i", "crs", "--format", "csv", "--json"])
    assert json.loads(res.stdout)["import"]["format"] == "csv"
    res = runner.invoke(app, ["import", str(BAD / "semicolon.csv"), "-i", "crs", "--format", "nonsense"])
    assert res.exit_code == 2


def test_import_summary_does_not_contradict_the_verdict(crs, tmp_path):
    # was "0 errors, 0 warnings" (reading) above "valid (0 errors, 1 warnings)" (validation)
    data = make_responses(crs, n=20, seed=3)
    src = tmp_path / "s.csv"
    data.to_csv(src, index=False)
    res = runner.invoke(app, ["import", str(src), "-i", "crs"])
    assert res.exit_code == 0 and res.output == "s.csv: 20 responses read as csv\ns.csv: 20 responses, valid\n"


def test_score_and_quality_commands(crs, tmp_path):
    data = make_responses(crs, n=30, seed=9)
    src = write_redcap(data, crs, tmp_path / "r.csv")
    out = tmp_path / "scored.csv"
    res = runner.invoke(app, ["score", str(src), "-i", "crs", "-o", str(out)])
    assert res.exit_code == 0, res.output
    scored = pd.read_csv(out)
    assert len(scored) == 30 and set(crs.construct_ids) <= set(scored.columns)
    res = runner.invoke(app, ["quality", str(src), "-i", "crs", "--json"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    flags = {row["flag"] for row in doc["summary"]}
    assert {"longstring", "irv", "mahalanobis", "evenodd", "psychsyn", "speeder", "attention", "duplicate"} <= flags
    assert doc["n_rows"] == 30


def test_import_read_options(tmp_path):
    res = runner.invoke(app, ["import", str(BAD / "cp1252.csv"), "-i", "crs", "--encoding", "nonsense"])
    assert res.exit_code == 1 and "unknown encoding 'nonsense'" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["import", str(BAD / "cp1252.csv"), "-i", "crs", "--encoding", "cp1252",
                              "-o", str(tmp_path / "tidy.csv")])
    assert pd.read_csv(tmp_path / "tidy.csv")["AREA"].iloc[0] == "Café Quarter"
    res = runner.invoke(app, ["import", str(BAD / "semicolon.csv"), "-i", "crs", "--delimiter", ";", "--json"])
    assert json.loads(res.stdout)["import"]["delimiter"] == ";"


def test_scored_sav_carries_labels(crs, tmp_path):
    import pyreadstat

    src = write_redcap(make_responses(crs, n=12, seed=4), crs, tmp_path / "r.csv")
    res = runner.invoke(app, ["score", str(src), "-i", "crs", "-o", str(tmp_path / "s.sav")])
    assert res.exit_code == 0, res.output
    frame, meta = pyreadstat.read_sav(str(tmp_path / "s.sav"))
    assert meta.column_names_to_labels["CULT"] == crs.construct("CULT").label
    assert meta.variable_value_labels["CULT1"][5.0] == "Strongly agree"
    assert "CULT4" not in meta.variable_value_labels  # reverse-keyed: codes were recoded
    assert len(frame) == 12


def test_progress_reaches_the_end_and_stays_off_stdout(tmp_path):
    import io

    from rich.console import Console

    from instruments.cli.fielding import progress_bar
    from instruments import load_instrument
    from instruments.export_data import write_kobo
    from instruments.ingest import import_responses
    from instruments.store import Study
    from _fielding_data import make_responses

    crs = load_instrument("crs")
    path = write_kobo(make_responses(crs, n=40, seed=2), crs, tmp_path / "k.csv")
    calls = []
    import_responses(path, crs, progress=lambda *a: calls.append(a))
    size = path.stat().st_size
    assert calls[-1] == ("reading", size, size)  # the last block: all of the file
    assert all(phase == "reading" and 0 <= done <= total for phase, done, total in calls)
    phases = []
    Study(tmp_path / "s").import_file(path, crs, progress=lambda p, d, t: phases.append(p))
    assert list(dict.fromkeys(phases)) == ["checking sha256, copying to data/raw", "reading", "validating", "storing"]
    # a terminal gets a bar; a pipe gets none (and --json output on stdout is never touched)
    screen = io.StringIO()
    with progress_bar("k.csv", Console(file=screen, force_terminal=True, width=100)) as update:
        update("reading", size // 2, size)
        update("validating", 0, None)
    assert "k.csv: reading" in screen.getvalue() and "50%" in screen.getvalue()
    with progress_bar("k.csv", Console(file=io.StringIO(), force_terminal=False)) as update:
        assert update is None


def test_score_says_when_the_data_has_errors(tmp_path):
    out = tmp_path / "s.csv"
    res = runner.invoke(app, ["score", str(BAD / "out_of_range.csv"), "-i", "crs", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "scored 4 responses, 1 construct ->" in res.output
    assert "out-of-range 1" in res.output and "scored as blank" in res.output
    scored = pd.read_csv(out)
    assert scored["CULT3"].isna().tolist() == [True, False, False, False]  # the 7 in row 2


def test_score_refuses_data_without_any_item_of_the_instrument(tmp_path):
    # was "scored 301 responses, 0 constructs" and an empty table written
    data, out = tmp_path / "other.csv", tmp_path / "s.parquet"
    pd.DataFrame({"x1": [1, 2, 3], "x2": [3, 2, 1]}).to_csv(data, index=False)
    res = runner.invoke(app, ["score", str(data), "-i", "crs", "-o", str(out)])
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith(f"Error: {data}: none of the items of instrument crs is in the data "
                                 "(expected columns such as CULT1, CULT2")
    assert not out.exists()


@pytest.mark.parametrize("command", ["import", "quality"])
def test_fatal_errors_are_one_json_document_with_json(command, tmp_path):
    res = runner.invoke(app, [command, str(BAD / "empty.csv"), "-i", "crs", "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)["error"]   # the one error shape: the issue's stable type code in "errors"
    assert doc["errors"][0]["type"] == "empty-file" and doc["message"].startswith("empty.csv: the file is empty")
    res = runner.invoke(app, [command, str(BAD / "empty.csv"), "-i", str(tmp_path / "none.yaml"), "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)["error"]
    assert doc["type"] == "InstrumentError" and doc["errors"][0]["type"] == "file-not-found"


@pytest.mark.parametrize("command", ["import", "score", "quality"])
def test_unknown_output_suffix_is_refused_before_work(command, tmp_path):
    res = runner.invoke(app, [command, str(BAD / "out_of_range.csv"), "-i", "crs", "-o", str(tmp_path / "x.foo")])
    assert res.exit_code == 2 and "unknown table format '.foo'" in res.output and "Traceback" not in res.output
    assert not list(tmp_path.iterdir())


def test_xlsx_row_limit_is_a_clear_error(monkeypatch, tmp_path):
    import instruments.export_data as ed

    monkeypatch.setattr(ed, "XLSX_MAX_ROWS", 3)
    with pytest.raises(ValueError, match="3 rows do not fit in a worksheet"):
        ed.write_table(pd.DataFrame({"a": [1, 2, 3]}), tmp_path / "t.xlsx")
    res = runner.invoke(app, ["quality", str(BAD / "out_of_range.csv"), "-i", "crs", "-o", str(tmp_path / "q.xlsx")])
    assert res.exit_code == 1 and "write .csv or .parquet" in res.output


def test_export_refuses_a_suffix_the_target_does_not_write(tmp_path):
    res = runner.invoke(app, ["instrument", "export", "crs", "--to", "paper", "-o", str(tmp_path / "q.pdf")])
    assert res.exit_code == 2 and "--to paper writes .html or .htm or .docx" in res.output and "print it" in res.output
    res = runner.invoke(app, ["instrument", "export", "crs", "--to", "xlsform", "-o", str(tmp_path / "f.csv")])
    assert res.exit_code == 2 and "writes .xlsx" in res.output
    assert not list(tmp_path.iterdir())
    res = runner.invoke(app, ["instrument", "export", "crs", "--to", "xlsform", "-o", str(tmp_path / "f.xlsx"),
                              "--version", "v2"])
    assert res.exit_code == 0 and "is not yyyymmddrr" in res.output
    import openpyxl

    assert openpyxl.load_workbook(tmp_path / "f.xlsx")["settings"]["C2"].value == "v2"
