"""lavaan model syntax: parsing, ParameterTable defaults, and errors that point into the text."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.errors import IdentificationError, ModelSpecificationError, ModelSyntaxError
from analysis.sem.partable import (build_partable, df_of, endogenous_names, exogenous_names,
                               latent_names, observed_names)
from analysis.sem.syntax import parse_model

HS = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"
POLDEM = """ind60 =~ x1 + x2 + x3
dem60 =~ y1 + y2 + y3 + y4
dem65 =~ y5 + y6 + y7 + y8
dem60 ~ ind60
dem65 ~ ind60 + dem60
y1 ~~ y5"""


def rows(pt, group=1):
    sub = pt[pt["group"] == group]
    return {(l, o, r): (f, u) for l, o, r, f, u in zip(sub["lhs"], sub["op"], sub["rhs"], sub["free"], sub["ustart"])}


def test_modifiers_labels_fixed_start_and_na():
    st = parse_model("f =~ NA*x1 + a*x2 + 0.5*x3 + start(0.7)*x4 + b*start(.2)*x5 + -1*x6 # comment\n"
                     "f ~~ 1*f ! other comment")
    got = [(s.rhs, s.fixed, s.label, s.start) for s in st[:6]]
    assert got[0][0] == "x1" and math.isnan(got[0][1][0])
    assert got[1:] == [("x2", None, ["a"], None), ("x3", [0.5], None, None), ("x4", None, None, [0.7]),
                       ("x5", None, ["b"], [0.2]), ("x6", [-1.0], None, None)]
    assert (st[6].lhs, st[6].op, st[6].rhs, st[6].fixed) == ("f", "~~", "f", [1.0])


def test_statements_split_on_semicolon_and_continued_lines():
    st = parse_model("f =~ x1 +\n   x2 +\n   x3; g =~ x4\n  + x5 + x6\ny ~ 1 + f")
    assert [(s.lhs, s.op, s.rhs) for s in st] == [
        ("f", "=~", "x1"), ("f", "=~", "x2"), ("f", "=~", "x3"),
        ("g", "=~", "x4"), ("g", "=~", "x5"), ("g", "=~", "x6"), ("y", "~1", ""), ("y", "~", "f")]
    assert st[3].line == 3


def test_expressions_thresholds_and_group_modifiers():
    st = parse_model("y ~ c(a1, a2)*x + c(1, NA)*z\nu | t1 + t2\nind := a1 * (a2 + 1)^2\na1 == a2")
    assert st[0].label == ["a1", "a2"] and st[1].fixed[0] == 1.0 and math.isnan(st[1].fixed[1])
    assert [(s.lhs, s.op, s.rhs) for s in st[2:]] == [
        ("u", "|", "t1"), ("u", "|", "t2"), ("ind", ":=", "a1*(a2+1)^2"), ("a1", "==", "a2")]


@pytest.mark.parametrize("text,message", [
    ("visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 ~ x6",
     "line 2, col 20: unexpected '~'\n  textual =~ x4 + x5 ~ x6\n                     ^"),
    ("f =~ x1 + x2\nx3 x4", "line 2, col 1: no operator (=~, ~, ~~, :=, ...) in this statement"),
    ("f =~ x1 + x2 + x3 $", "line 1, col 19: unexpected character '$'"),
    ("f =~ x1 + x2 +", "line 1, col 15: unexpected end of statement"),
    ("f = x1 + x2", "line 1, col 3: unexpected '=' (did you mean '=~', ':=' or '=='?)"),
    ("f =~ 1*2*x1", "line 1, col 8: two fixed modifiers for the same term"),
    ("y | a1 + t2", "line 1, col 5: thresholds must be named t1, t2, ... (found 'a1')"),
    ("# only a comment\n", "the model syntax is empty"),
])
def test_syntax_errors_point_at_line_and_column(text, message):
    with pytest.raises(ModelSyntaxError) as err:
        parse_model(text)
    assert str(err.value).startswith(message)


def test_cfa_defaults_marker_variances_and_factor_covariances():
    pt = build_partable(HS)
    r = rows(pt)
    assert r[("visual", "=~", "x1")] == (0, 1.0) and r[("visual", "=~", "x2")][0] > 0
    assert all(r[(f"x{i}", "~~", f"x{i}")][0] > 0 for i in range(1, 10))
    assert {k for k in r if k[1] == "~~" and k[0] != k[2]} == {
        ("visual", "~~", "textual"), ("visual", "~~", "speed"), ("textual", "~~", "speed")}
    assert pt["free"].max() == 21 and df_of(pt, False) == 24
    assert observed_names(pt) == [f"x{i}" for i in range(1, 10)]
    assert latent_names(pt) == ["visual", "textual", "speed"]


def test_std_lv_frees_loadings_and_fixes_factor_variances():
    r = rows(build_partable(HS, std_lv=True))
    assert r[("visual", "=~", "x1")][0] > 0 and r[("visual", "~~", "visual")] == (0, 1.0)


def test_sem_defaults_no_covariance_between_a_dependent_and_its_predictor():
    pt = build_partable(POLDEM)
    r = rows(pt)
    assert ("dem60", "~~", "dem65") not in r and ("ind60", "~~", "dem60") not in r
    assert endogenous_names(pt)[-2:] == ["dem60", "dem65"]
    assert "ind60" in exogenous_names(pt)


def test_fixed_x_covariates_and_intercepts_with_meanstructure():
    pt = build_partable("y ~ x1 + x2\ny ~ 1")
    r = rows(pt)
    exo = pt[pt["exo"] == 1]
    assert set(zip(exo["lhs"], exo["op"], exo["rhs"])) == {
        ("x1", "~~", "x1"), ("x1", "~~", "x2"), ("x2", "~~", "x2"), ("x1", "~1", ""), ("x2", "~1", "")}
    assert (exo["free"] == 0).all() and r[("y", "~1", "")][0] > 0
    assert df_of(pt, True) == 0          # a saturated regression, as lavaan


def test_shared_labels_and_equality_constraints_share_one_free_index():
    pt = build_partable("f =~ x1 + a*x2 + a*x3 + b*x4 + c*x5\nb == c")
    r = rows(pt)
    assert r[("f", "=~", "x2")][0] == r[("f", "=~", "x3")][0]
    assert r[("f", "=~", "x4")][0] == r[("f", "=~", "x5")][0]
    assert pt["free"].max() == 2 + 5 + 1


def test_group_equal_and_partial_and_latent_means():
    pt = build_partable(HS, n_groups=2, group_equal=["loadings", "intercepts"],
                        group_partial=["visual =~ x3", "x3 ~ 1"])
    g1, g2 = rows(pt, 1), rows(pt, 2)
    assert g1[("visual", "=~", "x2")][0] == g2[("visual", "=~", "x2")][0]
    assert g1[("visual", "=~", "x3")][0] != g2[("visual", "=~", "x3")][0]
    assert g1[("x1", "~1", "")][0] == g2[("x1", "~1", "")][0]
    assert g1[("x3", "~1", "")][0] != g2[("x3", "~1", "")][0]
    assert g1[("visual", "~1", "")] == (0, 0.0) and g2[("visual", "~1", "")][0] > 0


def test_group_specific_modifiers():
    pt = build_partable("f =~ x1 + c(1, NA)*x2 + c(l1, l2)*x3", n_groups=2)
    g1, g2 = rows(pt, 1), rows(pt, 2)
    assert g1[("f", "=~", "x2")] == (0, 1.0) and g2[("f", "=~", "x2")][0] > 0
    assert list(pt.loc[(pt["rhs"] == "x3") & (pt["op"] == "=~"), "label"]) == ["l1", "l2"]
    with pytest.raises(ModelSpecificationError, match=r"line 1: .*: 3 label values in c\(\.\.\.\) but the model has 2 groups"):
        build_partable("f =~ x1 + c(1, NA)*x2 + c(a, b, c)*x3", n_groups=2)


@pytest.mark.parametrize("text,error,message", [
    ("f =~ x1\nx1 ~~ x1\ng =~ x2 + x3 + x4", IdentificationError,
     "latent variable 'f' has a single indicator ('x1') and both the residual variance of 'x1' "
     "and the variance of 'f' are free"),
    ("f =~ NA*x1 + x2 + x3", IdentificationError, "latent variable 'f' has no scale"),
    ("f =~ x1 + a*x2 + x3\nab := a*b", ModelSpecificationError,
     "defined parameter 'ab := a*b' uses unknown label(s): 'b'"),
    ("f =~ x1 + a*x2 + x3\nb > 0", ModelSpecificationError, "line 2: constraint 'b > 0' uses unknown label(s): 'b'"),
    ("f =~ x1 + a*x2 + x3\nd := exp(a) + __import__(a)", ModelSpecificationError, "may only use labels"),
])
def test_specification_errors(text, error, message):
    with pytest.raises(error) as err:
        build_partable(text)
    assert message in str(err.value)


def test_single_indicator_factor_gets_zero_residual_variance_like_lavaan():
    r = rows(build_partable("f =~ x1\ng =~ x2 + x3 + x4"))
    assert r[("x1", "~~", "x1")] == (0, 0.0)


def test_unknown_variable_with_close_match():
    with pytest.raises(ModelSpecificationError, match=r"'xx3' \(did you mean 'x3'\?\)"):
        build_partable("f =~ x1 + x2 + xx3", observed=["x1", "x2", "x3"])


def test_check_partable_names_the_row_at_fault():
    from analysis.sem.partable import check_partable

    pt = build_partable("f =~ x1 + x2 + x3")
    bad = pt.copy()
    bad.loc[1, "ustart"], bad.loc[1, "free"] = float("nan"), 0
    with pytest.raises(ModelSpecificationError, match=r"fixed parameter 'f =~ x2' \(group 1\) has no value"):
        check_partable(bad)
    dup = pd.concat([pt, pt.iloc[[2]]], ignore_index=True)
    with pytest.raises(ModelSpecificationError, match="duplicated row 'f =~ x3' in group 1"):
        check_partable(dup)
    assert build_partable(pt).equals(pt)          # a table passes through, checked
