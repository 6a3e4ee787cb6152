"""Monte Carlo power: how many respondents a survey needs.

For each sample size and each of R replications: simulate respondents from the
population model (:mod:`analysis.simulation.simulate`), fit the analysis model, and keep
every estimate, standard error and the model test. Per parameter and ``:=``
effect this gives power (share of Wald tests with p < alpha), bias against
the true value, coverage of the 95% interval, plus the convergence rate and
the rejection rate of the model test; and the smallest N reaching a target
power for the effects named.

True values are those of the analysis model at the population: fitted to the
exact population moments when responses are continuous, else to one very
large simulated sample (``n_true`` respondents; "pseudo-true" values, which
is what the estimator converges to with Likert codes, careless responders and
groups).

>>> res = power_analysis("figure1", n=[300, 500], reps=200, instrument=crs, seed=1)  # doctest: +SKIP
>>> res.min_n(["ind_cult_resil"], target=0.8)                                       # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from analysis.sem import distributions as sps

from analysis.sem.bootstrap import Refitter, refitter
from analysis.sem.defined import DefinedParameters
from analysis.errors import OptionError
from analysis.execution import ExecutionOptionError, check_scheduler, run_replications
from analysis.simulation.simulate import GroupSpec, PopulationModel, analysis_frame, population_model, simulate_responses

__all__ = ["power_analysis", "PowerResult", "check_workers"]


@dataclass
class _PowerContext:
    population: PopulationModel
    instrument: Any
    sim: dict
    sizes: list[int]
    reps: int
    refitter: Refitter
    defined: DefinedParameters
    df: int
    alpha: float


def _prepare(latent: list[str], instrument, data: pd.DataFrame) -> pd.DataFrame:
    """Items as a model reads them, with construct scores (REPR: a count) unless
    the analysis model has a factor of that name."""
    frame = analysis_frame(data, instrument) if instrument is not None else data
    return frame.drop(columns=[c for c in latent if c in frame.columns])


def _latent_names(syntax: str) -> list[str]:
    from analysis.sem.syntax import parse_model

    return sorted({s.lhs for s in parse_model(syntax) if s.op == "=~"})


def _item_column(instrument, data, v):
    col = data[v].to_numpy(dtype=float, na_value=np.nan).copy()
    it = instrument.item(v)
    scale = instrument.scales[it.scale]
    if scale.missing_codes:
        col[np.isin(col, scale.missing_codes)] = np.nan
    if it.reverse and scale.ordered and scale.codes:
        col = min(scale.codes) + max(scale.codes) - col
    return col


def _frame(pop, instrument, data, ov):
    """The model's columns as floats, as :func:`analysis_frame` makes them (no pandas detour)."""
    if instrument is None:
        return data[ov].to_numpy(dtype=float)
    out = np.empty((len(data), len(ov)))
    for j, v in enumerate(ov):
        if v in data.columns:
            out[:, j] = _item_column(instrument, data, v)
            continue
        c = instrument.construct(v)  # an observed construct's score (REPR: a count)
        block = np.column_stack([_item_column(instrument, data, it.id) for it in instrument.items_of(v)])
        empty = np.isnan(block).all(axis=1)
        with np.errstate(all="ignore"):
            if c.score == "count":
                score = np.isin(block, c.count_codes).sum(axis=1).astype(float)
            elif c.score == "sum":
                score = np.nansum(block, axis=1)
            else:
                score = np.nanmean(block, axis=1)
        out[:, j] = np.where(empty, np.nan, score)
    return out


def _generated_items(instrument, ov: list[str]) -> list[str] | None:
    """Items a replication must simulate: the model's items and those of scored constructs."""
    if instrument is None:
        return None
    ids = set(instrument.item_ids)
    out = []
    for v in ov:
        out += [v] if v in ids else [it.id for it in instrument.items_of(v)]
    return out


def _power_one(ctx: _PowerContext, rng: np.random.Generator, i: int):
    k = i // ctx.reps
    n = ctx.sizes[k]
    only = _generated_items(ctx.instrument, ctx.refitter.ov)
    data = simulate_responses(ctx.population, n, seed=rng, instrument=ctx.instrument, items=only, **ctx.sim)
    Y = _frame(ctx.population, ctx.instrument, data, ctx.refitter.ov)
    rf = ctx.refitter
    lean = rf.fast and rf.estimator == "ML"  # ML estimates via the lean refit, SEs from the core
    x, ok, chisq, est = rf.refit([Y], with_test=True, point_only=lean)
    nd = len(ctx.defined.names)
    if not ok:
        return k, False, None, None, math.nan
    if est is None:
        est = rf.estimator_for([Y], point_only=True)
    try:
        vcov = est.vcov(x)
        se = np.sqrt(np.maximum(np.diag(vcov), 0.0))
    except (np.linalg.LinAlgError, ValueError):
        return k, False, None, None, math.nan
    dvals = ctx.defined.values(x) if nd else np.zeros(0)
    if nd:
        jac = ctx.defined.jacobian(x)
        dse = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, vcov, jac), 0.0))
    else:
        dse = np.zeros(0)
    if rf.fast and rf.estimator == "ML":
        pvalue = float(sps.chi2.sf(chisq, ctx.df)) if ctx.df > 0 else math.nan
    else:
        tst = est.test(x)
        pvalue = float(tst.get("pvalue.scaled", tst.get("pvalue", math.nan)))
    return k, True, np.concatenate([x, dvals]), np.concatenate([se, dse]), pvalue


# ---------------------------------------------------------------- results

@dataclass
class PowerResult:
    """Monte Carlo power by sample size.

    ``table``: one row per sample size and parameter (``n, lhs, op, rhs, label,
    true, mean_est, bias, rel_bias, sd_est, mean_se, power, coverage, n_ok``);
    ``overview``: per sample size the replications, convergence rate and the
    rejection rate of the model test.
    """

    table: pd.DataFrame
    overview: pd.DataFrame
    alpha: float
    target: float
    seed: int | None
    model: str
    true_values: str

    def _rows(self, name: str) -> pd.DataFrame:
        """The rows of one parameter: by its path (spaces optional), its label or its := name."""
        tab = self.table
        plain = tab["name"].str.replace(" ", "", regex=False)
        return tab[(plain == name.replace(" ", "")) | (tab["label"] == name)]

    def min_n(self, effects: list[str] | None = None, target: float | None = None) -> pd.DataFrame:
        """Smallest simulated N whose power reaches ``target`` for each effect
        (a path 'lhs ~ rhs', its label, or a := name); NaN when none does."""
        target = self.target if target is None else target
        tab = self.table
        names = effects or list(tab.loc[tab["op"].isin(["~", ":="]), "name"].drop_duplicates())
        rows = []
        for name in names:
            sub = self._rows(name)
            if sub.empty:
                known = ", ".join(tab.loc[tab["op"].isin(["~", ":="]), "name"].drop_duplicates())
                raise KeyError(f"no parameter or effect {name!r} in the power table; known: {known}")
            ok = sub[sub["power"] >= target].sort_values("n")
            rows.append({"effect": name, "target": target,
                         "min_n": int(ok["n"].iloc[0]) if len(ok) else math.nan,
                         "power_at_max_n": float(sub.sort_values("n")["power"].iloc[-1])})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        def clean(records):
            return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                    for r in records]

        return {"model": self.model, "alpha": self.alpha, "target": self.target, "seed": self.seed,
                "true_values": self.true_values, "overview": clean(self.overview.to_dict("records")),
                "parameters": clean(self.table.to_dict("records")),
                "min_n": clean(self.min_n().to_dict("records"))}

    def summary(self) -> str:
        lines = [f"Monte Carlo power for {self.model} (alpha {self.alpha}, target {self.target:.0%}, "
                 f"true values: {self.true_values}, seed {self.seed})"]
        for _, r in self.overview.iterrows():
            lines.append(f"  N = {int(r['n']):>5}: {int(r['n_ok'])}/{int(r['reps'])} converged "
                         f"({r['convergence']:.1%}); model test rejected in {r['rejection']:.1%}")
        tab = self.table[self.table["op"].isin(["~", ":="])]
        wide = tab.pivot_table(index="name", columns="n", values="power", sort=False)
        lines.append("\nPower (paths and defined effects):")
        lines.append(wide.to_string(float_format=lambda v: f"{v:.2f}"))
        mn = self.min_n()
        lines.append(f"\nSmallest N with power >= {self.target:.0%}:")
        for _, r in mn.iterrows():
            lines.append(f"  {r['effect']:<32} {'not reached' if not math.isfinite(r['min_n']) else int(r['min_n'])}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return "<pre>" + self.summary().replace("&", "&amp;").replace("<", "&lt;") + "</pre>"

    def plot(self, effects: list[str] | None = None, ax=None):
        """Power curves (power against N) for the named effects (default: paths and := effects)."""
        import matplotlib.pyplot as plt

        tab = self.table
        names = effects or list(tab.loc[tab["op"].isin(["~", ":="]), "name"].drop_duplicates())
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.5))
        for name in names:
            sub = self._rows(name).sort_values("n")
            ax.plot(sub["n"], sub["power"], marker="o", label=name)
        ax.axhline(self.target, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("sample size N")
        ax.set_ylabel(f"power (alpha = {self.alpha})")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize="small", ncols=2 if len(names) > 8 else 1)
        ax.set_title(f"Monte Carlo power: {self.model}")
        return ax


# ---------------------------------------------------------------- driver

def _check(n, reps, alpha, target):
    sizes = [n] if isinstance(n, (int, np.integer)) else list(n)
    if not sizes or any(not isinstance(v, (int, np.integer)) or v < 10 for v in sizes):
        raise OptionError(f"The 'n' parameter of power_analysis must be sample sizes >= 10. Got {n!r} instead.")
    if not isinstance(reps, (int, np.integer)) or reps < 1:
        raise OptionError(f"The 'reps' parameter of power_analysis must be an int >= 1. Got {reps!r} instead.")
    if not 0 < alpha < 1 or not 0 < target < 1:
        raise OptionError("'alpha' and 'target' must be in (0, 1)")
    return [int(v) for v in sorted(set(sizes))]


def _exact_moments(pop: PopulationModel, instrument, ov: list[str]):
    """Population covariance and means of the analysis frame (continuous responses)."""
    cov = pop.covariance().loc[ov, ov]
    mean = pd.Series(0.0, index=ov)
    if instrument is not None:  # reverse-keyed items were recorded -z and re-keyed lo + hi - value
        for v in ov:
            it = next((i for i in instrument.items if i.id == v), None)
            if it is not None and it.reverse:
                codes = instrument.scales[it.scale].codes
                mean[v] = min(codes) + max(codes)
    return cov, mean


def check_workers(workers) -> None:
    """The number of local processes: None (all cores) or a whole number >= 1."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                or workers < 1):
        raise OptionError(f"workers is the number of local processes, a whole number >= 1; got {workers!r}")


def power_analysis(
    model: str | PopulationModel = "figure1",
    n: int | list[int] = (300, 500, 1000),
    reps: int = 500,
    *,
    instrument=None,
    analysis: str | None = None,
    estimator: str = "ML",
    missing: str = "listwise",
    missing_rate: float = 0.0,
    mar: float = 0.0,
    careless: float = 0.0,
    groups: list[GroupSpec] | None = None,
    likert: bool = True,
    alpha: float = 0.05,
    target: float = 0.8,
    seed: int | None = None,
    n_true: int = 200_000,
    backend: str = "auto",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> PowerResult:
    """Monte Carlo power, bias and coverage of ``analysis`` (default: the
    population model's own structure) for each sample size in ``n``.

    ``missing_rate``/``mar``/``careless``/``groups``/``likert`` shape the
    simulated respondents (see :func:`analysis.simulation.simulate.simulate_responses`);
    ``estimator``/``missing`` are those of the fit (``"ML"``, ``"MLR"``;
    ``"listwise"``, ``"fiml"``).
    """
    from analysis.execution import one_blas_thread

    sizes = _check(n, reps, alpha, target)
    check_workers(workers)
    if scheduler:
        try:
            check_scheduler(scheduler)
        except ExecutionOptionError as exc:
            raise OptionError(str(exc)) from None
    with one_blas_thread():  # small matrices: threaded BLAS only adds contention
        return _power(model, sizes, reps, instrument, analysis, estimator, missing, missing_rate, mar, careless,
                      groups, likert, alpha, target, seed, n_true, backend, workers, scheduler, progress)


def _power(model, sizes, reps, instrument, analysis, estimator, missing, missing_rate, mar, careless, groups,
           likert, alpha, target, seed, n_true, backend, workers, scheduler, progress) -> PowerResult:
    from analysis.sem.fit import fit_sem

    if isinstance(instrument, str):
        from instruments import load_instrument

        instrument = load_instrument(instrument)
    pop = population_model(model, instrument)
    syntax = analysis or pop.analysis_syntax()
    sim = dict(groups=groups if groups is not None else [], missing=missing_rate, mar=mar, careless=careless,
               likert=likert, missing_as="blank")
    root = np.random.SeedSequence(seed)
    pilot_seq, true_seq, rep_seq = root.spawn(3)

    # template fit: compiles the model with the user's options
    pilot = simulate_responses(pop, 2000, seed=np.random.default_rng(pilot_seq), instrument=instrument,
                               **{**sim, "missing": 0.0, "mar": 0.0})
    latent = _latent_names(syntax)
    pilot = _prepare(latent, instrument, pilot)
    template = fit_sem(syntax, pilot, estimator=estimator, missing=missing, warn=False)
    ov = list(template.model.ov_names[0])
    ms = bool(template.model.meanstructure)

    # true values of the analysis model at the population
    exact = (not sim["groups"] and careless == 0 and (instrument is None or not likert))
    if exact:
        cov, mean = _exact_moments(pop, instrument, ov)
        with np.errstate(divide="ignore", invalid="ignore"):  # chisq is 0 at the population
            truth = fit_sem(syntax, sample_cov=cov, sample_mean=mean if ms else None, sample_nobs=10**9,
                            meanstructure=ms, warn=False, se="none")
        how = "exact (population moments)"
    else:
        big = simulate_responses(pop, n_true, seed=np.random.default_rng(true_seq), instrument=instrument,
                                 **{**sim, "missing": 0.0, "mar": 0.0})
        big = _prepare(latent, instrument, big)
        truth = fit_sem(syntax, big, meanstructure=ms, warn=False, se="none")
        how = f"pseudo-true (one sample of {n_true:,})"
    tp = truth.params
    tkey = {(l, o, r, int(g)): float(e) for l, o, r, g, e in tp[["lhs", "op", "rhs", "group", "est"]].values}

    pt = template.params
    free = pt[pt["free"] > 0].drop_duplicates("free").sort_values("free")
    x0 = np.array([tkey.get((l, o, r, int(g)), np.nan) for l, o, r, g in free[["lhs", "op", "rhs", "group"]].values])
    x0 = np.where(np.isfinite(x0), x0, template.x)
    rf = refitter(template, pilot)
    rf.x0 = x0
    rf.data = []  # replications bring their own data
    defined = DefinedParameters(pt)
    ctx = _PowerContext(population=pop, instrument=instrument, sim=sim, sizes=sizes, reps=int(reps), refitter=rf,
                        defined=defined, df=int(template.fit_indices.get("df", 0)), alpha=alpha)
    out = run_replications(_power_one, len(sizes) * int(reps), seed=rep_seq, context=ctx, backend=backend,
                           workers=workers, scheduler=scheduler, progress=progress, description="power")

    # ---- summarise
    names = [(l, o, r, lab) for l, o, r, lab in free[["lhs", "op", "rhs", "label"]].values]
    defrows = pt[pt["op"] == ":="]
    names += [(l, ":=", r, l) for l, r in defrows[["lhs", "rhs"]].values]
    true = np.concatenate([x0, defined.values(x0) if len(defined.names) else np.zeros(0)])
    z = sps.norm.ppf(1 - alpha / 2)
    z95 = sps.norm.ppf(0.975)
    rows, over = [], []
    for k, nk in enumerate(sizes):
        res = [r for r in out if r[0] == k]
        good = [r for r in res if r[1]]
        pvals = np.array([r[4] for r in good], float)
        over.append({"n": nk, "reps": len(res), "n_ok": len(good), "convergence": len(good) / len(res),
                     "rejection": float(np.mean(pvals[np.isfinite(pvals)] < alpha)) if len(good) else math.nan})
        if not good:
            continue
        E = np.array([r[2] for r in good])
        S = np.array([r[3] for r in good])
        with np.errstate(divide="ignore", invalid="ignore"):
            sig = np.abs(E / S) > z
            cover = np.abs(E - true) <= z95 * S
        for j, (l, o, r, lab) in enumerate(names):
            name = l if o == ":=" else f"{l} {o} {r}"  # the path itself (TRUST ~ CULT), not its label (t_cult)
            bias = float(E[:, j].mean() - true[j])
            rows.append({"n": nk, "name": name, "lhs": l, "op": o, "rhs": r, "label": lab, "true": true[j],
                         "mean_est": float(E[:, j].mean()), "bias": bias,
                         "rel_bias": bias / true[j] if true[j] != 0 else math.nan,
                         "sd_est": float(E[:, j].std(ddof=1)) if len(E) > 1 else math.nan,
                         "mean_se": float(S[:, j].mean()), "power": float(sig[:, j].mean()),
                         "coverage": float(cover[:, j].mean()), "n_ok": len(good)})
    name = model if isinstance(model, str) and "\n" not in model else "population model"
    return PowerResult(table=pd.DataFrame(rows), overview=pd.DataFrame(over), alpha=alpha, target=target, seed=seed,
                       model=name, true_values=how)
