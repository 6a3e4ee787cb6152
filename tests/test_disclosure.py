"""Disclosure control: primary and complementary suppression, statistics by group size."""

import numpy as np
import pandas as pd
import pytest

from analysis.disclosure import suppress_by_n, suppress_counts


def _counts():
    return pd.DataFrame(
        {"Female": [120, 4, 60], "Male": [110, 30, 55], "Other": [12, 15, 0]},
        index=["Asian", "Black", "White"],
    )


def test_small_cell_and_its_complement_are_hidden():
    t = suppress_counts(_counts(), threshold=10)
    assert t.primary.loc["Black", "Female"] and t.primary.to_numpy().sum() == 1
    # Black/Female (4) is protected in its row by Other (15), then column Other by Asian (12),
    # and Asian/Female (120) closes both the Asian row and the Female column: a rectangle of four.
    m = t.mask
    assert sorted(m.stack()[m.stack()].index.tolist()) == [
        ("Asian", "Female"), ("Asian", "Other"), ("Black", "Female"), ("Black", "Other")]
    for row in m.index:  # no line is left with exactly one hidden cell
        assert m.loc[row].sum() != 1
    for col in m.columns:
        assert m[col].sum() != 1
    assert np.isnan(t.values.loc["Black", "Female"])
    assert t.values.loc["White", "Other"] == 0  # zero cells are not sensitive


def test_formatted_table_marks_cells_and_keeps_true_totals():
    t = suppress_counts(_counts(), threshold=10)
    f = t.formatted()
    assert f.loc["Black", "Female"] == "[s]"
    assert f.loc["Black", "Total"] == "49" and f.loc["Total", "Female"] == "184"
    assert f.loc["Total", "Total"] == "406"


def test_small_total_is_itself_suppressed():
    counts = pd.DataFrame({"a": [3, 20], "b": [2, 30]}, index=["x", "y"])
    f = suppress_counts(counts, threshold=10).formatted()
    assert f.loc["x", "Total"] == "[s]"  # 5 respondents in the whole row


def test_total_is_withheld_when_no_cell_can_protect():
    counts = pd.DataFrame({"a": [3, 20], "b": [0, 30]}, index=["x", "y"])
    t = suppress_counts(counts, threshold=2)  # 3 is safe at threshold 2: nothing hidden
    assert t.n_suppressed == 0
    counts = pd.DataFrame({"a": [4, 20], "b": [0, 0], "c": [0, 25]}, index=["x", "y"])
    f = suppress_counts(counts, threshold=3 + 2).formatted()
    assert f.loc["x", "a"] == "[s]"
    assert f.loc["x", "Total"] == "[s]"  # row x has no other non-zero cell to hide


def test_no_suppression_when_all_cells_are_large():
    t = suppress_counts(pd.DataFrame({"a": [10, 20], "b": [30, 40]}))
    assert t.n_suppressed == 0


def test_threshold_must_be_positive():
    with pytest.raises(ValueError, match="'threshold' parameter"):
        suppress_counts(_counts(), threshold=0)


def test_statistics_of_small_groups_are_hidden():
    stats = pd.DataFrame({"group": ["A", "B", "C"], "n": [250, 7, 40], "mean": [3.1, 2.2, 3.9]})
    out = suppress_by_n(stats, "n", threshold=10)
    assert out["suppressed"].tolist() == [False, True, False]
    assert np.isnan(out.loc[1, "mean"]) and np.isnan(out.loc[1, "n"])
    assert out.loc[0, "mean"] == 3.1 and out.loc[2, "n"] == 40
