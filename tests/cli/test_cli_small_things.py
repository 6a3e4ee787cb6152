"""Small things a new user tripped over (issue 14, item 9)."""

import re
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from analysis.cli.main import app

HS = Path(__file__).parents[1] / "fixtures" / "data" / "HolzingerSwineford1939.csv"


def test_help_shows_flags_without_a_value_type():
    out = CliRunner().invoke(app, ["fit", "--help"], env={"COLUMNS": "120"}).output
    assert re.search(r"--json\s", out) and "<bool>" not in out
    assert "<str>" in out or "TEXT" in out  # options that take a value still say so


def test_a_summary_shows_as_text_in_a_notebook():
    from analysis.sem.fit import fit_sem

    fit = fit_sem("visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6", pd.read_csv(HS))
    text = fit.summary()
    assert isinstance(text, str) and repr(text) == str(text) and "\\n" not in repr(text)
    assert repr(text).splitlines()[0].startswith("resilience SEM ended normally")


def test_a_partial_search_that_freed_nothing_says_so_plainly():
    from analysis.psychometrics.invariance import PartialInvarianceResult

    res = PartialInvarianceResult(step="scalar", freed=(), history=pd.DataFrame({"freed": [""]}), holds=True, baseline="metric")
    assert "holds without freeing any constraint" in res.summary() and "freeing nothing" not in res.summary()
    res = PartialInvarianceResult(step="scalar", freed=("x3~1",), history=pd.DataFrame({"freed": [""]}), holds=True,
                                  baseline="metric")
    assert "holds after freeing x3~1" in res.summary()


def test_one_blank_consent_is_one_error_at_the_gate_not_one_per_item():
    from instruments import load_instrument
    from instruments.validate import validate

    from analysis.study.demo import simulate_community_survey

    crs = load_instrument("crs")
    data = simulate_community_survey(40, seed=2, instrument=crs)
    assert validate(data, crs).n_errors == 0
    data.loc[data.index[3], "CONSENT"] = None
    gated = [it.id for it in crs.items if it.relevant and "CONSENT" in it.relevant and data.loc[data.index[3], it.id]
             is not None and data[it.id].notna().iloc[3]]
    report = validate(data, crs)
    errors = report.issues[report.issues["severity"] == "error"]
    assert len(errors) == 1 and errors.iloc[0]["item"] == "CONSENT" and errors.iloc[0]["row"] == 5
    assert errors.iloc[0]["message"] == f"CONSENT is blank, yet {len(gated)} item(s) that depend on it were answered"
    # an answered gate that closes the items is still one error per item answered out of turn
    data.loc[data.index[3], "CONSENT"] = 0
    report = validate(data, crs)
    assert (report.issues["severity"] == "error").sum() == len(gated)
