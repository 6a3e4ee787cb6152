"""EFA against psych (KMO, cortest.bartlett, fa minres with oblimin/promax) and bad input."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.psychometrics.efa import EFAError, bartlett_sphericity, efa, efa_report, kmo, parallel_analysis

FIX = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def ref():
    return json.loads((FIX / "lavaan" / "psychometrics_efa.json").read_text())


@pytest.fixture(scope="module")
def hs():
    return pd.read_csv(FIX / "data" / "HolzingerSwineford1939.csv")[[f"x{i}" for i in range(1, 10)]]


def test_kmo_matches_psych(ref, hs):
    k = kmo(hs)
    assert k.loc["overall", "msa"] == pytest.approx(ref["kmo"]["overall"], abs=1e-8)
    for item, v in ref["kmo"]["items"].items():
        assert k.loc[item, "msa"] == pytest.approx(v, abs=1e-8)


def test_bartlett_matches_psych(ref, hs):
    b = bartlett_sphericity(hs).iloc[0]
    assert b["chisq"] == pytest.approx(ref["bartlett"]["chisq"], abs=1e-6)
    assert b["df"] == ref["bartlett"]["df"]
    assert b["pvalue"] == pytest.approx(ref["bartlett"]["pvalue"], rel=1e-6)


def _match_columns(got: pd.DataFrame, exp: pd.DataFrame) -> pd.DataFrame:
    """psych names and orders factors its own way: pair columns by their largest agreement."""
    order = [int(np.argmax([abs(np.corrcoef(got[g], exp[e])[0, 1]) for g in got.columns])) for e in exp.columns]
    return got.iloc[:, order].set_axis(exp.columns, axis=1)


@pytest.mark.parametrize("rotation", ["oblimin", "promax"])
def test_loadings_and_factor_correlations_match_psych_fa(ref, hs, rotation):
    r = ref[rotation]
    exp = pd.DataFrame(r["loadings"]["values"], index=r["loadings"]["rownames"], columns=r["loadings"]["colnames"])
    res = efa(hs, 3, rotation=rotation, method="minres")
    got = _match_columns(res.loadings, exp)
    # minres converges to ~1e-5 in both programs
    np.testing.assert_allclose(got.loc[exp.index], exp, atol=2e-4)
    phi = pd.DataFrame(r["phi"]["values"], index=exp.columns, columns=exp.columns)
    cols = [res.loadings.columns[list(got.columns).index(c)] for c in exp.columns]
    np.testing.assert_allclose(res.factor_correlations.loc[cols, cols], phi, atol=2e-4)
    np.testing.assert_allclose(res.communalities[exp.index], [r["communality"][i] for i in exp.index], atol=2e-4)


def test_parallel_analysis_is_seeded_and_finds_three_factors(hs):
    a = parallel_analysis(hs, seed=42, n_iter=50)
    b = parallel_analysis(hs, seed=42, n_iter=50)
    c = parallel_analysis(hs, seed=43, n_iter=50)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["random.q95"], c["random.q95"])
    assert a.attrs["n_factors"] == 3  # the three HS abilities
    assert (a["observed"] == parallel_analysis(hs, seed=1, n_iter=5)["observed"]).all()  # data part is not random
    pc = parallel_analysis(hs, seed=42, n_iter=50, kind="pc")
    assert pc["observed"].sum() == pytest.approx(9.0)  # eigenvalues of a 9x9 correlation matrix


def test_efa_report_chooses_n_factors_and_reports(hs):
    res = efa_report(hs, seed=3, n_iter=30)
    assert res.n_factors == 3
    assert res.loadings.shape == (9, 3)
    d = res.to_dict()
    json.dumps(d)
    assert d["kmo"]["overall"] == pytest.approx(0.7522, abs=1e-4)
    text = res.summary()
    assert "oblimin" in text and "Parallel analysis (seed 3) suggests 3" in text
    assert "<table" in res._repr_html_()
    # x5 loads on the textual factor only
    top = res.loadings_table(cutoff=0.3)
    assert top.loc["x5"].notna().sum() == 1


def test_efa_bad_input(hs):
    with pytest.raises(EFAError, match="'n_factors' parameter of efa must be an int in \\[1, 8\\]. Got 9"):
        efa(hs, 9)
    with pytest.raises(EFAError, match="'rotation'.*Got 'bogus'"):
        efa(hs, 2, rotation="bogus")
    with pytest.raises(EFAError, match="without variance: x1"):
        kmo(hs.assign(x1=1.0))
    with pytest.raises(EFAError, match="more complete cases \\(3\\) than items \\(9\\)"):
        kmo(hs.head(3))
    with pytest.raises(EFAError, match="'n_iter'.*Got 0"):
        parallel_analysis(hs, n_iter=0)


def test_scree_plot_writes_an_image_and_names_a_bad_suffix(hs, tmp_path):
    from analysis.psychometrics.efa import scree_plot

    res = efa_report(hs, seed=1, n_iter=20)
    out = scree_plot(res, tmp_path / "plots" / "scree.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
    with pytest.raises(EFAError, match="cannot write the plot to .*scree.foo: Format 'foo' is not supported"):
        scree_plot(res, tmp_path / "scree.foo")


def test_report_names_listwise_share_and_intended_constructs():
    from instruments import load_instrument

    import sys

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from _item_responses import make_responses

    inst = load_instrument("crs")
    data = make_responses(inst, n=400, seed=2, missing_share=0.01)
    items = [f"TRUST{j}" for j in range(1, 5)] + [f"NAVIG{j}" for j in range(1, 5)]
    res = efa_report(data, inst, items=items, n_factors=2, n_iter=20)
    dropped = 400 - res.n_obs
    assert dropped > 0
    assert res.notes[0] == (f"{dropped} of 400 respondents ({dropped / 400:.0%}) with a missing answer "
                            "left out (listwise; missing='pairwise' keeps them).")
    assert res.constructs == {i: i.rstrip("1234") for i in items}
    shown = res._shown_loadings()
    assert shown["construct"].tolist() == [res.constructs[i] for i in shown.index]
    assert "p < .001" in res.summary()
    assert res.to_dict()["constructs"]["NAVIG3"] == "NAVIG"


def test_pairwise_keeps_respondents_and_equals_listwise_on_complete_data(hs):
    full = efa_report(hs, n_factors=3, seed=1, n_iter=20)
    same = efa_report(hs, n_factors=3, seed=1, n_iter=20, missing="pairwise")
    assert np.allclose(same.loadings, full.loadings, atol=1e-12) and same.n_obs == full.n_obs == 301
    assert same.kmo["msa"].tolist() == pytest.approx(full.kmo["msa"].tolist(), abs=1e-12)
    holes = hs.copy()
    rng = np.random.default_rng(3)
    holes = holes.mask(rng.random(holes.shape) < 0.05)  # 5% missing per item: ~37% of rows incomplete
    lw = efa_report(holes, n_factors=3, seed=1, n_iter=20)
    pw = efa_report(holes, n_factors=3, seed=1, n_iter=20, missing="pairwise")
    assert lw.n_obs == len(holes.dropna()) < 220
    assert pw.n_obs == len(holes.dropna(how="all")) == 301
    assert bartlett_sphericity(holes, missing="pairwise")["n_obs"].iloc[0] == 301
    # the same structure, closer to the complete-data loadings than listwise is
    err = lambda r: np.abs(_match_columns(r.loadings, full.loadings) - full.loadings).to_numpy().mean()  # noqa: E731
    assert err(pw) < err(lw)
    with pytest.raises(EFAError, match="'missing' parameter of efa must be one of listwise, pairwise. Got 'fiml'"):
        efa(hs, 2, missing="fiml")
