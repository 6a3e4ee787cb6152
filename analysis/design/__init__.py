"""Complex survey designs: weights, clusters, strata (R survey's and lavaan's conventions).

``Design`` (analysis.sem.design, where the engine reads it) declares the design
once; ``calibrate`` makes calibration weights (raking, linear,
post-stratification); ``describe`` gives design-based means and proportions and
``regress`` design-based regressions; ``rao_wu_bootstrap`` makes replicate
weights. Weighted SEM is ``analysis.sem.fit_sem(..., sampling_weights=,
cluster=, strata=)`` (see docs/survey-design.md); simulating complex samples and
their power is ``analysis.simulation.design_power``.
"""
from analysis.design.calibrate import calibrate, read_targets, weight_summary
from analysis.design.describe import describe, regress
from analysis.design.psychometrics import design_reliability
from analysis.design.replicate import ReplicateWeights, rao_wu_bootstrap, replicate_fit, replicate_means
from analysis.design.report import design_summary
from analysis.sem.design import LONELY_PSU, Design, ResolvedDesign

__all__ = ["Design", "ResolvedDesign", "LONELY_PSU", "calibrate", "read_targets", "weight_summary",
           "describe", "regress", "design_reliability", "ReplicateWeights", "rao_wu_bootstrap",
           "replicate_fit", "replicate_means", "design_summary"]
