"""`resilience instrument import`: XLSForm and REDCap dictionaries written for these tests
(not the suite's own exports) become instruments; what cannot be mapped is reported with its
sheet, row and column; export -> import -> export gives the same form (checked by pyxform)."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import pytest
from pyxform.xls2xform import convert
from typer.testing import CliRunner

from analysis.cli.main import app
from instruments import load_instrument
from instruments.export_redcap import export_redcap, redcap_dictionary
from instruments.export_xlsform import export_xlsform, xlsform_sheets
from instruments.import_form import FormImportError, import_form

runner = CliRunner()

SURVEY = [
    ["type", "name", "label", "label::Español (es)", "hint", "required", "relevant", "constraint", "appearance",
     "construct"],
    ["start", "start"],
    ["end", "end"],
    ["begin_group", "home", "Your home", "Su casa"],
    ["select_one yn", "HASGARDEN", "Do you have a garden?", "¿Tiene jardín?", "", "yes"],
    ["integer", "GARDSIZE", "How big is it (m²)?", "¿Qué tamaño tiene (m²)?", "Roughly", "yes",
     "selected(${HASGARDEN}, '1')", ". >= 0 and . <= 500"],
    ["select_one agree", "GREEN1", "Green space matters to me.", "Las zonas verdes me importan.", "", "yes", "", "",
     "likert", "GREEN"],
    ["select_one agree", "GREEN2", "I visit the park weekly.", "Visito el parque cada semana.", "", "yes", "", "",
     "likert", "GREEN"],
    ["select_one agree", "GREEN3", "Trees make my street better.", "Los árboles mejoran mi calle.", "", "", "", "",
     "likert", "GREEN"],
    ["end_group"],
    ["begin_group", "outer", "Outer", "Exterior"],
    ["begin_group", "inner", "Inner", "Interior"],                       # row 12: nested
    ["text", "NOTE1", "Anything else?", "¿Algo más?"],
    ["end_group"],
    ["end_group"],
    ["begin_repeat", "kids", "Children", "Hijos"],                      # row 16: a repeat
    ["integer", "KIDAGE", "Age of the child", "Edad"],
    ["end_repeat"],
    ["select_multiple yn", "PETS", "Which pets?", "¿Qué mascotas?"],    # row 19: several answers
    ["note", "thanks", "Thank you", "Gracias"],                         # row 20: a note
]
CHOICES = [
    ["list_name", "name", "label", "label::Español (es)"],
    ["yn", "1", "Yes", "Sí"], ["yn", "2", "No", "No"],
    ["agree", "1", "Disagree", "En desacuerdo"], ["agree", "2", "Neutral", "Neutral"],
    ["agree", "3", "Agree", "De acuerdo"], ["agree", "-9", "Prefer not to say", "Prefiere no decir"],
]
SETTINGS = [["form_title", "form_id", "version", "default_language"],
            ["Green neighbourhoods", "green", "2024051001", "English"]]


def _workbook(path: Path, survey=SURVEY) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in (("survey", survey), ("choices", CHOICES), ("settings", SETTINGS)):
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def _sheets_equal(a: dict, b: dict) -> None:
    for name in a:
        assert a[name].astype(str).equals(b[name].astype(str)), name


def test_an_xlsform_written_by_hand_becomes_an_instrument(tmp_path):
    res = import_form(_workbook(tmp_path / "green.xlsx"))
    where = {(i.sheet, i.row, i.column, i.severity) for i in res.issues}
    assert ("survey", 12, "type", "error") in where     # the nested group
    assert ("survey", 16, "type", "error") in where     # the repeat
    assert ("survey", 19, "type", "error") in where     # select_multiple
    assert ("survey", 20, "type", "warning") in where   # a note is not a question
    assert any("nested in group 'outer'" in str(i) for i in res.issues)
    assert len(res.errors) == 3
    inst = load_instrument(res.write(tmp_path / "green.yaml"))
    assert "KIDAGE" not in inst.item_ids and "PETS" not in inst.item_ids and "NOTE1" in inst.item_ids
    assert inst.languages == ["en", "es"] and inst.default_language == "en" and inst.title == "Green neighbourhoods"
    assert [c.id for c in inst.constructs] == ["GREEN"] and [i.id for i in inst.items_of("GREEN")] == [
        "GREEN1", "GREEN2", "GREEN3"]
    assert inst.item("GARDSIZE").relevant == "HASGARDEN == 1"
    size = inst.scale_of("GARDSIZE")
    assert (size.type, size.min, size.max, size.integer) == ("numeric", 0, 500, True)
    agree = inst.scale_of("GREEN1")
    assert agree.type == "ordinal" and agree.codes == [1, 2, 3] and agree.missing_codes == [-9]
    assert inst.text("HASGARDEN", "es") == "¿Tiene jardín?" and inst.item("GARDSIZE").help["en"] == "Roughly"
    assert inst.item("GREEN1").required and not inst.item("GREEN3").required


def test_xlsform_round_trip_export_import_export_is_the_same_form(tmp_path):
    inst = load_instrument(import_form(_workbook(tmp_path / "green.xlsx")).write(tmp_path / "green.yaml"))
    first = export_xlsform(inst, tmp_path / "first.xlsx", version="2024051001")
    again = load_instrument(import_form(first).write(tmp_path / "again.yaml"))
    second = export_xlsform(again, tmp_path / "second.xlsx", version="2024051001")
    _sheets_equal(xlsform_sheets(inst, version="2024051001"), xlsform_sheets(again, version="2024051001"))
    xml = [convert(xlsform=str(p)).xform for p in (first, second)]
    assert xml[0] == xml[1] and "HASGARDEN" in xml[0] and "Las zonas verdes me importan." in xml[0]
    # the shipped and the test study's instruments round-trip too
    for ref in ("crs", Path(__file__).parents[1] / "fixtures" / "studies" / "neighbourhood" / "wellbeing.yaml"):
        inst = load_instrument(ref)
        path = export_xlsform(inst, tmp_path / "x.xlsx", version="2026010101")
        back = load_instrument(import_form(path, construct_from="prefix").write(tmp_path / "x.yaml"))
        _sheets_equal(xlsform_sheets(inst, version="2026010101"), xlsform_sheets(back, version="2026010101"))


def test_the_cli_reports_sheet_row_and_column_and_exits_1_when_something_was_left_out(tmp_path):
    out = tmp_path / "green.yaml"
    res = runner.invoke(app, ["instrument", "import", str(_workbook(tmp_path / "green.xlsx")), "-o", str(out)])
    assert res.exit_code == 1, res.output
    assert "survey row 16, column type" in res.output and "repeat 'kids'" in res.output
    assert out.is_file() and load_instrument(out).id == "green"
    bad = _workbook(tmp_path / "bad.xlsx", survey=[["type", "name", "label"], ["begin_repeat", "r", "R"]])
    res = runner.invoke(app, ["instrument", "import", str(bad), "-o", str(tmp_path / "bad.yaml")])
    # a form that cannot be imported is the input's fault: exit 1 (2 is for a wrong use of the command)
    assert res.exit_code == 1 and "no question could be imported" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["instrument", "import", str(tmp_path / "nope.xlsx"), "-o", str(tmp_path / "n.yaml")])
    assert res.exit_code == 1 and "file not found" in res.output


REDCAP_ROWS = [
    {"Variable / Field Name": "record_id", "Form Name": "wellbeing", "Field Type": "text", "Field Label": "ID"},
    {"Variable / Field Name": "age", "Form Name": "wellbeing", "Section Header": "About you", "Field Type": "text",
     "Field Label": "Your age", "Text Validation Type OR Show Slider Number": "integer",
     "Text Validation Min": "16", "Text Validation Max": "99", "Required Field?": "y"},
    {"Variable / Field Name": "worry", "Form Name": "wellbeing", "Field Type": "yesno",
     "Field Label": "Do you worry about money?"},
    *[{"Variable / Field Name": f"help{k}", "Form Name": "wellbeing", "Section Header": "Help" if k == 1 else "",
       "Field Type": "radio", "Field Label": text, "Required Field?": "y",
       "Choices, Calculations, OR Slider Labels": "1, Never | 2, Sometimes | 3, Often | -9, Refused",
       "Custom Alignment": "RH", "Branching Logic (Show field only if...)": "[age] >= 18"}
      for k, text in enumerate(["Neighbours help me.", "I help neighbours.", "We share tools."], 1)],
    {"Variable / Field Name": "pets", "Form Name": "wellbeing", "Field Type": "checkbox", "Field Label": "Pets",
     "Choices, Calculations, OR Slider Labels": "1, Dog | 2, Cat"},                                  # row 8
]


def _dictionary(path: Path) -> Path:
    from instruments.export_redcap import REDCAP_COLUMNS

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=REDCAP_COLUMNS)
        w.writeheader()
        for row in REDCAP_ROWS:
            w.writerow(row)
    return path


def test_a_redcap_dictionary_becomes_an_instrument_and_round_trips(tmp_path):
    res = import_form(_dictionary(tmp_path / "wellbeing.csv"), construct_from="prefix", language="en")
    assert [(i.row, i.column, i.severity) for i in res.errors] == [(8, "Field Type", "error")]
    assert "checkbox" in str(res.errors[0])
    inst = load_instrument(res.write(tmp_path / "wb.yaml"))
    assert [c.id for c in inst.constructs] == ["help"]
    assert inst.item("help2").relevant == "age >= 18"
    assert inst.scale_of("help1").type == "ordinal" and inst.scale_of("help1").missing_codes == [-9]
    assert inst.scale_of("worry").codes == [1, 0]
    assert (inst.scale_of("age").min, inst.scale_of("age").max) == (16, 99)
    first = redcap_dictionary(inst, form_version="1.0.0")
    path = export_redcap(inst, tmp_path / "first.csv", form_version="1.0.0")
    again = load_instrument(import_form(path, construct_from="prefix").write(tmp_path / "again.yaml"))
    assert first.equals(redcap_dictionary(again, form_version="1.0.0"))
    # the instrument it made is a valid XLSForm too
    xml = convert(xlsform=str(export_xlsform(inst, tmp_path / "wb.xlsx", version="2026010101"))).xform
    assert "help1" in xml and "Neighbours help me." in xml


def test_forms_that_are_not_forms_are_refused_clearly(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FormImportError, match="not a REDCap data dictionary"):
        import_form(tmp_path / "x.csv")
    (tmp_path / "x.xlsx").write_bytes(b"not a workbook")
    with pytest.raises(FormImportError, match="cannot be read as an XLSForm"):
        import_form(tmp_path / "x.xlsx")
    (tmp_path / "x.txt").write_text("type,name\n")
    with pytest.raises(FormImportError, match="unknown form type"):
        import_form(tmp_path / "x.txt")


def test_a_groups_relevant_applies_to_every_question_in_it(tmp_path):
    from instruments.relevance import evaluate, parse

    survey = [["type", "name", "label", "relevant", "appearance"],
              ["select_one yn", "consent", "Do you agree to take part?"],
              ["begin_group", "green", "Green space", "${consent} = 1"],
              ["select_one agree", "GREEN1", "Green space matters to me.", "", "likert"],
              ["select_one agree", "GREEN2", "I visit the park weekly.", "selected(${GREEN1}, '3')", "likert"],
              ["end_group"],
              ["integer", "AGE", "Your age"]]
    res = import_form(_workbook(tmp_path / "gated.xlsx", survey=survey))
    items = {it["id"]: it for sec in res.instrument["sections"] for it in sec["items"]}
    assert items["GREEN1"]["relevant"] == "consent == 1"
    assert items["GREEN2"]["relevant"] == "(consent == 1) and (GREEN1 == 3)"
    assert "relevant" not in items["AGE"] and "relevant" not in items["consent"]  # outside the group
    rule = parse(items["GREEN2"]["relevant"])
    assert evaluate(rule, {"consent": 1, "GREEN1": 3}) and not evaluate(rule, {"consent": 2, "GREEN1": 3})
    inst = load_instrument(res.write(tmp_path / "gated.yaml"))
    assert inst.item("GREEN1").relevant == "consent == 1"
    # a group condition that cannot be translated is reported once, at the group's row
    survey[2][3] = "count-selected(${consent}) > 0"
    res = import_form(_workbook(tmp_path / "odd.xlsx", survey=survey))
    odd = [i for i in res.issues if i.column == "relevant"]
    assert [(i.sheet, i.row, i.severity) for i in odd] == [("survey", 3, "error")]
    assert "always asked" in odd[0].message


def test_every_problem_of_a_form_is_reported_in_one_run(tmp_path):
    survey = [["type", "name", "label", "relevant"],
              ["select_one yesno", "consent", "Agree?"],                   # row 2: a list coded with words
              ["select_one agree", "T1", "Item one", "${consent} = 'yes'"],
              ["select_one agree", "T2", "Item two", "${consent} = 'yes'"],
              ["begin_repeat", "kids", "Children"],                        # row 5
              ["text", "kname", "Name"],
              ["end_repeat"],
              ["select_multiple agree", "MULTI", "Pick"]]                  # row 8
    path = _workbook(tmp_path / "many.xlsx", survey=survey)
    wb = openpyxl.load_workbook(path)
    for row in (["yesno", "yes", "Yes"], ["yesno", "no", "No"]):
        wb["choices"].append(row)
    wb.save(path)
    out = tmp_path / "many.yaml"
    res = runner.invoke(app, ["instrument", "import", str(path), "-o", str(out), "--construct-from", "prefix"])
    said = " ".join(res.output.split())
    assert res.exit_code == 1, res.output
    for where in ("choices row 8, column name", "survey row 2, column type", "survey row 3, column relevant",
                  "survey row 4, column relevant", "survey row 5, column type", "survey row 8, column type"):
        assert where in said, where
    assert "names 'consent', which is not an imported question" in said
    inst = load_instrument(out)  # written without what could not be mapped, and it loads
    assert inst.item("T1").relevant is None
