"""FitResult: lavaan-style summary, HTML, and the JSON contract (built from lavaan fixtures)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import _lavaan_fixture as L
from analysis.format import fmt_number, format_table, jsonable
from analysis.sem.results import ESTIMATE_COLUMNS, FitResult, TestStatistic


@pytest.fixture(scope="module")
def hs() -> FitResult:
    return L.fit_result("hs_cfa_ml")


@pytest.fixture(scope="module")
def pd_fit() -> FitResult:
    return L.fit_result("poldem_sem")


def test_summary_header_and_test(hs):
    text = hs.summary()
    assert text.startswith("resilience SEM ended normally after 35 iterations")
    assert "  Estimator                                         ML" in text
    assert "  Number of observations                           301" in text
    assert "  Test statistic                                85.306" in text
    assert "  Degrees of freedom                                24" in text
    assert "  Comparative Fit Index (CFI)                    0.931" in text
    assert "  Tucker-Lewis Index (TLI)                       0.896" in text
    assert "  RMSEA                                          0.092" in text
    assert "  SRMR                                           0.065" in text
    assert "  Akaike (AIC)                                7517.490" in text


def test_summary_blocks_in_lavaan_layout(hs):
    text = hs.summary()
    assert "Latent Variables:\n                   Estimate  Std.Err  z-value  P(>|z|)   Std.lv  Std.all" \
        in text
    assert "  visual =~\n    x1                1.000                               0.900    0.772\n" \
           "    x2                0.554    0.100    5.554    0.000    0.498    0.424" in text
    assert "  visual ~~\n    textual           0.408    0.074    5.552    0.000    0.459    0.459" \
        in text
    assert "   .x1                0.549    0.114    4.833    0.000    0.549    0.404" in text
    assert "    visual            0.809    0.145    5.564    0.000    1.000    1.000" in text
    assert text.index("Latent Variables:") < text.index("Covariances:") < text.index("Variances:")
    assert str(hs) == text


def test_summary_regressions_labels_defined(pd_fit):
    text = pd_fit.summary()
    assert "Regressions:" in text and "Defined Parameters:" in text
    assert "  dem60 ~\n    ind60      (a)    1.483    0.399    3.715    0.000    0.447    0.447" \
        in text
    assert "  .y1 ~~\n   .y5                0.624    0.358    1.741    0.082    0.624    0.296" \
        in text
    assert "    ind               1.242    0.355    3.494    0.000    0.395    0.395" in text
    assert "   .dem65             0.172    0.215    0.803    0.422    0.039    0.039" in text
    assert "R-Square:" in text and "    dem65             0.961" in text


def test_summary_without_standardized(hs):
    text = hs.summary(standardized=False, fit_measures=False)
    assert "Std.lv" not in text and "Comparative Fit Index" not in text
    assert "    x2                0.554    0.100    5.554    0.000" in text


def test_to_dict_contract(hs):
    doc = hs.to_dict()
    fit = doc["fit"]
    for key in ["chisq", "df", "pvalue", "cfi", "tli", "rmsea", "rmsea.ci.lower",
                "rmsea.ci.upper", "srmr", "logl", "aic", "bic", "ntotal", "converged"]:
        assert key in fit, key
    assert fit["chisq"] == pytest.approx(85.3055217699727, abs=1e-12)  # full precision
    assert fit["df"] == 24 and isinstance(fit["df"], int)
    assert fit["ntotal"] == 301 and fit["converged"] is True
    est = doc["estimates"]
    assert len(est) == 21 + 3  # 21 free + 3 fixed markers
    assert list(est[0]) == ESTIMATE_COLUMNS
    x2 = next(e for e in est if e["lhs"] == "visual" and e["rhs"] == "x2")
    assert x2["est"] == pytest.approx(0.5535003, abs=1e-6)
    assert x2["group"] == 1 and x2["label"] == ""
    x1 = next(e for e in est if e["lhs"] == "visual" and e["rhs"] == "x1")
    assert x1["z"] is None and x1["pvalue"] is None  # NaN -> null
    assert doc["warnings"] == []


def test_to_json_is_strict_json(pd_fit):
    text = pd_fit.to_json()
    assert "NaN" not in text
    doc = json.loads(text)
    ind = next(e for e in doc["estimates"] if e["op"] == ":=" and e["lhs"] == "ind")
    assert ind["group"] == 0 and ind["label"] == "ind"
    assert ind["est"] == pytest.approx(1.2417828, abs=1e-6)


def test_robust_keys_and_scaled_header():
    fit = L.fit_result("hs_cfa_mlr", estimator="MLR")
    doc = fit.to_dict()["fit"]
    for key in ["chisq.scaled", "df.scaled", "chisq.scaling.factor", "cfi.robust", "tli.robust",
                "rmsea.robust", "cfi.scaled", "tli.scaled", "rmsea.scaled"]:
        assert key in doc, key
    text = fit.summary()
    assert "Standard      Scaled" in text
    assert "  Scaling correction factor" in text
    assert "Robust Comparative Fit Index (CFI)" in text


def test_html(pd_fit):
    html = pd_fit._repr_html_()
    assert html.count("<table>") == 2
    assert "<td class=\"name\">dem60 ~ ind60</td><td class=\"name\">a</td><td>1.483</td>" in html
    assert "Defined Parameters" in html
    assert "NaN" not in html and "nan" not in html


def test_warnings_as_data():
    w = {"type": "heywood-case", "message": "variance of y3 is negative", "variable": "y3"}
    fit = L.fit_result("hs_cfa_ml", warnings=(w,))
    assert fit.to_dict()["warnings"] == [w]
    assert "  - variance of y3 is negative" in fit.summary()
    assert "<li>variance of y3 is negative</li>" in fit._repr_html_()


def test_frozen(hs):
    with pytest.raises(Exception):
        hs.converged = False


def test_test_statistic_str():
    t = TestStatistic(85.3055, 24, 8.5e-9)
    text = str(t)
    assert "Statistic: 85.3055" in text and "Distributed: chi2(24)" in text


def test_format_helpers():
    assert fmt_number(-0.0001, 3) == "0.000"
    assert fmt_number(np.nan) == ""
    assert fmt_number(2.5, 3, width=8) == "   2.500"
    df = pd.DataFrame({"est": [0.123456], "df": [24.0], "lhs": ["a"]})
    out = format_table(df, labels=True)
    assert out["Estimate"].iloc[0] == 0.123 and out["df"].iloc[0] == 24
    assert df["est"].iloc[0] == 0.123456  # input untouched
    assert jsonable({"a": np.float64("nan"), "b": np.int64(3), "c": [np.inf]}) == \
        {"a": None, "b": 3, "c": [None]}
    assert math.isclose(jsonable(np.float32(0.5)), 0.5)


def test_ordinal_thresholds_block():
    fit = L.fit_result("bfi_wlsmv", estimator="WLSMV")
    text = fit.summary()
    assert "  Estimator                                      WLSMV" in text
    assert "Thresholds:\n                   Estimate  Std.Err  z-value  P(>|z|)   Std.lv  Std.all\n" \
           "    A1|t1            -0.432    0.026  -16.434    0.000   -0.432   -0.432" in text
    assert text.index("Intercepts:") < text.index("Thresholds:") < text.index("Variances:")
    doc = fit.to_dict()
    th = [e for e in doc["estimates"] if e["op"] == "|"]
    assert len(th) == 25 * 5 and th[0]["rhs"] == "t1"
