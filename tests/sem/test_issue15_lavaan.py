"""Issue 15 part A against lavaan 0.6.14 (fixtures by tests/fixtures/make_issue15.R).

Tolerances: estimates 1e-4 absolute, SEs 1e-3 relative, fit measures 1e-3 relative.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.sem.fit import fit_sem

FIX = Path(__file__).parents[1] / "fixtures"


def load(name: str) -> dict:
    return json.loads((FIX / "lavaan" / f"{name}.json").read_text())


def data(name: str) -> pd.DataFrame:
    return pd.read_csv(FIX / "data" / name)


def merged(params: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    ref = pd.DataFrame(rows)
    ref["group"] = ref["group"].fillna(1).astype(int) if "group" in ref else 1
    out = params.merge(ref, on=["lhs", "op", "rhs", "group"], suffixes=("", "_lav"))
    assert len(out) == len(ref), "every lavaan row has a row in the suite's table"
    return out


def check_estimates(fit, rec, *, se=True):
    m = merged(fit.params, rec["estimates"])
    np.testing.assert_allclose(m["est"], m["est_lav"], atol=1e-4)
    if se:
        ok = m["se_lav"].notna() & (m["se_lav"] > 0)
        np.testing.assert_allclose(m.loc[ok, "se"], m.loc[ok, "se_lav"], rtol=1e-3, atol=1e-6)


def check_fit(fit, rec, keys, rtol=1e-3):
    for k in keys:
        assert fit.fit_indices[k] == pytest.approx(rec["fit"][k], rel=rtol, abs=1e-6), k


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_sem(*args, **kwargs)


# --------------------------------------------------------------------- 1. ordinal group.equal
@pytest.mark.parametrize("name", ["issue15_ordinal_mg_equal", "issue15_ordinal_mg_equal_means"])
def test_ordinal_group_equal_frees_latent_means_and_scales(name):
    rec = load(name)
    call = rec["call"]
    bfi = data("bfi.csv").dropna(subset=call["ordered"] + ["gender"])
    fit = quiet_fit(call["model"], bfi, group="gender", ordered=call["ordered"],
                    group_equal=call["group_equal"])
    check_estimates(fit, rec)
    check_fit(fit, rec, ["chisq", "df", "chisq.scaled", "cfi.scaled", "rmsea.scaled", "srmr"])
    p = fit.params
    g2 = p[(p["group"] == 2)]
    means_free = "means" not in call["group_equal"]
    assert (g2.loc[(g2["op"] == "~1") & (g2["lhs"] == "f"), "free"] > 0).all() == means_free
    assert (g2.loc[g2["op"] == "~*~", "free"] > 0).all()


# --------------------------------------------------------------------- 2. se= / test= semantics
HS_MODEL = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"
TEST_CASES = ["ml_sb", "ml_ss", "ml_mva", "ml_ybm", "ml_ybm_rhw", "ml_yb", "ml_rhw", "ml_rsem",
              "ml_rsem_sb", "mlr_standard", "mlm_standard", "mlr_test_standard"]
SCALED_KEYS = ["chisq.scaled", "df.scaled", "chisq.scaling.factor", "pvalue.scaled", "cfi.scaled",
               "tli.scaled", "rmsea.scaled"]


@pytest.mark.parametrize("case", TEST_CASES)
def test_se_and_test_options_follow_lavaan(case):
    rec = load(f"issue15_test_{case}")
    call = rec["call"]
    # options are matched case-insensitively, as lavaan
    fit = quiet_fit(HS_MODEL, data("HolzingerSwineford1939.csv"), estimator=call["estimator"],
                    se=call["se"].upper(), test=call["test"].upper())
    check_estimates(fit, rec)
    scaled = rec["fit"].get("chisq.scaled") is not None
    check_fit(fit, rec, ["chisq", "df", "cfi", "rmsea"] + (SCALED_KEYS if scaled else []))
    if rec["fit"].get("cfi.robust") is not None:
        check_fit(fit, rec, ["cfi.robust", "tli.robust", "rmsea.robust", "rmsea.ci.lower.robust",
                             "rmsea.ci.upper.robust"])
    assert ("chisq.scaled" in fit.fit_indices.index) == scaled
    lav_test = rec["options"]["test"]
    lav_test = [t for t in ([lav_test] if isinstance(lav_test, str) else lav_test) if t != "standard"]
    assert fit.options["se"] == rec["options"]["se"]
    assert fit.options["test"] == (lav_test[0] if lav_test else "standard")
    assert fit.options["information"] == rec["options"]["information"][0]


def test_se_none_and_test_none_are_honoured_in_any_case():
    fit = quiet_fit(HS_MODEL, data("HolzingerSwineford1939.csv"), estimator="MLR", se="NONE", test="None")
    assert fit.params.loc[fit.params["free"] > 0, "se"].isna().all()
    assert np.isnan(fit.fit_indices["chisq"]) and "chisq.scaled" not in fit.fit_indices.index
    assert (fit.options["se"], fit.options["test"]) == ("none", "none")


def test_fiml_with_a_satorra_bentler_test_falls_back_to_listwise_as_lavaan():
    rec = load("issue15_test_fiml_sb")
    with pytest.warns(UserWarning, match="missing will be set to 'listwise'"):
        fit = fit_sem(HS_MODEL, data("hs_missing_fixedx.csv"), missing="fiml", test="satorra.bentler")
    assert fit.nobs == (rec["nobs"],)
    check_estimates(fit, rec)
    check_fit(fit, rec, ["chisq", "chisq.scaled", "chisq.scaling.factor"])


@pytest.mark.parametrize("kwargs, reason", [
    (dict(estimator="MLR", se="bootstrap"), "use ML estimator for bootstrap"),
    (dict(estimator="WLSMV", ordered=True, se="robust.huber.white"), "invalid value in se= argument for estimator WLSMV"),
    (dict(estimator="MLM", missing="fiml"), "MLM needs complete data"),
    (dict(se="robust.everything"), "se"),
    (dict(test="browne.residual.adf"), "not implemented"),
    (dict(estimator="MLM", test="scaled.shifted"), "always computes its satorra.bentler test"),
    (dict(missing="fiml", test="bootstrap"), "Bollen-Stine"),
])
def test_combinations_lavaan_refuses_or_the_engine_lacks_are_refused_with_a_reason(kwargs, reason):
    from analysis.errors import OptionError

    hs = data("HolzingerSwineford1939.csv")
    if kwargs.get("ordered"):
        hs = hs.assign(**{f"x{i}": pd.cut(hs[f"x{i}"], 4, labels=False) for i in range(1, 10)})
    with pytest.raises(OptionError, match=reason):
        quiet_fit(HS_MODEL, hs, **kwargs)


def test_bollen_stine_from_fit_sem():
    rec = load("issue15_test_bollen_stine")
    fit = quiet_fit(HS_MODEL, data("HolzingerSwineford1939.csv"), test="bootstrap", bootstrap=100, seed=1)
    boot = fit.tests[-1]
    assert boot.method == "bollen.stine" and boot.stat == pytest.approx(rec["chisq"], rel=1e-6)
    # the model is badly misspecified: no rotated-data chisq reaches 85.3 (lavaan: p = 0 too)
    assert boot.pvalue == fit.fit_indices["bollen.stine.pvalue"] == rec["pvalue_boot"] == 0.0


# --------------------------------------------------------------------- 4. BCa acceleration
def test_bca_acceleration_is_the_jackknife_formula_on_hs():
    from analysis.sem.bootstrap import _jack_one, jackknife_acceleration, refitter

    rec = load("issue15_bca_jackknife")
    fit = quiet_fit(HS_MODEL, data("HolzingerSwineford1939.csv"))
    ctx = refitter(fit, None)
    ctx.gtol = 1e-7
    jack = np.array([_jack_one(ctx, None, i) for i in range(301)])
    acc = jackknife_acceleration(jack)
    lav = np.array(rec["acceleration"])
    assert np.abs(lav).max() > 0.03                 # not shrunk toward zero (B <= N regime)
    np.testing.assert_allclose(acc, lav, atol=1e-5)


def test_wlsmv_standard_se_is_the_expected_information_alone():
    rec = load("issue15_test_wlsmv_standard")
    call = rec["call"]
    bfi = data("bfi.csv").dropna(subset=call["ordered"] + ["gender"])
    fit = quiet_fit(call["model"], bfi, ordered=call["ordered"], se="Standard")
    check_estimates(fit, rec)
    check_fit(fit, rec, ["chisq", "chisq.scaled"])
    assert fit.options["se"] == "standard" and fit.options["test"] == "scaled.shifted"


# --------------------------------------------------------------------- 3. fixed_x=False baseline
BASELINE_KEYS = ["chisq", "df", "baseline.chisq", "baseline.df", "cfi", "tli", "rmsea", "srmr"]


@pytest.mark.parametrize("name", ["issue15_fixedx_false_ml", "issue15_fixedx_false_mlr", "issue15_fixedx_false_mlm",
                                  "issue15_fixedx_false_fiml_ml", "issue15_fixedx_false_fiml_mlr"])
def test_fixed_x_false_baseline_keeps_exogenous_covariances_free(name):
    rec = load(name)
    call = rec["call"]
    frame = data("hs_missing_exo.csv" if call.get("missing") else "HolzingerSwineford1939.csv")
    fit = quiet_fit(call["model"], frame, fixed_x=False, estimator=call["estimator"],
                    missing=call.get("missing", "listwise"))
    check_estimates(fit, rec)
    keys = BASELINE_KEYS + [k for k in ("baseline.chisq.scaled", "cfi.scaled", "tli.scaled", "cfi.robust",
                                        "tli.robust", "rmsea.robust", "rmsea.ci.upper.robust")
                            if rec["fit"].get(k) is not None]
    check_fit(fit, rec, keys)
    assert fit.fit_indices["baseline.df"] == 54    # one df fewer than the fully independent model


# --------------------------------------------------------------------- minor items
def test_gfi_under_fiml_uses_lavaans_wls_pieces_growth_and_groups():
    hsm = data("hs_missing_fixedx.csv")
    rec = load("issue15_gfi_fiml_growth")
    # lavaan's growth(): observed intercepts fixed at 0, latent means free
    fit = quiet_fit(rec["call"]["model"] + "\nx1 ~ 0*1\nx2 ~ 0*1\nx3 ~ 0*1\ni ~ 1\ns ~ 1", hsm, missing="fiml")
    check_estimates(fit, rec)
    check_fit(fit, rec, ["chisq", "gfi", "agfi", "pgfi", "srmr"])
    rec = load("issue15_gfi_fiml_groups")
    fit = quiet_fit(rec["call"]["model"], hsm.assign(school=data("HolzingerSwineford1939.csv")["school"]),
                    missing="fiml", group="school")
    check_fit(fit, rec, ["chisq", "gfi", "agfi", "pgfi", "cfi"])


@pytest.mark.parametrize("estimator", ["ML", "MLR"])
def test_robust_indices_when_fiml_deletion_of_missing_x_leaves_complete_data(estimator):
    rec = load(f"issue15_fiml_x_complete_{estimator.lower()}")
    fit = quiet_fit(rec["call"]["model"], data("hs_missing_x_only.csv"), missing="fiml", estimator=estimator)
    assert fit.nobs == (rec["nobs"],) == (298,)
    keys = [k for k, v in rec["fit"].items() if v is not None and ("robust" in k or "scaled" in k)]
    assert "cfi.robust" in keys and "rmsea.robust" in keys
    check_fit(fit, rec, keys)


def test_a_threshold_line_makes_its_item_ordered_and_the_estimator_wlsmv():
    rec = load("issue15_threshold_line")
    assert rec["estimator"] == "DWLS" and rec["ordered"] == "A1"      # lavaan: only A1 ordered
    bfi = data("bfi.csv").dropna(subset=["A1", "A2", "A3", "A4", "A5", "C1", "gender"])
    fit = quiet_fit(rec["call"]["model"], bfi)
    assert fit.estimator == "WLSMV" and fit.options["ordered"] == ["A1"]
    check_estimates(fit, rec)
    check_fit(fit, rec, ["chisq", "df", "chisq.scaled", "cfi", "srmr"])


def test_multigroup_wrmr_is_lavaans_first_group_count():
    rec = json.loads((FIX / "lavaan" / "robust_mg_wlsmv.json").read_text())
    fit = quiet_fit(rec["call"]["model"], data("bfi.csv"), group="gender", ordered=rec["call"]["ordered"])
    assert fit.fit_indices["wrmr"] == pytest.approx(rec["fit"]["wrmr"], rel=1e-3)


# --------------------------------------------------------------------- 5. standardized solution SEs
def _std_fit(name):
    rec = load(name)
    call = rec["call"]
    if name.endswith("poldem"):
        return rec, quiet_fit(call["model"], data("PoliticalDemocracy.csv"))
    if name.endswith("groups"):
        return rec, quiet_fit(call["model"], data("HolzingerSwineford1939.csv"), group="school",
                              group_equal=call["group_equal"])
    if name.endswith("fixedx"):
        return rec, quiet_fit(call["model"], data("HolzingerSwineford1939.csv"), estimator="MLR")
    bfi = data("bfi.csv").dropna(subset=call["ordered"] + ["gender"])
    return rec, quiet_fit(call["model"], bfi, ordered=call["ordered"])


@pytest.mark.parametrize("name", ["issue15_std_poldem", "issue15_std_hs_groups", "issue15_std_hs_mlr_fixedx",
                                  "issue15_std_wlsmv"])
@pytest.mark.parametrize("kind", ["std.all", "std.lv"])
def test_standardized_solution_with_delta_method_ses(name, kind):
    rec, fit = _std_fit(name)
    ref = pd.DataFrame(rec[kind.replace(".", "_")])
    ref["group"] = np.where(ref["op"] == ":=", 0, ref["group"]).astype(int)
    ours = fit.standardized_solution(type=kind)
    m = ours.merge(ref, on=["lhs", "op", "rhs", "group"], suffixes=("", "_lav"))
    assert len(m) == len(ref)
    np.testing.assert_allclose(m["est.std"], m["est.std_lav"], rtol=1e-4, atol=1e-4)
    ok = m["se_lav"].fillna(0) > 0
    np.testing.assert_allclose(m.loc[ok, "se"], m.loc[ok, "se_lav"], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(m.loc[ok, "z"], m.loc[ok, "z_lav"], rtol=2e-3)
    np.testing.assert_allclose(m.loc[ok, "ci.lower"], m.loc[ok, "ci.lower_lav"], rtol=1e-3, atol=2e-4)
    assert fit.params[f"{kind}.se"].notna().all()


def test_poldem_indirect_effect_standardized_se_as_lavaan():
    rec, fit = _std_fit("issue15_std_poldem")
    p = fit.params.set_index(["lhs", "op", "rhs"])
    assert p.loc[("ab", ":=", "a1*c1"), "std.all"] == pytest.approx(0.395, abs=1e-3)
    assert p.loc[("ab", ":=", "a1*c1"), "std.all.se"] == pytest.approx(0.092, abs=1e-3)
    assert p.loc[("dem65", "~", "dem60"), "std.all"] == pytest.approx(0.885, abs=1e-3)
    assert p.loc[("dem65", "~", "dem60"), "std.all.se"] == pytest.approx(0.051, abs=1e-3)
    rows = fit.to_dict()["estimates"]
    assert all("std.all.se" in r for r in rows)
    assert "Std.SE" in fit.summary()


# --------------------------------------------------------------------- 7. modification indices
@pytest.mark.parametrize("name, estimator", [("issue15_mi_fiml", "ML"), ("issue15_mi_fiml_mlr", "MLR")])
def test_modindices_after_fiml_as_lavaan(name, estimator):
    rec = load(name)
    fit = quiet_fit(rec["call"]["model"], data("hs_missing_fixedx.csv"), missing="fiml", estimator=estimator)
    mi = fit.modindices()
    ref = pd.DataFrame(rec["mi"])
    m = mi.merge(ref, on=["lhs", "op", "rhs"], suffixes=("", "_lav"))
    assert len(m) == len(ref) == len(mi)
    for col in ("mi", "epc", "sepc.lv", "sepc.all"):
        np.testing.assert_allclose(m[col], m[f"{col}_lav"], rtol=1e-3, atol=1e-4, err_msg=col)


def _check_mi(mi, rec, keys=("lhs", "op", "rhs")):
    ref = pd.DataFrame(rec["mi"])
    if "group" in ref:
        ref["group"] = ref["group"].astype(int)
    m = mi.merge(ref, on=list(keys), suffixes=("", "_lav"))
    assert len(m) == len(mi)
    for col in ("mi", "epc", "sepc.lv", "sepc.all"):
        np.testing.assert_allclose(m[col], m[f"{col}_lav"], rtol=2e-3, atol=1e-3, err_msg=col)
    return ref, m


def test_modindices_after_fiml_structural_model_with_fixed_x():
    rec = load("issue15_mi_fiml_sem")
    fit = quiet_fit(rec["call"]["model"], data("hs_missing_fixedx.csv"), missing="fiml")
    ref, m = _check_mi(fit.modindices(), rec)
    # as after complete-data ML, regressions of a fixed.x covariate are left out (it is conditioned on)
    left_out = ref.merge(m[["lhs", "op", "rhs"]], how="left", indicator=True).query("_merge == 'left_only'")
    assert set(zip(left_out["lhs"], left_out["op"])) == {("x1", "~")}


@pytest.mark.parametrize("name", ["issue15_mi_wlsmv", "issue15_mi_wlsmv_two_factor", "issue15_mi_wlsmv_groups"])
def test_modindices_after_wlsmv_as_lavaan(name):
    rec = load(name)
    call = rec["call"]
    bfi = data("bfi.csv")
    if "group" in call:
        bfi = bfi.dropna(subset=call["ordered"] + ["gender"])
        fit = quiet_fit(call["model"], bfi, group="gender", ordered=call["ordered"], group_equal=call["group_equal"])
        ref, m = _check_mi(fit.modindices(), rec, ("lhs", "op", "rhs", "group"))
    else:
        if name == "issue15_mi_wlsmv":
            bfi = bfi.dropna(subset=call["ordered"] + ["gender"])
        fit = quiet_fit(call["model"], bfi, ordered=call["ordered"])
        ref, m = _check_mi(fit.modindices(), rec)
    assert len(m) == len(ref)
