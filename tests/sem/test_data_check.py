"""check_model_data: the bad-input messages of issue 3 item 7 (data side) and the missing-data summary."""

import numpy as np
import pandas as pd
import pytest

from analysis.sem.data import SampleStats, check_model_data
from analysis.errors import DataError


@pytest.fixture
def df() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(rng.normal(size=(20, 3)), columns=["TRUST1", "TRUST2", "TRUST3"])


def test_variables_not_in_data_with_close_matches(df):
    with pytest.raises(DataError) as err:
        check_model_data(df, ["TRUST1", "TRUST4", "trust2"], source="survey.csv")
    msg = str(err.value)
    assert msg.startswith("survey.csv: variables not found in the data: 'TRUST4'")
    assert "did you mean 'TRUST3' or 'TRUST2' or 'TRUST1'?" in msg
    assert "'trust2' (did you mean 'TRUST2'? names are case-sensitive)" in msg


def test_non_numeric_column_names_value_and_row(df):
    df["TRUST2"] = df["TRUST2"].astype(object)
    df.loc[6, "TRUST2"] = "agree"
    df.loc[9, "TRUST2"] = "n/a?"
    with pytest.raises(DataError) as err:
        check_model_data(df, ["TRUST1", "TRUST2"])
    assert "column 'TRUST2' is not numeric: row 7 has 'agree' (2 non-numeric values in all)" \
        in str(err.value)


def test_numeric_text_is_accepted(df):
    df["TRUST3"] = [f" {v:.3f} " for v in df["TRUST3"]]
    out = check_model_data(df, ["TRUST1", "TRUST3"])
    assert out.data["TRUST3"].dtype == float
    assert out.data["TRUST3"].iloc[0] == pytest.approx(round(df["TRUST1"].iloc[0] * 0 +
                                                           float(df["TRUST3"].iloc[0]), 3))


def test_zero_variance_item(df):
    df["TRUST3"] = 4
    with pytest.raises(DataError, match=r"zero variance: 'TRUST3' \(every case = 4\)"):
        check_model_data(df, ["TRUST1", "TRUST2", "TRUST3"])


def test_zero_variance_within_group(df):
    df["g"] = ["a"] * 10 + ["b"] * 10
    df.loc[df["g"] == "b", "TRUST2"] = 2.0
    with pytest.raises(DataError, match=r"zero variance in group 'b': 'TRUST2'"):
        check_model_data(df, ["TRUST1", "TRUST2"], group="g")


def test_fewer_cases_than_variables():
    small = pd.DataFrame(np.arange(12, dtype=float).reshape(3, 4) ** 1.5,
                         columns=list("abcd"))
    with pytest.raises(DataError, match=r"only 3 complete cases for 4 variables"):
        check_model_data(small, list("abcd"))


def test_listwise_missing_report(df):
    df.loc[[2, 5], "TRUST1"] = np.nan
    df.loc[11, :] = np.nan
    out = check_model_data(df, ["TRUST1", "TRUST2", "TRUST3"])
    assert out.missing["n_read"] == 20
    assert out.missing["n_used"] == 17
    assert out.missing["n_dropped"] == 3
    assert out.missing["dropped_rows"] == [3, 6, 12]
    assert out.missing["missing_by_variable"] == {"TRUST1": 3, "TRUST2": 1, "TRUST3": 1}
    assert "1 case(s) answered none of the model variables and were dropped (rows 12)" \
        in out.warnings
    assert "2 of 20 cases with missing values were dropped (listwise deletion)" in out.warnings


def test_fiml_keeps_partial_rows(df):
    df.loc[[2, 5], "TRUST1"] = np.nan
    df.loc[11, :] = np.nan
    out = check_model_data(df, ["TRUST1", "TRUST2", "TRUST3"], missing="fiml")
    assert out.missing["n_used"] == 19
    assert out.missing["dropped_rows"] == [12]


def test_variable_missing_everywhere(df):
    df["TRUST3"] = np.nan
    with pytest.raises(DataError, match=r"variable 'TRUST3' missing for every case"):
        check_model_data(df, ["TRUST1", "TRUST3"])


def test_sample_stats_ml_divisor(df):
    ss = SampleStats.from_data(df, ["TRUST1", "TRUST2"])
    x = df[["TRUST1", "TRUST2"]].to_numpy()
    np.testing.assert_allclose(ss.cov[0], np.cov(x.T, ddof=0))
    assert ss.nobs == (20,)
    ss2 = SampleStats.from_cov(pd.DataFrame(np.cov(x.T), columns=["a", "b"]), 20)
    np.testing.assert_allclose(ss2.cov[0], np.cov(x.T, ddof=0))
    assert ss2.ov_names == ("a", "b")


def test_fiml_counts_missing_patterns(df):
    df.loc[[2, 5], "TRUST1"] = np.nan
    df.loc[7, "TRUST2"] = np.nan
    out = check_model_data(df, ["TRUST1", "TRUST2", "TRUST3"], missing="fiml")
    assert out.missing["n_patterns"] == 3  # complete, TRUST1 missing, TRUST2 missing


def test_group_column_not_found(df):
    df["school"] = "a"
    with pytest.raises(DataError, match=r"group column 'School' not found in the data "
                                        r"\(did you mean 'school'\? names are case-sensitive\)"):
        check_model_data(df, ["TRUST1", "TRUST2"], group="School")


def test_dot_and_blank_are_missing_not_text(df):
    df["TRUST2"] = df["TRUST2"].astype(object)
    df.loc[3, "TRUST2"] = "."
    df.loc[4, "TRUST2"] = "  "
    out = check_model_data(df, ["TRUST1", "TRUST2"])
    assert out.missing["dropped_rows"] == [4, 5]
