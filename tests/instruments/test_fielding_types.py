"""Numeric and date items: wrong types, bounds, Excel serials, decimal commas; a small instrument end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyxform.xls2xform import convert

from instruments import load_instrument
from instruments.export_data import write_table
from instruments.export_xlsform import export_xlsform, xlsform_sheets
from instruments.ingest import import_responses
from instruments.score import score
from instruments.validate import validate

MINI = """\
id: mini
version: 1.0.0
title: Mini survey
languages: [en]
default_language: en
scales:
  agree3:
    type: ordinal
    categories:
      - {code: 1, label: {en: Disagree}}
      - {code: 2, label: {en: Neutral}}
      - {code: 3, label: {en: Agree}}
    missing:
      - {code: -9, label: {en: Prefer not to say}}
  age:
    type: numeric
    min: 16
    max: 110
    missing:
      - {code: -9, label: {en: Prefer not to say}}
  visit:
    type: date
constructs:
  - id: TRUST
    label: Trust
    definition: Trust in services
    figure1_box: Trust
sections:
  - id: S1
    title: {en: Questions}
    items:
      - {id: AGE, text: {en: How old are you?}, scale: age, role: demographic}
      - {id: VISIT, text: {en: When did you last visit?}, scale: visit, required: false}
      - {id: T1, text: {en: I trust them.}, scale: agree3, construct: TRUST}
      - {id: T2, text: {en: They are fair.}, scale: agree3, construct: TRUST}
      - {id: T3, text: {en: They listen.}, scale: agree3, construct: TRUST, reverse: true, relevant: "AGE >= 18"}
"""


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    path = tmp_path_factory.mktemp("mini") / "mini.yaml"
    path.write_text(MINI, encoding="utf-8")
    return load_instrument(path)


def test_numbers_and_dates_checked(mini, tmp_path):
    csv = ("id,AGE,VISIT,T1,T2,T3\n"
           "a,34,45678,3,2,1\n"        # Excel serial date
           "b,abc,2024-03-05,1,1,\n"   # a word for a number
           "c,150,soon,2,2,2\n"        # out of bounds; not a date
           "d,-9,,1,2,\n"              # missing code
           "e,17,,2,2,3\n"             # T3 answered though AGE >= 18 is false
           "f,\"40,5\",,2,2,2\n")      # decimal comma, not a whole number
    path = tmp_path / "mini.csv"
    path.write_text(csv, encoding="utf-8")
    result = import_responses(path, mini)
    data = result.data
    assert data["VISIT"].iloc[0] == pd.Timestamp("2025-01-21")
    assert data["VISIT"].iloc[1] == pd.Timestamp("2024-03-05")
    assert data["AGE"].tolist()[3:] == [-9.0, 17.0, 40.5]
    report = validate(result, mini)
    got = {(r.type, r.row, r.item) for r in report.issues.itertuples()}
    assert ("wrong-type", 3, "AGE") in got            # 'abc'
    assert ("wrong-type", 4, "VISIT") in got          # 'soon'
    assert ("out-of-range", 4, "AGE") in got          # 150
    assert ("out-of-range", 7, "AGE") in got          # 40.5 not whole
    assert ("relevance-violation", 6, "T3") in got
    assert ("out-of-range", 5, "AGE") not in got      # -9 is a missing code
    value = report.issues[(report.issues["type"] == "wrong-type") & (report.issues["item"] == "AGE")]["value"]
    assert value.tolist() == ["abc"]
    scored = score(result, mini).table
    assert scored["T3"].iloc[0] == 3.0                # reverse: 3 + 1 - 1
    assert np.isnan(scored["AGE"].iloc[3])            # -9 -> NA
    assert scored["TRUST"].iloc[0] == pytest.approx((3 + 2 + 3) / 3)


def test_xlsform_numeric_constraint_allows_missing_codes(mini, tmp_path):
    survey = xlsform_sheets(mini, version="2025010101")["survey"].set_index("name")
    assert survey.loc["AGE", "type"] == "integer"
    assert survey.loc["AGE", "constraint"] == "(. >= 16 and . <= 110) or . = -9"
    assert survey.loc["VISIT", "type"] == "date"
    assert survey.loc["T3", "relevant"] == "${AGE} >= 18"
    warnings: list[str] = []
    assert convert(str(export_xlsform(mini, tmp_path / "mini.xlsx")), warnings=warnings).xform
    assert warnings == []


def test_stata_round_trip(mini, tmp_path):
    frame = pd.DataFrame({"respondent_id": ["a", "b"], "AGE": [30.0, -9.0], "T1": [1.0, 3.0],
                          "T2": [2.0, 2.0], "T3": [3.0, np.nan]})
    path = write_table(frame, tmp_path / "mini.dta")
    result = import_responses(path, mini)
    assert result.format == "dta"
    assert result.data["T1"].tolist() == [1.0, 3.0] and result.data["respondent_id"].tolist() == ["a", "b"]
