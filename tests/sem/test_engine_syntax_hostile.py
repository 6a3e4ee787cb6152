"""Hostile model syntax (issue 12 item 13): every one gives a ModelSyntaxError naming the line,
never an internal error, and a model beyond the documented size limits is refused at once."""

import time
from pathlib import Path

import pandas as pd
import pytest

from analysis.errors import AnalysisError, ModelSyntaxError
from analysis.sem.fit import fit_sem
from analysis.sem.syntax import MODEL_LIMITS, parse_model

HS = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9\n"


@pytest.fixture(scope="module")
def hs():
    return pd.read_csv(Path(__file__).parents[1] / "fixtures" / "data" / "HolzingerSwineford1939.csv")


HOSTILE = {
    "power tower": (HS + "visual ~~ a*textual\nd := 9^9^9^9\n", 5, "too large"),
    "power of a label": (HS + "visual ~~ a*textual\nd := a^9^9^9\n", 5, "too large"),
    "infinite number": (HS.replace("x1 +", "1e999*x1 +"), 1, "too large"),
    "infinite start": (HS + "x1 ~~ start(1e400)*x1\n", 4, "too large"),
    "infinite constraint": (HS + "visual ~~ a*textual\na == 1e999\n", 5, "too large"),
    "huge fixed value": (HS.replace("x4 +", "1e300*x4 +"), 2, "too large"),
    "deep parentheses": (HS + "visual ~~ a*textual\nd := " + "(" * 100 + "a" + ")" * 100 + "\n", 5,
                         "nested"),
    "unary chain": (HS + "visual ~~ a*textual\nd := " + "-" * 100 + "a\n", 5, "nested"),
    "long expression": (HS + "visual ~~ a*textual\nd := a" + "+a" * 5000 + "\n", 5, "terms"),
    "division by zero": (HS + "visual ~~ a*textual\nd := a/(1-1)\n", 5, "divides by zero"),
    "nested c()": (HS + "x1 ~~ " + "c(" * 5000 + "1" + ")" * 5000 + "*x1\n", 4, "nested"),
    "nested start(c())": (HS + "x1 ~~ start(" + "c(" * 3000 + "1" + ")" * 3000 + ")*x1\n", 4, "nested"),
    "a number of 5,000 digits": (HS.replace("x1 +", "9" * 5000 + "*x1 +"), 1, "too large"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_syntax_names_the_line(hs, name):
    text, line, words = HOSTILE[name]
    with pytest.raises(ModelSyntaxError, match=words) as err:
        fit_sem(text, hs, warn=False)
    assert err.value.line == line, str(err.value)
    assert f"line {line}, col" in str(err.value)
    assert len(str(err.value)) < 400  # a hostile line is shown around the problem, not whole


def test_thousands_of_latent_variables_are_refused_at_once():
    text = "\n".join(f"f{i} =~ x1 + x2 + x3" for i in range(5000))
    t0 = time.perf_counter()
    with pytest.raises(ModelSyntaxError, match="latent variables") as err:
        parse_model(text)
    assert time.perf_counter() - t0 < 5
    limit = MODEL_LIMITS["latent_variables"]
    assert err.value.line == limit + 1 and f"at most {limit}" in str(err.value)


def test_a_model_too_large_to_estimate_is_refused_before_any_work():
    import numpy as np

    from analysis.errors import ModelSpecificationError

    n_lv = MODEL_LIMITS["latent_variables"]  # parses, but 20,000 factor covariances are too many
    text = "\n".join(f"f{i} =~ x{3 * i} + x{3 * i + 1} + x{3 * i + 2}" for i in range(n_lv))
    data = pd.DataFrame(np.random.default_rng(1).normal(size=(700, 3 * n_lv)),
                        columns=[f"x{j}" for j in range(3 * n_lv)])
    t0 = time.perf_counter()
    with pytest.raises(ModelSpecificationError, match="too large to estimate: 21,100 free parameters"):
        fit_sem(text, data, warn=False)
    assert time.perf_counter() - t0 < 20  # it tried to allocate 28 GB before


def test_the_limits_themselves_are_refused_clearly():
    with pytest.raises(ModelSyntaxError, match="characters"):
        parse_model("f =~ x1 + x2 + x3\n" + "#" * (MODEL_LIMITS["characters"] + 1))
    many = "\n".join(f"y{i} ~ x{i}" for i in range(MODEL_LIMITS["observed_variables"] // 2 + 1))
    with pytest.raises(ModelSyntaxError, match="observed variables"):
        parse_model(many)
    n = MODEL_LIMITS["statements"] + 1
    with pytest.raises(ModelSyntaxError, match="statements"):
        parse_model("\n".join("y ~ x" for _ in range(n)))


def test_a_model_at_the_limit_still_parses():
    limit = MODEL_LIMITS["latent_variables"]
    rows = parse_model("\n".join(f"f{i} =~ x{3 * i} + x{3 * i + 1} + x{3 * i + 2}" for i in range(limit)))
    assert len({r.lhs for r in rows}) == limit
    assert parse_model("d := " + "(" * 40 + "a" + ")" * 40)[0].rhs == "(" * 40 + "a" + ")" * 40


def test_singular_matrices_are_a_model_problem_not_an_internal_error(hs):
    # fixed values so extreme that the implied covariance matrix cannot be formed
    with pytest.raises(AnalysisError):
        fit_sem(HS.replace("x1 +", "1e14*x1 +").replace("x4 +", "1e14*x4 +"), hs, warn=False)


def test_cli_fit_gives_the_line_not_an_internal_error(tmp_path):
    from typer.testing import CliRunner

    from analysis.cli.main import app

    model = tmp_path / "evil.lav"
    model.write_text(HOSTILE["power tower"][0])
    data = Path(__file__).parents[1] / "fixtures" / "data" / "HolzingerSwineford1939.csv"
    res = CliRunner().invoke(app, ["fit", str(data), "--model", str(model)])
    assert res.exit_code == 1
    assert "line 5" in res.output and "internal error" not in res.output and "Traceback" not in res.output
