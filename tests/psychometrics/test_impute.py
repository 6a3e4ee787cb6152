"""Multiple imputation (analysis.psychometrics.impute, `resilience impute`): reproducible chained equations that
keep answers in their categories, impute within groups, and give pooled estimates close to the
complete-data ones when answers are missing completely at random."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.main import app
from analysis.errors import AnalysisError
from analysis.psychometrics.impute import _polr_fit, impute
from analysis.sem.fit import fit_sem

FIX = Path(__file__).parents[1] / "fixtures"
ITEMS = ["A1", "A2", "A3", "A4", "A5", "C1", "C2", "C3", "C4", "C5"]
MODEL = "agree =~ A1 + A2 + A3 + A4 + A5\nconsc =~ C1 + C2 + C3 + C4 + C5"


@pytest.fixture(scope="module")
def bfi_missing():
    return pd.read_csv(FIX / "data" / "mi" / "bfi_missing.csv")


@pytest.mark.parametrize("ordinal", ["pmm", "polr"])
def test_imputations_are_reproducible_complete_and_in_category(bfi_missing, ordinal):
    res = impute(bfi_missing, items=ITEMS, ordered=True, m=2, seed=7, ordinal=ordinal, n_iter=3)
    again = impute(bfi_missing, items=ITEMS, ordered=True, m=2, seed=7, ordinal=ordinal, n_iter=3)
    other = impute(bfi_missing, items=ITEMS, ordered=True, m=2, seed=8, ordinal=ordinal, n_iter=3)
    assert all(a.equals(b) for a, b in zip(res.datasets, again.datasets))
    assert not res.datasets[0].equals(other.datasets[0])
    assert not res.datasets[0].equals(res.datasets[1])        # m independent chains
    observed = bfi_missing[ITEMS].notna()
    for d in res.datasets:
        assert d[ITEMS].notna().all().all()
        assert set(np.unique(d[ITEMS].to_numpy(float))) <= {1, 2, 3, 4, 5, 6}
        # observed answers and other columns are untouched
        assert (d[ITEMS].to_numpy(float)[observed.to_numpy()] == bfi_missing[ITEMS].to_numpy(float)[observed.to_numpy()]).all()
        assert d["gender"].equals(bfi_missing["gender"])
    table = res.variables.set_index("variable")
    assert table.loc["A1", "n_missing"] == bfi_missing["A1"].isna().sum()
    assert set(table["method"]) == {ordinal}


def test_items_are_imputed_within_groups():
    rng = np.random.default_rng(3)
    n = 300
    group = np.repeat(["low", "high"], n // 2)
    base = np.where(group == "low", 1, 4)
    data = pd.DataFrame({f"y{j}": base + rng.integers(0, 2, n) for j in range(4)})
    data["site"] = group
    holes = rng.random(data[[f"y{j}" for j in range(4)]].shape) < 0.2
    for j in range(4):
        data.loc[holes[:, j], f"y{j}"] = np.nan
    res = impute(data, items=[f"y{j}" for j in range(4)], ordered=True, group="site", m=3, seed=1)
    for d in res.datasets:
        low = d[d["site"] == "low"][[f"y{j}" for j in range(4)]].to_numpy(float)
        high = d[d["site"] == "high"][[f"y{j}" for j in range(4)]].to_numpy(float)
        assert set(np.unique(low)) <= {1, 2} and set(np.unique(high)) <= {4, 5}


def test_pooled_wlsmv_after_mcar_imputation_recovers_the_complete_data_fit():
    full = pd.read_csv(FIX / "data" / "bfi_complete500.csv")[ITEMS]
    rng = np.random.default_rng(11)
    holes = full.mask(rng.random(full.shape) < 0.10)
    res = impute(holes, items=ITEMS, ordered=True, m=10, seed=1)
    pooled = fit_sem(MODEL, list(res.datasets), ordered=ITEMS)
    complete = fit_sem(MODEL, full, ordered=ITEMS)
    load = (pooled.params["op"] == "=~") & (pooled.params["free"] > 0)
    diff = (pooled.params.loc[load, "est"] - complete.params.loc[load, "est"]).abs()
    # 10% MCAR: the pooled loadings sit within a fraction of their SE of the complete-data ones
    assert (diff / pooled.params.loc[load, "se"]).max() < 1.0
    assert (pooled.params.loc[load, "fmi"] > 0).all() and (pooled.params.loc[load, "fmi"] < 0.5).all()


def test_proportional_odds_fit_is_the_maximum_likelihood_one():
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    d = pd.read_csv(FIX / "data" / "bfi_complete500.csv")
    y, x = d["A2"].to_numpy(float), d[["A1", "A3", "A4", "A5"]].to_numpy(float)
    ref = OrderedModel(y, x, distr="logit").fit(method="bfgs", disp=False, gtol=1e-8)
    codes = np.unique(y, return_inverse=True)[1]
    theta, _ = _polr_fit(np.concatenate([[-2.0], np.zeros(4), np.zeros(4)]), x, codes, 5)
    # statsmodels orders (beta, first threshold, log gaps); ours (first threshold, log gaps, beta)
    assert np.max(np.abs(np.r_[theta[5:], theta[:5]] - ref.params)) < 1e-4


def test_instrument_items_missing_codes_and_errors():
    from instruments import load_instrument

    crs = load_instrument("instruments/library/crs.yaml")
    rng = np.random.default_rng(5)
    items = [it.id for it in crs.items_of("TRUST")] + [it.id for it in crs.items_of("CONF")]
    data = pd.DataFrame(rng.integers(1, 6, size=(120, len(items))), columns=items)
    data.iloc[0, 0] = -9                      # "prefer not to say": a missing code, imputed
    data.iloc[1, 1] = np.nan
    data["LANG"] = rng.integers(1, 3, 120)
    res = impute(data, instrument=crs, m=2, seed=1)
    assert set(res.variables["variable"]) == {items[0], items[1]}
    assert res.datasets[0].iloc[0, 0] in {1, 2, 3, 4, 5}
    assert res.datasets[0]["LANG"].equals(data["LANG"])
    with pytest.raises(AnalysisError, match=f"item '{items[2]}' has no observed answer"):
        impute(data.assign(**{items[2]: np.nan}), instrument=crs, m=2, seed=1)
    with pytest.raises(AnalysisError, match="'m' parameter of impute must be an int >= 2"):
        impute(data, instrument=crs, m=1)
    with pytest.raises(AnalysisError, match="row 4"):
        impute(data.assign(x=["a" if i == 2 else 1 for i in range(120)]), items=["x", items[0]], m=2)


def test_cli_impute_then_fit_pool(tmp_path, bfi_missing):
    src = tmp_path / "survey.csv"
    bfi_missing.to_csv(src, index=False)
    out = tmp_path / "imp"
    res = CliRunner().invoke(app, ["impute", str(src), "--items", ",".join(ITEMS), "--ordered", "all",
                                   "--group", "gender", "--m", "3", "--seed", "1", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert len(doc["files"]) == 3 and doc["group"] == "gender" and doc["seed"] == 1
    assert json.loads((out / "survey_imputation.json").read_text())["m"] == 3
    first = pd.read_csv(out / "survey_imp1.csv")
    assert first[ITEMS].notna().all().all() and first["A1"].dtype.kind == "i"
    model = tmp_path / "m.lav"
    model.write_text(MODEL)
    res = CliRunner().invoke(app, ["fit", *doc["files"], "--model", str(model), "--ordered", "all", "--pool",
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["model"]["options"]["pool"] == "D2"
    res = CliRunner().invoke(app, ["impute", str(src), "--items", "A1,nope", "-o", str(out)])
    assert res.exit_code == 1 and "nope" in res.output and "Traceback" not in res.output
