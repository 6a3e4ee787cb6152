"""The SEM engine: lavaan's pipeline, one job per module (docs/engine.md).

    syntax -> partable -> model -> estimators/ -> optimize -> fitindices,
    defined, standardize -> results          (fit.fit_sem runs steps.py's steps)

Beside the one fit: modindices, compare (nested-model tests), bootstrap,
polychoric (ordinal statistics), pool (multiple imputation), twolevel
(respondents in communities), design (sampling weights, clusters, strata).

``from analysis.sem import fit_sem`` is the entry point; the names below load
on first use, so importing a single module of the engine stays cheap.
"""

__all__ = ["fit_sem", "sem", "cfa", "ESTIMATORS", "FitResult", "ComparisonResult"]


def __getattr__(name):
    if name in ("fit_sem", "sem", "cfa", "ESTIMATORS"):
        from analysis.sem import fit

        return getattr(fit, name)
    if name in ("FitResult", "ComparisonResult"):
        from analysis.sem import results

        return getattr(results, name)
    raise AttributeError(f"module 'analysis.sem' has no attribute {name!r}")
