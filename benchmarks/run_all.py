"""Run every benchmark in turn (by hand: `make bench`); each prints its own figures and ratios.

Extra arguments go to every script, e.g. `python benchmarks/run_all.py` or
`make bench` for the defaults. One script failing does not stop the others;
the exit code says whether all of them ran.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ["bench_ml.py", "bench_robust.py", "bench_invariance.py", "bench_bootstrap.py", "bench_import.py",
           "bench_store.py", "bench_issue15.py", "bench_design.py", "bench_twolevel.py", "bench_cli.py"]


def main() -> int:
    failed = []
    for name in SCRIPTS:
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / name)])
        print(f"--- {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
