"""Mixed continuous and ordered indicators (polyserial, Pearson, polychoric) against lavaan WLSMV.

Fixture and data made by tests/fixtures/make_robust.R (HS with x4-x6 cut into 4 categories).
"""
import json

import numpy as np
import pandas as pd
import pytest

from _lavaan_fixture import FIXTURES
from analysis.errors import OptionError
from analysis.sem.polychoric import mixed_stats, ordinal_codes
from analysis.sem.fit import fit_sem

REC = json.loads((FIXTURES / "lavaan" / "robust_mixed_wlsmv.json").read_text())
DATA = pd.read_csv(FIXTURES / "data" / "hs_mixed_ordinal.csv")
ORDERED = REC["call"]["ordered"]


def test_mixed_sample_statistics_and_gamma():
    codes, _ = ordinal_codes(DATA, ORDERED)
    y = DATA.astype(float).copy()
    y[ORDERED] = codes[ORDERED]
    st = mixed_stats(y, [c in ORDERED for c in DATA.columns])
    np.testing.assert_allclose(st.wls_obs, REC["wls_obs"], atol=1e-5)
    np.testing.assert_allclose(st.gamma, np.array(REC["gamma"]), atol=1e-5)


def test_mixed_wlsmv_matches_lavaan():
    fit = fit_sem(REC["call"]["model"], data=DATA, estimator="WLSMV", ordered=ORDERED)
    ref = pd.DataFrame(REC["estimates"])
    m = fit.params.merge(ref, on=["lhs", "op", "rhs"], suffixes=("", "_lav"))
    free = m[m["free"] > 0]
    assert len(free) == REC["fit"]["npar"]
    np.testing.assert_allclose(free["est"], free["est_lav"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(free["se"], free["se_lav"], rtol=1e-4)
    np.testing.assert_allclose(m["std.all"], m["std.all_lav"], atol=1e-4)
    for key in ("chisq", "chisq.scaled", "baseline.chisq", "baseline.chisq.scaled", "cfi.scaled",
                "tli.scaled", "rmsea.scaled", "srmr"):
        np.testing.assert_allclose(fit.fit_indices[key], REC["fit"][key], rtol=1e-4, err_msg=key)


def test_mixed_with_pairwise_deletion_is_refused():
    with pytest.raises(OptionError, match="pairwise.*every observed variable is ordered"):
        fit_sem(REC["call"]["model"], data=DATA, estimator="WLSMV", ordered=ORDERED, missing="pairwise")
