"""Replicate weights for complex designs: the Rao-Wu rescaled bootstrap (survey's "subbootstrap").

In each stratum with ``n_h`` PSUs, ``n_h - 1`` PSUs are drawn with replacement
and every respondent's weight is multiplied by ``n_h / (n_h - 1)`` times the
number of draws of its PSU (Rao & Wu 1988; Rao, Wu & Yue 1992). A statistic
computed with each replicate's weights gives the variance

    V = scale * sum_r rscale_r (theta_r - theta_bar)^2,   scale = 1 / (R - 1)

(``theta_bar`` the replicates' mean, or the full-sample estimate with
``mse=True``), as survey's ``svrVar``. Replicate weights made elsewhere (e.g. by
R's ``as.svrepdesign``) are read with :meth:`ReplicateWeights.from_frame`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import DataError, OptionError
from analysis.sem.design import Design, ResolvedDesign

__all__ = ["ReplicateWeights", "rao_wu_bootstrap", "replicate_means", "replicate_fit"]


@dataclass
class ReplicateWeights:
    """(n x R) analysis weights of R replicates, with survey's ``scale``/``rscales``/``mse``."""

    weights: np.ndarray
    scale: float
    rscales: np.ndarray
    mse: bool = False
    kind: str = "subbootstrap"

    @property
    def replicates(self) -> int:
        return self.weights.shape[1]

    def variance(self, full, thetas) -> np.ndarray:
        """Variance (matrix) of a statistic from its replicate values ``thetas`` (R x k)."""
        thetas = np.asarray(thetas, dtype=float).reshape(self.replicates, -1)
        ok = np.isfinite(thetas).all(axis=1)
        if not ok.any():
            raise DataError("every replicate failed; no replicate variance")
        th, rs = thetas[ok], self.rscales[ok]
        centre = np.asarray(full, float).reshape(-1) if self.mse else th[rs > 0].mean(axis=0)
        dev = (th - centre) * np.sqrt(rs)[:, None]
        return self.scale * dev.T @ dev

    def to_frame(self, prefix: str = "rep") -> pd.DataFrame:
        """One column per replicate (``rep1``, ``rep2``, ...), for export beside the data."""
        return pd.DataFrame(self.weights, columns=[f"{prefix}{r + 1}" for r in range(self.replicates)])

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, scale: float | None = None, rscales=None,
                   mse: bool = False, kind: str = "subbootstrap") -> ReplicateWeights:
        """Replicate weights given as columns (bootstrap scale 1/(R-1) unless ``scale`` is given)."""
        w = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        if np.isnan(w).any():
            r, c = np.argwhere(np.isnan(w))[0]
            raise DataError(f"replicate weights: row {r + 1}, column {frame.columns[c]!r} is not a number")
        if (w < 0).any():
            r, c = np.argwhere(w < 0)[0]
            raise DataError(f"replicate weights: row {r + 1}, column {frame.columns[c]!r} is negative")
        R = w.shape[1]
        if R < 2:
            raise DataError("replicate weights: at least 2 replicate columns are needed")
        return cls(w, 1.0 / (R - 1) if scale is None else float(scale),
                   np.ones(R) if rscales is None else np.asarray(rscales, float), mse, kind)


def rao_wu_bootstrap(design: ResolvedDesign | Design, data: pd.DataFrame | None = None, *,
                     replicates: int = 500, seed: int | None = None) -> ReplicateWeights:
    """Rao-Wu rescaled bootstrap replicate weights (survey's ``as.svrepdesign(type = "subbootstrap")``)."""
    if isinstance(design, Design):
        if data is None:
            raise OptionError("rao_wu_bootstrap needs the data with a Design (or a resolved design)")
        design = design.resolve(data)
    if not isinstance(replicates, (int, np.integer)) or replicates < 2:
        raise OptionError(f"replicates must be an int >= 2, got {replicates!r}")
    rng = np.random.default_rng(seed)
    row_psu, stratum, _ = design.psu_layout
    mult = np.zeros((len(stratum), replicates))
    for h in np.unique(stratum):
        psus = np.flatnonzero(stratum == h)
        n_h = len(psus)
        if n_h < 2:
            label = design.stratum_labels[int(h)] if design.stratum_labels else h
            raise DataError(f"stratum {label!r} has only one PSU: the bootstrap cannot resample it; "
                            "merge it with a neighbouring stratum")
        draws = rng.integers(0, n_h, size=(n_h - 1, replicates))
        counts = np.zeros((n_h, replicates))
        np.add.at(counts, (draws, np.arange(replicates)[None, :]), 1.0)
        mult[psus] = counts * n_h / (n_h - 1)
    return ReplicateWeights(design.weights[:, None] * mult[row_psu], 1.0 / (replicates - 1),
                            np.ones(replicates))


def replicate_means(data: pd.DataFrame, variables, weights, reps: ReplicateWeights) -> pd.DataFrame:
    """Weighted means (available cases) and their replicate SEs, as svymean on an svrepdesign."""
    w = np.asarray(weights, float)
    rows = []
    for v in variables:
        y = pd.to_numeric(data[v], errors="coerce").to_numpy(float)
        ok = ~np.isnan(y)
        yy = np.where(ok, y, 0.0)
        full = (w * ok) @ yy / (w * ok).sum()
        W = reps.weights * ok[:, None]
        thetas = (W.T @ yy) / W.sum(axis=0)
        rows.append({"variable": v, "mean": float(full),
                     "se": float(np.sqrt(reps.variance(full, thetas)[0, 0]))})
    return pd.DataFrame(rows)


def replicate_fit(fit, data: pd.DataFrame, reps: ReplicateWeights, *, model: str | None = None,
                  **fit_kwargs) -> pd.DataFrame:
    """Replicate SEs of every parameter (``:=`` effects included) of a fitted SEM: the model is
    refitted with each replicate's weights (warm-started at the full-sample estimates) and the
    spread of the estimates gives the SE. Returns lhs, op, rhs, group, est, se, failed."""
    import warnings

    from analysis.sem.fit import fit_sem

    syntax = model or fit.syntax
    if not syntax:
        raise OptionError("replicate_fit needs the model syntax (fit.syntax is empty; pass model=)")
    if len(data) != reps.weights.shape[0]:
        raise DataError(f"the data has {len(data)} rows but the replicate weights {reps.weights.shape[0]}")
    # the original fit's own options (a clustered fit has a mean structure, groups, FIML, ...)
    given = fit.options or {}
    opts = {k: given[k] for k in ("missing", "meanstructure", "std_lv", "fixed_x", "group_equal", "group_partial")
            if given.get(k) not in (None, [], ())}
    if getattr(fit, "group", None):
        opts["group"] = fit.group
    opts.update({k: v for k, v in fit_kwargs.items() if k not in ("sampling_weights", "se", "test")})
    keys = ["lhs", "op", "rhs", "group"]
    thetas, failed = [], 0
    for r in range(reps.replicates):
        w = reps.weights[:, r]
        keep = w > 0                               # respondents of undrawn PSUs carry no weight
        part = data.loc[keep].assign(_repw=w[keep])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rf = fit_sem(syntax, part, sampling_weights="_repw", se="none", test="none", warn=False,
                             start=fit.x, **opts)
            thetas.append(rf.params["est"].to_numpy(float) if rf.converged else
                          np.full(len(fit.params), np.nan))
            failed += not rf.converged
        except Exception:  # noqa: BLE001 - a replicate that cannot be fitted is counted, not fatal
            thetas.append(np.full(len(fit.params), np.nan))
            failed += 1
    full = fit.params["est"].to_numpy(float)
    V = reps.variance(full, np.vstack(thetas))
    out = fit.params[keys].copy()
    out["est"] = full
    out["se"] = np.sqrt(np.maximum(np.diag(V), 0.0))
    fixed = (fit.params["free"] == 0) & (fit.params["op"] != ":=")
    out.loc[fixed, "se"] = 0.0
    out.attrs["failed"] = failed
    return out
