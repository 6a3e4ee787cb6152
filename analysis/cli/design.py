"""Survey-design commands and the design flags every analysis command shares.

``--weights COL --cluster COL --strata COL`` (lavaan's ``sampling.weights`` and
``cluster``; strata by Taylor linearisation) are defined once here.
``resilience weights`` makes calibration weights; ``resilience describe``
prints design-based means and proportions (analysis.design).
"""
from __future__ import annotations

from typing import Optional

import typer

WeightsOpt = typer.Option(None, "--weights", help="Column of sampling (or calibration) weights.")
ClusterOpt = typer.Option(None, "--cluster", help="Column of clusters (PSUs: areas, organisations).")
StrataOpt = typer.Option(None, "--strata", help="Column of strata (PSUs are nested within them).")


def design_options(weights: Optional[str], cluster: Optional[str], strata: Optional[str]) -> dict:
    """fit_sem's keyword arguments for the design flags that were given."""
    given = {"sampling_weights": weights, "cluster": cluster, "strata": strata}
    return {k: v for k, v in given.items() if v}
