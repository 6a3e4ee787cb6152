"""Simulated two-level data and Monte Carlo power for within- and between-level effects.

A population model is lavaan two-level syntax with the true values as fixed numbers
(``level: 1  y ~ 0.3*x`` / ``level: 2  y ~ 0.5*w``). Parameters without a value take
defaults (as lavaan's ``simulateData``, regressions and loadings without a value are 0):
residual variances 1 at level 1 and ``icc / (1 - icc)`` at level 2, so a variable with
no predictors has the intraclass correlation ``icc``; covariances 0; means 0.

>>> pop = "level: 1\\n y ~ 0.3*x\\nlevel: 2\\n y ~ 0.5*x"                # doctest: +SKIP
>>> data = simulate_twolevel(pop, n_clusters=100, cluster_size=(5, 15), seed=1)   # doctest: +SKIP
>>> table = twolevel_power(pop, n_clusters=[30, 60, 100], cluster_size=[5, 10], reps=200)  # doctest: +SKIP
>>> plot_twolevel_power(table, "power.png")                          # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.errors import OptionError

__all__ = ["population_moments", "simulate_twolevel", "analysis_syntax", "twolevel_power",
           "plot_twolevel_power", "TwoLevelPower"]

_VALUE_RE = re.compile(r"(?<![\w.])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\*\s*")


def population_moments(population: str, *, icc: float = 0.1):
    """Implied (Sigma_W, mu_W, ov1), (Sigma_B, mu_B, ov2) of a two-level population model."""
    from analysis.sem.model import Model
    from analysis.sem.twolevel import build_twolevel_partable, level_blocks_as_groups

    if not 0 <= icc < 1:
        raise OptionError(f"The 'icc' parameter of population_moments must be in [0, 1). Got {icc!r} instead.")
    pt = build_twolevel_partable(population)
    free = pt["free"] > 0
    value = pt["ustart"].to_numpy(dtype=float).copy()
    for i in np.flatnonzero(free.to_numpy()):
        l, o, r, lev = pt.at[i, "lhs"], pt.at[i, "op"], pt.at[i, "rhs"], pt.at[i, "level"]
        if not np.isnan(value[i]):
            continue
        if o == "~~" and l == r:
            value[i] = 1.0 if lev == 1 else icc / (1 - icc)
        else:
            value[i] = 0.0
    exo = (pt["exo"] == 1).to_numpy()
    # fixed.x covariates of the population: variance 1 (level 1) or icc/(1-icc) (level 2), mean 0
    for i in np.flatnonzero(exo):
        if pt.at[i, "op"] == "~~" and pt.at[i, "lhs"] == pt.at[i, "rhs"]:
            value[i] = 1.0 if pt.at[i, "level"] == 1 else icc / (1 - icc)
        else:
            value[i] = 0.0
    pt["ustart"] = value
    pt["free"] = 0
    pt["exo"] = 0
    mdl = Model(level_blocks_as_groups(pt), meanstructure=True)
    (m1, m2) = mdl.implied(np.zeros(0))
    return (m1.sigma, m1.mu, list(mdl.ov_names[0])), (m2.sigma, m2.mu, list(mdl.ov_names[1]))


def _sizes(rng, n_clusters: int, cluster_size) -> np.ndarray:
    if isinstance(cluster_size, (int, np.integer)):
        sizes = np.full(n_clusters, int(cluster_size))
    elif isinstance(cluster_size, tuple) and len(cluster_size) == 2:
        lo, hi = cluster_size
        sizes = rng.integers(int(lo), int(hi) + 1, size=n_clusters)
    else:
        sizes = np.asarray(cluster_size, dtype=int)
        if sizes.shape != (n_clusters,):
            raise OptionError("cluster_size must be an int, a (min, max) tuple or one size per cluster")
    if sizes.min() < 1:
        raise OptionError("every cluster needs at least one respondent")
    return sizes


def _size_label(size) -> str:
    """A cluster-size setting as the tables show it: 10, 5-15 (a range) or 'varied' (one per cluster)."""
    if isinstance(size, tuple) and len(size) == 2:
        return f"{size[0]}-{size[1]}"
    return str(size) if isinstance(size, (int, np.integer)) else "varied"


def simulate_twolevel(population: str, *, n_clusters: int, cluster_size=10, seed=None,
                      icc: float = 0.1, cluster: str = "cluster") -> pd.DataFrame:
    """Draw two-level data: cluster effects ``u_j ~ N(mu_B, Sigma_B)`` on the level-2
    variables, respondents ``e_ij ~ N(mu_W, Sigma_W)`` on the level-1 ones; a shared
    variable is ``e + u``, a between-only variable is ``u`` (constant in its cluster).

    ``cluster_size``: an int (balanced), a ``(min, max)`` tuple (uniform sizes) or one
    size per cluster.
    """
    rng = np.random.default_rng(seed)
    (sw, mw, ov1), (sb, mb, ov2) = population_moments(population, icc=icc)
    sizes = _sizes(rng, int(n_clusters), cluster_size)
    ids = np.repeat(np.arange(1, len(sizes) + 1), sizes)
    u = rng.multivariate_normal(mb, sb, size=len(sizes), method="eigh")
    e = rng.multivariate_normal(mw, sw, size=len(ids), method="eigh")
    out = {}
    for k, v in enumerate(ov1):
        out[v] = e[:, k] + (u[ids - 1, ov2.index(v)] if v in ov2 else 0.0)
    for k, v in enumerate(ov2):
        if v not in ov1:
            out[v] = u[ids - 1, k]
    frame = pd.DataFrame(out)
    frame[cluster] = ids
    return frame


def analysis_syntax(population: str) -> str:
    """The population syntax with its values removed (zeros kept: they are constraints)."""
    def drop(m):
        return m.group(0) if float(m.group(1)) == 0 else ""

    return _VALUE_RE.sub(drop, population)


def _replicate(ctx: dict, rng: np.random.Generator, i: int):
    """One replication: simulate, fit, and (est, p, ci.lower, ci.upper) of each path (None
    when the fit fails or does not converge)."""
    from analysis.sem.fit import fit_sem

    data = simulate_twolevel(ctx["population"], n_clusters=ctx["n_clusters"], cluster_size=ctx["size"],
                             seed=rng, icc=ctx["icc"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_sem(ctx["model"], data, cluster="cluster", estimator=ctx["estimator"], test="none")
    except Exception:  # noqa: BLE001 - a replication that cannot be fitted counts as failed
        return None
    if not fit.converged:
        return None
    pt = fit.params
    out = []
    for l, o, r, lev, _ in ctx["keys"]:
        hit = pt[(pt["lhs"] == l) & (pt["op"] == o) & (pt["rhs"] == r) & (pt["level"] == lev)]
        out.append(hit[["est", "pvalue", "ci.lower", "ci.upper"]].iloc[0].to_numpy(float) if len(hit)
                   else np.full(4, np.nan))
    return np.array(out)


def twolevel_power(population: str, model: str | None = None, *, n_clusters: Sequence[int],
                   cluster_size: Sequence = (10,), reps: int = 200, seed: int = 1, icc: float = 0.1,
                   alpha: float = 0.05, estimator: str = "ML", params: Sequence[str] | None = None,
                   backend: str = "auto", workers: int | None = None, scheduler: str | None = None,
                   progress: bool = False) -> pd.DataFrame:
    """Monte Carlo power of each regression (``~``) path of the population model (or the
    rows named in ``params``, e.g. ``["y~x@1"]`` = level 1), per number of clusters and
    cluster size: the share of replications whose Wald test rejects at ``alpha``, with
    bias and 95% CI coverage of the estimate. Replications run through
    :func:`analysis.execution.run_replications` (serial, a local pool or Dask; the same
    numbers whatever the backend).

    Returns columns ``n_clusters, cluster_size, lhs, op, rhs, level, true, power, mean_est,
    bias, coverage, n_ok``.
    """
    from analysis.execution import run_replications
    from analysis.sem.twolevel import build_twolevel_partable

    model = model or analysis_syntax(population)
    truth = build_twolevel_partable(population)
    rows = truth[truth["op"] == "~"] if params is None else truth[
        [f"{l}{o}{r}@{lev}" in params for l, o, r, lev in zip(truth["lhs"], truth["op"], truth["rhs"], truth["level"])]]
    keys = [(l, o, r, int(lev), float(v) if np.isfinite(v) else 0.0)
            for l, o, r, lev, v in zip(rows["lhs"], rows["op"], rows["rhs"], rows["level"], rows["ustart"])]
    if not keys and params is not None:
        raise OptionError(f"none of {', '.join(params)} is a row of the population model: name rows as "
                          "lhs~rhs@level, e.g. y~x@1 (level 1 = within, 2 = between)")
    if not keys:
        raise OptionError("the population model has no regression paths; name the rows with params=")
    out = []
    for c, size in enumerate(cluster_size):
        for k, j in enumerate(n_clusters):
            ctx = {"population": population, "model": model, "n_clusters": int(j), "size": size, "icc": icc,
                   "estimator": estimator, "keys": keys}
            results = run_replications(_replicate, int(reps), seed=np.random.SeedSequence([seed, c, k]),
                                       context=ctx, backend=backend,
                                       workers=workers, scheduler=scheduler, progress=progress,
                                       description=f"{j} clusters of {size}")
            done = np.array([r for r in results if r is not None]).reshape(-1, len(keys), 4)
            for q, (l, o, r, lev, true) in enumerate(keys):
                res = done[:, q]
                ok = res[np.isfinite(res[:, 1])]
                n_ok = len(ok)
                mean_est = float(ok[:, 0].mean()) if n_ok else np.nan
                out.append({"n_clusters": int(j), "cluster_size": _size_label(size), "lhs": l, "op": o, "rhs": r,
                            "level": lev, "true": true,
                            "power": float(np.mean(ok[:, 1] < alpha)) if n_ok else np.nan,
                            "mean_est": mean_est, "bias": mean_est - true,
                            "coverage": float(np.mean((ok[:, 2] <= true) & (true <= ok[:, 3]))) if n_ok else np.nan,
                            "n_ok": n_ok})
    return pd.DataFrame(out)


def plot_twolevel_power(table: pd.DataFrame, path=None, *, alpha_line: float = 0.8):
    """Power against the number of clusters, one line per cluster size, one panel per path
    (within paths first). Saves to ``path`` when given; returns the matplotlib Figure."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    paths = table[["lhs", "op", "rhs", "level"]].drop_duplicates().sort_values("level")
    fig, axes = plt.subplots(1, len(paths), figsize=(4 * len(paths), 3.4), squeeze=False, sharey=True)
    for ax, (_, p) in zip(axes[0], paths.iterrows()):
        sub = table[(table["lhs"] == p["lhs"]) & (table["rhs"] == p["rhs"]) & (table["level"] == p["level"])]
        for size, grp in sub.groupby("cluster_size", sort=False):
            grp = grp.sort_values("n_clusters")
            ax.plot(grp["n_clusters"], grp["power"], marker="o", label=f"cluster size {size}")
        ax.axhline(alpha_line, color="grey", lw=0.8, ls="--")
        where = "within" if p["level"] == 1 else "between"
        ax.set_title(f"{p['lhs']} ~ {p['rhs']} ({where})")
        ax.set_xlabel("number of clusters")
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("power")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


@dataclass
class TwoLevelPower:
    """A :func:`twolevel_power` table with its settings: the smallest number of clusters that
    reaches ``target`` power per path and cluster size, a summary and a JSON document."""

    table: pd.DataFrame
    population: str
    target: float = 0.8
    alpha: float = 0.05
    reps: int = 200
    seed: int = 1
    icc: float = 0.1
    estimator: str = "ML"
    settings: dict = field(default_factory=dict)

    @staticmethod
    def _path(row) -> str:
        return f"{row['lhs']} {row['op']} {row['rhs']} ({'within' if row['level'] == 1 else 'between'})"

    def min_clusters(self) -> pd.DataFrame:
        """Per path and cluster size, the fewest clusters of the design with power >= target
        (NaN when none of them reaches it)."""
        rows = []
        keys = ["lhs", "op", "rhs", "level", "cluster_size"]
        for key, grp in self.table.groupby(keys, sort=False):
            hit = grp.loc[grp["power"] >= self.target, "n_clusters"]
            rows.append({**dict(zip(keys, key)), "path": self._path(grp.iloc[0]),
                         "min_clusters": float(hit.min()) if len(hit) else math.nan})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        def clean(frame):
            return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                    for r in frame.to_dict("records")]

        return {"kind": "twolevel_power", "population": self.population, "target": self.target,
                "alpha": self.alpha, "reps": self.reps, "seed": self.seed, "icc": self.icc,
                "estimator": self.estimator, **self.settings,
                "results": clean(self.table), "min_clusters": clean(self.min_clusters())}

    def summary(self) -> str:
        lines = [f"Two-level Monte Carlo power ({self.reps} replications per design, {self.estimator}, "
                 f"alpha {self.alpha}, unset ICCs {self.icc}, seed {self.seed})"]
        tab = self.table.assign(path=[self._path(r) for _, r in self.table.iterrows()])
        for size, grp in tab.groupby("cluster_size", sort=False):
            wide = grp.pivot_table(index="path", columns="n_clusters", values="power", sort=False)
            lines += [f"\nPower, clusters of {size} respondents (columns: number of clusters):",
                      wide.to_string(float_format=lambda v: f"{v:.2f}")]
        worst = tab.loc[tab["n_ok"] < self.reps, ["n_clusters", "cluster_size", "n_ok"]].drop_duplicates()
        for _, r in worst.iterrows():
            lines.append(f"  note: {int(r['n_ok'])}/{self.reps} replications converged with "
                         f"{int(r['n_clusters'])} clusters of {r['cluster_size']}")
        lines.append(f"\nFewest clusters with power >= {self.target:.0%}:")
        for _, r in self.min_clusters().iterrows():
            need = "not reached" if not math.isfinite(r["min_clusters"]) else int(r["min_clusters"])
            lines.append(f"  {r['path']:<36} size {r['cluster_size']:<8} {need}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def plot(self, path=None):
        return plot_twolevel_power(self.table, path, alpha_line=self.target)
