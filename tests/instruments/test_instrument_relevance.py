"""The relevance-condition language: parsing, evaluation, renderers."""

from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instruments.relevance import (
    And,
    Compare,
    In,
    Not,
    Or,
    RelevanceSyntaxError,
    evaluate,
    parse,
    referenced_items,
    to_javascript,
    to_redcap,
    to_text,
    to_xlsform,
)


def test_parse_precedence_and_shapes():
    expr = parse("A == 1 or B >= 3 and not C in [1, 2]")
    assert expr == Or((Compare("A", "==", 1), And((Compare("B", ">=", 3), Not(In("C", (1, 2)))))))
    assert parse("(A = 1)") == Compare("A", "==", 1)
    assert parse("G not in [1, 'x', 2.5]") == In("G", (1, "x", 2.5), negate=True)
    assert parse("A != -9") == Compare("A", "!=", -9)
    assert referenced_items("A == 1 and (B == 2 or A == 3)") == ["A", "B"]


@pytest.mark.parametrize(
    "text, position, fragment",
    [
        ("", 0, "expected a condition"),
        ("A ==", 4, "expected a number or a quoted text"),
        ("A == 1 and", 10, "expected an item id"),
        ("A 1", 2, "expected a comparison"),
        ("A in [1, 2", 10, "expected ',' or ']'"),
        ("(A == 1", 7, "expected ')'"),
        ("A == 1 B == 2", 7, "'and', 'or' or end"),
        ("__import__('os').system('x')", 16, "unexpected character '.'"),
        ("A == 1 + 2", 7, "unexpected character '+'"),
        ("A == 1; B", 6, "unexpected character ';'"),
    ],
)
def test_syntax_errors_carry_position(text, position, fragment):
    with pytest.raises(RelevanceSyntaxError) as err:
        parse(text)
    assert err.value.position == position
    assert fragment in err.value.message


def test_evaluate():
    answers = {"REPR1": 1, "AGE": 4, "GENDER": 2, "NOTE": "yes"}
    assert evaluate("REPR1 == 1 and AGE >= 3", answers) is True
    assert evaluate("REPR1 == 1 and AGE >= 5", answers) is False
    assert evaluate("GENDER in [1, 2]", answers) is True
    assert evaluate("GENDER not in [1, 2]", answers) is False
    assert evaluate("not (AGE < 3) and NOTE == 'yes'", answers) is True
    # form tools hand codes over as text: "1" == 1
    assert evaluate("REPR1 == 1", {"REPR1": "1"}) is True
    assert evaluate("AGE > 2", {"AGE": "4"}) is True
    # a comparison on an unanswered item is false, whatever the operator
    for cond in ("X == 1", "X != 1", "X < 1", "X in [1]", "X not in [1]"):
        assert evaluate(cond, {}) is False
        assert evaluate(cond, {"X": None}) is False
        assert evaluate(cond, {"X": float("nan")}) is False
    assert evaluate("not X == 1", {}) is True
    # text compared with a number is simply not satisfied
    assert evaluate("AGE > 2", {"AGE": "old"}) is False


def test_renderers():
    expr = "REPR1 == 1 and AGE >= 3"
    assert to_xlsform(expr) == "${REPR1} = 1 and ${AGE} >= 3"
    assert to_redcap(expr) == "[repr1] = '1' and [age] >= 3"
    guard = 'answers["{0}"] != null && String(answers["{0}"]).trim() !== ""'
    assert to_javascript(expr) == (
        f'({guard.format("REPR1")} && answers["REPR1"] == 1) && '
        f'({guard.format("AGE")} && answers["AGE"] >= 3)'
    )
    assert to_xlsform("GENDER in [1, 2]") == "(${GENDER} = 1 or ${GENDER} = 2)"
    assert to_redcap("GENDER in [1, 2]") == "([gender] = '1' or [gender] = '2')"
    assert to_redcap("GENDER not in [1, 2]") == "([gender] <> '1' and [gender] <> '2')"
    assert to_xlsform("not (A == 1 or B != 2)") == "not((${A} = 1 or ${B} != 2))"
    # REDCap has no `not`: it is pushed down to the comparisons
    assert to_redcap("not (A == 1 or B < 2)") == "[a] <> '1' and [b] >= 2"
    assert to_redcap("C == 3 or not (A == 1 and B < 2)") == "[c] = '3' or ([a] <> '1' or [b] >= 2)"
    assert to_javascript("G in [1, 2]", answers="a") == (
        '(a["G"] != null && String(a["G"]).trim() !== "" && [1, 2].some(v => v == a["G"]))')


def _random_expr(rng, depth=0):
    names, values = ["A", "B", "C"], [-9, 0, 1, 2, 3, "x", "yes"]
    if depth >= 2 or rng.random() < 0.4:
        if rng.random() < 0.7:
            return Compare(rng.choice(names), rng.choice(["==", "!=", "<", "<=", ">", ">="]), rng.choice(values))
        return In(rng.choice(names), tuple(rng.sample(values, rng.randint(1, 3))), rng.random() < 0.5)
    kind = rng.choice([Not, And, Or])
    if kind is Not:
        return Not(_random_expr(rng, depth + 1))
    return kind(tuple(_random_expr(rng, depth + 1) for _ in range(rng.randint(2, 3))))


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the JavaScript")
def test_javascript_agrees_with_python_evaluate(tmp_path):
    """Render 400 random conditions, run them in node on random answers, compare."""
    rng = random.Random(20240601)
    answer_values = [None, "", "  ", -9, 0, 1, 2, 3, 2.0, "1", "3", "x", "yes"]
    cases = []
    for _ in range(400):
        expr = _random_expr(rng)
        answers = {n: rng.choice(answer_values) for n in "ABC" if rng.random() < 0.85}
        cases.append((to_javascript(expr), answers, evaluate(expr, answers)))
    script = "const cases = " + json.dumps([[js, ans] for js, ans, _ in cases]) + ";\n" + (
        "console.log(JSON.stringify(cases.map(([js, answers]) => "
        "Boolean(new Function('answers', 'return ' + js)(answers)))));"
    )
    (tmp_path / "run.js").write_text(script, encoding="utf-8")
    out = subprocess.run(["node", str(tmp_path / "run.js")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    mismatches = [(js, ans, py) for (js, ans, py), g in zip(cases, got) if g != py]
    assert not mismatches, mismatches[:3]
    assert 0 < sum(got) < len(got)  # the sample exercises both outcomes


_names = st.sampled_from(["A", "B", "C1", "REPR1"])
_values = st.one_of(st.integers(-9, 20), st.sampled_from(["x", "yes"]))
_leaf = st.one_of(
    st.builds(Compare, _names, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), _values),
    st.builds(In, _names, st.lists(_values, min_size=1, max_size=3).map(tuple), st.booleans()),
)
_expr = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(And, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(inner, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=6,
)
_answers = st.dictionaries(_names, st.one_of(st.none(), st.integers(-9, 20), st.sampled_from(["x", "yes"])))


@settings(max_examples=200, deadline=None)
@given(_expr, _answers)
def test_text_round_trip_preserves_meaning(expr, answers):
    again = parse(to_text(expr))
    assert evaluate(again, answers) == evaluate(expr, answers)
    assert to_text(again) == to_text(parse(to_text(again)))
