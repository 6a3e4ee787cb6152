"""Design-based means, proportions and regression against survey 4.1 (svymean / svyby with
deff = "replace", svyglm), with strata, clusters, an fpc and lonely-PSU options."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app
from analysis.design import Design
from analysis.design.describe import describe, regress
from analysis.errors import DataError

FIX = Path(__file__).parents[1] / "fixtures" / "design"
REF = json.loads((FIX / "describe.json").read_text())
DATA = pd.read_csv(FIX / "design_sample_missing.csv")
FULL = Design(weights="w", cluster="psu", strata="stratum")


def _check_means(got: pd.DataFrame, ref: list[dict], keys=("variable",)):
    ref = pd.DataFrame(ref)
    m = ref.merge(got, on=list(keys), suffixes=("_r", ""))
    assert len(m) == len(ref)
    np.testing.assert_allclose(m["mean"], m["mean_r"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(m["se"], m["se_r"], rtol=1e-4)
    np.testing.assert_allclose(m["deff"], m["deff_r"], rtol=1e-4)


@pytest.mark.parametrize("key, design", [
    ("strata_cluster", FULL),
    ("fpc", Design(weights="w", cluster="psu", strata="stratum", fpc="popsize")),
    ("cluster_only", Design(weights="w", cluster="psu")),
])
def test_means_match_svymean(key, design):
    res = describe(DATA, design, variables=["x1", "x4", "x7"])
    _check_means(res.means, REF[key]["means"])


def test_proportions_match_svymean():
    res = describe(DATA, FULL, categorical=["trust"])
    ref = REF["strata_cluster"]["proportions"]
    np.testing.assert_allclose(res.proportions["proportion"], ref["proportion"], atol=1e-6)
    np.testing.assert_allclose(res.proportions["se"], ref["se"], rtol=1e-4)
    assert list(map(str, res.proportions["category"])) == ref["category"]


def test_by_groups_match_svyby():
    res = describe(DATA, FULL, variables=["x1", "x4"], categorical=["trust"], by="eth")
    _check_means(res.means, REF["strata_cluster"]["by"]["means"], keys=("group", "variable"))
    ref = pd.DataFrame(REF["strata_cluster"]["by"]["proportions"])
    got = res.proportions.assign(category=res.proportions["category"].astype(str))
    m = ref.merge(got, on=["group", "category"], suffixes=("_r", ""))
    assert len(m) == len(ref)
    np.testing.assert_allclose(m["proportion"], m["proportion_r"], atol=1e-6)
    np.testing.assert_allclose(m["se"], m["se_r"], rtol=1e-4)


@pytest.mark.parametrize("option", ["adjust", "average", "certainty"])
def test_lonely_psu_options_match_survey(option):
    data = pd.read_csv(FIX / "design_sample_lonely.csv")
    both = data[["x1", "x4"]].notna().all(axis=1)          # survey's svymean(~x1 + x4) drops either
    data.loc[~both, ["x1", "x4"]] = np.nan
    design = Design(weights="w", cluster="psu", strata="stratum", lonely_psu=option)
    res = describe(data, design, variables=["x1", "x4"])
    ref = REF["lonely"][option]
    np.testing.assert_allclose(res.means["mean"], ref["mean"], atol=1e-6)
    np.testing.assert_allclose(res.means["se"], ref["se"], rtol=1e-4)


def test_lonely_psu_fails_by_default_naming_the_stratum():
    data = pd.read_csv(FIX / "design_sample_lonely.csv")
    with pytest.raises(DataError, match="stratum 'S1' of 'stratum' has only one PSU"):
        describe(data, FULL, variables=["x1"])


def test_regression_matches_svyglm():
    res = regress("x1 ~ x4 + x7 + eth", DATA, FULL)
    ref = REF["svyglm"]
    names = {"Intercept": "(Intercept)", "eth[T.B]": "ethB", "eth[T.C]": "ethC", "x4": "x4", "x7": "x7"}
    for _, row in res.table.iterrows():
        r = names[row["term"]]
        assert row["estimate"] == pytest.approx(ref["coef"][r], abs=1e-6)
        assert row["se"] == pytest.approx(ref["se"][r], rel=1e-4)
    assert res.df == ref["df"]


def test_cli_describe_json_contract():
    res = CliRunner().invoke(app, ["describe", str(FIX / "design_sample_missing.csv"), "--vars", "x1,x4,x7",
                                   "--categorical", "trust", "--weights", "w", "--cluster", "psu",
                                   "--strata", "stratum", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {"variable", "mean", "se", "deff"} <= set(doc["means"][0])
    assert {"variable", "category", "proportion", "se"} <= set(doc["proportions"][0])
    _check_means(pd.DataFrame(doc["means"]), REF["strata_cluster"]["means"])


def test_cli_describe_names_a_bad_column():
    res = CliRunner().invoke(app, ["describe", str(FIX / "design_sample.csv"), "--vars", "x1",
                                   "--weights", "weight", "--json"])
    assert res.exit_code == 1
    assert "weights column 'weight' not found" in json.loads(res.stdout)["error"]["message"]


MISSING_BY = json.loads((FIX / "describe_missing_by.json").read_text())
DATA_BY = pd.read_csv(FIX / "design_sample_missing_by.csv")


def test_numeric_categories_are_labelled_alike_with_or_without_blanks():
    with_blanks = describe(DATA_BY, FULL, categorical=["trust"]).proportions
    assert DATA_BY["trust"].dtype == float and DATA_BY["trust"].isna().any()
    assert list(with_blanks["category"]) == MISSING_BY["proportions"]["category"] == ["1", "2", "3", "4", "5"]
    np.testing.assert_allclose(with_blanks["proportion"], MISSING_BY["proportions"]["proportion"], atol=1e-6)
    np.testing.assert_allclose(with_blanks["se"], MISSING_BY["proportions"]["se"], rtol=1e-4)
    complete = describe(DATA, FULL, categorical=["trust"]).proportions
    assert list(complete["category"]) == list(with_blanks["category"])


@pytest.mark.parametrize("by", ["eth", "area"])      # a text and a numeric group column with blanks
def test_missing_by_values_are_dropped_from_the_domains_as_svyby(by):
    ref = MISSING_BY[f"by_{by}"]
    res = describe(DATA_BY, FULL, variables=["x1", "x4"], categorical=["trust"], by=by)
    _check_means(res.means, ref["means"], keys=("group", "variable"))
    want = pd.DataFrame(ref["proportions"])
    m = want.merge(res.proportions, on=["group", "category"], suffixes=("_r", ""))
    assert len(m) == len(want) == len(res.proportions)
    np.testing.assert_allclose(m["proportion"], m["proportion_r"], atol=1e-6)
    np.testing.assert_allclose(m["se"], m["se_r"], rtol=1e-4)
    assert res.dropped == ref["dropped"] > 0
    assert f"--by column '{by}': {ref['dropped']} respondent(s) with no value" in res.warnings[0]


def test_cli_describe_reports_the_dropped_rows():
    res = CliRunner().invoke(app, ["describe", str(FIX / "design_sample_missing_by.csv"), "--vars", "x1",
                                   "--categorical", "trust", "--by", "area", "--weights", "w", "--cluster", "psu",
                                   "--strata", "stratum", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["dropped"] == MISSING_BY["by_area"]["dropped"]
    assert "left out of the group estimates" in doc["warnings"][0]
    assert {r["group"] for r in doc["means"]} == {"1", "2", "3", "4"}
    assert {r["category"] for r in doc["proportions"]} == {"1", "2", "3", "4", "5"}
    res = CliRunner().invoke(app, ["describe", str(FIX / "design_sample_missing_by.csv"), "--vars", "x1",
                                   "--by", "area", "--weights", "w"])
    assert res.exit_code == 0 and "warning: --by column 'area'" in res.output
