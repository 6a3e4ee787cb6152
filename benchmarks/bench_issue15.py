"""Benchmark: standardized solution with SEs and modification indices after FIML and WLSMV.

The bfi five-factor CFA (25 items, N = 2,800 with missing answers) fitted by FIML and by
WLSMV, with this suite and, when ``Rscript`` with lavaan is on PATH, with lavaan in the same
run: the time of the standardized solution with delta-method SEs and of ``modindices()``,
their ratios, and the largest differences from lavaan.

    .venv/bin/python benchmarks/bench_issue15.py [--no-r]

Measured 2026-12-06 on the loaded 2-core build machine (lavaan 0.6-14): FIML std SEs 0.34 s
vs lavaan 1.05 s (3.1x), modindices 2.7 s vs 6.0 s (2.2x); WLSMV std SEs 2.5 s vs 3.4 s
(1.4x), modindices 1.4 s vs 1.2 s (0.8x); largest differences: std SE 4e-7, MI 2e-4 relative.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.sem.fit import fit_sem  # noqa: E402
from analysis.sem.standardize import standardized_se  # noqa: E402

DATA = ROOT / "tests" / "fixtures" / "data" / "bfi.csv"
MODEL = "\n".join(f"{f} =~ " + " + ".join(f"{f}{i}" for i in range(1, 6)) for f in "ACENO")
ITEMS = [f"{f}{i}" for f in "ACENO" for i in range(1, 6)]

R_SCRIPT = r"""
suppressMessages(library(lavaan)); library(jsonlite)
args <- commandArgs(TRUE); d <- read.csv(args[1]); model <- args[2]; items <- strsplit(args[3], ",")[[1]]
out <- list()
for (kind in c("fiml", "wlsmv")) {
  f <- if (kind == "fiml") cfa(model, d, missing = "ml") else cfa(model, d, ordered = items)
  t0 <- proc.time()[["elapsed"]]; s <- standardizedSolution(f); t1 <- proc.time()[["elapsed"]]
  m <- modindices(f); t2 <- proc.time()[["elapsed"]]
  out[[kind]] <- list(std_time = t1 - t0, mi_time = t2 - t1, std_se = s$se,
                      std_key = paste(s$lhs, s$op, s$rhs), mi = m$mi, mi_key = paste(m$lhs, m$op, m$rhs))
}
write_json(out, args[4], digits = NA, auto_unbox = TRUE)
"""


def ours(data: pd.DataFrame, kind: str) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = (fit_sem(MODEL, data, missing="fiml") if kind == "fiml"
               else fit_sem(MODEL, data.dropna(subset=ITEMS), ordered=ITEMS))
    prepare = getattr(fit.estimator_object, "set_residual_variances", None)
    t0 = time.perf_counter()
    se = standardized_se(fit.model, fit.x, fit.vcov, prepare=prepare)["std.all"]
    t1 = time.perf_counter()
    mi = fit.modindices()
    t2 = time.perf_counter()
    p = fit.params
    return {"std_time": t1 - t0, "mi_time": t2 - t1,
            "std": dict(zip(p["lhs"] + " " + p["op"] + " " + p["rhs"], se)),
            "mi": dict(zip(mi["lhs"] + " " + mi["op"] + " " + mi["rhs"], mi["mi"]))}


def lavaan(data: pd.DataFrame) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv, script, out = Path(tmp) / "d.csv", Path(tmp) / "b.R", Path(tmp) / "o.json"
        data.to_csv(csv, index=False)
        script.write_text(R_SCRIPT)
        subprocess.run(["Rscript", str(script), str(csv), MODEL, ",".join(ITEMS), str(out)], check=True,
                       capture_output=True)
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-r", action="store_true")
    args = ap.parse_args()
    data = pd.read_csv(DATA)[ITEMS]
    lav = None if args.no_r else lavaan(data)
    for kind in ("fiml", "wlsmv"):
        mine = ours(data, kind)
        line = f"{kind:6s} std SEs {mine['std_time']:.2f} s, modindices {mine['mi_time']:.2f} s"
        if lav is not None:
            r = lav[kind]
            d_std = max(abs(mine["std"][k] - v) for k, v in zip(r["std_key"], r["std_se"])
                        if k in mine["std"] and v is not None and np.isfinite(v))
            d_mi = max(abs(mine["mi"][k] - v) / max(abs(v), 1.0) for k, v in zip(r["mi_key"], r["mi"])
                       if k in mine["mi"] and v is not None)
            line += (f" | lavaan {r['std_time']:.2f} s, {r['mi_time']:.2f} s "
                     f"(ratios {r['std_time'] / mine['std_time']:.1f}x, {r['mi_time'] / mine['mi_time']:.1f}x)"
                     f" | max |diff| std SE {d_std:.1e}, MI (relative) {d_mi:.1e}")
        print(line)


if __name__ == "__main__":
    main()
