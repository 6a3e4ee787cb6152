"""Benchmark: the 4-step invariance ladder, 40 items, 3 groups, N = 3,000, against lavaan.

Run by hand (never in CI):  .venv/bin/python benchmarks/bench_invariance.py [--n 3000] [--reps 1]

Simulates 10 correlated factors with 4 continuous indicators each in three
groups of N/3 (one non-invariant loading and intercept in group 3), times
``invariance_ladder`` (configural, metric, scalar, strict; ML) and, when
``Rscript`` with lavaan is on PATH, the same four ``cfa(..., group.equal =)``
fits in the same run on the same data. Prints both times, their ratio and the
largest chi-square difference between the two, so speed never hides a wrong
answer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

N_FACTORS, PER_FACTOR, GROUPS = 10, 4, ("A", "B", "C")


def make_data(n: int, seed: int = 2026) -> tuple[pd.DataFrame, str]:
    rng = np.random.default_rng(seed)
    phi = np.full((N_FACTORS, N_FACTORS), 0.3) + 0.7 * np.eye(N_FACTORS)
    lam = rng.uniform(0.6, 0.85, size=(N_FACTORS, PER_FACTOR))
    parts = []
    for g, name in enumerate(GROUPS):
        m = n // len(GROUPS)
        eta = rng.multivariate_normal(np.full(N_FACTORS, 0.2 * g), phi, size=m)
        cols = {}
        for f in range(N_FACTORS):
            for j in range(PER_FACTOR):
                load = lam[f, j] * (0.7 if (g == 2 and f == 0 and j == 1) else 1.0)
                shift = 0.3 if (g == 2 and f == 1 and j == 2) else 0.0
                cols[f"y{f + 1}_{j + 1}"] = 3 + shift + load * eta[:, f] + np.sqrt(1 - lam[f, j] ** 2) * rng.standard_normal(m)
        df = pd.DataFrame(cols)
        df["grp"] = name
        parts.append(df)
    model = "\n".join(
        f"F{f + 1} =~ " + " + ".join(f"y{f + 1}_{j + 1}" for j in range(PER_FACTOR)) for f in range(N_FACTORS)
    )
    return pd.concat(parts, ignore_index=True), model


R_SCRIPT = r"""
suppressPackageStartupMessages(library(lavaan))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); model <- paste(readLines(args[2], warn = FALSE), collapse = "\n")
steps <- list(configural = "", metric = "loadings",
              scalar = c("loadings", "intercepts"), strict = c("loadings", "intercepts", "residuals"))
chisq <- list(); times <- list()
total <- system.time(for (s in names(steps)) {
  times[[s]] <- system.time(fit <- cfa(model, d, group = "grp", group.equal = steps[[s]]))[["elapsed"]]
  chisq[[s]] <- fitMeasures(fit, "chisq")[[1]]
})[["elapsed"]]
cat(jsonlite::toJSON(list(total = total, times = times, chisq = chisq,
                          version = as.character(packageVersion("lavaan"))), auto_unbox = TRUE, digits = NA))
"""


def run_lavaan(data: pd.DataFrame, model: str) -> dict | str:
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    with tempfile.TemporaryDirectory() as tmp:
        csv, lav, script = Path(tmp) / "d.csv", Path(tmp) / "m.lav", Path(tmp) / "bench.R"
        data.to_csv(csv, index=False)
        lav.write_text(model)
        script.write_text(R_SCRIPT)
        t0 = time.perf_counter()
        out = subprocess.run(["Rscript", str(script), str(csv), str(lav)], capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if out.returncode != 0:
        return "failed: " + out.stderr.strip()[-500:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall"] = wall
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()

    from analysis.psychometrics.invariance import invariance_ladder

    data, model = make_data(args.n)
    print(f"ladder: {N_FACTORS * PER_FACTOR} items, {N_FACTORS} factors, {len(GROUPS)} groups, N = {len(data)}")
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = invariance_ladder(model, data, group="grp")
        times.append(time.perf_counter() - t0)
    py = min(times)
    steps = res.steps.set_index("name")
    print(f"python  : {py:8.2f} s  (best of {args.reps})")
    for s, row in steps.iterrows():
        print(f"  {s:<10} chisq {row['chisq']:12.4f}  df {row['df']:5.0f}  cfi {row['cfi']:.4f}  converged {row['converged']}")
    lav = run_lavaan(data, model)
    if isinstance(lav, str):
        print(f"lavaan  : not run ({lav})")
        return
    print(f"lavaan  : {lav['total']:8.2f} s  fitting ({lav['wall']:.2f} s with R start-up and CSV read), lavaan {lav['version']}")
    diff = max(abs(steps.loc[s, "chisq"] - lav["chisq"][s]) for s in steps.index)
    print(f"ratio   : python / lavaan = {py / lav['total']:.2f} (fitting time); {py / lav['wall']:.2f} (lavaan wall time)")
    print(f"largest |chisq - lavaan chisq| over the steps: {diff:.2e}")


if __name__ == "__main__":
    main()
