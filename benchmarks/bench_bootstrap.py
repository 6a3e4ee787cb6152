"""Benchmark: bootstrap and Monte Carlo power against lavaan, in one run.

Run by hand (never in CI):

    .venv/bin/python benchmarks/bench_bootstrap.py                 # everything
    .venv/bin/python benchmarks/bench_bootstrap.py --only hs        # hs | sem40 | power
    .venv/bin/python benchmarks/bench_bootstrap.py --workers 2 --sem-reps 200

1. 1,000 bootstrap refits of the Holzinger-Swineford CFA: ours on a local pool
   vs lavaan ``cfa(..., se = "bootstrap", bootstrap = 1000)`` (goal >= 10x).
2. A 40-item, 12-factor SEM at N = 2,000 (simulated, continuous): bootstrap
   refits, ours vs lavaan on the same data (goal >= 5x).
3. Monte Carlo power: 500 replications of ``figure1`` at N = 500 with the CRS
   instrument (Likert codes) on all cores (goal < 2 minutes).

lavaan runs only when ``Rscript`` with lavaan is on PATH; its timing includes
the full-sample fit, as ours does. Both sides report the bootstrap SE of one
parameter so that speed never hides a wrong answer.

Measured 2026-11-25 on the 2-core build machine while other test suites ran
(load average 8-11, so wall times are inflated for both sides; CPU seconds
are the steadier comparison), lavaan 0.6.14:

    HS CFA, 1,000 refits      ours 3.2 s wall / 1.0 s CPU   lavaan 33.6 s / 10.2 s   10.7x wall, 9.9x CPU
    40-item SEM, N = 2,000,   ours 7.7 s wall / 2.2 s CPU   lavaan 80.9 s / 24.3 s   10.5x wall, 11.1x CPU
      1,000 refits            (bootstrap SE of F6 ~ F5: 0.0299 vs lavaan 0.0302)
    power, figure1 + crs,     30.0 s (goal < 120 s)
      N = 500, 500 reps
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

HS_MODEL = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"


def sem40_population() -> str:
    """12 factors (4 x 4 items + 8 x 3 items = 40), a chain of structural paths."""
    lines, k = [], 1
    for f in range(12):
        m = 4 if f < 4 else 3
        lam = np.linspace(0.8, 0.65, m)
        lines.append(f"F{f + 1} =~ " + " + ".join(f"{l:.2f}*y{k + j}" for j, l in enumerate(lam)))
        k += m
    for f in range(2, 12):
        lines.append(f"F{f + 1} ~ 0.3*F{f} + 0.2*F{f - 1}")
    lines.append("F1 ~~ 0.3*F2")
    return "\n".join(lines)


def r_bootstrap(model: str, csv: Path, reps: int, param: tuple[str, str, str]) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    script = f"""
suppressPackageStartupMessages(library(lavaan))
d <- read.csv("{csv}")
m <- '{model}'
p0 <- proc.time()
fit <- sem(m, d, se = "bootstrap", bootstrap = {reps}L, iseed = 1L)
p1 <- proc.time() - p0
el <- p1[["elapsed"]]
cpu <- p1[["user.self"]] + p1[["sys.self"]]
pe <- parameterEstimates(fit)
se <- pe$se[pe$lhs == "{param[0]}" & pe$op == "{param[1]}" & pe$rhs == "{param[2]}"]
cat(sprintf('{{"elapsed": %.3f, "cpu": %.3f, "se": %.6f, "version": "%s"}}', el, cpu, se, packageVersion("lavaan")))
"""
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, timeout=7200)
    if out.returncode != 0:
        print("  lavaan failed:", out.stderr[-500:])
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours_bootstrap(model: str, data: pd.DataFrame, reps: int, workers: int, param) -> dict:
    from analysis.sem.bootstrap import bootstrap_fit
    from analysis.sem.fit import fit_sem

    c0 = _cpu()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_sem(model, data, warn=False)
        boot = bootstrap_fit(fit, n_boot=reps, seed=1, workers=workers, progress=False)
    el = time.perf_counter() - t0
    cpu = _cpu() - c0
    p = boot.params
    row = p[(p["lhs"] == param[0]) & (p["op"] == param[1]) & (p["rhs"] == param[2])].iloc[0]
    return {"elapsed": el, "cpu": cpu, "se": float(row["se"]), "failed": boot.n_failed}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the pool's workers)."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def report(name: str, ours: dict, lav: dict | None, goal: float) -> None:
    print(f"  ours:   {ours['elapsed']:8.2f} s wall, {ours['cpu']:8.2f} s CPU   bootstrap SE {ours['se']:.4f}"
          f"   failed {ours.get('failed', 0)}")
    if lav is None:
        print("  lavaan: not run (no Rscript with lavaan)")
        return
    ratio = lav["elapsed"] / ours["elapsed"]
    print(f"  lavaan: {lav['elapsed']:8.2f} s wall, {lav['cpu']:8.2f} s CPU   bootstrap SE {lav['se']:.4f}"
          f"   (lavaan {lav['version']})")
    print(f"  ratio:  {ratio:8.1f}x faster (wall), {lav['cpu'] / ours['cpu']:.1f}x less CPU   "
          f"goal >= {goal:.0f}x: {'met' if ratio >= goal else 'NOT met'}")
    print(f"  (load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def bench_hs(workers: int, reps: int) -> None:
    print(f"\n[1] Holzinger-Swineford CFA: {reps} bootstrap refits, {workers} workers")
    csv = ROOT / "tests" / "fixtures" / "data" / "HolzingerSwineford1939.csv"
    data = pd.read_csv(csv)
    param = ("visual", "=~", "x2")
    ours = ours_bootstrap(HS_MODEL, data, reps, workers, param)
    lav = r_bootstrap(HS_MODEL, csv, reps, param)
    report("hs", ours, lav, 10)


def bench_sem40(workers: int, reps: int, n: int) -> None:
    from analysis.simulation.simulate import PopulationModel, simulate_responses

    print(f"\n[2] 40-item 12-factor SEM, N = {n}: {reps} bootstrap refits, {workers} workers")
    pop = PopulationModel.from_syntax(sem40_population())
    data = simulate_responses(pop, n, seed=11)
    model = pop.analysis_syntax()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "sem40.csv"
        data.to_csv(csv, index=False)
        param = ("F6", "~", "F5")
        ours = ours_bootstrap(model, data, reps, workers, param)
        lav = r_bootstrap(model, csv, reps, param)
    report("sem40", ours, lav, 5)


def bench_power(workers: int, reps: int, n: int) -> None:
    from instruments import load_instrument

    from analysis.simulation.power import power_analysis

    print(f"\n[3] Monte Carlo power: figure1 with crs (Likert), N = {n}, {reps} replications, {workers} workers")
    inst = load_instrument("crs")
    t0 = time.perf_counter()
    res = power_analysis("figure1", n=[n], reps=reps, instrument=inst, seed=1, workers=workers, progress=False)
    el = time.perf_counter() - t0
    ov = res.overview.iloc[0]
    print(f"  ours:   {el:8.2f} s   convergence {ov['convergence']:.1%}, model test rejected {ov['rejection']:.1%}")
    print(f"  goal < 120 s: {'met' if el < 120 else 'NOT met'}")
    tab = res.table.set_index("name")
    for eff in ("t_cult", "v_negot", "ind_cult_resil", "total_cult_resil"):
        print(f"    power {eff:<18} {tab.loc[eff, 'power']:.2f}")


def main() -> None:
    from analysis.execution import default_workers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["hs", "sem40", "power"])
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--hs-reps", type=int, default=1000)
    ap.add_argument("--sem-reps", type=int, default=1000)
    ap.add_argument("--sem-n", type=int, default=2000)
    ap.add_argument("--power-reps", type=int, default=500)
    ap.add_argument("--power-n", type=int, default=500)
    args = ap.parse_args()
    print(f"bench_bootstrap: {args.workers} workers, {default_workers()} cores available")
    if args.only in (None, "hs"):
        bench_hs(args.workers, args.hs_reps)
    if args.only in (None, "sem40"):
        bench_sem40(args.workers, args.sem_reps, args.sem_n)
    if args.only in (None, "power"):
        bench_power(args.workers, args.power_reps, args.power_n)


if __name__ == "__main__":
    main()
