"""The study store: raw files kept byte for byte, re-import is a no-op, waves and versions in one table."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from analysis.cli.main import app
from instruments import load_instrument
from instruments.export_data import write_kobo, write_odk, write_redcap
from instruments.ingest import file_sha256
from instruments.store import Study
from _fielding_data import make_responses


@pytest.fixture(scope="module")
def crs():
    return load_instrument("crs")


def test_import_copies_raw_file_and_reimport_adds_nothing(crs, tmp_path):
    src = write_kobo(make_responses(crs, n=40, seed=3), crs, tmp_path / "wave1.csv")
    sha = file_sha256(src)
    study = Study(tmp_path / "study")
    first = study.import_file(src, crs, wave="w1")
    assert first.added and first.n_rows == 40 and first.report.valid
    raw = study.raw_dir / "wave1.csv"
    assert raw.read_bytes() == src.read_bytes() and file_sha256(raw) == sha
    assert not os.access(raw, os.W_OK) or os.geteuid() == 0  # read-only (root may still write)
    assert oct(raw.stat().st_mode & 0o777) == "0o444"
    again = study.import_file(src, crs, wave="w1")
    assert not again.added and "already imported" in again.reason
    assert len(study.responses()) == 40
    manifest = json.loads(study.manifest_path.read_text())
    assert [f["sha256"] for f in manifest["files"]] == [sha]
    assert manifest["files"][0]["n_rows"] == 40 and manifest["files"][0]["format"] == "kobo"
    assert file_sha256(src) == sha and study.verify()["ok"].all()


def test_same_name_other_content_is_kept_beside(crs, tmp_path):
    study = Study(tmp_path / "study")
    a = write_odk(make_responses(crs, n=10, seed=1), crs, tmp_path / "a" / "data.csv")
    b = write_odk(make_responses(crs, n=12, seed=2).assign(respondent_id=lambda d: "B" + d["respondent_id"]),
                  crs, tmp_path / "b" / "data.csv")
    study.import_file(a, crs)
    second = study.import_file(b, crs)
    assert second.added and second.raw_path.endswith(f"data.{file_sha256(b)[:12]}.csv")
    assert (study.raw_dir / "data.csv").read_bytes() == a.read_bytes()
    assert len(study.responses()) == 22
    assert study.imports()["n_rows"].tolist() == [10, 12]


def test_waves_and_form_versions_share_one_table(crs, tmp_path):
    study = Study(tmp_path / "study")
    old = make_responses(crs, n=15, seed=4).drop(columns=["RESIL4"]).assign(form_version="2024100101")
    new = make_responses(crs, n=20, seed=5).assign(form_version="2025011501",
                                                   respondent_id=lambda d: "N" + d["respondent_id"])
    # the old wave (from REDCap) lacks RESIL4; the new one (Kobo) has it
    study.import_file(write_redcap(old, crs, tmp_path / "old.csv"), crs, wave="2024")
    study.import_file(write_kobo(new, crs, tmp_path / "new.csv"), crs, wave="2025")
    rows = study.responses()
    assert len(rows) == 35
    assert rows.groupby("form_version").size().to_dict() == {"2024100101": 15, "2025011501": 20}
    assert rows.loc[rows["wave"] == "2024", "RESIL4"].isna().all()
    assert rows.loc[rows["wave"] == "2025", "RESIL4"].notna().sum() == new["RESIL4"].notna().sum()
    assert set(rows["language"]) <= set(crs.languages)


def test_no_command_changes_a_raw_file(crs, tmp_path):
    src = write_kobo(make_responses(crs, n=25, seed=6), crs, tmp_path / "k.csv")
    sha = file_sha256(src)
    runner = CliRunner()
    study = tmp_path / "study"
    for args in (["import", str(src), "-i", "crs", "--study", str(study)],
                 ["import", str(src), "-i", "crs", "--study", str(study), "--json"],
                 ["import", str(src), "-i", "crs", "-o", str(tmp_path / "tidy.csv")],
                 ["score", str(src), "-i", "crs", "-o", str(tmp_path / "scored.parquet")],
                 ["quality", str(src), "-i", "crs", "--json"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        assert file_sha256(src) == sha
    raw = study / "data" / "raw" / "k.csv"
    assert file_sha256(raw) == sha
    assert len(Study(study).responses()) == 25  # the second import added nothing


def test_validation_reports_are_stored_as_data(crs, tmp_path):
    bad = __import__("pathlib").Path(__file__).parents[1] / "fixtures" / "bad_data"
    study = Study(tmp_path / "study")
    study.import_file(bad / "out_of_range.csv", crs)
    study.import_file(bad / "duplicate_respondents.csv", crs)
    issues = study.issues()
    oor = issues[issues["type"] == "out-of-range"]
    assert oor[["import_id", "row", "respondent_id", "item", "value"]].values.tolist() == [[1, 2, "r1", "CULT3", "7"]]
    assert sorted(issues.loc[issues["type"] == "duplicate-respondent", "row"]) == [2, 3]
    assert study.imports()["n_errors"].tolist() == [
        int((issues["import_id"] == k).sum() - ((issues["import_id"] == k) & (issues["severity"] == "warning")).sum())
        for k in (1, 2)]


def test_unreadable_file_leaves_no_copy_behind(crs, tmp_path):
    from instruments.ingest import ImportError_

    bad = __import__("pathlib").Path(__file__).parents[1] / "fixtures" / "bad_data" / "zip_bomb.xlsx"
    study = Study(tmp_path / "study")
    for _ in range(2):
        with pytest.raises(ImportError_):
            study.import_file(bad, crs)
    assert [p.name for p in study.raw_dir.iterdir()] == []
    assert study.manifest()["files"] == []


def test_stored_responses_validate_without_store_columns_as_unknown(crs, tmp_path):
    from instruments.validate import validate

    study = Study(tmp_path / "study")
    study.import_file(write_kobo(make_responses(crs, n=15, seed=8), crs, tmp_path / "k.csv"), crs, wave="w1")
    report = validate(study.responses(), crs)
    assert report.valid and "unknown-column" not in set(report.issues["type"])
    # nor the `source` column a study run adds when it stacks its data sources
    report = validate(study.responses().assign(source=0), crs)
    assert report.valid and "unknown-column" not in set(report.issues["type"])


def test_cumulative_export_adds_only_new_respondents(crs, tmp_path):
    # a platform export repeats last week's submissions: they are not stored twice
    data = make_responses(crs, n=30, seed=11)
    week1 = write_kobo(data.head(18), crs, tmp_path / "week1.csv")
    week2 = write_kobo(data, crs, tmp_path / "week2.csv")
    study = Study(tmp_path / "study")
    assert study.import_file(week1, crs).n_rows == 18
    second = study.import_file(week2, crs)
    assert second.added and second.n_rows == 12
    note = second.report.issues.query("type == 'already-stored'")
    assert note["severity"].tolist() == ["warning"] and note["message"].iloc[0].startswith("18 of 30 responses")
    stored = study.responses()
    assert len(stored) == 30 and stored["respondent_id"].is_unique
    assert study.imports()["n_rows"].tolist() == [18, 12]
    # the same people in another wave are a panel, not a repeat
    week2_again = write_odk(data, crs, tmp_path / "wave2.csv")
    assert study.import_file(week2_again, crs, wave="w2").n_rows == 30
    assert study.responses()["wave"].value_counts().to_dict() == {"": 30, "w2": 30}


def test_redcap_longitudinal_events_are_not_duplicates(crs, tmp_path):
    import pandas as pd

    from instruments.ingest import import_responses
    from instruments.validate import validate

    data = make_responses(crs, n=6, seed=12)
    base = pd.read_csv(write_redcap(data, crs, tmp_path / "one.csv"), dtype=str, keep_default_na=False)
    events = [base.assign(redcap_event_name=e) for e in ("baseline_arm_1", "followup_arm_1")]
    first = tmp_path / "redcap_long.csv"
    pd.concat(events[:1]).to_csv(first, index=False)
    both = tmp_path / "redcap_long2.csv"
    pd.concat(events).to_csv(both, index=False)
    result = import_responses(both, crs)
    assert result.format == "redcap"
    assert result.data["event"].tolist() == ["baseline_arm_1"] * 6 + ["followup_arm_1"] * 6
    assert "duplicate-respondent" not in set(validate(result, crs).issues["type"])
    # a true repeat within one event is still a duplicate
    twice = tmp_path / "twice.csv"
    pd.concat([events[0], events[0].head(1)]).to_csv(twice, index=False)
    dup = validate(import_responses(twice, crs), crs).issues.query("type == 'duplicate-respondent'")
    assert dup["row"].tolist() == [2, 8] and dup["message"].iloc[0].endswith("in the same event")
    # the store: baseline first, then the cumulative export adds only the follow-up
    study = Study(tmp_path / "study")
    assert study.import_file(first, crs).n_rows == 6
    assert study.import_file(both, crs).n_rows == 6
    assert study.responses().groupby("event").size().to_dict() == {"baseline_arm_1": 6, "followup_arm_1": 6}


def test_cli_says_how_many_were_already_stored(crs, tmp_path):
    data = make_responses(crs, n=9, seed=13)
    week1 = write_kobo(data.head(5), crs, tmp_path / "w1.csv")
    week2 = write_kobo(data, crs, tmp_path / "w2.csv")
    runner = CliRunner()
    study = str(tmp_path / "study")
    assert "stored 5 responses in" in runner.invoke(app, ["import", str(week1), "-i", "crs", "--study", study]).output
    res = runner.invoke(app, ["import", str(week2), "-i", "crs", "--study", study])
    assert res.exit_code == 0 and "stored 4 responses in" in res.output and "(5 already there)" in res.output
    doc = json.loads(runner.invoke(app, ["import", str(week1), "-i", "crs", "--study", study, "--json"]).stdout)
    assert doc["import"]["added"] is False and doc["import"]["reason"].startswith("already imported as w1.csv")


def _language_only(crs, path, seed, n=20):
    # a plain CSV whose only issue is file-level: no row, respondent id or value
    data = make_responses(crs, n=n, seed=seed)
    data["respondent_id"] = [f"{path.stem}-{i}" for i in range(n)]
    data["language"] = "Another language"
    data.to_csv(path, index=False)
    return data


def test_second_import_with_row_issue_after_issues_without_row_ids(crs, tmp_path):
    # the first import's issues all lack a row id and value: those columns must still take text later
    study = Study(tmp_path / "study")
    _language_only(crs, tmp_path / "a.csv", seed=3)
    first = study.import_file(tmp_path / "a.csv", crs)
    assert first.added and first.report.issues["row"].isna().all()
    data = _language_only(crs, tmp_path / "b.csv", seed=4)
    data.loc[3, "CULT1"] = 9
    data.to_csv(tmp_path / "b.csv", index=False)
    second = study.import_file(tmp_path / "b.csv", crs)
    assert second.added and second.n_rows == 20
    issues = study.issues()
    bad = issues[issues["type"] == "out-of-range"]
    assert bad[["import_id", "row", "respondent_id", "item", "value"]].values.tolist() == [[2, 5, "b-3", "CULT1", "9"]]  # row: the file line (header is 1)
    assert sorted(issues["import_id"].unique()) == [1, 2] and len(study.responses()) == 40


def test_store_with_null_typed_issue_columns_accepts_a_later_import(crs, tmp_path):
    # a store written before the issues table had types: its NULL-typed columns are retyped
    import duckdb

    study = Study(tmp_path / "study")
    _language_only(crs, tmp_path / "a.csv", seed=3)
    study.import_file(tmp_path / "a.csv", crs)
    with duckdb.connect(str(study.db_path)) as con:
        con.execute("CREATE OR REPLACE TABLE issues AS SELECT import_id, NULL AS \"row\", NULL AS respondent_id, "
                    "item, NULL AS value, type, severity, message FROM issues")
        assert con.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'issues' "
                           "AND data_type = '\"NULL\"'").fetchall()[0][0] == 3
    data = _language_only(crs, tmp_path / "b.csv", seed=4)
    data.loc[5, "CULT2"] = 9
    data.to_csv(tmp_path / "b.csv", index=False)
    assert study.import_file(tmp_path / "b.csv", crs).added
    issues = study.issues()
    bad = issues[issues["type"] == "out-of-range"]
    assert bad[["row", "respondent_id", "value"]].values.tolist() == [[7, "b-5", "9"]]
    assert len(issues) == 3 and len(study.responses()) == 40
