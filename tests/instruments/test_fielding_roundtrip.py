"""Responses written as platform exports come back as the identical scored table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from instruments import load_instrument
from instruments.export_data import (
    to_kobo,
    write_csv,
    write_kobo,
    write_limesurvey,
    write_odk,
    write_redcap,
    write_xlsx,
)
from instruments.export_sav import export_sav
from instruments.ingest import detect_format, import_responses
from instruments.score import score
from instruments.validate import validate
from _fielding_data import make_responses

SCORED_COMPARE_DROP = ["submitted_at"]  # platforms store seconds; compared separately


@pytest.fixture(scope="module")
def crs():
    return load_instrument("crs")


@pytest.fixture(scope="module")
def responses(crs):
    return make_responses(crs, n=80, seed=7)


def _scored(frame, crs):
    table = score(frame, crs).table.drop(columns=SCORED_COMPARE_DROP, errors="ignore")
    return table.sort_values("respondent_id").reset_index(drop=True)


@pytest.mark.parametrize("fmt, writer", [("kobo", write_kobo), ("odk", write_odk),
                                         ("redcap", write_redcap), ("limesurvey", write_limesurvey)])
def test_platform_export_round_trip(crs, responses, tmp_path, fmt, writer):
    path = writer(responses, crs, tmp_path / f"{fmt}.csv")
    result = import_responses(path, crs)
    assert result.format == fmt
    assert result.n_rows == len(responses)
    report = validate(result, crs)
    assert report.valid, report.summary()
    expected = _scored(responses, crs)
    got = _scored(result.data, crs)
    # same columns, same values, same missingness (REDCap keeps no interview timings)
    cols = [c for c in expected.columns if not (c == "duration_s" and fmt == "redcap")]
    assert set(cols) <= set(got.columns)
    pd.testing.assert_frame_equal(got[cols], expected[cols], check_dtype=False)
    assert got["CULT"].notna().sum() == expected["CULT"].notna().sum() > 0
    assert set(got["language"]) == set(crs.languages)


def test_kobo_label_headers_and_values_round_trip(crs, responses, tmp_path):
    path = write_kobo(responses, crs, tmp_path / "kobo_labels.csv", headers="labels")
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert crs.item("CULT1").text["en"] in header
    result = import_responses(path, crs)
    assert result.format == "kobo"
    pd.testing.assert_frame_equal(_scored(result.data, crs), _scored(responses, crs), check_dtype=False)


def test_csv_xlsx_sav_parquet_round_trip(crs, responses, tmp_path):
    expected = _scored(responses, crs)
    plain = responses.drop(columns=["submitted_at"])
    paths = [write_csv(plain, tmp_path / "r.csv"), write_xlsx(plain, tmp_path / "r.xlsx"),
             export_sav(crs, tmp_path / "r.sav", data=plain)]
    plain.to_parquet(tmp_path / "r.parquet")
    paths.append(tmp_path / "r.parquet")
    for path in paths:
        result = import_responses(path, crs)
        got = _scored(result.data, crs)
        cols = [c for c in expected.columns if c != "duration_s" or c in got]
        pd.testing.assert_frame_equal(got[cols], expected[cols], check_dtype=False, obj=path.name)


def test_kobo_select_multiple_keeps_blanks_apart_from_zero(crs, tmp_path):
    data = pd.DataFrame({"respondent_id": ["a", "b", "c"], "CONSENT": [1.0, 1.0, 1.0],
                         "REPR1___1": [1.0, 0.0, np.nan], "REPR1___0": [0.0, 1.0, np.nan]})
    kobo = to_kobo(data, crs)
    assert list(kobo["S_REPR/REPR1"]) == ["1", "0", ""]
    assert list(kobo["S_REPR/REPR1/1"]) == ["1", "0", ""]
    path = write_kobo(data, crs, tmp_path / "multi.csv")
    back = import_responses(path, crs).data
    assert back["REPR1___1"].tolist()[:2] == [1.0, 0.0] and np.isnan(back["REPR1___1"].iloc[2])
    # ODK Central's split select_multiple columns group-item/code too
    back = import_responses(write_odk(data, crs, tmp_path / "multi_odk.csv"), crs).data
    assert back["REPR1___0"].tolist()[:2] == [0.0, 1.0] and np.isnan(back["REPR1___0"].iloc[2])
    # REDCap checkboxes field___code land in the same columns
    red = pd.DataFrame({"record_id": ["a", "b"], "repr1___1": ["1", "0"], "repr1___0": ["0", "1"]})
    red.to_csv(tmp_path / "rc.csv", index=False)
    back = import_responses(tmp_path / "rc.csv", crs)
    assert back.format == "redcap"
    assert back.data["REPR1___1"].tolist() == [1.0, 0.0]


def test_odk_central_headers_are_recognised(crs, responses):
    from instruments.export_data import to_odk

    odk = to_odk(responses.head(3), crs)
    assert "S_PROVIDERS-CULT1" in odk.columns and odk["KEY"].iloc[0] == "uuid:R0000"
    assert detect_format(list(odk.columns)) == "odk"


def test_format_override_and_mapping_across_form_versions(crs, tmp_path):
    # version 1 called CULT1 "cc_understand"; version 2 uses CULT1; mapping renames per version
    csv = ("respondent_id,form_version,CONSENT,cc_understand,CULT1\n"
           "a,v1,1,4,\n"
           "b,v2,1,,2\n")
    path = tmp_path / "waves.csv"
    path.write_text(csv, encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("versions:\n  v1: {cc_understand: CULT1}\n", encoding="utf-8")
    result = import_responses(path, crs, mapping=mapping, format="csv")
    assert result.format == "csv"
    assert result.data["CULT1"].tolist() == [4.0, 2.0]
    assert result.data["form_version"].tolist() == ["v1", "v2"]
    renamed = import_responses(path, crs, mapping={"renames": {"cc_understand": "CULT2"}})
    assert renamed.data["CULT2"].tolist()[0] == 4.0


def test_interview_language_kept_from_the_language_item(crs, responses, tmp_path):
    path = write_odk(responses, crs, tmp_path / "odk.csv")
    data = import_responses(path, crs).data.set_index("respondent_id")
    expect = responses.set_index("respondent_id")["language"]
    assert (data.loc[expect.index, "language"] == expect).all()


def test_redcap_label_export_round_trip(crs, responses, tmp_path):
    path = write_redcap(responses, crs, tmp_path / "labels.csv", labels=True)
    assert crs.item("NAVIG1").text["en"] in path.read_text(encoding="utf-8").splitlines()[0]
    result = import_responses(path, crs)
    assert result.format == "redcap" and not result.unknown_columns
    expected = _scored(responses, crs).drop(columns=["duration_s"])
    pd.testing.assert_frame_equal(_scored(result.data, crs)[expected.columns], expected, check_dtype=False)


def test_odk_central_zip_download_is_read(crs, responses, tmp_path):
    # ODK Central's "all submissions" download: the form's CSV plus one CSV per repeat group
    import zipfile

    from instruments.ingest import ImportError_

    csv_path = write_odk(responses, crs, tmp_path / "crs.csv")
    zpath = tmp_path / "crs.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(csv_path, "crs.csv")
        zf.writestr("crs-children.csv", "PARENT_KEY,KEY,age\n")
    result = import_responses(zpath, crs)
    assert result.format == "odk" and result.n_rows == len(responses)
    pd.testing.assert_frame_equal(_scored(result.data, crs), _scored(import_responses(csv_path, crs).data, crs))
    note = [i for i in result.issues if i.type == "zip"]
    assert len(note) == 1 and "crs-children.csv" in note[0].message and note[0].severity == "warning"
    # two unrelated tables: the user must say which
    other = tmp_path / "two.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.write(csv_path, "a.csv")
        zf.write(csv_path, "b.csv")
    with pytest.raises(ImportError_, match="holds several tables"):
        import_responses(other, crs)


def test_limesurvey_start_language_from_the_language_item(crs, responses, tmp_path):
    # data with LANG but no language column (as the simulator makes it)
    data = responses.drop(columns=["language"]).copy()
    data.loc[data.index[:3], "LANG"] = 3.0  # 'Another language': LimeSurvey only knows en and ur
    path = write_limesurvey(data, crs, tmp_path / "ls.csv")
    got = import_responses(path, crs).data.set_index("respondent_id")["language"]
    expect = responses.set_index("respondent_id")["language"].copy()
    expect.iloc[:3] = crs.default_language
    assert (got.loc[expect.index] == expect).all()
    assert set(got) == set(crs.languages)


def test_mapping_absent_items_of_an_older_form_version(crs, responses, tmp_path):
    from instruments.ingest import ImportError_

    consented = responses[responses["CONSENT"] == 1]
    old = consented.head(10).drop(columns=["NAVIG4"]).assign(form_version="2024031501")
    path = write_kobo(old, crs, tmp_path / "old.csv")
    # the old form had no NAVIG4 question, so its export has no such column
    table = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
    table.drop(columns=[c for c in table.columns if c.endswith("NAVIG4")]).to_csv(path, index=False)
    plain = validate(import_responses(path, crs), crs).issues
    assert plain.query("item == 'NAVIG4'")[["type", "severity"]].values.tolist() == [["missing-column", "error"]]
    mapping = tmp_path / "m.yaml"
    mapping.write_text('absent:\n  "2024031501": [NAVIG4]\n', encoding="utf-8")
    report = validate(import_responses(path, crs, mapping=mapping), crs)
    assert report.valid, report.summary()
    note = report.issues.query("item == 'NAVIG4'")
    assert note[["type", "severity"]].values.tolist() == [["not-asked", "warning"]]
    assert "form version 2024031501" in note["message"].iloc[0]
    # one file with both versions: old rows are not 'left blank', new rows still are
    both = pd.concat([old, consented.iloc[10:14].assign(form_version="2025011501")], ignore_index=True)
    both.loc[len(old), "NAVIG4"] = np.nan  # a new-version respondent who skipped it
    result = import_responses(write_kobo(both, crs, tmp_path / "both.csv"), crs, mapping=mapping)
    blank = validate(result, crs).issues.query("item == 'NAVIG4' and type == 'missing-required'")
    assert blank["respondent_id"].tolist() == [both.loc[len(old), "respondent_id"]]
    bad = tmp_path / "bad.yaml"
    bad.write_text("absent: [NAVIG4]\n", encoding="utf-8")
    with pytest.raises(ImportError_, match="lists items per form version"):
        import_responses(path, crs, mapping=bad)


def test_limesurvey_code_and_text_headings(crs, responses, tmp_path):
    from instruments.ingest import limesurvey_code

    path = write_limesurvey(responses, crs, tmp_path / "ls.csv")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    heads = {limesurvey_code(it.id): f"{limesurvey_code(it.id)}. {it.text['en']}" for it in crs.items}
    table.rename(columns=heads).to_csv(tmp_path / "ls_text.csv", index=False)
    result = import_responses(tmp_path / "ls_text.csv", crs)
    assert result.format == "limesurvey" and result.unknown_columns == []
    pd.testing.assert_frame_equal(_scored(result.data, crs), _scored(import_responses(path, crs).data, crs))
