"""Rao-Wu rescaled bootstrap replicate weights: SEs as survey's svrepdesign on the same replicate
weights (means, and a path model's indirect effect refitted by lavaan per replicate)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.design import Design
from analysis.design.describe import describe
from analysis.design.replicate import ReplicateWeights, rao_wu_bootstrap, replicate_fit, replicate_means
from analysis.errors import DataError
from analysis.sem.fit import fit_sem

FIX = Path(__file__).parents[1] / "fixtures" / "design"
REF = json.loads((FIX / "replicate.json").read_text())
DATA = pd.read_csv(FIX / "design_sample.csv")
REPS = ReplicateWeights.from_frame(pd.read_csv(FIX / "replicate_weights.csv"))
DESIGN = Design(weights="w", cluster="psu", strata="stratum")


def test_means_match_svrepdesign():
    assert REPS.scale == pytest.approx(REF["scale"], rel=1e-12)
    res = replicate_means(DATA, ["x1", "x4"], DATA["w"], REPS)
    np.testing.assert_allclose(res["mean"], REF["mean"], atol=1e-10)
    np.testing.assert_allclose(res["se"], REF["se"], rtol=1e-6)


def test_indirect_effect_se_matches_lavaan_refits():
    sem = REF["sem"]
    fit = fit_sem(sem["model"], DATA, sampling_weights="w")
    out = replicate_fit(fit, DATA, REPS)
    ab = out[out["op"] == ":="].iloc[0]
    assert ab["est"] == pytest.approx(sem["est"]["ab"], abs=1e-5)
    assert ab["se"] == pytest.approx(sem["se"]["ab"], rel=1e-3)
    a = out[(out["op"] == "~") & (out["lhs"] == "f2")].iloc[0]
    assert a["se"] == pytest.approx(sem["se"]["a"], rel=1e-3)
    assert out.attrs["failed"] == 0


def test_rao_wu_multipliers_and_variance():
    rw = rao_wu_bootstrap(DESIGN, DATA, replicates=1000, seed=3)
    mult = rw.weights / DATA["w"].to_numpy()[:, None]
    # within a PSU every respondent shares the multiplier; per stratum they sum to n_h PSUs
    per_psu = pd.DataFrame(mult).groupby(DATA["psu"].to_numpy()).agg(["min", "max"])
    assert np.allclose(per_psu.xs("min", axis=1, level=1), per_psu.xs("max", axis=1, level=1))
    first = pd.DataFrame(mult).groupby(DATA["psu"].to_numpy()).first()
    strata = DATA.groupby("psu")["stratum"].first()
    sums = first.groupby(strata.to_numpy()).sum()
    n_h = strata.value_counts().sort_index()
    np.testing.assert_allclose(sums.to_numpy(), np.repeat(n_h.to_numpy()[:, None], 1000, axis=1))
    # the bootstrap SE of a mean is near the Taylor SE (Monte Carlo error of 1,000 replicates ~ 2%)
    boot = replicate_means(DATA, ["x1", "x4"], DATA["w"], rw)["se"].to_numpy()
    taylor = describe(DATA, DESIGN, variables=["x1", "x4"]).means["se"].to_numpy()
    np.testing.assert_allclose(boot, taylor, rtol=0.1)
    again = rao_wu_bootstrap(DESIGN, DATA, replicates=1000, seed=3)
    np.testing.assert_array_equal(again.weights, rw.weights)


def test_lonely_psu_cannot_be_resampled():
    lonely = pd.read_csv(FIX / "design_sample_lonely.csv")
    with pytest.raises(DataError, match="stratum 'S1' has only one PSU"):
        rao_wu_bootstrap(Design(weights="w", cluster="psu", strata="stratum", lonely_psu="adjust"), lonely,
                         replicates=10)


def test_cli_exports_replicate_weights(tmp_path):
    from typer.testing import CliRunner

    from analysis.cli.main import app

    out = tmp_path / "reps.csv"
    res = CliRunner().invoke(app, ["replicate", str(FIX / "design_sample.csv"), "--weights", "w", "--cluster",
                                   "psu", "--strata", "stratum", "--replicates", "20", "--seed", "5", "-o", str(out)])
    assert res.exit_code == 0, res.output
    written = pd.read_csv(out)
    direct = rao_wu_bootstrap(DESIGN, DATA, replicates=20, seed=5)
    np.testing.assert_allclose(written[[f"rep{r}" for r in range(1, 21)]].to_numpy(), direct.weights)
    back = ReplicateWeights.from_frame(written.filter(regex=r"^rep\d+$"))
    assert back.replicates == 20 and back.scale == pytest.approx(1 / 19)


def test_replicate_fit_keeps_the_fits_options():
    # a clustered fit has a mean structure: the replicate refits must have the same parameters
    fit = fit_sem(REF["sem"]["model"], DATA, sampling_weights="w", cluster="psu")
    out = replicate_fit(fit, DATA, ReplicateWeights(REPS.weights[:, :8], 1 / 7, np.ones(8)))
    assert out.attrs["failed"] == 0 and (out.loc[out["op"] == "~1", "se"] > 0).any()
