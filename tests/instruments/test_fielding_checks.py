"""Validation, scoring and quality flags on small hand-made data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from instruments import load_instrument
from instruments.quality import evenodd, irv, longstring, mahalanobis, psychsyn, quality_flags
from instruments.score import clean_items, score
from instruments.validate import relevance_mask, validate
from _fielding_data import make_responses


@pytest.fixture(scope="module")
def crs():
    return load_instrument("crs")


def _base(crs, n=3):
    data = {"respondent_id": [f"r{i}" for i in range(n)], "language": ["en"] * n, "source_row": range(2, n + 2)}
    for it in crs.items:
        codes = crs.scales[it.scale].codes
        data[it.id] = [1.0] * n if it.id == "CONSENT" else [float(codes[len(codes) // 2])] * n if codes else [1.0] * n
    data["AREA"] = ["x"] * n
    return pd.DataFrame(data)


def test_validation_errors_are_data(crs):
    data = _base(crs, 4)
    data.loc[0, "CULT1"] = 7          # out of range
    data.loc[1, "respondent_id"] = "r2"  # duplicate of row 2
    data.loc[3, "CONSENT"] = 0        # everything after consent should be skipped ...
    data.loc[3, "language"] = "fr"    # ... and a language the instrument lacks
    data.loc[0, "CULT2"] = np.nan     # required, relevant, blank
    data["EXTRA"] = "?"
    report = validate(data, crs)
    issues = report.issues
    oor = issues[issues["type"] == "out-of-range"].iloc[0]
    assert (oor["row"], oor["respondent_id"], oor["item"], oor["value"]) == (2, "r0", "CULT1", "7")
    assert "agree5" in oor["message"] and oor["severity"] == "error"
    dup = issues[issues["type"] == "duplicate-respondent"]
    assert dup["row"].tolist() == [3, 4] and set(dup["respondent_id"]) == {"r2"}
    rel = issues[issues["type"] == "relevance-violation"]
    assert set(rel["row"]) == {5} and len(rel) == len([i for i in crs.items if i.relevant and i.id in data])
    assert issues[issues["type"] == "unknown-language"]["value"].tolist() == ["fr"]
    miss = issues[issues["type"] == "missing-required"]
    assert miss[["row", "item", "severity"]].values.tolist() == [[2, "CULT2", "warning"]]
    assert issues[issues["type"] == "unknown-column"]["item"].tolist() == ["EXTRA"]
    assert not report.valid and report.exit_code == 1
    counts = report.counts().set_index("type")["n"]
    assert counts["relevance-violation"] == len(rel)
    js = report.to_dict()
    assert js["n_errors"] == report.n_errors and js["issues"][0].keys() >= {"row", "respondent_id", "item", "value", "type", "message"}


def test_warnings_only_exit_zero(crs):
    data = _base(crs, 2)
    data.loc[0, "CULT2"] = np.nan
    report = validate(data, crs)
    assert report.valid and report.exit_code == 0 and report.n_warnings == 1


def test_relevance_mask_matches_evaluate(crs):
    from instruments.relevance import evaluate

    frame = pd.DataFrame({"A": [1, 2, np.nan, 3], "B": [0, 1, 1, np.nan]})
    for cond in ["A == 1", "A != 1", "A >= 2 and B == 1", "not (A in [1, 3])", "A in [1, 2] or B == 0",
                 "A not in [2]"]:
        mask = relevance_mask(cond, frame)
        expect = [evaluate(cond, {k: (None if pd.isna(v) else v) for k, v in row.items()})
                  for row in frame.to_dict("records")]
        assert mask.tolist() == expect, cond


def test_scoring_reverse_keys_and_applies_min_items(crs):
    data = _base(crs, 3)
    cult = [it.id for it in crs.items_of("CULT")]           # CULT4 is reverse-keyed
    assert crs.item("CULT4").reverse
    data.loc[0, cult] = [5, 4, 5, 1]          # reverse of 1 is 5 -> mean (5+4+5+5)/4
    data.loc[1, cult] = [2, -9, 2, np.nan]     # -9 is missing: 2 answered < min_items 3 -> NA
    data.loc[2, cult] = [1, 2, -8, 5]          # -8 missing: (1+2+1)/3
    scored = score(data, crs)
    assert scored.table["CULT"].tolist()[0] == pytest.approx(4.75)
    assert np.isnan(scored.table["CULT"].iloc[1])
    assert scored.table["CULT"].iloc[2] == pytest.approx(4 / 3)
    assert scored.min_items["CULT"] == crs.construct("CULT").min_items == 3
    assert scored.table["CULT4"].tolist()[0] == 5.0
    clean = clean_items(data, crs)
    assert np.isnan(clean["CULT2"].iloc[1])
    # REPR is a count of 'yes' answers
    data.loc[0, ["REPR1", "REPR2", "REPR3"]] = [1, 0, 1]
    assert score(data, crs).table["REPR"].iloc[0] == 2.0
    # the override changes the rule
    assert score(data, crs, min_items=2).table["CULT"].iloc[1] == pytest.approx(2.0)


def test_collapsed_grouping_column(crs):
    data = _base(crs, 2)
    data["ETHNIC"] = [1.0, 14.0]
    table = score(data, crs).table
    coll = crs.item("ETHNIC").collapsed
    assert table[coll.id].tolist() == [coll.mapping()[1], coll.mapping()[14]]


def test_quality_indices_by_hand():
    block = np.array([[1, 1, 1, 2, 2], [1, 2, 3, 4, 5], [3, 3, np.nan, 3, 3]], dtype=float)
    assert longstring(block).tolist() == [3.0, 1.0, 2.0]
    assert irv(block)[0] == pytest.approx(np.std([1, 1, 1, 2, 2], ddof=1))
    assert irv(block)[2] == 0.0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    d2, p = mahalanobis(x)
    centred = x - x.mean(0)
    expect = centred[5] @ np.linalg.inv(np.cov(x, rowvar=False)) @ centred[5]
    assert d2[5] == pytest.approx(expect)
    assert p[5] == pytest.approx(stats.chi2.sf(expect, 4))


def test_quality_flags_catch_planted_careless_respondents(crs):
    data = make_responses(crs, n=400, seed=11, missing=0.0)
    items = [it.id for it in crs.items if it.role == "item"]
    # answers driven by one trait per construct: consistent respondents
    rng = np.random.default_rng(2)
    traits = {c.id: rng.normal(size=len(data)) for c in crs.constructs}
    for it in crs.items:
        if it.role == "item" and it.id in data:
            trait = traits[it.construct] if it.construct in traits else rng.normal(size=len(data))
            v = np.clip(np.round(3 + 1.2 * trait + rng.normal(scale=0.6, size=len(data))), 1, 5)
            data[it.id] = 6 - v if it.reverse else v
    data["CONSENT"] = 1.0
    data["ATTN1"] = float(crs.item("ATTN1").expected)
    data.loc[0, items] = 3.0                           # straightliner
    data.loc[1, "duration_s"] = 30.0                   # 30 s for ~60 items
    data.loc[2, "ATTN1"] = 5.0                         # failed attention check
    data.loc[3, items] = rng.integers(1, 6, len(items))  # random responder
    data.loc[4, "respondent_id"] = data.loc[5, "respondent_id"]
    q = quality_flags(data, crs)
    t = q.table
    assert t.loc[0, "flag_longstring"] and t.loc[0, "flag_irv"] and t.loc[0, "longstring"] == len(items) - 0
    assert t.loc[1, "flag_speeder"] and t.loc[1, "seconds_per_item"] < 2
    assert t.loc[2, "flag_attention"] and t.loc[2, "attention_failed"] == 1
    assert t.loc[3, "flag_evenodd"] or t.loc[3, "flag_psychsyn"] or t.loc[3, "flag_mahalanobis"]
    assert t.loc[4, "flag_duplicate"] and t.loc[5, "flag_duplicate"]
    summary = q.summary().set_index("flag")
    assert summary.loc["attention", "n_flagged"] == 1
    n_halves = sum(1 for c in crs.latent_constructs
                   if len([i for i in crs.items_of(c.id) if i.role == "item"]) >= 2)
    assert summary.loc["evenodd", "note"].startswith(f"over {n_halves} constructs;") and n_halves > 5
    assert summary.loc["any", "n_flagged"] == int((t["n_flags"] > 0).sum())
    # consistent respondents are rarely flagged by consistency indices
    assert t["flag_evenodd"].iloc[6:].mean() < 0.05
    assert len(t) == len(data)  # flags, never deletion
    pairs = psychsyn(clean_items(data[items], crs), 0.60)[1]
    assert len(pairs) >= 3
    assert np.isfinite(evenodd(clean_items(data, crs), crs)[10])


def test_text_in_a_hand_built_frame_is_a_wrong_type(crs):
    data = _base(crs, 2).astype({"CULT1": object})
    data.loc[1, "CULT1"] = "often"
    issues = validate(data, crs).issues
    hit = issues[issues["type"] == "wrong-type"]
    assert hit[["row", "item", "value"]].values.tolist() == [[3, "CULT1", "often"]]


def test_mahalanobis_uses_the_answered_items():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    x[7, 2] = np.nan
    x[8, :3] = np.nan  # answered 1 of 4 items: below half, not evaluated
    d2, p = mahalanobis(x)
    cov = pd.DataFrame(x).cov().to_numpy()
    mean = np.nanmean(x, axis=0)
    keep = [0, 1, 3]
    diff = x[7, keep] - mean[keep]
    expect = diff @ np.linalg.inv(cov[np.ix_(keep, keep)]) @ diff
    assert d2[7] == pytest.approx(expect)
    assert p[7] == pytest.approx(stats.chi2.sf(expect, 3))
    assert np.isnan(d2[8]) and np.isnan(p[8])


def test_another_language_answer_is_a_warning_not_an_error(crs, tmp_path):
    # LANG = 3 'Another language' is an answer crs offers: the import stays valid
    from instruments.export_data import write_kobo
    from instruments.ingest import import_responses

    data = make_responses(crs, n=12, seed=3)
    data.loc[data["CONSENT"] == 1, "LANG"] = 3.0
    path = write_kobo(data.drop(columns=["language"]), crs, tmp_path / "k.csv")
    result = import_responses(path, crs)
    n_other = int((data["LANG"] == 3).sum())
    assert (result.data["language"] == "Another language").sum() == n_other > 0
    report = validate(result, crs)
    assert report.valid and report.exit_code == 0
    other = report.issues[report.issues["type"] == "other-language"]
    assert other["severity"].tolist() == ["warning"]
    assert f"{n_other} responses" in other["message"].iloc[0] and "'Another language'" in other["message"].iloc[0]
    # a language column naming a language the instrument lacks is still an error
    frame = result.data.copy()
    frame.loc[0, "language"] = "fr"
    assert validate(frame, crs).issues.query("type == 'unknown-language'")["value"].tolist() == ["fr"]


def test_duplicate_flag_counts_a_respondent_once_per_event(crs):
    data = make_responses(crs, n=10, seed=1)
    panel = pd.concat([data.assign(event="baseline"), data.assign(event="followup")], ignore_index=True)
    assert quality_flags(panel, crs).table["flag_duplicate"].sum() == 0
    # without the event the same ids and answers are duplicates, all twenty rows
    assert quality_flags(panel.drop(columns="event"), crs).table["flag_duplicate"].sum() == 20
    panel.loc[13, "event"] = "baseline"  # R0003's follow-up row now repeats its baseline row
    flagged = quality_flags(panel, crs).table["flag_duplicate"]
    assert flagged[flagged].index.tolist() == [3, 13]


def test_mahalanobis_with_a_gap_pattern_per_respondent_matches_direct_inverses():
    # random gaps give nearly every row its own pattern: the Schur-complement path must
    # equal inverting each row's own covariance sub-matrix
    rng = np.random.default_rng(4)
    n, k = 2000, 10
    x = rng.normal(size=(n, 2)) @ rng.normal(size=(2, k)) + rng.normal(size=(n, k))
    x[rng.random((n, k)) < 0.15] = np.nan
    d2, p = mahalanobis(x)
    cov = pd.DataFrame(x).cov(min_periods=3).to_numpy()
    mean = np.nanmean(x, axis=0)
    for i in range(0, n, 7):
        seen = ~np.isnan(x[i])
        if seen.sum() < 5:
            assert np.isnan(d2[i])
            continue
        diff = x[i, seen] - mean[seen]
        expect = diff @ np.linalg.inv(cov[np.ix_(seen, seen)]) @ diff
        assert d2[i] == pytest.approx(expect, rel=1e-9)
        assert p[i] == pytest.approx(stats.chi2.sf(expect, seen.sum()), rel=1e-7)
