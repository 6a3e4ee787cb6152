"""`resilience fit --bootstrap`: the summary reads as lavaan's summary(fit, ci = TRUE) with
se = "bootstrap", and the replications' warnings come to one line, not one per replication."""

import json
import re
import warnings
from pathlib import Path

from typer.testing import CliRunner

from analysis.cli.main import app

HS = Path(__file__).parents[1] / "fixtures" / "data" / "HolzingerSwineford1939.csv"
runner = CliRunner()


def test_bootstrap_summary_has_lavaans_ci_columns_and_says_bootstrap(monkeypatch):
    import analysis.sem.bootstrap as bootstrap

    real = bootstrap.bootstrap_fit

    def noisy(*args, **kwargs):  # as a replication-level warning per replication would be
        for k in range(40):
            warnings.warn(f"replication {k}: the optimizer stopped early", UserWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(bootstrap, "bootstrap_fit", noisy)
    args = ["fit", str(HS), "-m", "hs", "--bootstrap", "40", "--seed", "3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = res.output
    assert re.search(r"Standard errors\s+Bootstrap", out) and re.search(r"requested bootstrap draws\s+40", out)
    assert sum("the optimizer stopped early" in line for line in out.splitlines()) == 1  # one line for all 40
    assert "40 warning(s) in the 40 bootstrap replications" in out
    head = next(line for line in out.splitlines() if "Std.Err" in line)
    assert head.split()[:6] == ["Estimate", "Std.Err", "z-value", "P(>|z|)", "ci.lower", "ci.upper"]
    doc = json.loads(runner.invoke(app, args + ["--json"]).stdout)
    assert doc["model"]["options"]["se"] == "bootstrap" and doc["model"]["options"]["bootstrap"] == 40
    est = {(e["lhs"], e["op"], e["rhs"]): e for e in doc["estimates"]}
    # the printed interval is the JSON's, row by row
    row = next(line for line in out.splitlines() if line.strip().startswith("x2 "))
    cells = row.split()
    e = est[("visual", "=~", "x2")]
    assert cells[5] == f"{e['ci.lower']:.3f}" and cells[6] == f"{e['ci.upper']:.3f}"
    fixed = next(line for line in out.splitlines() if line.strip().startswith("x1 ")).split()
    assert fixed[1:4] == ["1.000", "1.000", "1.000"]  # a fixed loading's interval is itself, as lavaan prints
