"""Disclosure control: primary and complementary suppression, statistics by group size."""

import numpy as np
import pandas as pd
import pytest

from analysis.study.disclosure import suppress_by_n, suppress_counts


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


# ---------------------------------------------------------------- the small-groups rule

from analysis.study.disclosure import MISSING, RESIDUAL, apply_small_groups, small_groups_plan  # noqa: E402


def test_small_categories_merge_alone_when_together_they_reach_k():
    s = pd.Series(["A"] * 50 + ["B"] * 6 + ["C"] * 5)
    assert small_groups_plan(s, k=10) == ["C", "B"]  # 11 together: A stays apart


def test_a_residual_under_k_takes_in_the_next_smallest_category():
    s = pd.Series(["W"] * 600 + ["A"] * 400 + ["M"] * 197 + ["O"] * 3)
    assert small_groups_plan(s, k=10) == ["O", "M"]
    out, handled = apply_small_groups(s.to_frame("g"), ["g"], k=10)
    assert out["g"].value_counts().to_dict() == {"W": 600, "A": 400, RESIDUAL: 200}
    assert handled == {"g": ["M", "O"]}


def test_no_answer_is_a_category_that_can_be_small():
    s = pd.Series(["A"] * 30 + ["B"] * 20 + [None] * 4)
    out, handled = apply_small_groups(s.to_frame("g"), ["g"], k=10)
    assert handled == {"g": [MISSING, "B"]} and out["g"].isna().sum() == 0  # the 4 belong to a group now
    big = pd.Series(["A"] * 30 + [None] * 12)
    out, handled = apply_small_groups(big.to_frame("g"), ["g"], k=10)
    assert handled == {} and out["g"].isna().sum() == 12  # 12 unanswered are shown as such


def test_drop_repeats_until_no_column_has_a_small_category():
    # dropping g's 3 leaves h's "y" with 8: it is dropped in turn
    f = pd.DataFrame({"g": ["a"] * 40 + ["b"] * 3, "h": ["x"] * 32 + ["y"] * 11})
    out, handled = apply_small_groups(f, ["g", "h"], k=10, rule="drop")
    assert len(out) == 32 and set(out["h"]) == {"x"} and handled == {"g": ["b"], "h": ["y"]}


def test_the_rule_is_merge_or_drop():
    with pytest.raises(ValueError, match="'rule' parameter"):
        apply_small_groups(pd.DataFrame({"g": ["a"]}), ["g"], rule="hide")
