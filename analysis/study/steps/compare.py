"""Model comparisons and their plain-language verdict on the study's hypotheses."""

from __future__ import annotations

import math
import re
import warnings
from typing import Any, Callable

import pandas as pd

from analysis.study.records import StepFailure, StepOutput
from analysis.study.runner import Run
from analysis.study.serialize import clean
from analysis.study.steps.models import get_fit


def step_compare(run: Run, a: str, b: str) -> StepOutput:
    from analysis.sem.compare import compare

    if run.study.missing == "impute":
        raise StepFailure("NotAvailable", f"comparing {a} with {b}: a test of the difference between models pooled "
                          "over imputations (semTools' lavTestLRT.mi with h1) is not available yet; each model's "
                          "pooled fit indices are in its results")
    fa, fb = get_fit(run, f"model:{a}"), get_fit(run, f"model:{b}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = compare({a: fa, b: fb}, warn=False)
    d = clean(res.to_dict())
    table = res.table.reset_index()
    d["table"] = clean(table)
    hypothesis = next((h for h in run.study.hypotheses if (h.model, h.against) == (a, b)), None)
    labels = {c.id: str(c.label) for c in run.instrument.constructs} if run.instrument is not None else {}
    d["verdict"] = _verdict(a, b, table, res, fa, hypothesis=hypothesis,
                            describe=run.study.model_description, construct=lambda c: labels.get(c, c))
    return StepOutput(data=d)


def _path_estimate(fit, path: str | None) -> dict[str, Any] | None:
    """The estimate of ``path`` (``Y ~ X``) in a fit: est, standardized, p."""
    if not path or "~" not in path:
        return None
    lhs, rhs = (x.strip() for x in path.split("~", 1))
    pt = fit.params
    row = pt[(pt["op"] == "~") & (pt["lhs"] == lhs) & (pt["rhs"] == rhs)]
    if not len(row):
        return None
    r = row.iloc[0]
    return {"path": f"{lhs} ~ {rhs}", "lhs": lhs, "rhs": rhs, "est": float(r["est"]), "pvalue": float(r["pvalue"]),
            "std.all": float(r["std.all"])}


def _p_apa(p: float) -> str:
    return "p < .001" if p < 0.001 else "p = " + f"{p:.3f}".lstrip("0")


def _verdict(a: str, b: str, table: pd.DataFrame, res, fit_a, *, hypothesis=None,
             describe: Callable[[str], str] = str, construct: Callable[[str], str] = str) -> dict[str, Any]:
    """A plain-language reading of a comparison; with a hypothesis of study.yaml, whether the claim holds.

    ``construct`` names a construct as the report does (its label); coefficients are in APA style (.45)."""
    t = table.set_index("model")
    d_aic = float(t.loc[b, "aic"] - t.loc[a, "aic"])
    d_bic = float(t.loc[b, "bic"] - t.loc[a, "bic"])
    lrt_p = None
    if res.nested and len(res.tests):
        p = res.tests[0].pvalue
        lrt_p = float(p) if p is not None and math.isfinite(p) else None
    favour_a = (d_aic > 0) + (d_bic > 0)
    if favour_a == 2:
        answer = "yes"
    elif favour_a == 0:
        answer = "no"
    else:
        answer = "unclear"
    out: dict[str, Any] = {"a": a, "b": b, "delta_aic": d_aic, "delta_bic": d_bic, "nested": bool(res.nested),
                           "lrt_pvalue": lrt_p, "prefers": a if favour_a == 2 else b if favour_a == 0 else None,
                           "answer": answer}
    if hypothesis is not None:
        path = _path_estimate(fit_a, hypothesis.path)
        out.update(hypothesis=hypothesis.model_dump(), path=path)
        lead = {"yes": "supported", "no": "not supported", "unclear": "unclear (the criteria disagree)"}[answer]
        name = f"{hypothesis.id}: " if hypothesis.id else ""
        text = (f"{name}{hypothesis.claim.rstrip('.')} — {lead}. The model that embodies the claim "
                f"({a}: {describe(a)}) "
                f"{'fits better than' if favour_a == 2 else 'fits worse than' if favour_a == 0 else 'is not clearly better than'} "
                f"its rival ({b}: {describe(b)}): AIC is {abs(d_aic):.1f} points {'lower' if d_aic > 0 else 'higher'} "
                f"and BIC {abs(d_bic):.1f} points {'lower' if d_bic > 0 else 'higher'} for {a}.")
        if lrt_p is not None:
            text += f" The likelihood-ratio test gives {_p_apa(lrt_p)}."
        if path is not None:
            sig = "significant" if path["pvalue"] < 0.05 else "not significant"
            beta = re.sub(r"^(-?)0\.", r"\1.", f"{path['std.all']:.2f}").replace("-.00", ".00")  # APA: .45
            text += (f" In {a}, {construct(path['rhs'])} → {construct(path['lhs'])} has a standardized coefficient "
                     f"of {beta} ({sig}, {_p_apa(path['pvalue'])}).")
        if not res.nested:
            text += " The two models are not nested, so the comparison rests on AIC and BIC, not on a chi-square test."
    else:
        text = (f"{a} vs {b}: AIC difference {d_aic:.1f}, BIC difference {d_bic:.1f} "
                f"(positive favours {a})" + (f"; likelihood-ratio test p = {lrt_p:.3f}" if lrt_p is not None else "") + ".")
    out["text"] = text
    return out
