"""The sample-design section of a study report, as data (results.json) and sentences.

``design_summary(data, design, variables)``: the weights' distribution (range,
quantiles, CV), Kish's effective sample size and design effect due to
weighting, the number of PSUs and strata, and key estimates weighted and
unweighted side by side (design-based SEs and deff), with a sentence for every
estimate whose weighted value differs materially from the unweighted one.
Disclosure control works on unweighted counts: an estimate resting on fewer
than ``threshold`` respondents is withheld, weighted or not.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.design.calibrate import weight_summary
from analysis.design.describe import describe
from analysis.sem.design import Design

__all__ = ["design_summary"]


def design_summary(data: pd.DataFrame, design: Design, variables, *, categorical=(), threshold: int = 10,
                   material_sd: float = 0.1, material_points: float = 0.02) -> dict:
    """The report's sample-design section (see the module docstring).

    A weighted mean differs materially from the unweighted one when it moves by at least
    ``material_sd`` standard deviations of the variable; a proportion when it moves by at
    least ``material_points`` (0.02: two percentage points).
    """
    data = data.reset_index(drop=True)
    rd = design.resolve(data)
    weighted = describe(data, design, variables=list(variables), categorical=list(categorical))
    plain = describe(data, Design(cluster=design.cluster, strata=design.strata, fpc=design.fpc,
                                  nest=design.nest, lonely_psu=design.lonely_psu),
                     variables=list(variables), categorical=list(categorical))
    w = rd.weights
    q = np.quantile(w, [0.05, 0.25, 0.5, 0.75, 0.95])
    out = {"design": design.to_dict(), "n": int(len(data)), "n_psu": rd.n_psu, "n_strata": rd.n_strata,
           "weights": {**weight_summary(w), **{f"q{int(p * 100):02d}": float(v)
                                              for p, v in zip((0.05, 0.25, 0.5, 0.75, 0.95), q)}},
           "estimates": [], "sentences": [], "threshold": threshold}
    if design.weights is None:
        out["weights"] = None
    rows = []
    for (_, a), (_, b) in zip(weighted.means.iterrows(), plain.means.iterrows()):
        sd = float(pd.to_numeric(data[a["variable"]], errors="coerce").std())
        shown = a["n"] >= threshold
        diff = a["mean"] - b["mean"]
        rows.append({"variable": a["variable"], "category": None, "n": int(a["n"]) if shown else None,
                     "weighted": a["mean"] if shown else None, "se": a["se"] if shown else None,
                     "deff": a["deff"] if shown else None, "unweighted": b["mean"] if shown else None,
                     "material": bool(shown and sd > 0 and abs(diff) >= material_sd * sd)})
    for (_, a), (_, b) in zip(weighted.proportions.iterrows(), plain.proportions.iterrows()):
        count = int(((data[a["variable"]] == a["category"]) & data[a["variable"]].notna()).sum())
        shown = count >= threshold             # disclosure: the unweighted count decides
        diff = a["proportion"] - b["proportion"]
        rows.append({"variable": a["variable"], "category": a["category"], "n": count if shown else None,
                     "weighted": a["proportion"] if shown else None, "se": a["se"] if shown else None,
                     "deff": None, "unweighted": b["proportion"] if shown else None,
                     "material": bool(shown and abs(diff) >= material_points)})
    out["estimates"] = rows
    for r in rows:
        if not r["material"]:
            continue
        what = r["variable"] if r["category"] is None else f"{r['variable']} = {r['category']}"
        if r["category"] is None:
            out["sentences"].append(
                f"Weighting moves the mean of {what} from {r['unweighted']:.2f} to {r['weighted']:.2f}: the "
                "unweighted sample over-represents some groups, so the weighted figure is the estimate "
                "for the population.")
        else:
            out["sentences"].append(
                f"Weighting moves the share of {what} from {100 * r['unweighted']:.1f}% to "
                f"{100 * r['weighted']:.1f}%.")
    withheld = sum(r["weighted"] is None for r in rows)
    if withheld:
        out["sentences"].append(f"{withheld} estimate(s) rest on fewer than {threshold} respondents and are "
                                "not shown (weighted or not).")
    return out
