"""compare(): scaled difference tests of nested pairs whose parameter names differ
(lavTestLRT numbers from tests/fixtures/make_qa.R)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from analysis.sem.compare import compare, net_nested
from analysis.sem.fit import fit_sem

FIX = Path(__file__).parents[1] / "fixtures"
LRT = json.loads((FIX / "qa" / "qa_lavaan.json").read_text())["lrt"]


def _pair(name, data, **kw):
    ref = LRT[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ref, fit_sem(ref["general"], data, **kw), fit_sem(ref["restricted"], data, **kw)


def test_ordinal_one_factor_is_nested_in_two_factors_satorra_2000():
    ref, general, restricted = _pair("binary_two_vs_one", pd.read_csv(FIX / "qa" / "binary8.csv"),
                                     ordered=True)
    assert net_nested(general, restricted)[0] is True   # NET on the latent correlations
    res = compare({"two": general, "one": restricted}, warn=False)
    assert res.nested and not res.warnings
    test = res.tests[-1]
    assert test.stat == pytest.approx(ref["chisq.diff"], rel=1e-3)
    assert test.df == ref["df.diff"]
    assert "satorra.2000" in ref["method"]


def test_two_group_mlr_fiml_sb2001():
    ref, general, restricted = _pair("mg_mlr_fiml_orth", pd.read_csv(FIX / "qa" / "hs_missing_2group.csv"),
                                     group="school", estimator="MLR", missing="fiml")
    res = compare({"oblique": general, "orthogonal": restricted}, warn=False)
    assert res.nested
    assert res.tests[-1].stat == pytest.approx(ref["chisq.diff"], rel=1e-3)
    assert res.tests[-1].df == ref["df.diff"]
