"""Benchmark: complex survey designs (issue 16), against R's survey and lavaan in the same run.

Run by hand (never in CI):

    .venv/bin/python benchmarks/bench_design.py                  # both parts
    .venv/bin/python benchmarks/bench_design.py --only describe  # describe | sem
    .venv/bin/python benchmarks/bench_design.py --n 1000000 --psu 5000 --items 45 --sem-n 2000

1. Design-based descriptives (Taylor-linearised means, SEs and deff of 45 items)
   for 1,000,000 respondents in 5,000 PSUs within 50 strata, with weights
   (goal: under 10 s). survey's ``svymean`` on the same data is timed too when
   ``Rscript`` is present (``--r-describe``; it needs several GB of memory).
2. A weighted, clustered MLR fit of the 40-item Figure 1 model (figure1.lav,
   simulated with area effects and unequal weights), ours vs lavaan
   ``sem(..., sampling.weights = "w", cluster = "psu")`` (goal: >= 3x faster).

Both sides print a check value (a mean's SE; the scaled chi-square) so that
speed never hides a wrong answer.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def design_frame(n: int, n_psu: int, n_strata: int, items: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    psu = np.sort(rng.integers(0, n_psu, size=n))
    stratum = psu * n_strata // n_psu
    area = rng.normal(scale=0.4, size=n_psu)[psu]
    cols = {f"q{j + 1}": np.round(3 + area + rng.normal(size=n), 2) for j in range(items)}
    data = pd.DataFrame(cols)
    data.iloc[rng.random((n, items)) < 0.03] = np.nan
    data["psu"], data["stratum"] = psu, stratum
    data["w"] = np.exp(rng.normal(scale=0.5, size=n)) * (1 + stratum % 3)
    return data


def bench_describe(args) -> None:
    from analysis.design import Design
    from analysis.design.describe import describe

    print(f"\n[1] design-based means of {args.items} items: N = {args.n:,}, {args.psu:,} PSUs, 50 strata")
    data = design_frame(args.n, args.psu, 50, args.items)
    items = [f"q{j + 1}" for j in range(args.items)]
    t0 = time.perf_counter()
    res = describe(data, Design(weights="w", cluster="psu", strata="stratum"), variables=items)
    el = time.perf_counter() - t0
    se = res.means["se"].iloc[0]
    print(f"  ours:   {el:7.2f} s   (SE of q1's mean {se:.6f}, deff {res.means['deff'].iloc[0]:.3f})   "
          f"goal < 10 s: {'met' if el < 10 else 'NOT met'}")
    if args.r_describe and shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "d.csv"
            data.to_csv(csv, index=False)
            script = f"""suppressMessages(library(survey)); d <- read.csv("{csv}")
ds <- svydesign(ids = ~psu, strata = ~stratum, weights = ~w, data = d)
t <- system.time(for (v in paste0("q", 1:{args.items})) m <- svymean(as.formula(paste0("~", v)), ds, na.rm = TRUE, deff = "replace"))
m <- svymean(~q1, ds, na.rm = TRUE)
cat(sprintf('{{"elapsed": %.3f, "se": %.6f}}', t[["elapsed"]], SE(m)))"""
            out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True)
            if out.returncode == 0:
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"  survey: {r['elapsed']:7.2f} s   (SE of q1's mean {r['se']:.6f})   "
                      f"ratio {r['elapsed'] / el:.1f}x")
            else:
                print("  survey failed:", out.stderr[-300:])


def figure1_design_sample(n: int, seed: int = 7) -> tuple[str, pd.DataFrame]:
    """Simulated CRS answers for figure1 (Likert codes as continuous), with area (PSU) effects on
    every item and unequal weights; the model is the shipped analysis/models/figure1.lav."""
    from analysis.simulation.simulate import analysis_frame, simulate_responses
    from instruments.load import library_path, load_instrument

    inst = load_instrument(library_path("crs"))
    data = analysis_frame(simulate_responses("figure1", n, seed=seed, instrument=inst, missing=0.0), inst)
    model = (ROOT / "analysis" / "models" / "figure1.lav").read_text()
    from analysis.sem.partable import build_partable, observed_names
    items = [v for v in observed_names(build_partable(model)) if v != "REPR"]
    data = data[items + ["REPR"]].astype(float)
    rng = np.random.default_rng(seed)
    n_psu = max(n // 20, 10)
    psu = rng.integers(0, n_psu, size=n)
    data[items] = data[items] + rng.normal(scale=0.3, size=n_psu)[psu][:, None]
    data["psu"] = psu
    data["w"] = np.round(np.exp(rng.normal(scale=0.5, size=n)), 4)
    return model, data


def bench_sem(args) -> None:
    from analysis.sem.fit import fit_sem

    model, data = figure1_design_sample(args.sem_n)
    print(f"\n[2] figure1 (40 items), N = {args.sem_n}, {data['psu'].nunique()} PSUs: weighted, clustered MLR")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_sem(model, data, sampling_weights="w", cluster="psu", warn=False)       # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fit = fit_sem(model, data, sampling_weights="w", cluster="psu", warn=False)
            times.append(time.perf_counter() - t0)
    ours = float(np.median(times))
    print(f"  ours:   {ours:7.3f} s   chisq.scaled {fit.fit_indices['chisq.scaled']:.4f}")
    if shutil.which("Rscript") is None:
        print("  lavaan: not run (no Rscript)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv, lav = Path(tmp) / "d.csv", Path(tmp) / "m.lav"
        data.to_csv(csv, index=False)
        lav.write_text(model)
        script = f"""suppressMessages(library(lavaan)); d <- read.csv("{csv}"); m <- paste(readLines("{lav}"), collapse = "\\n")
f <- sem(m, data = d, sampling.weights = "w", cluster = "psu")
t <- c(); for (i in 1:{args.repeats}) t <- c(t, system.time(f <- sem(m, data = d, sampling.weights = "w", cluster = "psu"))[["elapsed"]])
cat(sprintf('{{"elapsed": %.4f, "chisq": %.4f}}', median(t), fitMeasures(f, "chisq.scaled")))"""
        out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True)
    if out.returncode != 0:
        print("  lavaan failed:", out.stderr[-500:])
        return
    r = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = r["elapsed"] / ours
    print(f"  lavaan: {r['elapsed']:7.3f} s   chisq.scaled {r['chisq']:.4f}")
    print(f"  ratio:  {ratio:.1f}x faster   goal >= 3x: {'met' if ratio >= 3 else 'NOT met'}   "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["describe", "sem"])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--psu", type=int, default=5000)
    ap.add_argument("--items", type=int, default=45)
    ap.add_argument("--sem-n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--r-describe", action="store_true", help="also time survey's svymean (slow, memory-hungry)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(args.threads)
        except ImportError:
            pass
    if args.only in (None, "describe"):
        bench_describe(args)
    if args.only in (None, "sem"):
        bench_sem(args)


if __name__ == "__main__":
    main()
