"""Reliability statistics against psych and semTools (fixtures from the committed R scripts).

Tolerance 1e-4 throughout (the brief's); most agree to 1e-10.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.psychometrics.reliability import (
    ave,
    composite_reliability,
    cronbach_alpha,
    fornell_larcker,
    htmt,
    item_analysis,
    mcdonald_omega,
    ordinal_alpha,
    ordinal_omega,
)

FIX = Path(__file__).parents[1] / "fixtures"
TOL = 1e-4
HS_MODEL = {"visual": ["x1", "x2", "x3"], "textual": ["x4", "x5", "x6"], "speed": ["x7", "x8", "x9"]}


def _load(name):
    return json.loads((FIX / "lavaan" / f"{name}.json").read_text())


def _data(name):
    return pd.read_csv(FIX / "data" / f"{name}.csv")


def _scale_items(scale):
    data = _data("bfi" if scale["data"] == "bfi" else "HolzingerSwineford1939")
    x = data[scale["items"]].astype(float)
    for item in scale["reversed"] if isinstance(scale["reversed"], list) else [scale["reversed"]]:
        if item:
            x[item] = 7 - x[item]  # psych: max + min - x on the 1..6 bfi scale
    return x


@pytest.fixture(scope="module")
def alpha_psych():
    return _load("alpha_psych")["scales"]


def test_alpha_and_feldt_ci_match_psych(alpha_psych):
    for name, scale in alpha_psych.items():
        out = cronbach_alpha(_scale_items(scale)).iloc[0]
        assert out["estimate"] == pytest.approx(scale["total"]["raw_alpha"][0], abs=TOL), name
        if scale.get("feldt"):
            assert out["ci.lower"] == pytest.approx(scale["feldt"]["lower.ci"]["raw_alpha"][0], abs=TOL), name
            assert out["ci.upper"] == pytest.approx(scale["feldt"]["upper.ci"]["raw_alpha"][0], abs=TOL), name
        assert out["ci.lower"] < out["estimate"] < out["ci.upper"]


def test_item_total_and_alpha_if_deleted_match_psych(alpha_psych):
    for name, scale in alpha_psych.items():
        ia = item_analysis(_scale_items(scale))
        stats = pd.DataFrame(scale["item_stats"]).set_index("item")
        drop = pd.DataFrame(scale["alpha_drop"]).set_index("item")
        # psych labels reversed items "A1-"
        stats.index = [i.rstrip("-") for i in stats.index]
        drop.index = [i.rstrip("-") for i in drop.index]
        np.testing.assert_allclose(ia["r.drop"], stats.loc[ia.index, "r.drop"].astype(float), atol=TOL, err_msg=name)
        np.testing.assert_allclose(ia["alpha.drop"], drop.loc[ia.index, "raw_alpha"].astype(float), atol=TOL, err_msg=name)
        np.testing.assert_allclose(ia["mean"], stats.loc[ia.index, "mean"].astype(float), atol=TOL, err_msg=name)


def _hs_fit_table():
    """lavaan's own estimates for the HS CFA: the omega formula checked on its inputs."""
    return pd.DataFrame(_load("hs_cfa_ml")["estimates"])


def test_omega_cr_ave_from_lavaan_estimates_match_semtools():
    ref = _load("reliability_semtools")["hs"]
    hs = _data("HolzingerSwineford1939")
    fit = _hs_fit_table()
    omega = mcdonald_omega(fit, hs[[f"x{i}" for i in range(1, 10)]]).set_index("construct")["estimate"]
    cr = composite_reliability(fit).set_index("construct")["estimate"]
    a = ave(fit, hs).set_index("construct")["estimate"]
    for f in HS_MODEL:
        assert omega[f] == pytest.approx(ref["omega"][f], abs=TOL)
        assert cr[f] == pytest.approx(ref["omega_obs_var_false"][f], abs=TOL)
        assert a[f] == pytest.approx(ref["ave"][f], abs=TOL)
    # obs.var=TRUE and FALSE differ for visual (0.612 vs 0.625): the denominator matters
    assert abs(omega["visual"] - cr["visual"]) > 0.005


def test_htmt_matches_semtools_both_variants():
    ref = _load("reliability_semtools")
    for case, data_name, model in [("hs", "HolzingerSwineford1939", HS_MODEL)]:
        data = _data(data_name)
        for key, h2 in (("htmt", True), ("htmt_htmt2_false", False)):
            got = htmt(model, data, htmt2=h2)
            exp = ref[case][key]
            exp = pd.DataFrame(exp["values"], index=exp["rownames"], columns=exp["colnames"])
            np.testing.assert_allclose(got.loc[exp.index, exp.columns], exp, atol=TOL, err_msg=f"{case} {key}")


def test_htmt_from_lavaan_syntax_and_bfi():
    ref = _load("reliability_semtools")["bfi_listwise"]
    bfi = _data("bfi")
    got = htmt(ref["model"], bfi)
    exp = pd.DataFrame(ref["htmt"]["values"], index=ref["htmt"]["rownames"], columns=ref["htmt"]["colnames"])
    np.testing.assert_allclose(got.loc[exp.index, exp.columns], exp, atol=TOL)


def test_htmt_hand_computed_on_a_tiny_matrix():
    # two constructs of two items: within r = .6 and .5, between all .3
    r = pd.DataFrame(
        [[1, 0.6, 0.3, 0.3], [0.6, 1, 0.3, 0.3], [0.3, 0.3, 1, 0.5], [0.3, 0.3, 0.5, 1]],
        index=list("abcd"),
        columns=list("abcd"),
    )
    got = htmt({"F": ["a", "b"], "G": ["c", "d"]}, sample_cov=r)
    assert got.loc["F", "G"] == pytest.approx(0.3 / np.sqrt(0.6 * 0.5), abs=1e-12)
    assert got.loc["F", "F"] == pytest.approx(1.0)


def test_ordinal_alpha_and_omega_against_psych():
    ref = _load("psychometrics_ordinal")
    bfi = _data("bfi")
    x = bfi[ref["items"]].dropna()
    a = ordinal_alpha(x).iloc[0]
    assert a["estimate"] == pytest.approx(ref["ordinal_alpha"], abs=TOL)
    assert a["n_obs"] == ref["nobs"]
    o = ordinal_omega(x).iloc[0]
    assert o["estimate"] == pytest.approx(ref["ordinal_omega_ml"], abs=TOL)
    # the latent-response alpha exceeds the raw-score alpha of the same items
    assert a["estimate"] > cronbach_alpha(x)["estimate"].iloc[0]


def test_fornell_larcker_diagonal_is_sqrt_ave():
    ref = _load("reliability_semtools")["hs"]
    hs = _data("HolzingerSwineford1939")
    fl = fornell_larcker(_hs_fit_table(), hs)
    for f in HS_MODEL:
        assert fl.loc[f, f] == pytest.approx(np.sqrt(ref["ave"][f]), abs=TOL)
    # latent correlation visual-textual from lavaan's std.all
    est = pd.DataFrame(_load("hs_cfa_ml")["estimates"])
    row = est[(est.lhs == "visual") & (est.op == "~~") & (est.rhs == "textual")].iloc[0]
    assert fl.loc["textual", "visual"] == pytest.approx(row["std.all"], abs=TOL)
    # visual's sqrt(AVE) = .609 beats its largest correlation (.459): passes
    assert bool(fl.loc["visual", "passes"]) is True


def test_report_omega_is_compRelSEM_of_a_one_factor_cfa():
    from analysis.psychometrics.reliability import _omega_one_factor

    ref = _load("psychometrics_omega_one_factor")
    x = _data("bfi")[ref["items"]].dropna()
    assert len(x) == ref["nobs"]
    assert _omega_one_factor(x) == pytest.approx(ref["omega"]["NEU"], abs=TOL)


def test_omega_from_the_engine_fit_matches_semtools():
    from analysis.sem.fit import fit_sem

    ref = _load("reliability_semtools")["hs"]
    hs = _data("HolzingerSwineford1939")
    model = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"
    fit = fit_sem(model, hs)
    omega = mcdonald_omega(fit, hs).set_index("construct")["estimate"]
    for f in HS_MODEL:
        assert omega[f] == pytest.approx(ref["omega"][f], abs=TOL)


def test_omega_of_a_wlsmv_fit_both_scales_match_semtools():
    import warnings

    from analysis.sem.fit import fit_sem

    ref = _load("psychometrics_ordinal")
    x = _data("bfi")[ref["items"]].dropna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem("NEU =~ N1 + N2 + N3 + N4 + N5", x, ordered=ref["items"], estimator="WLSMV")
    latent = mcdonald_omega(fit, x, ord_scale=False)["estimate"].iloc[0]
    observed = mcdonald_omega(fit, x)["estimate"].iloc[0]
    assert latent == pytest.approx(ref["compRelSEM_wlsmv_latent"]["NEU"], abs=TOL)
    assert observed == pytest.approx(ref["compRelSEM_wlsmv_observed"]["NEU"], abs=TOL)
    assert observed < latent  # coarse categories cost reliability


def test_multigroup_omega_and_ave_per_group_match_semtools():
    ref = _load("psychometrics_omega_groups")
    hs = _data("HolzingerSwineford1939")
    fit = pd.DataFrame(_load("invariance_hs_metric")["estimates"])
    om = mcdonald_omega(fit, hs, group="school")
    av = ave(fit, hs, group="school")
    for g, label in enumerate(ref["omega"]["group"], start=1):
        for f in HS_MODEL:
            got = om[(om["group"] == g) & (om["construct"] == f)]["estimate"].iloc[0]
            assert got == pytest.approx(ref["omega"][f][g - 1], abs=TOL), (label, f)
            got = av[(av["group"] == g) & (av["construct"] == f)]["estimate"].iloc[0]
            assert got == pytest.approx(ref["ave"][f][g - 1], abs=TOL), (label, f)
