"""The validate step checks each source as imported: reading problems and the mapping's
not-asked items reach the counts, and each issue names its source file."""

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parents[1]))
from _pipeline_study import MEASUREMENT, make_study  # noqa: E402

from analysis.study.demo import simulate_community_survey  # noqa: E402
from analysis.study.pipeline import run_study  # noqa: E402


def _old_form_file(root: Path) -> None:
    """An older form version's export: no NAVIG4 column (the mapping says it was not asked) and a ragged row."""
    from instruments import load_instrument
    from instruments.export_data import write_kobo

    crs = load_instrument("crs")
    frame = simulate_community_survey(60, seed=5, instrument=crs)
    old = frame[frame["CONSENT"] == 1].head(30).drop(columns=["NAVIG4"]).assign(form_version="2024031501")
    old["respondent_id"] = "old-" + old["respondent_id"].astype(str)
    path = root / "data" / "raw" / "old_form.csv"
    write_kobo(old, crs, path)
    table = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
    table.drop(columns=[c for c in table.columns if c.endswith("NAVIG4")]).to_csv(path, index=False)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] += ",surplus"  # file row 4 has one cell too many
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "data" / "raw" / "old_mapping.yaml").write_text('absent:\n  "2024031501": [NAVIG4]\n', encoding="utf-8")


def test_each_source_is_validated_with_its_import_issues(tmp_path):
    root = tmp_path / "s"
    path = make_study(root, n=150, groups=(), models=[("measurement", MEASUREMENT)], comparisons=(),
                      replications=0)
    _old_form_file(root)
    text = path.read_text(encoding="utf-8").replace(
        "groups:", "  - file: data/raw/old_form.csv\n    format: kobo\n    mapping: data/raw/old_mapping.yaml\ngroups:", 1)
    path.write_text(text, encoding="utf-8")
    run = run_study(path, progress=False, report=False)
    assert run.step("validate").status == "ok", run.step("validate").message
    v = json.loads(run.results_json.read_text())["validation"]
    by_source = {s["source"]: s for s in v["sources"]}
    assert list(by_source) == ["data/raw/survey_kobo.csv", "data/raw/old_form.csv"]
    assert by_source["data/raw/old_form.csv"]["n_rows"] == 30
    assert by_source["data/raw/survey_kobo.csv"]["n_rows"] == 150
    old = {(c["type"], c["severity"]): c["n"] for c in by_source["data/raw/old_form.csv"]["counts"]}
    # the import's own error and the mapping's note reach the validation counts
    assert old[("ragged-row", "error")] == 1
    assert old[("not-asked", "warning")] == 1
    # the stacked table has a NAVIG4 column (from the first file), but the old form's rows are not 'left blank'
    issues = pd.read_parquet(run.results_dir / ".cache" / "validate" / run.step("validate").key / "issues.parquet")
    navig4 = issues[(issues["item"] == "NAVIG4") & (issues["source"] == "data/raw/old_form.csv")]
    assert navig4["type"].tolist() == ["not-asked"]
    ragged = issues[issues["type"] == "ragged-row"]
    assert ragged["source"].tolist() == ["data/raw/old_form.csv"] and ragged["row"].tolist() == [4]
    assert issues["source"].notna().all()
    total = {(c["type"], c["severity"]): c["n"] for c in v["counts"]}
    assert total[("ragged-row", "error")] == 1 and v["n_errors"] == sum(s["n_errors"] for s in v["sources"]) >= 1
    assert v["n_warnings"] == sum(s["n_warnings"] for s in v["sources"])
    assert v["n_rows"] == 180 and v["valid"] is False
