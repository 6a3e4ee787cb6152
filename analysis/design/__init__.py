"""Complex survey designs: weights, clusters, strata (R survey's and lavaan's conventions).

``Design`` declares the design once; ``calibrate`` makes calibration weights
(raking, linear, post-stratification); ``describe`` gives design-based means
and proportions and ``regress`` design-based regressions; ``rao_wu_bootstrap``
makes replicate weights; ``simulate_design_sample`` and ``design_power``
simulate complex samples. Weighted SEM is ``analysis.sem.fit_sem(...,
sampling_weights=, cluster=, strata=)`` (see docs/survey-design.md).
"""
from .calibrate import calibrate, read_targets, weight_summary
from .describe import describe, regress
from .design import LONELY_PSU, Design, ResolvedDesign
from .psychometrics import design_reliability
from .replicate import ReplicateWeights, rao_wu_bootstrap, replicate_fit, replicate_means
from .report import design_summary
from .simulate import design_power, simulate_design_sample

__all__ = ["Design", "ResolvedDesign", "LONELY_PSU", "calibrate", "read_targets", "weight_summary",
           "describe", "regress", "design_reliability", "ReplicateWeights", "rao_wu_bootstrap",
           "replicate_fit", "replicate_means", "design_summary", "design_power", "simulate_design_sample"]
