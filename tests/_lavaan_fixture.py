"""Build results objects from lavaan fixture JSON (tests of the outer layer need no engine)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict:
    return json.loads((FIXTURES / "lavaan" / f"{name}.json").read_text())


def matrix(m: dict) -> pd.DataFrame:
    values = np.array(m["values"], dtype=float).reshape(len(m["rownames"]), len(m["colnames"]))
    return pd.DataFrame(values, index=m["rownames"], columns=m["colnames"])


def partable(rec: dict) -> pd.DataFrame:
    """lavaan's parTable() joined with parameterEstimates() columns."""
    pt = pd.DataFrame(rec["partable"])
    est = pd.DataFrame(rec["estimates"])
    keys = ["lhs", "op", "rhs", "group"]
    extra = [c for c in est.columns if c not in pt.columns or c in keys]
    est["group"] = est["group"].astype(int)
    pt["group"] = pt["group"].astype(int)
    out = pt.merge(est[extra], on=keys, how="left")
    out["label"] = out["label"].fillna("")
    return out


def sample_stats(rec: dict):
    """(ov_names, [cov], [mean or None], [n]) of a single-group fixture."""
    cov = matrix(rec["sampstat"]["cov"])
    mean = rec["sampstat"].get("mean")
    mean = None if mean is None else np.array(list(mean.values()), dtype=float)
    return list(cov.index), [cov.to_numpy()], [mean], [int(rec["nobs"])]


def fit_result(name: str, **kwargs):
    from analysis.sem.results import FitResult, TestStatistic

    rec = load(name)
    fit = pd.Series(rec["fit"], dtype=float)
    r2 = pd.DataFrame({"lhs": list(rec["r2"]), "group": 1, "r2": list(rec["r2"].values())})
    test = TestStatistic(fit["chisq"], fit["df"], fit["pvalue"])
    args = dict(params=partable(rec), fit_indices=fit, estimator="ML", converged=rec["converged"],
                iterations=rec["iterations"], optimizer="nlminb", nobs=(int(rec["nobs"]),),
                tests=(test,), r2=r2, options={"se": "standard", "information": "expected"},
                syntax=rec["call"]["model"])
    args.update(kwargs)
    return FitResult(**args)
