"""Time ML fits of two classic models: this suite vs semopy (defaults) vs lavaan.

    .venv/bin/python benchmarks/bench_ml.py [--repeats 30]

Fits the Holzinger-Swineford CFA, Bollen's Political Democracy SEM and the Figure 1
SEM (simulated CRS answers, N = 600: 42 variables, 107 parameters) with

* this suite: ``analysis.sem.fit_sem`` (estimates, SEs, fit indices,
  standardized solution and defined effects: everything ``resilience fit`` reports);
* semopy ``Model(desc).fit(data)`` with its defaults (point estimates only), plus
  ``inspect()`` for SEs, which is what a user needs for a results table;
* lavaan ``cfa()``/``sem()`` in the same run via ``Rscript -e`` when Rscript is on
  PATH (timed inside R, so R's start-up is excluded).

Each fit is run once to warm up, then ``repeats`` times; the median time per fit
is reported with ratios (suite / other: < 1 means the suite is faster). BLAS runs
on one thread for all engines (set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS to change).
Run by hand, never in CI.
"""

from __future__ import annotations

import os

# One BLAS thread for every engine (as R's reference BLAS): fair, and stable on a busy machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import re
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "fixtures" / "data"
MODELS = ROOT / "analysis" / "models"

CASES = [
    # name, lavaan function, model file, data file
    ("HS CFA", "cfa", "hs.lav", "HolzingerSwineford1939.csv"),
    ("PolDem SEM", "sem", "poldem.lav", "PoliticalDemocracy.csv"),
    ("Figure1 SEM", "sem", "figure1.lav", None),  # 42 variables, 107 parameters, simulated
]


def _figure1_data(n: int = 600, seed: int = 1) -> Path:
    """Simulated CRS answers (Likert codes treated as continuous) written to a temp CSV."""
    import tempfile

    from analysis.simulation.simulate import analysis_frame, simulate_responses
    from instruments.load import library_path, load_instrument

    inst = load_instrument(library_path("crs"))
    df = analysis_frame(simulate_responses("figure1", n, seed=seed, instrument=inst,
                                           missing_as="blank"), inst)
    path = Path(tempfile.mkdtemp()) / f"crs_figure1_n{n}.csv"
    df.to_csv(path, index=False)
    return path


def _median_time(func, repeats: int) -> tuple[float, object]:
    out = func()  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _semopy_syntax(text: str) -> str:
    """semopy has no ':=' and no labels: drop both (the fitted model is the same)."""
    lines = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or ":=" in line:
            continue
        lines.append(re.sub(r"\b[A-Za-z_][A-Za-z0-9_]*\*", "", line))
    return "\n".join(lines)


def bench_suite(model: str, data: pd.DataFrame, repeats: int) -> tuple[float, float]:
    from analysis.sem.fit import fit_sem

    t, fit = _median_time(lambda: fit_sem(model, data), repeats)
    return t, float(fit.fit_indices["chisq"])


def bench_semopy(model: str, data: pd.DataFrame, repeats: int) -> tuple[float, float]:
    import semopy

    desc = _semopy_syntax(model)

    def run():
        m = semopy.Model(desc)
        m.fit(data)
        m.inspect()
        return m

    t, m = _median_time(run, repeats)
    return t, float(semopy.calc_stats(m).loc["Value", "chi2"])


R_SCRIPT = r"""
suppressPackageStartupMessages(library(lavaan))
args <- commandArgs(trailingOnly = TRUE)
fun <- get(args[1], envir = asNamespace("lavaan"))
model <- paste(readLines(args[2]), collapse = "\n")
data <- read.csv(args[3])
reps <- as.integer(args[4])
fit <- fun(model, data = data)            # warm-up
times <- numeric(reps)
for (i in seq_len(reps)) {
  t0 <- proc.time()[["elapsed"]]
  fit <- fun(model, data = data)
  times[i] <- proc.time()[["elapsed"]] - t0
}
cat(sprintf("RESULT %.6f %.6f %s\n", median(times), fitMeasures(fit, "chisq"),
            as.character(packageVersion("lavaan"))))
"""


def bench_lavaan(fun: str, model_file: Path, data_file: Path,
                 repeats: int) -> tuple[float, float, str] | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    proc = subprocess.run([rscript, "-e", R_SCRIPT, fun, str(model_file), str(data_file),
                           str(repeats)], capture_output=True, text=True, timeout=600)
    match = re.search(r"RESULT (\S+) (\S+) (\S+)", proc.stdout)
    if proc.returncode != 0 or match is None:
        print(f"  lavaan failed: {proc.stderr.strip()[:300]}", file=sys.stderr)
        return None
    return float(match.group(1)), float(match.group(2)), match.group(3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    import semopy

    print(f"median time per fit over {args.repeats} repeats (after one warm-up)\n")
    header = (f"{'model':<12}{'suite ms':>10}{'semopy ms':>11}{'lavaan ms':>11}"
              f"{'suite/semopy':>14}{'suite/lavaan':>14}   chisq (suite / semopy / lavaan)")
    print(header)
    print("-" * len(header))
    lavaan_version = None
    for name, fun, model_name, data_name in CASES:
        model_file = MODELS / model_name
        data_file = DATA / data_name if data_name else _figure1_data()
        model = model_file.read_text()
        data = pd.read_csv(data_file)
        t_suite, x_suite = bench_suite(model, data, args.repeats)
        t_semopy, x_semopy = bench_semopy(model, data, args.repeats)
        lav = bench_lavaan(fun, model_file, data_file, args.repeats)
        if lav is not None:
            t_lav, x_lav, lavaan_version = lav
            lav_ms, ratio_lav, x_lav_s = f"{t_lav * 1e3:11.1f}", f"{t_suite / t_lav:14.2f}", \
                f"{x_lav:.3f}"
        else:
            lav_ms, ratio_lav, x_lav_s = f"{'n/a':>11}", f"{'n/a':>14}", "n/a"
        print(f"{name:<12}{t_suite * 1e3:10.1f}{t_semopy * 1e3:11.1f}{lav_ms}"
              f"{t_suite / t_semopy:14.2f}{ratio_lav}   "
              f"{x_suite:.3f} / {x_semopy:.3f} / {x_lav_s}")
    print(f"\nsemopy {semopy.__version__}; lavaan {lavaan_version or 'not run (no Rscript)'}")
    print("suite = fit_sem (estimates, SEs, fit indices, standardized, defined effects);"
          " semopy = fit + inspect (estimates, SEs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
