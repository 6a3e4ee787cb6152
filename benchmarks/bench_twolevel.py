"""Benchmark: a two-level CFA of 2,000 respondents in 100 communities, ours vs lavaan, in one run.

Run by hand (never in CI):

    .venv/bin/python benchmarks/bench_twolevel.py [--reps 5]

Data: simulated (one factor per level, six items, cluster sizes 10-30). Each side fits
the same CSV ``--reps`` times (ML, full output: SEs, fit measures with the h1 and
baseline models); the median wall time is compared. lavaan runs only when ``Rscript``
with lavaan is on PATH; its time excludes R's start-up and reading the CSV. Both sides
print chisq so that speed never hides a wrong answer. Goal: at least 3x faster.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

MODEL = """level: 1
  fw =~ y1 + y2 + y3 + y4 + y5 + y6
level: 2
  fb =~ y1 + y2 + y3 + y4 + y5 + y6
"""


def simulate(seed: int = 17) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(10, 31, size=100)
    sizes = np.round(sizes * 2000 / sizes.sum()).astype(int)
    sizes[-1] += 2000 - sizes.sum()
    cluster = np.repeat(np.arange(100), sizes)
    fb = rng.normal(scale=0.5, size=100)[cluster]
    fw = rng.normal(size=len(cluster))
    lw = np.array([1, .8, .9, .7, .85, .75])
    lb = np.array([1, .9, .7, .8, .6, .9])
    y = 2 + np.outer(fw, lw) + np.outer(fb, lb) + rng.normal(scale=.7, size=(len(cluster), 6))
    d = pd.DataFrame(y, columns=[f"y{k}" for k in range(1, 7)])
    d["community"] = cluster
    return d


def ours(path: Path, reps: int):
    from analysis.sem.fit import fit_sem

    d = pd.read_csv(path)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_sem(MODEL, d, cluster="community")
        times.append(time.perf_counter() - t)
    return statistics.median(times), fit.fit_indices["chisq"]


def lavaan(path: Path, reps: int):
    if shutil.which("Rscript") is None:
        return None
    script = f"""
suppressPackageStartupMessages(library(lavaan))
d <- read.csv("{path}")
m <- "{MODEL}"
t <- numeric({reps})
for (i in seq_len({reps})) t[i] <- system.time(fit <- sem(m, d, cluster = "community"))[["elapsed"]]
cat(median(t), fitMeasures(fit, "chisq"), "\\n")
"""
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr)
        return None
    t, chisq = out.stdout.split()
    return float(t), float(chisq)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "twolevel.csv"
        simulate().to_csv(path, index=False)
        t_ours, chi_ours = ours(path, args.reps)
        print(f"ours:   {t_ours:.3f} s (median of {args.reps})   chisq {chi_ours:.4f}")
        ref = lavaan(path, args.reps)
        if ref is not None:
            t_lav, chi_lav = ref
            print(f"lavaan: {t_lav:.3f} s (median of {args.reps})   chisq {chi_lav:.4f}")
            print(f"ratio:  {t_lav / t_ours:.1f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
