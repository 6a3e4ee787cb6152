"""Thresholds, polychoric correlations and Gamma (NACOV) against lavaan 0.6 (lavCor)."""
import ast
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from _lavaan_fixture import FIXTURES
from analysis.sem.polychoric import SparseCategoryError, bivariate_normal_cdf, ordinal_codes, ordinal_stats

BFI = pd.read_csv(FIXTURES / "data" / "bfi.csv")
REC = json.loads((FIXTURES / "lavaan" / "polychoric.json").read_text())


def _lit(v):
    return ast.literal_eval(v) if isinstance(v, str) else v


def _matrix(m):
    m = _lit(m)
    return np.array(m["values"], dtype=float).reshape(len(m["rownames"]), len(m["colnames"]))


ITEMS = _lit(REC["items"])


@pytest.mark.parametrize("r", [-0.999, -0.95, -0.6, -0.2, 0.0, 0.3, 0.8, 0.93, 0.999])
def test_bivariate_normal_cdf_matches_scipy(r):
    rng = np.random.default_rng(int(abs(r) * 1000))
    x, y = rng.normal(scale=1.5, size=(2, 20))
    ours = bivariate_normal_cdf(x, y, np.full(20, r))
    ref = [multivariate_normal([0, 0], [[1, r], [r, 1]]).cdf([a, b]) for a, b in zip(x, y)]
    np.testing.assert_allclose(ours, ref, atol=2e-7)   # scipy's own accuracy is ~1e-8


def test_bivariate_normal_cdf_limits():
    assert bivariate_normal_cdf(np.inf, 0.3, 0.5) == pytest.approx(0.6179114221889527)
    assert bivariate_normal_cdf(-np.inf, 0.3, 0.5) == 0.0
    assert bivariate_normal_cdf(np.inf, np.inf, -0.4) == 1.0
    assert bivariate_normal_cdf(0.0, 0.0, 0.5) == pytest.approx(1 / 4 + np.arcsin(0.5) / (2 * np.pi), abs=1e-15)


def test_thresholds_polychorics_gamma_listwise():
    codes, _ = ordinal_codes(BFI, ITEMS)
    st = ordinal_stats(codes, missing="listwise")
    assert st.nobs == int(REC["nobs"]) == 2709
    th = _lit(REC["thresholds"])
    np.testing.assert_allclose(st.th, list(th.values()), atol=1e-8)
    np.testing.assert_allclose(st.corr, _matrix(REC["cor"]), atol=1e-6)
    G = _matrix(REC["gamma"])
    np.testing.assert_allclose(st.gamma, G, rtol=1e-5, atol=1e-7)


def test_polychorics_pairwise():
    pw = _lit(REC["pairwise"])
    codes, _ = ordinal_codes(BFI, ITEMS)
    st = ordinal_stats(codes, missing="pairwise", gamma=False)
    assert st.nobs == pw["nobs"] == 2800
    np.testing.assert_allclose(st.corr, _matrix(pw["cor"]), atol=1e-6)


def test_item_with_one_category_is_refused():
    d = pd.DataFrame({"a": [1, 2, 3, 2, 1] * 10, "b": [4] * 50})
    with pytest.raises(SparseCategoryError, match=r"'b' has only one observed category \(4\)"):
        ordinal_codes(d, ["a", "b"])


def test_category_missing_in_one_group_named_and_collapsible():
    d = pd.DataFrame({"a": [1, 2, 3, 4] * 20})
    groups = np.array(["x"] * 40 + ["y"] * 40)
    d.loc[40:, "a"] = d.loc[40:, "a"].replace(4, 3)   # group y never answers 4
    with pytest.raises(SparseCategoryError, match="'a': category 4 is never observed in group 'y'.*collapse_sparse"):
        ordinal_codes(d, ["a"], groups=groups)
    codes, levels = ordinal_codes(d, ["a"], groups=groups, collapse_sparse=True)
    assert levels["a"] == [1, 2, [3, 4]]
    assert codes["a"].max() == 2


def test_binary_items_with_an_empty_cell():
    """zero.add (0.5) enters the polychoric estimate only; scores use the case counts (make_robust.R)."""
    rec = json.loads((FIXTURES / "lavaan" / "robust_binary_zero_cell.json").read_text())
    d = pd.read_csv(FIXTURES / "data" / "binary_zero_cell.csv")
    assert ((d["b4"] == 0) & (d["b5"] == 1)).sum() == 0
    codes, _ = ordinal_codes(d, list(d.columns))
    st = ordinal_stats(codes)
    np.testing.assert_allclose(st.wls_obs, rec["wls_obs"], atol=1e-6)
    np.testing.assert_allclose(st.gamma, np.array(rec["gamma"]), atol=1e-5)
