"""``results/run-log.json``: what varies between runs (times, which steps came from the cache, paths,
the command line, tool versions); results.json holds none of it.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

from analysis.study.records import StudyRun
from analysis.study.report import DEFAULT_TEMPLATE
from analysis.study.serialize import dumps
from instruments.atomic import write_bytes
from instruments.ingest import file_sha256


STAT_PACKAGES = ("numpy", "scipy", "pandas", "statsmodels", "pingouin", "semopy", "factor_analyzer", "pyarrow",
                 "matplotlib", "jupytext", "papermill", "nbconvert")


def _environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    pkgs = {}
    for name in ("community-resilience-suite",) + STAT_PACKAGES:
        try:
            pkgs[name] = version(name)
        except PackageNotFoundError:
            pkgs[name] = None
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(terse=True), "packages": pkgs}


def write_run_log(sr: StudyRun, command: list[str] | None) -> None:
    from analysis.study.render import find_quarto, pandoc_version, quarto_version

    quarto = find_quarto()
    template = sr.study.resolve(sr.study.report.template) if sr.study.report.template else DEFAULT_TEMPLATE
    log = {
        "report_template": {"file": template.name,
                            "sha256": file_sha256(template) if template.is_file() else None},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(sr.seconds, 3),
        "study": str(sr.study.path),
        "results_dir": str(sr.results_dir),
        "command": command if command is not None else [Path(sys.argv[0]).name] + sys.argv[1:],
        "environment": {**_environment(), "quarto": quarto_version(quarto) if quarto else None,
                        "pandoc": pandoc_version()},
        "report": sr.report,
        "steps": [s.log_dict() for s in sr.steps],
    }
    write_bytes(sr.run_log, dumps(log).encode())
