"""Reliability with the sample design: weighted alpha and omega whose intervals respect clustering.

Both coefficients are ``:=`` parameters of a model fitted with the design's
sampling weights and clusters (pseudo-ML, cluster-robust sandwich), so their
standard errors come from the same delta method as any defined effect:

* alpha from the saturated covariance model of the items,
  ``k / (k - 1) (1 - sum sigma_jj / sum sigma)`` (the weighted covariance matrix);
* omega from the one-factor model with the factor variance fixed to 1,
  ``(sum lambda)^2 / ((sum lambda)^2 + sum theta)``.

The same models with lavaan's ``sampling.weights`` and ``cluster`` give the
reference values (tests/fixtures/make_design.R).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.errors import DataError
from analysis.sem.design import Design

__all__ = ["design_reliability", "DesignReliability"]


@dataclass
class DesignReliability:
    """alpha and omega with their (design-based) SE and 95% interval."""

    table: pd.DataFrame
    design: dict

    def to_dict(self) -> dict:
        from analysis.format import jsonable
        return {"design": self.design, "reliability": jsonable(self.table.to_dict(orient="records"))}

    def summary(self) -> str:
        return ("Reliability with the sample design (weighted; SEs and 95% CIs from the cluster-robust "
                "sandwich)\n" + self.table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _alpha_syntax(items: list[str]) -> str:
    k = len(items)
    v = [f"v{i}" for i in range(k)]
    lines = [f"{a} ~~ {lab}*{a}" for a, lab in zip(items, v)]
    cov = []
    for i in range(k):
        for j in range(i + 1, k):
            lines.append(f"{items[i]} ~~ c{i}_{j}*{items[j]}")
            cov.append(f"c{i}_{j}")
    lines.append(f"alpha := {k}/{k - 1} * (1 - ({' + '.join(v)}) / ({' + '.join(v)} + 2 * ({' + '.join(cov)})))")
    return "\n".join(lines)


def _omega_syntax(items: list[str]) -> str:
    lam = " + ".join(f"l{i}*{a}" for i, a in enumerate(items))
    lines = [f"F =~ {lam}"] + [f"{a} ~~ e{i}*{a}" for i, a in enumerate(items)]
    s = " + ".join(f"l{i}" for i in range(len(items)))
    e = " + ".join(f"e{i}" for i in range(len(items)))
    lines.append(f"omega := ({s})^2 / (({s})^2 + {e})")
    return "\n".join(lines)


def design_reliability(data: pd.DataFrame, items, design: Design | None = None, *,
                       construct: str = "", missing: str = "listwise") -> DesignReliability:
    """Weighted alpha and omega of ``items`` with design-based SEs (clusters, strata)."""
    from analysis.sem.fit import fit_sem

    items = list(items)
    if len(items) < 2:
        raise DataError(f"reliability needs at least 2 items; got {items}")
    if len(items) < 3:
        raise DataError("omega needs a one-factor model with at least 3 items")
    design = design or Design()
    rows = []
    for name, syntax, extra in (("alpha", _alpha_syntax(items), {}),
                                ("omega", _omega_syntax(items), {"std_lv": True})):
        fit = fit_sem(syntax, data, design=design, missing=missing, warn=False, **extra)
        r = fit.params[fit.params["op"] == ":="].iloc[0]
        rows.append({"construct": construct, "coefficient": name, "est": float(r["est"]), "se": float(r["se"]),
                     "ci.lower": float(r["ci.lower"]), "ci.upper": float(r["ci.upper"]),
                     "n": int(sum(fit.nobs))})
    return DesignReliability(pd.DataFrame(rows), design.to_dict())
