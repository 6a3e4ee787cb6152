"""Edge cases of the RMSEA close-fit tests that overflow scipy's noncentral chi-square series."""

import json
import warnings
from pathlib import Path

import pytest

from analysis.sem.fitindices import rmsea_notclose_pvalue, rmsea_pvalue


def test_close_fit_pvalue_of_a_perfect_fit_with_large_df_is_one():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning leaks to the user
        assert rmsea_pvalue(1e-8, 793, 600) == 1.0
        assert rmsea_notclose_pvalue(1e-8, 793, 600) == 0.0


def test_close_fit_pvalue_matches_lavaan_for_hs():
    fit = json.loads((Path(__file__).parents[1] / "fixtures/lavaan/hs_cfa_ml.json").read_text())["fit"]
    assert rmsea_pvalue(fit["chisq"], 24, 301) == pytest.approx(fit["rmsea.pvalue"], rel=1e-6)
