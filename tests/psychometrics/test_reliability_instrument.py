"""Instrument-driven reliability: missing codes and reverse keying applied first.

The data are generated here in the shape of the crs instrument (5-point
agree/disagree items, one reverse-keyed item per construct, "prefer not to say"
= 9), from a one-factor model per construct with known loadings, so the true
reliability is known.
"""

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from _item_responses import LOADINGS, make_responses

from analysis.psychometrics.reliability import (
    ReliabilityError,
    cronbach_alpha,
    item_analysis,
    recode_items,
    reliability_report,
)

CONSTRUCTS = {"CULT": "Cultural competence", "TRUST": "Trust", "NAVIG": "Navigation"}

YAML = textwrap.dedent(
    """\
    id: mini
    version: 1.0.0
    title: Mini community resilience survey (test)
    languages: [en]
    default_language: en
    translations:
      en: {status: reviewed}
    scales:
      agree5:
        type: ordinal
        categories:
          - {code: 1, label: {en: Strongly disagree}}
          - {code: 2, label: {en: Disagree}}
          - {code: 3, label: {en: Neither}}
          - {code: 4, label: {en: Agree}}
          - {code: 5, label: {en: Strongly agree}}
        missing:
          - {code: 9, label: {en: Prefer not to say}}
    constructs:
    """
)
for cid, label in CONSTRUCTS.items():
    YAML += f"  - {{id: {cid}, label: {label}, definition: test construct {cid}, figure1_box: {label}}}\n"
YAML += "sections:\n  - id: s1\n    title: {en: Items}\n    items:\n"
for cid in CONSTRUCTS:
    for j in range(1, 5):
        rev = "true" if j == 4 else "false"
        YAML += f"      - {{id: {cid}{j}, text: {{en: item {cid}{j}}}, scale: agree5, construct: {cid}, reverse: {rev}}}\n"


@pytest.fixture(scope="module")
def instrument(tmp_path_factory):
    from instruments import load_instrument

    path = tmp_path_factory.mktemp("inst") / "mini.yaml"
    path.write_text(YAML)
    return load_instrument(path)


def _true_omega(loadings):
    lam = np.asarray(loadings)
    return lam.sum() ** 2 / (lam.sum() ** 2 + (1 - lam**2).sum())


def test_recode_missing_codes_before_reversing(instrument):
    raw = pd.DataFrame({"CULT1": [1, 9, 5], "CULT4": [1, 9, 5], "TRUST1": [2, 3, 7]})
    x = recode_items(raw, instrument, ["CULT1", "CULT4", "TRUST1"])
    assert x["CULT1"].tolist()[0::2] == [1.0, 5.0] and np.isnan(x["CULT1"][1])
    # 9 is "prefer not to say": NA, never reversed into 6 - 9 = -3
    assert x["CULT4"].tolist()[0::2] == [5.0, 1.0] and np.isnan(x["CULT4"][1])
    # 7 is not a code of the scale: NA
    assert np.isnan(x["TRUST1"][2])


def test_recode_names_missing_columns(instrument):
    with pytest.raises(ReliabilityError, match="CULT2, CULT3"):
        recode_items(pd.DataFrame({"CULT1": [1]}), instrument, ["CULT1", "CULT2", "CULT3"])
    # the report names every absent item of every construct, not the first construct's only
    with pytest.raises(ReliabilityError) as err:
        reliability_report(pd.DataFrame({"CULT1": [1, 2], "TRUST2": [3, 4]}), instrument)
    absent = [f"{c}{j}" for c in CONSTRUCTS for j in range(1, 5) if f"{c}{j}" not in ("CULT1", "TRUST2")]
    assert str(err.value) == f"The data lack item column(s) the instrument defines: {', '.join(absent)}."


def test_report_recovers_reliability_with_recoding(instrument):
    data = make_responses(instrument, n=3000, seed=11)
    res = reliability_report(data, instrument)
    assert list(res.constructs.index) == list(CONSTRUCTS)
    # discretising to 5 points costs a little reliability; the true omega of the latent responses is .83
    for cid, row in res.constructs.iterrows():
        assert 0.74 < row["omega"] < _true_omega(LOADINGS) + 0.01, cid
        assert row["alpha.ci.lower"] < row["alpha"] < row["alpha.ci.upper"]
        assert row["n_items"] == 4
    # reverse-keyed items are flagged and, once recoded, correlate positively with the rest
    ia = res.items
    assert ia.loc["CULT4", "reverse_keyed"] and not ia.loc["CULT1", "reverse_keyed"]
    assert (ia["r.drop"] > 0.4).all()
    # missing codes counted as missing, ~3%
    assert ia["missing"].between(0.015, 0.05).all()


def test_omega_and_alpha_are_wrong_without_reverse_recoding(instrument):
    data = make_responses(instrument, n=3000, seed=12)
    good = reliability_report(data, instrument).constructs

    class NoReverse:  # the same instrument with the reverse keys forgotten
        def __getattr__(self, name):
            return getattr(instrument, name)

        reverse_keyed_items = []

    bad = reliability_report(data, NoReverse()).constructs
    for cid in CONSTRUCTS:
        # omega from a one-factor model with one negatively loading item drops by > .15
        assert good.loc[cid, "omega"] - bad.loc[cid, "omega"] > 0.15, cid
        assert good.loc[cid, "alpha"] - bad.loc[cid, "alpha"] > 0.2, cid
    # and the unrecoded item shows a negative corrected item-total correlation
    ia = reliability_report(data, NoReverse()).items
    assert (ia.loc[["CULT4", "TRUST4", "NAVIG4"], "r.drop"] < 0).all()


def test_missing_code_left_in_would_inflate_means(instrument):
    data = make_responses(instrument, n=500, seed=3, missing_share=0.1)
    ok = recode_items(data, instrument)
    naive = data[ok.columns].astype(float)
    assert ok.max().max() == 5
    assert (naive.mean() - ok.mean()).min() > 0.2  # 9s pulled the naive means up


def test_report_to_dict_summary_html(instrument):
    data = make_responses(instrument, n=400, seed=5)
    res = reliability_report(data, instrument, ordinal=True)
    d = res.to_dict()
    json.dumps(d)  # JSON-clean (no NaN objects)
    names = [c["construct"] for c in d["constructs"]]
    assert names == list(CONSTRUCTS)
    assert {"alpha", "omega", "ordinal.alpha", "ordinal.omega"} <= set(d["constructs"][0])
    assert "htmt" in d["validity"]
    h = res.validity["htmt"]
    assert h.shape == (3, 3) and (h.to_numpy()[~np.eye(3, dtype=bool)] < 0.3).all()  # independent constructs
    text = res.summary()
    assert "CULT" in text and "Item analysis" in text
    assert "<table" in res._repr_html_()


def test_item_analysis_floor_ceiling_and_distribution():
    x = pd.DataFrame({"a": [1, 1, 2, 5, np.nan], "b": [2, 3, 3, 4, 5], "c": [1, 2, 3, 4, 5]})
    ia = item_analysis(x, codes=[1, 2, 3, 4, 5])
    assert ia.loc["a", "floor"] == pytest.approx(0.5)
    assert ia.loc["a", "ceiling"] == pytest.approx(0.25)
    assert ia.loc["a", "missing"] == pytest.approx(0.2)
    assert ia.loc["b", "floor"] == 0.0  # nobody chose code 1 on b: floor is the scale's, not the data's
    assert ia.loc["b", "dist"] == {1.0: 0.0, 2.0: 0.2, 3.0: 0.4, 4.0: 0.2, 5.0: 0.2}
    # codes keep the scale's spelling: JSON keys read "3", not "3.0"
    assert list(ia.loc["b", "dist"]) == [1, 2, 3, 4, 5] and all(type(k) is int for k in ia.loc["b", "dist"])


def test_alpha_bad_input_messages():
    with pytest.raises(ReliabilityError, match="at least 2 items"):
        cronbach_alpha(pd.DataFrame({"a": [1, 2, 3]}))
    with pytest.raises(ReliabilityError, match="column\\(s\\) b are not"):
        cronbach_alpha(pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}))
    with pytest.raises(ReliabilityError, match="'ci_level'.*Got 95"):
        cronbach_alpha(pd.DataFrame({"a": [1, 2, 3], "b": [1, 3, 2]}), ci_level=95)


def test_crs_instrument_reliability_with_and_without_reverse_keys():
    from instruments import load_instrument

    inst = load_instrument("crs")
    data = make_responses(inst, n=800, seed=21)
    res = reliability_report(data, inst)
    latent = [c.id for c in inst.latent_constructs]
    assert list(res.constructs.index) == latent
    rev = [i.id for i in inst.reverse_keyed_items if i.id in res.items.index]
    assert rev and res.items.loc[rev, "r.drop"].gt(0).all()
    assert res.constructs["omega"].between(0.6, 0.95).all()

    class NoReverse:  # crs with its reverse keys forgotten: omega drops wherever a construct has one
        def __getattr__(self, name):
            return getattr(inst, name)

        reverse_keyed_items = []

    bad = reliability_report(data, NoReverse(), validity=False)
    constructs_with_rev = {inst.item(i).construct for i in rev}
    for cid in constructs_with_rev:
        assert res.constructs.loc[cid, "omega"] - bad.constructs.loc[cid, "omega"] > 0.1, cid
    for cid in set(latent) - constructs_with_rev:
        assert bad.constructs.loc[cid, "omega"] == pytest.approx(res.constructs.loc[cid, "omega"], abs=1e-12)


def test_flags_name_thresholds_and_listwise_n_is_stated(instrument):
    data = make_responses(instrument, n=600, seed=8, missing_share=0.05)
    res = reliability_report(data, instrument)
    n_complete = int(recode_items(data, instrument).dropna().shape[0])
    assert 0 < n_complete < 600
    assert any(f"use the {n_complete} of 600 respondents" in n for n in res.notes)
    # well-measured, independent constructs: no alpha, item or HTMT flag
    flags = res.flags()
    assert not [f for f in flags if "alpha" in f or "item-total" in f or "HTMT" in f], flags

    class NoReverse:  # forgotten reverse keys: the item-total flag names the item and says why
        def __getattr__(self, name):
            return getattr(instrument, name)

        reverse_keyed_items = []

    bad = reliability_report(data, NoReverse())
    flagged = [f for f in bad.flags() if "item-total" in f]
    assert [f.split(":")[0] for f in flagged] == ["CULT4", "TRUST4", "NAVIG4"]
    assert all("negative r" in f for f in flagged)
    assert bad.to_dict()["flags"] == bad.flags()
    assert "Flags" in bad.summary() and "HTMT, heterotrait-monotrait" in bad.summary()
