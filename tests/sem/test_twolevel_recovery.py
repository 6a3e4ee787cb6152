"""Recovery of within and between paths from simulated two-level data (issue 17 acceptance):
R = 200 replications, 100 clusters of 10: bias < 5% and 95% CI coverage in [.92, .98]."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.sem.fit import fit_sem

MODEL = "level: 1\n  y ~ x\nlevel: 2\n  y ~ x\n"
TRUE = {1: 0.4, 2: 0.6}          # within and between slopes of y on x


def simulate(rng, n_clusters=100, size=10):
    cluster = np.repeat(np.arange(n_clusters), size)
    xb = rng.normal(scale=np.sqrt(0.5), size=n_clusters)
    yb = TRUE[2] * xb + rng.normal(scale=np.sqrt(0.3), size=n_clusters)
    xw = rng.normal(size=len(cluster))
    yw = TRUE[1] * xw + rng.normal(size=len(cluster))
    return pd.DataFrame({"x": xb[cluster] + xw, "y": 1.0 + yb[cluster] + yw, "community": cluster})


@pytest.mark.slow
def test_within_and_between_paths_recovered():
    rng = np.random.default_rng(2017)
    est = {1: [], 2: []}
    covered = {1: 0, 2: 0}
    reps = 200
    for _ in range(reps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_sem(MODEL, simulate(rng), cluster="community")
        pt = fit.params
        for level in (1, 2):
            row = pt[(pt["op"] == "~") & (pt["level"] == level)].iloc[0]
            est[level].append(row["est"])
            covered[level] += row["ci.lower"] <= TRUE[level] <= row["ci.upper"]
    for level in (1, 2):
        bias = (np.mean(est[level]) - TRUE[level]) / TRUE[level]
        assert abs(bias) < 0.05, (level, bias)
        assert 0.92 <= covered[level] / reps <= 0.98, (level, covered[level] / reps)
