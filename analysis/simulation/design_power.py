"""Simulated complex samples and Monte Carlo power that accounts for the design.

``simulate_design_sample`` draws a stratified two-stage sample from a
standardized population model (``analysis/models/population/*.lav`` or lavaan
syntax with values): ``clusters`` PSUs per stratum, ``cluster_size``
respondents per PSU, an intraclass correlation per construct (``icc``: a number,
or ``{construct: icc}``; items share their construct's), and unequal selection
probabilities: stratum ``h`` holds ``shares[h]`` of the population, but the
sample takes ``oversample[h]`` times its proportional number of PSUs, so its
respondents get the weight ``share / sample share``.

Each respondent's variables are ``mu + sqrt(1 - icc) e_i + sqrt(icc) u_c`` with
``e_i`` and the PSU's ``u_c`` both drawn from the population covariance, so every
variable keeps variance 1 and the population (co)variances hold exactly within
a construct (across constructs with different ICCs they shrink by
``sqrt((1-a)(1-b)) + sqrt(ab)``). Responses stay continuous.

``design_power`` repeats simulate -> fit (weights and clusters, MLR) -> test a
path, for several (number of PSUs, PSU size) designs, on all cores
(:func:`analysis.execution.run_replications`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import ModelSyntaxError, OptionError

__all__ = ["simulate_design_sample", "design_power", "DesignPowerResult"]


def _icc_of(pop, icc) -> np.ndarray:
    """ICC of every variable of the population model: its construct's (items) or its own."""
    if isinstance(icc, (int, float)):
        table = {}
        default = float(icc)
    else:
        table = {str(k): float(v) for k, v in dict(icc).items()}
        default = 0.0
        unknown = sorted(set(table) - set(pop.variables))
        if unknown:
            raise OptionError(f"icc names {', '.join(unknown)}, not variables of the population model")
    owner = {s.rhs: s.lhs for s in pop.statements if s.op == "=~"}
    out = np.array([table.get(owner.get(v, v), table.get(v, default)) for v in pop.variables])
    if np.any((out < 0) | (out >= 1)):
        raise OptionError(f"every icc must be in [0, 1); got {icc!r}")
    return out


def simulate_design_sample(model, *, strata: int = 4, clusters: int = 10, cluster_size: int = 20,
                           icc=0.1, shares=None, oversample=None, size_spread: float = 0.0,
                           instrument=None, seed=None) -> pd.DataFrame:
    """A stratified, clustered sample with unequal weights (columns: the observed variables,
    ``stratum``, ``psu``, ``w``); see the module docstring."""
    from analysis.simulation.simulate import population_model

    for name, v in (("strata", strata), ("clusters", clusters), ("cluster_size", cluster_size)):
        if not isinstance(v, (int, np.integer)) or v < (2 if name == "clusters" else 1):
            raise OptionError(f"{name} must be an int >= {2 if name == 'clusters' else 1}; got {v!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    pop = population_model(model, instrument)
    shares = np.full(strata, 1.0 / strata) if shares is None else np.asarray(shares, float)
    over = np.ones(strata) if oversample is None else np.asarray(oversample, float)
    if len(shares) != strata or len(over) != strata or abs(shares.sum() - 1) > 1e-9 or np.any(over <= 0):
        raise OptionError(f"shares (summing to 1) and oversample (positive) need one value per stratum ({strata})")
    # PSUs per stratum: proportional to share x oversampling, `clusters` on average
    alloc = shares * over
    n_psu = np.maximum(2, np.round(alloc / alloc.mean() * clusters)).astype(int)
    mu, sigma = pop.moments(None)
    chol = np.linalg.cholesky(sigma + 1e-12 * np.eye(len(mu)))
    r = _icc_of(pop, icc)
    frames, psu_id = [], 0
    for h in range(strata):
        for _ in range(n_psu[h]):
            m = cluster_size if size_spread <= 0 else max(1, int(round(cluster_size * rng.uniform(
                1 - size_spread, 1 + size_spread))))
            u = rng.standard_normal(len(mu)) @ chol.T
            e = rng.standard_normal((m, len(mu))) @ chol.T
            z = mu + np.sqrt(1 - r) * e + np.sqrt(r) * u
            f = pd.DataFrame(z, columns=pop.variables)[pop.observed]
            f["stratum"], f["psu"] = h + 1, psu_id + 1
            frames.append(f)
            psu_id += 1
    data = pd.concat(frames, ignore_index=True)
    n_h = data.groupby("stratum").size().reindex(range(1, strata + 1)).to_numpy(float)
    weight = shares * len(data) / n_h               # population share / sample share
    data["w"] = weight[data["stratum"].to_numpy() - 1]
    return data


@dataclass
class DesignPowerResult:
    """Power per design: clusters (per stratum), cluster_size, n, power, mean estimate, mean SE,
    deff (Kish: weighting x clustering, 1 + (m - 1) icc), failed fits."""

    table: pd.DataFrame
    path: str
    alpha: float
    reps: int

    def to_dict(self) -> dict:
        from analysis.format import jsonable
        return {"path": self.path, "alpha": self.alpha, "reps": self.reps,
                "designs": jsonable(self.table.to_dict(orient="records"))}

    def summary(self) -> str:
        return (f"Monte Carlo power of '{self.path}' (alpha {self.alpha}, {self.reps} replications per design; "
                "weighted, clustered MLR fits)\n" + self.table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    def plot(self, path=None):
        """Power against total n, one line per PSU size: the clusters x cluster size trade-off."""
        import matplotlib
        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for size, part in self.table.groupby("cluster_size"):
            part = part.sort_values("n")
            ax.plot(part["n"], part["power"], marker="o", label=f"{size} per PSU")
        ax.axhline(0.8, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("respondents (n)")
        ax.set_ylabel(f"power of {self.path}")
        ax.set_ylim(0, 1.02)
        ax.legend(title="cluster size")
        ax.set_title("Power under the sample design")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig


def _power_one(ctx, rng, i):
    import warnings

    from analysis.sem.fit import fit_sem

    clusters, size = ctx["designs"][i // ctx["reps"]]
    data = simulate_design_sample(ctx["model"], strata=ctx["strata"], clusters=clusters, cluster_size=size,
                                  icc=ctx["icc"], shares=ctx["shares"], oversample=ctx["oversample"], seed=rng)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_sem(ctx["analysis"], data, sampling_weights="w", cluster="psu", warn=False)
        p = fit.params
        row = p[(p["lhs"] == ctx["lhs"]) & (p["op"] == ctx["op"]) & (p["rhs"] == ctx["rhs"])].iloc[0]
        return float(row["est"]), float(row["se"]), float(row["pvalue"])
    except Exception:  # noqa: BLE001 - a replication that cannot be fitted counts as failed
        return None


def _check_path_in_model(path: str, stmt, analysis: str) -> None:
    """Refuse, before any replication, a path the analysis model does not estimate (every
    replication would find no such parameter and the power would be NaN)."""
    from analysis.sem.syntax import parse_model

    model = parse_model(analysis)
    if stmt.op == "~~":  # (co)variances are free by default: both variables must be in the model
        names = {s.lhs for s in model} | {s.rhs for s in model}
        if stmt.lhs in names and stmt.rhs in names:
            return
    elif any((s.lhs, s.op, s.rhs) == (stmt.lhs, stmt.op, stmt.rhs) for s in model):
        return
    listed = [f"{s.lhs} {s.op} {s.rhs}" for s in model if s.op == (stmt.op if stmt.op != "~~" else "~")]
    raise OptionError(f"path {path!r} is not in the model; its {'loadings' if stmt.op == '=~' else 'paths'} "
                      f"are {', '.join(listed)}")


def design_power(model, path: str, designs, *, reps: int = 200, strata: int = 4, icc=0.1, shares=None,
                 oversample=None, alpha: float = 0.05, seed=None, workers=None, backend: str = "auto",
                 progress=False) -> DesignPowerResult:
    """Power to detect ``path`` (lavaan syntax such as ``"NAVIG ~ NEGOT"``) for each design
    ``(clusters per stratum, cluster size)``, fitting the population model's analysis syntax."""
    from analysis.execution import run_replications
    from analysis.simulation.simulate import population_model
    from analysis.sem.syntax import parse_model

    from analysis.simulation.power import check_workers

    check_workers(workers)
    pop = population_model(model)
    try:
        st = parse_model(path)
    except ModelSyntaxError as exc:
        raise OptionError(f"path must be one lavaan statement such as 'NAVIG ~ NEGOT'; got {path!r} ({str(exc).splitlines()[0]})") from None
    if len(st) != 1 or st[0].op not in ("~", "=~", "~~"):
        raise OptionError(f"path must be one lavaan statement such as 'NAVIG ~ NEGOT'; got {path!r}")
    _check_path_in_model(path, st[0], pop.analysis_syntax())
    designs = [(int(c), int(m)) for c, m in designs]
    ctx = {"model": pop, "analysis": pop.analysis_syntax(), "designs": designs, "reps": int(reps),
           "strata": strata, "icc": icc, "shares": shares, "oversample": oversample,
           "lhs": st[0].lhs, "op": st[0].op, "rhs": st[0].rhs}
    out = run_replications(_power_one, len(designs) * reps, seed=seed, context=ctx, workers=workers,
                           backend=backend, progress=progress, description="design power")
    rows = []
    icc_mean = float(np.mean(_icc_of(pop, icc)))
    for k, (c, m) in enumerate(designs):
        res = [r for r in out[k * reps:(k + 1) * reps] if r is not None and np.isfinite(r[2])]
        est = np.array([r[0] for r in res]) if res else np.array([np.nan])
        rows.append({"clusters": c, "cluster_size": m, "n": c * strata * m,
                     "power": float(np.mean([r[2] < alpha for r in res])) if res else np.nan,
                     "mean_est": float(np.mean(est)), "mean_se": float(np.mean([r[1] for r in res])) if res else np.nan,
                     "sd_est": float(np.std(est, ddof=1)) if len(res) > 1 else np.nan,
                     "deff": 1 + (m - 1) * icc_mean, "failed": reps - len(res)})
    return DesignPowerResult(pd.DataFrame(rows), path, alpha, reps)
