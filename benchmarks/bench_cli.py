"""Benchmark: whole commands at the prompt, `resilience` against `Rscript` + lavaan.

What a user waits for is the whole command: interpreter start, imports, reading
the data, the fit and the printing. Each case runs both tools as subprocesses,
several times, and prints the median wall time and the ratio (R / suite; above 1
means the suite is faster):

- `resilience --help` (goal < 0.3 s);
- `resilience fit HS --json` against `Rscript -e 'library(lavaan); cfa(...)'`;
- `resilience fit HS --bootstrap 1000 --json` against lavaan's
  `se = "bootstrap", bootstrap = 1000` (goal: 10x faster);
- `resilience fit` of a 40-item, 12-factor Likert model (ML, N = 2,000)
  against the same in Rscript.

    .venv/bin/python benchmarks/bench_cli.py [--repeats 5] [--no-r]

Measured 2026-12-06 on the shared 2-core machine (lavaan 0.6-14, median of 5; two runs at
load 3.6 and 1.8 gave the same figures): --help 0.18-0.21 s; fit HS 0.60 s vs Rscript 0.46 s
(0.8x); fit HS --bootstrap 1000 1.15-1.23 s vs 11.8-12.7 s (10.2-10.3x; its two workers need
both cores: 7.8x in a run at load 3.1); 40 items / 12 factors N = 2,000 0.74 s vs
0.82 s (1.1x). The same commands before (commit 0ac98f1, timed alternately with these at load
1.7-3.4): fit HS 0.81 s, bootstrap 2.60 s, 40 items 1.32 s.
What is left of fit HS is start-up: Python with numpy and pandas ~0.35 s (pandas 3 imports
pyarrow, ~0.08 s, whenever it is installed), typer's parameter parsing ~0.08 s (typer 0.29
builds pydantic validators), the fit itself ~0.03 s; so "faster than Rscript" is not reached
for HS while pandas is the ParameterTable's type. A plain ML fit imports no scipy
(analysis.sem.distributions computes its p-values and intervals). CPU time is printed
beside the wall time: a busy machine disturbs it less.

The load average is printed with the figures: on a shared 2-core machine the
ratios move with it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

HS = ROOT / "tests" / "fixtures" / "data" / "HolzingerSwineford1939.csv"
HS_MODEL = ROOT / "analysis" / "models" / "hs.lav"
RESILIENCE = [sys.executable, "-m", "analysis.cli.main"]


CPU: dict[str, float] = {}   # command label -> median CPU seconds (user + system, the command and its workers)


def _time(cmd: list[str], repeats: int, env=None) -> float:
    """Median wall time of a command (one untimed warm-up run fills the OS file cache); its median
    CPU time goes to CPU, which a busy machine disturbs less than the wall clock."""
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    times, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    CPU[" ".join(cmd)] = statistics.median(cpu)
    return statistics.median(times)


def _cpu(cmd: list[str]) -> float:
    return CPU.get(" ".join(cmd), float("nan"))


def _r(code: str) -> list[str]:
    return ["Rscript", "--vanilla", "-e", code]


def _row(name: str, ours: float, theirs: float | None, goal: str, cpu: tuple[float, float] | None = None) -> None:
    ratio = f"{theirs / ours:6.1f}x" if theirs else "   n/a"
    peer = f"{theirs:8.2f} s" if theirs else "       -"
    used = f"   (CPU {cpu[0]:.2f} s vs {cpu[1]:.2f} s)" if cpu else ""
    print(f"{name:<44} {ours:8.2f} s {peer} {ratio}   {goal}{used}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-r", action="store_true", help="skip the Rscript + lavaan runs")
    args = ap.parse_args()
    have_r = not args.no_r and shutil.which("Rscript") is not None
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    # An installed package runs from its bytecode cache (the untimed warm-up run writes it); a
    # shell with PYTHONDONTWRITEBYTECODE would time Python's compiler on every run (~0.1 s).
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; median of {args.repeats}")
    print(f"{'command':<44} {'suite':>10} {'lavaan':>10} {'ratio':>7}   goal")

    _row("resilience --help", _time([*RESILIENCE, "--help"], args.repeats, env), None, "< 0.3 s")

    hs_r = (f"library(lavaan); d <- read.csv('{HS}'); m <- paste(readLines('{HS_MODEL}'), collapse='\\n');"
            " f <- cfa(m, data = d); invisible(jsonlite::toJSON(parameterEstimates(f)));"
            " invisible(fitMeasures(f))")
    cmd = [*RESILIENCE, "fit", str(HS), "--model", str(HS_MODEL), "--json"]
    ours = _time(cmd, args.repeats, env)
    theirs = _time(_r(hs_r), args.repeats, env) if have_r else None
    _row("fit HS --json", ours, theirs, "faster than R", (_cpu(cmd), _cpu(_r(hs_r))) if have_r else None)

    boot_r = hs_r.replace("cfa(m, data = d)", "cfa(m, data = d, se = 'bootstrap', bootstrap = 1000)")
    cmd = [*RESILIENCE, "fit", str(HS), "--model", str(HS_MODEL), "--bootstrap", "1000", "--seed", "1", "--json"]
    ours = _time(cmd, max(1, args.repeats // 2), env)
    theirs = _time(_r(f"set.seed(1); {boot_r}"), max(1, args.repeats // 2), env) if have_r else None
    _row("fit HS --bootstrap 1000 --json", ours, theirs, ">= 10x",
         (_cpu(cmd), _cpu(_r(f"set.seed(1); {boot_r}"))) if have_r else None)

    from bench_robust import model_syntax, simulate  # the 40-item, 12-factor model and its data

    with tempfile.TemporaryDirectory() as tmp:
        data, model = Path(tmp) / "likert40.csv", Path(tmp) / "likert40.lav"
        simulate(2000, 1, missing_rate=0.0).to_csv(data, index=False)
        model.write_text(model_syntax() + "\n")
        big_r = (f"library(lavaan); d <- read.csv('{data}'); m <- paste(readLines('{model}'), collapse='\\n');"
                 " f <- sem(m, data = d); invisible(jsonlite::toJSON(parameterEstimates(f)));"
                 " invisible(fitMeasures(f))")
        cmd = [*RESILIENCE, "fit", str(data), "--model", str(model), "--json"]
        ours = _time(cmd, args.repeats, env)
        theirs = _time(_r(big_r), args.repeats, env) if have_r else None
        _row("fit 40 items / 12 factors, N = 2,000 --json", ours, theirs, "faster than R",
             (_cpu(cmd), _cpu(_r(big_r))) if have_r else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
