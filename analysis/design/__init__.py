"""Complex survey designs: weights, clusters, strata (R survey's conventions).

``Design`` declares the design once; ``calibrate`` makes calibration weights
(raking, linear, post-stratification); ``describe`` gives design-based means
and proportions; ``replicate`` makes bootstrap replicate weights.
"""
from .design import LONELY_PSU, Design, ResolvedDesign

__all__ = ["Design", "ResolvedDesign", "LONELY_PSU"]
