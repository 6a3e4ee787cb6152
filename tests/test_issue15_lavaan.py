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

from analysis.sem import fit_sem

FIX = Path(__file__).parent / "fixtures"


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
