"""Small groups and empty categories: clear errors naming the group, warnings below the minimum."""

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.errors import DataError, OptionError
from analysis.psychometrics.invariance import SmallGroupError, SmallGroupWarning, check_groups, invariance_ladder

MODEL = "F =~ y1 + y2 + y3 + y4"


def _data(sizes, seed=0, n_cat=None):
    rng = np.random.default_rng(seed)
    parts = []
    for name, n in sizes.items():
        f = rng.standard_normal(n)
        d = {f"y{j}": 0.8 * f + 0.6 * rng.standard_normal(n) for j in range(1, 5)}
        df = pd.DataFrame(d)
        if n_cat:
            df = df.apply(lambda c: pd.cut(c, [-np.inf, -0.8, 0, 0.8, np.inf], labels=False) + 1).astype(int)
        df["grp"] = name
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def test_group_with_fewer_cases_than_parameters_is_an_error_naming_it():
    data = _data({"A": 300, "B": 300, "tiny": 8})
    with pytest.raises(SmallGroupError, match="group 'tiny' of 'grp' has 8 complete case\\(s\\), fewer than the 12 free parameters"):
        invariance_ladder(MODEL, data, group="grp")


def test_group_below_minimum_warns_with_its_size():
    data = _data({"A": 300, "B": 60})
    with pytest.warns(SmallGroupWarning, match="group 'B' of 'grp' has only 60 complete cases \\(minimum 100\\)"):
        res = invariance_ladder(MODEL, data, group="grp", steps=("configural", "metric"))
    assert res.nobs == (300, 60)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallGroupWarning)
        check_groups(MODEL, data, "grp", min_group_size=50)  # configurable: no warning at 50


def test_empty_ordinal_category_in_one_group_names_group_item_and_category():
    data = _data({"A": 400, "B": 400}, n_cat=4)
    # nobody in B chose category 4 of y2
    data.loc[(data.grp == "B") & (data.y2 == 4), "y2"] = 3
    with pytest.raises(SmallGroupError, match="'y2'.*category 4.*never observed in group 'B'"):
        invariance_ladder(MODEL, data, group="grp", estimator="WLSMV", ordered=["y1", "y2", "y3", "y4"])


def test_bad_group_column_and_single_group():
    data = _data({"A": 200, "B": 200})
    with pytest.raises(DataError, match="grouping column 'gpr' is not in the data \\(did you mean 'grp'\\?\\)"):
        invariance_ladder(MODEL, data, group="gpr")
    with pytest.raises(DataError, match="has 1 group\\(s\\); invariance needs at least 2"):
        invariance_ladder(MODEL, data[data.grp == "A"], group="grp")
    with pytest.raises(DataError, match="lack the model's observed variable\\(s\\): y9"):
        invariance_ladder("F =~ y1 + y2 + y9", data, group="grp")


def test_bad_options_are_named():
    data = _data({"A": 200, "B": 200})
    with pytest.raises(OptionError, match="'estimator'.*Got 'GLS'"):
        invariance_ladder(MODEL, data, group="grp", estimator="GLS")
    with pytest.raises(OptionError, match="unknown invariance step\\(s\\) 'weak'"):
        invariance_ladder(MODEL, data, group="grp", steps=("configural", "weak"))


def test_fiml_counts_every_case_with_an_answer():
    data = _data({"A": 300, "B": 40})
    data.loc[data.index[-30:], "y1"] = np.nan  # 30 of B's 40 lack y1
    with pytest.raises(SmallGroupError, match="group 'B' of 'grp' has 10 complete case\\(s\\), fewer than the 12"):
        check_groups(MODEL, data, "grp")
    with pytest.warns(SmallGroupWarning, match="group 'B' of 'grp' has only 40 cases with an answer \\(minimum 100\\)"):
        assert check_groups(MODEL, data, "grp", missing="fiml") == {"A": 300, "B": 40}
