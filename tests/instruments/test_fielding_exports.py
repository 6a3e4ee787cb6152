"""Exports of the CRS instrument: XLSForm through pyxform, REDCap, LimeSurvey, paper, DDI, .sav."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html import escape as html_escape
from xml.sax.saxutils import escape as xml_escape

import openpyxl
import pandas as pd
import pyreadstat
import pytest
from pyxform.xls2xform import convert

from instruments import load_instrument
from instruments.export_ddi import DDI_NS, export_ddi
from instruments.export_limesurvey import LIMESURVEY_COLUMNS, export_limesurvey, limesurvey_relevance
from instruments.export_paper import export_paper
from instruments.export_redcap import REDCAP_COLUMNS, export_redcap
from instruments.export_sav import export_sav
from instruments.export_xlsform import export_xlsform, language_label, xlsform_sheets, xlsform_version


@pytest.fixture(scope="module")
def crs():
    return load_instrument("crs")


@pytest.fixture(scope="module")
def xlsform(crs, tmp_path_factory):
    return export_xlsform(crs, tmp_path_factory.mktemp("x") / "crs.xlsx", version="2025011501")


def test_xlsform_converts_with_pyxform_in_every_language(crs, xlsform):
    warnings: list[str] = []
    xform = convert(str(xlsform), warnings=warnings).xform
    assert warnings == []
    langs = re.findall(r'<translation (?:default="true\(\)" )?lang="([^"]+)"', xform)
    assert sorted(langs) == sorted(language_label(lang) for lang in crs.languages)
    # every item, in every language, has its own question text
    for lang in crs.languages:
        block = re.search(rf'<translation[^>]*lang="{re.escape(language_label(lang))}"[^>]*>(.*?)</translation>',
                          xform, re.S).group(1)
        for it in crs.items:
            assert f'id="/data/{it.section}/{it.id}:label"' in block
            assert xml_escape(it.text[lang]) in block
        # and opens in each language when that language is the default
        assert convert(str(xlsform), default_language=language_label(lang)).xform


def test_xlsform_sheets_content(crs):
    sheets = xlsform_sheets(crs, version="2025011501")
    survey, choices, settings = sheets["survey"], sheets["choices"], sheets["settings"]
    assert list(survey["type"][:3]) == ["start", "end", "audit"]
    rows = survey.set_index("name")
    assert rows.loc["CULT1", "type"] == "select_one agree5"
    assert rows.loc["CULT1", "appearance"] == "likert"
    assert rows.loc["CULT1", "required"] == "yes"
    assert rows.loc["CULT1", "relevant"] == "${CONSENT} = 1"
    assert rows.loc["AREA", "type"] == "text" and rows.loc["AREA", "required"] == ""
    assert (survey["type"] == "begin_group").sum() == len(crs.sections) == (survey["type"] == "end_group").sum()
    agree = choices[choices["list_name"] == "agree5"]
    assert list(agree["name"]) == ["1", "2", "3", "4", "5", "-9", "-8"]
    assert agree.iloc[0]["label::English (en)"] == "Strongly disagree"
    assert settings.loc[0, "version"] == "2025011501"
    assert settings.loc[0, "default_language"] == "English (en)"
    assert re.fullmatch(r"\d{10}", xlsform_version())


def test_xlsform_cells_are_text_not_formulas(crs, xlsform):
    wb = openpyxl.load_workbook(xlsform)
    types = {c.data_type for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None}
    assert "f" not in types


def test_redcap_dictionary_has_the_18_columns(crs, tmp_path):
    path = export_redcap(crs, tmp_path / "dd.csv")
    dd = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(dd.columns) == REDCAP_COLUMNS and len(REDCAP_COLUMNS) == 18
    assert dd.iloc[0]["Variable / Field Name"] == "record_id"
    rows = dd.set_index("Variable / Field Name")
    for it in crs.items:
        assert it.id.lower() in rows.index
    assert rows.loc["cult1", "Choices, Calculations, OR Slider Labels"] == (
        "1, Strongly disagree | 2, Disagree | 3, Neither agree nor disagree | 4, Agree | "
        "5, Strongly agree | -9, Prefer not to say | -8, Don't know")
    assert rows.loc["cult1", "Branching Logic (Show field only if...)"] == "[consent] = '1'"
    assert rows.loc["cult1", "Required Field?"] == "y"
    assert rows.loc["ethnic", "Field Type"] == "dropdown"
    assert rows.loc["form_version", "Field Annotation"].startswith("@HIDDEN")
    assert set(rows["Field Type"]) <= {"text", "notes", "radio", "dropdown", "descriptive", "checkbox"}
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", v) for v in rows.index)


def test_limesurvey_tsv_columns_bom_and_language_order(crs, tmp_path):
    path = export_limesurvey(crs, tmp_path / "crs.txt")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    ls = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(ls.columns) == LIMESURVEY_COLUMNS
    body = ls[ls["class"].isin(["G", "Q", "A"])]
    langs = list(dict.fromkeys(body["language"]))
    assert langs == [crs.default_language] + [x for x in crs.languages if x != crs.default_language]
    # the translation repeats the base language's rows in the same order
    per_lang = [body[body["language"] == lang][["class", "type/scale"]].values.tolist() for lang in langs]
    assert all(p == per_lang[0] for p in per_lang)
    q = ls[(ls["class"] == "Q") & (ls["language"] == "en")]
    assert len(q) == len(crs.items) + 1  # + the formversion equation
    assert q.iloc[1]["name"] == "AGEBAND" and q.iloc[1]["mandatory"] == "Y"
    assert q.set_index("name").loc["CULT1", "relevance"] == 'CONSENT.NAOK == "1"'
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", n) for n in q["name"])
    # group and question ids are whole numbers, one per question, the same in every language
    assert q["id"].tolist() == [str(i) for i in range(1, len(crs.items) + 2)]
    groups = ls[ls["class"] == "G"]
    assert groups["id"].tolist() == [str(i) for i in range(1, len(crs.sections) + 1)] * len(crs.languages)
    answers = ls[(ls["class"] == "A") & (ls["language"] == "en")]
    assert set(answers["name"]) >= {"1", "5", "N9", "N8"}
    assert limesurvey_relevance("not (AGEBAND in [1, 2]) and CONSENT == 1", crs) == \
        '!((AGEBAND.NAOK == "1" or AGEBAND.NAOK == "2")) and CONSENT.NAOK == "1"'


def test_paper_html_and_docx_carry_every_language(crs, tmp_path):
    import docx

    html = export_paper(crs, tmp_path / "crs.html").read_text(encoding="utf-8")
    document = docx.Document(str(export_paper(crs, tmp_path / "crs.docx")))
    text = "\n".join(p.text for p in document.paragraphs)
    for lang in crs.languages:
        for it in crs.items[:5] + crs.items[-3:]:
            assert html_escape(it.text[lang]) in html
            assert it.text[lang][:25] in text
    assert 'dir="rtl"' in html and 'lang="ur"' in html
    assert html.count('<div class="q"') == len(crs.items) * len(crs.languages)
    ids = re.findall(r'<div class="q" id="([^"]+)"', html)
    assert len(set(ids)) == len(ids) and {"en-CULT1", "ur-CULT1"} <= set(ids)  # valid HTML: ids unique
    consent_yes = crs.scales["consent"].categories[0].label["en"]
    assert html_escape(f"Answer only if: Q1 is '{consent_yes}'") in html


def test_ddi_codebook(crs, tmp_path):
    tree = ET.parse(export_ddi(crs, tmp_path / "crs.xml"))
    ns = {"d": DDI_NS}
    root = tree.getroot()
    assert root.tag == f"{{{DDI_NS}}}codeBook" and root.get("version") == "2.5"
    variables = root.findall("d:dataDscr/d:var", ns)
    assert [v.get("name") for v in variables] == [it.id for it in crs.items]
    cult1 = next(v for v in variables if v.get("name") == "CULT1")
    langs = {q.get("{http://www.w3.org/XML/1998/namespace}lang") for q in cult1.findall("d:qstn/d:qstnLit", ns)}
    assert langs == set(crs.languages)
    cats = cult1.findall("d:catgry", ns)
    assert [c.findtext("d:catValu", namespaces=ns) for c in cats] == ["1", "2", "3", "4", "5", "-9", "-8"]
    assert [c.get("missing") for c in cats][-2:] == ["Y", "Y"]
    groups = root.findall("d:dataDscr/d:varGrp", ns)
    assert {g.get("name") for g in groups} == set(crs.construct_ids)
    assert root.findtext("d:stdyDscr/d:citation/d:titlStmt/d:titl", namespaces=ns) == crs.title


def test_sav_codebook_has_labels_and_user_missing(crs, tmp_path):
    path = export_sav(crs, tmp_path / "crs.sav")
    frame, meta = pyreadstat.read_sav(str(path), user_missing=True)
    assert list(frame.columns) == [it.id for it in crs.items] and len(frame) == 0
    assert meta.column_names_to_labels["CULT1"] == crs.item("CULT1").text["en"]
    assert meta.variable_value_labels["CULT1"][5.0] == "Strongly agree"
    assert meta.variable_value_labels["CULT1"][-9.0] == "Prefer not to say"
    assert {r["lo"] for r in meta.missing_ranges["CULT1"]} == {-9.0, -8.0}
    assert meta.variable_measure["CULT1"] == "ordinal"
    # codes display whole (-9, not -9.00); the file says what it is
    assert meta.original_variable_types["CULT1"] == "F2.0" and meta.original_variable_types["ETHNIC"] == "F2.0"
    assert meta.file_label == f"{crs.title} {crs.version}"


def test_exports_are_ordinary_readable_files(crs, tmp_path):
    import os

    path = export_redcap(crs, tmp_path / "dd.csv")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
