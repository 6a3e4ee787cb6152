"""`resilience reliability | invariance | efa`: JSON on stdout, one-line errors, exit codes."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app

sys.path.insert(0, str(Path(__file__).parents[1]))
from _item_responses import make_responses  # noqa: E402

FIX = Path(__file__).parents[1] / "fixtures"
HS = FIX / "data" / "HolzingerSwineford1939.csv"
HS_MODEL = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def crs_csv(tmp_path_factory):
    from instruments import load_instrument

    inst = load_instrument("crs")
    path = tmp_path_factory.mktemp("crs") / "crs.csv"
    make_responses(inst, n=500, seed=4).to_csv(path, index=False)
    return path


def test_invariance_json_contract(tmp_path):
    model = tmp_path / "hs.lav"
    model.write_text(HS_MODEL)
    r = runner.invoke(app, ["invariance", str(HS), "--model", str(model), "--group", "school", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [s["name"] for s in doc["steps"]] == ["configural", "metric", "scalar", "strict"]
    assert doc["steps"][1]["chisq"] == pytest.approx(124.0435, abs=1e-3)
    assert doc["comparisons"][1]["to"] == "scalar" and doc["comparisons"][1]["holds"] is False
    assert doc["highest"] == "metric"


def test_invariance_text_and_partial_search(tmp_path):
    model = tmp_path / "hs.lav"
    model.write_text(HS_MODEL)
    r = runner.invoke(app, ["invariance", str(HS), "-m", str(model), "-g", "school", "--partial", "scalar", "--min-group-size", "50"])
    assert r.exit_code == 0, r.output
    assert "Highest level supported: metric" in r.stdout
    assert "Partial scalar invariance" in r.stdout and "x3~1" in r.stdout


def test_invariance_user_errors_exit_1_without_traceback(tmp_path):
    model = tmp_path / "hs.lav"
    model.write_text(HS_MODEL)
    r = runner.invoke(app, ["invariance", str(HS), "--model", str(model), "--group", "schol"])
    assert r.exit_code == 1
    assert "grouping column 'schol' is not in the data (did you mean 'school'?)" in r.stderr
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["invariance", "nope.csv", "--model", str(model), "--group", "school"])
    assert r.exit_code == 1 and "nope.csv: file not found" in r.stderr
    r = runner.invoke(app, ["invariance", str(HS), "--model", "nomodel", "--group", "school"])
    assert r.exit_code == 1 and "model 'nomodel' not found: it is neither a shipped model" in r.stderr


def test_reliability_cli_json(crs_csv):
    r = runner.invoke(app, ["reliability", str(crs_csv), "--instrument", "crs", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    cons = {c["construct"]: c for c in doc["constructs"]}
    assert "TRUST" in cons and 0.5 < cons["TRUST"]["alpha"] < 0.95
    assert cons["TRUST"]["alpha.ci.lower"] < cons["TRUST"]["alpha"]
    assert "htmt" in doc["validity"]


def test_efa_cli_json(crs_csv):
    r = runner.invoke(app, ["efa", str(crs_csv), "--instrument", "crs", "--n-factors", "3", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["n_factors"] == 3 and doc["rotation"] == "oblimin"
    assert 0 < doc["kmo"]["overall"] <= 1
    assert len(doc["loadings"][0]) == 5  # item, F1-F3, h2


def test_reliability_cli_missing_instrument(crs_csv):
    r = runner.invoke(app, ["reliability", str(crs_csv), "--instrument", "no_such.yaml"])
    assert r.exit_code == 1
    assert "Traceback" not in r.output


TRUST_MODEL = "TRUST =~ TRUST1 + TRUST2 + TRUST3 + TRUST4\n"


@pytest.fixture
def trust_lav(tmp_path):
    path = tmp_path / "trust.lav"
    path.write_text(TRUST_MODEL)
    return str(path)


@pytest.fixture(scope="module")
def crs_groups(tmp_path_factory):
    """crs answers with census ethnic groups (ETHNIC, 19 codes; -9 = prefer not to say) and a -9 answer."""
    import numpy as np
    from instruments import load_instrument

    inst = load_instrument("crs")
    data = make_responses(inst, n=900, seed=9)
    rng = np.random.default_rng(9)
    data["ETHNIC"] = rng.choice([1, 2, 6, 7, 13, 14, -9], size=len(data), p=[.15, .15, .15, .15, .15, .15, .10])
    data.loc[:4, "TRUST2"] = -9
    path = tmp_path_factory.mktemp("crsg") / "crs_groups.csv"
    data.to_csv(path, index=False)
    return inst, data, path


def test_invariance_with_instrument_recodes_items_and_derives_collapsed_groups(crs_groups, trust_lav):
    from analysis.psychometrics.invariance import invariance_ladder
    from analysis.psychometrics.items import recode_items

    inst, data, path = crs_groups
    r = runner.invoke(app, ["invariance", str(path), "-m", trust_lav, "-g", "ETHNIC5", "-i", "crs",
                            "--steps", "configural,metric", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    # ETHNIC5 is derived from ETHNIC; groups in the scale's order, with their labels; -9 has no group
    assert doc["group_labels"] == ["Asian, Asian British or Asian Welsh",
                                   "Black, Black British, Black Welsh, Caribbean or African", "White"]
    # the same numbers as recoding by hand: -9 and 9 missing, TRUST4 reversed, listwise
    items = [f"TRUST{j}" for j in range(1, 5)]
    by_hand = recode_items(data, inst, items)
    by_hand["g"] = data["ETHNIC"].map(inst.item("ETHNIC").collapsed.mapping())
    by_hand = by_hand.dropna(subset=["g"]).sort_values("g", kind="stable")
    ref = invariance_ladder(TRUST_MODEL, by_hand, group="g", steps=("configural", "metric"))
    assert doc["nobs"] == list(ref.nobs)
    assert [s["chisq"] for s in doc["steps"]] == pytest.approx(ref.steps["chisq"].tolist(), abs=1e-8)
    assert not any("negative values" in w for w in doc["warnings"])


def test_invariance_without_instrument_warns_about_missing_codes(crs_groups, trust_lav):
    _, _, path = crs_groups
    r = runner.invoke(app, ["invariance", str(path), "-m", trust_lav, "-g", "ETHNIC", "--steps", "configural,metric",
                            "--min-group-size", "50", "--json"])
    assert r.exit_code == 0, r.output
    assert ("the model's items hold negative values (-9); if these are missing codes, pass --instrument so they "
            "count as missing, not as answers") in json.loads(r.stdout)["warnings"]


def test_invariance_compare_runs_only_when_scalar_holds(tmp_path):
    model = tmp_path / "hs.lav"
    model.write_text(HS_MODEL)
    base = ["invariance", str(HS), "-m", str(model), "-g", "school", "--min-group-size", "50", "--compare"]
    r = runner.invoke(app, base + ["--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["group_comparison"] == {
        "skipped": "latent means and paths not compared: scalar invariance does not hold (highest level: metric); "
                   "try --partial scalar"}
    r = runner.invoke(app, base + ["--partial", "scalar", "--json"])
    gc = json.loads(r.stdout)["group_comparison"]
    assert gc["freed"] == ["x3~1", "x7~1"] and gc["reference_group"] == "Pasteur"
    means = {m["construct"]: m["est"] for m in gc["latent_means"]}
    # the same partial scalar model as lavaan (tests/fixtures/make_psychometrics.R)
    ref = json.loads((FIX / "lavaan" / "psychometrics_partial_invariance.json").read_text())
    est = pd.DataFrame(ref["partial"]["estimates"])
    lav = est[(est.op == "~1") & (est.group == 2) & est.lhs.isin(["visual", "textual", "speed"])]
    lav = dict(zip(lav.lhs, lav.est))
    assert means == pytest.approx(lav, abs=1e-4)


def test_ladder_and_search_report_progress():
    from analysis.psychometrics.invariance import invariance_ladder, partial_invariance_search

    hs = pd.read_csv(HS)
    seen: list[str] = []
    invariance_ladder(HS_MODEL, hs, group="school", steps=("configural", "metric"), min_group_size=50,
                      progress=seen.append)
    assert seen == ["ladder: fitting configural (1 of 2)", "ladder: fitting metric (2 of 2)"]
    seen.clear()
    partial_invariance_search(HS_MODEL, hs, group="school", step="scalar", min_group_size=50, progress=seen.append)
    assert seen == ["partial scalar: fitting the metric baseline and the scalar model",
                    "partial scalar, round 1 (at most 4): score tests for 9 constraint(s)",
                    "partial scalar, round 2 (at most 4): score tests for 8 constraint(s)"]


def test_efa_cli_plot_and_table_mode_prints_warnings(crs_csv, tmp_path):
    png = tmp_path / "scree.png"
    r = runner.invoke(app, ["efa", str(crs_csv), "-i", "crs", "-k", "3", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:4] == b"\x89PNG" and f"wrote {png}" in r.stderr
    assert "construct" in r.stdout.splitlines()[6]  # the loadings header names the intended construct
    # a too-small sample makes the CFA behind reliability warn: the table mode must show it, not swallow it
    import pandas as pd

    small = tmp_path / "small.csv"
    pd.read_csv(crs_csv).head(40).to_csv(small, index=False)
    r = runner.invoke(app, ["reliability", str(small), "-i", "crs"])
    assert r.exit_code == 0, r.output
    as_json = json.loads(runner.invoke(app, ["reliability", str(small), "-i", "crs", "--json"]).stdout)
    assert as_json["warnings"]
    assert all(f"warning: {w}" in r.stderr for w in set(as_json["warnings"]))


def test_too_small_detailed_group_points_to_the_collapsed_version(crs_groups, trust_lav, tmp_path):
    _, data, _ = crs_groups
    odd = data.copy()
    answered = odd[[f"TRUST{j}" for j in range(1, 5)]].isin(range(1, 6)).all(axis=1)
    odd.loc[odd.index[answered][:5], "ETHNIC"] = 19  # five complete "Any other ethnic group" respondents
    path = tmp_path / "odd.csv"
    odd.to_csv(path, index=False)
    r = runner.invoke(app, ["invariance", str(path), "-m", trust_lav, "-g", "ETHNIC", "-i", "crs"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip() == (
        "Error: group 'Other ethnic group: Any other ethnic group' of 'ETHNIC' has 5 complete case(s), fewer than "
        "the 12 free parameters its configural model estimates; merge it with a similar group or drop it. "
        "The instrument collapses 'ETHNIC' into 'ETHNIC5': try --group ETHNIC5.")


def test_instrument_data_scores_an_observed_construct_of_the_model():
    import numpy as np

    from analysis.psychometrics.invariance import instrument_group_data
    from instruments import load_instrument

    inst = load_instrument("crs")
    raw = pd.DataFrame({"REPR1": [1, 0, -9, 1], "REPR2": [1, 0, 1, -8], "REPR3": [1, 1, 0, 0],
                        "TRUST1": [1, 2, 3, 4], "LANG": [2, 1, 1, -9]})
    out = instrument_group_data(raw, inst, "TRUST =~ TRUST1\nTRUST ~~ REPR", "LANG")
    # REPR counts the Yes answers (code 1) where all three are answered (crs: min_items 3)
    assert out.loc[0, "REPR"] == 3 and out.loc[1, "REPR"] == 1 and out.loc[[2, 3], "REPR"].isna().all()
    # rows in the scale's order of LANG (English first), the -9 row last without a group
    assert out.index.tolist() == [1, 2, 0, 3]
    assert out["LANG"].tolist()[:3] == ["English", "English", "Urdu"] and pd.isna(out["LANG"].iloc[3])
    assert np.isnan(out.loc[3, "REPR"])
    # an export with labels instead of codes keeps them (not "no groups")
    labelled = instrument_group_data(raw.assign(LANG=["Urdu", "English", "English", None]), inst, "T =~ TRUST1", "LANG")
    assert labelled["LANG"].tolist()[:3] == ["Urdu", "English", "English"]


def test_reliability_and_efa_on_chosen_constructs(crs_csv):
    r = runner.invoke(app, ["reliability", str(crs_csv), "-i", "crs", "-c", "TRUST,CONF", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [c["construct"] for c in doc["constructs"]] == ["TRUST", "CONF"]
    assert {i["construct"] for i in doc["items"]} == {"TRUST", "CONF"}
    r = runner.invoke(app, ["efa", str(crs_csv), "-i", "crs", "-c", "TRUST,NAVIG", "-k", "2", "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(json.loads(r.stdout)["constructs"].values()) == ["NAVIG"] * 4 + ["TRUST"] * 4
    r = runner.invoke(app, ["reliability", str(crs_csv), "-i", "crs", "-c", "TRUST,COMF"])
    assert r.exit_code == 2   # a wrong option value
    assert r.stderr.startswith("Error: --constructs: unknown construct(s) COMF; crs has CULT, PART, TRUST,")


def test_efa_n_factors_beyond_the_items_is_a_usage_error_naming_the_option(crs_csv):
    r = runner.invoke(app, ["efa", str(crs_csv), "--instrument", "crs", "--n-factors", "500"])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("Error: --n-factors must be an int in [1, ") and "Got 500" in r.stderr
    assert "parameter" not in r.stderr
