"""Parity of the ML engine with lavaan 0.6.x.

Fixtures: tests/fixtures/lavaan/*.json (tests/fixtures/make_fixtures.R) and
tests/fixtures/engine/*.json (tests/fixtures/make_engine.R). Tolerances:
estimates, SEs, std.lv, std.all within 1e-4 (absolute, or relative when
|value| > 1); fit measures within 1e-3 (same rule).
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


def _data(name: str) -> pd.DataFrame:
    for folder in ("data", "engine"):
        path = FIX / folder / f"{name}.csv"
        if path.exists():
            return pd.read_csv(path)
    raise FileNotFoundError(name)


def _estimates(rec) -> pd.DataFrame:
    est = rec["estimates"]
    pe = pd.DataFrame(est) if isinstance(est, (dict, list)) else None
    if "group" not in pe:
        pe["group"] = 1
    pe["group"] = pd.to_numeric(pe["group"], errors="coerce").fillna(0).astype(int)
    pe.loc[pe["op"] == ":=", "group"] = 0
    return pe[~pe["op"].isin(["r2"])]


def _close(a, b, tol):
    a, b = np.asarray(a, float), np.asarray(b, float)
    both_nan = np.isnan(a) & np.isnan(b)
    return both_nan | (np.abs(a - b) <= tol * np.maximum(1.0, np.abs(a)))


def _fit_lavaan_case(name: str):
    rec = json.loads((FIX / "lavaan" / f"{name}.json").read_text())
    call = rec["call"]
    opts = call["options"] if isinstance(call["options"], dict) else {}
    kw = {}
    for src, dst in (("std.lv", "std_lv"), ("meanstructure", "meanstructure"), ("group", "group"),
                     ("group.equal", "group_equal"), ("group.partial", "group_partial")):
        if src in opts:
            kw[dst] = opts[src]
    if "sample.cov" in opts:
        m = opts["sample.cov"]
        kw["sample_cov"] = pd.DataFrame(m["values"], index=m["rownames"], columns=m["colnames"])
        kw["sample_nobs"] = opts["sample.nobs"]
        data = None
    else:
        data = _data(call["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem(call["model"], data, **kw)
    return rec, fit


def _fit_engine_case(name: str, data: str, **kw):
    rec = json.loads((FIX / "engine" / f"{name}.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem(rec["syntax"], _data(data), **kw)
    return rec, fit


def _check(rec, fit, cols=("est", "se", "std.lv", "std.all")):
    pe = _estimates(rec)
    mine = fit.params
    merged = pe.merge(mine, on=["lhs", "op", "rhs", "group"], how="left", suffixes=("_lavaan", ""))
    assert merged["est"].notna().all(), merged.loc[merged["est"].isna(), ["lhs", "op", "rhs", "group"]]
    for col in cols:
        ok = _close(merged[f"{col}_lavaan"], merged[col], 1e-4)
        bad = merged.loc[~ok, ["lhs", "op", "rhs", "group", f"{col}_lavaan", col]]
        assert ok.all(), f"{col} differs from lavaan:\n{bad}"
    ref = {k: v for k, v in rec["fit"].items() if v is not None}
    keys = [k for k in ref if k in fit.fit_indices.index]
    assert {"chisq", "df", "cfi", "rmsea", "srmr", "logl"} <= set(keys)
    got = fit.fit_indices[keys].to_numpy(float)
    want = np.array([ref[k] for k in keys], float)
    ok = _close(want, got, 1e-3)
    assert ok.all(), {k: (w, g) for k, w, g, o in zip(keys, want, got, ok) if not o}
    assert fit.converged


LAVAAN_CASES = ["hs_cfa_ml", "hs_cfa_ml_stdlv", "hs_cfa_ml_meanstructure", "hs_cfa_from_cov",
                "poldem_sem", "poldem_sem_equal", "further_model", "invariance_hs_configural",
                "invariance_hs_metric", "invariance_hs_scalar", "invariance_hs_strict"]


@pytest.mark.parametrize("name", LAVAAN_CASES)
def test_parity_with_lavaan_fixtures(name):
    # the fixtures are committed: a missing one is a broken checkout, not a reason to skip
    assert (FIX / "lavaan" / f"{name}.json").exists(), f"lavaan fixture {name}.json is missing from tests/fixtures/lavaan"
    rec, fit = _fit_lavaan_case(name)
    _check(rec, fit)


@pytest.mark.parametrize("name,data,kw", [
    ("growth_sem", "Demo.growth", {}),
    ("hs_mg_partial", "HolzingerSwineford1939",
     {"group": "school", "group_equal": ["loadings", "intercepts"],
      "group_partial": ["visual =~ x3", "x3 ~ 1"]}),
    ("poldem_sem", "PoliticalDemocracy", {}),
])
def test_parity_with_engine_fixtures(name, data, kw):
    rec, fit = _fit_engine_case(name, data, **kw)
    _check(rec, fit)


def test_hs_headline_numbers():
    rec, fit = _fit_engine_case("hs_cfa", "HolzingerSwineford1939")
    fi = fit.fit_indices
    assert round(fi["chisq"], 3) == 85.306 and fi["df"] == 24
    assert round(fi["cfi"], 3) == 0.931 and round(fi["tli"], 3) == 0.896
    assert (round(fi["rmsea"], 3), round(fi["rmsea.ci.lower"], 3), round(fi["rmsea.ci.upper"], 3)) == \
        (0.092, 0.071, 0.114)
    assert round(fi["srmr"], 3) == 0.065
    assert (round(fi["logl"], 3), round(fi["aic"], 3), round(fi["bic"], 3)) == (-3737.745, 7517.490, 7595.339)


def test_invariance_ladder_chisq():
    hs = _data("HolzingerSwineford1939")
    model = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"
    got = []
    for eq in ([], ["loadings"], ["loadings", "intercepts"]):
        fit = fit_sem(model, hs, group="school", group_equal=eq)
        got.append((round(fit.fit_indices["chisq"], 3), int(fit.fit_indices["df"])))
    assert got == [(115.851, 48), (124.044, 54), (164.103, 60)]
    assert fit.group_labels == ("Pasteur", "Grant-White")   # lavaan's order of appearance


def test_defined_parameters_poldem():
    rec, fit = _fit_engine_case("poldem_sem", "PoliticalDemocracy")
    pe = _estimates(rec)
    pt = fit.params
    for name in ("indirect", "total"):
        want = pe[(pe["op"] == ":=") & (pe["lhs"] == name)].iloc[0]
        got = pt[(pt["op"] == ":=") & (pt["lhs"] == name)].iloc[0]
        for col in ("est", "se", "z", "std.all", "ci.lower"):
            assert abs(got[col] - want[col]) < 1e-4 * max(1, abs(want[col])), (name, col)


EXTRA = json.loads((FIX / "engine" / "extra_models.json").read_text())


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_parity_further_model_shapes(name):
    case = EXTRA[name]
    data = _data({"hs": "HolzingerSwineford1939", "pd": "PoliticalDemocracy"}[case["data"]])
    kw = {{"std.lv": "std_lv", "fixed.x": "fixed_x"}[k]: v for k, v in (case["opts"] or {}).items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem(case["model"], data, **kw)
    _check({"estimates": case["est"], "fit": case["fit"]}, fit)


MULTIGROUP = json.loads((FIX / "engine" / "multigroup_models.json").read_text())


@pytest.mark.parametrize("name", sorted(MULTIGROUP))
def test_parity_multigroup_variants(name):
    case = MULTIGROUP[name]
    opts = case["opts"]
    ge = opts.get("group.equal", [])
    kw = {"group": "school", "group_equal": [ge] if isinstance(ge, str) else ge,
          "std_lv": bool(opts.get("std.lv", False))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem(case["model"], _data("HolzingerSwineford1939"), **kw)
    _check({"estimates": case["est"], "fit": case["fit"]}, fit)
