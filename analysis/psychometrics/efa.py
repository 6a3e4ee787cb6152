"""Exploratory factor analysis for instrument development.

Sampling adequacy (KMO), Bartlett's test of sphericity, Horn's parallel
analysis for the number of factors, and an EFA with an oblique rotation
(oblimin or promax) whose loadings table is tidy. factor_analyzer does the
factoring and rotation; the rest is a few lines of numpy. Listwise-complete
cases by default, so every statistic sees the same respondents; with
``missing="pairwise"`` every answered pair counts (``psych``'s default), which
keeps most of a survey whose items each miss a few answers.
"""

from __future__ import annotations

import html
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from analysis.sem import distributions as stats

__all__ = ["kmo", "bartlett_sphericity", "parallel_analysis", "efa", "efa_report", "scree_plot", "EFAResult", "EFAError", "EFAOptionError"]

ROTATIONS = ("oblimin", "promax", "geomin_obl", "quartimin", "varimax", "none")
_METHODS = ("minres", "ml", "principal")
_MISSING = ("listwise", "pairwise")


from analysis.errors import AnalysisError, OptionError


class EFAError(AnalysisError):
    """The data cannot support the requested factor analysis."""


class EFAOptionError(EFAError, OptionError):
    """An option of the factor analysis has an invalid value (a usage error on the command line)."""


def _complete(data: pd.DataFrame, caller: str, missing: str = "listwise") -> tuple[pd.DataFrame, np.ndarray, int]:
    """The cases used, their correlation matrix and n: listwise, or pairwise as ``psych``'s default.

    Pairwise uses every answered pair of items (``cor(x, use = "pairwise")``)
    and n = the respondents who answered at least one item.
    """
    if not isinstance(data, pd.DataFrame):
        raise EFAError(f"The 'data' parameter of {caller} must be a DataFrame. Got {type(data).__name__} instead.")
    if missing not in _MISSING:
        raise EFAOptionError(f"The 'missing' parameter of {caller} must be one of {', '.join(_MISSING)}. Got {missing!r} instead.")
    bad = [c for c in data.columns if data[c].dtype.kind not in "bfiu"]
    if bad:
        raise EFAError(f"{caller}: columns must be numeric; {', '.join(map(str, bad))} are not.")
    x = (data.dropna() if missing == "listwise" else data.dropna(how="all")).astype(float)
    what = "complete cases" if missing == "listwise" else "respondents"
    if x.shape[1] < 3:
        raise EFAError(f"{caller} needs at least 3 items; got {x.shape[1]}.")
    if len(x) <= x.shape[1]:
        raise EFAError(f"{caller} needs more {what} ({len(x)}) than items ({x.shape[1]}).")
    const = [c for c in x.columns if not x[c].std() > 0]
    if const:
        raise EFAError(f"{caller}: item(s) without variance: {', '.join(map(str, const))}.")
    r = x.corr()
    if r.isna().any().any():  # a pair nobody answered together
        a, b = next((i, j) for i in r.index for j in r.columns if pd.isna(r.loc[i, j]))
        raise EFAError(f"{caller}: items {a} and {b} have too few answers in common for a pairwise correlation.")
    return x, r.to_numpy(), len(x)


def kmo(data: pd.DataFrame, *, missing: str = "listwise") -> pd.DataFrame:
    """Kaiser-Meyer-Olkin measure of sampling adequacy, per item and overall.

    MSA = sum r^2 / (sum r^2 + sum q^2) over off-diagonal correlations r and
    partial (anti-image) correlations q, as ``psych::KMO``. Rows: one per item,
    then ``overall``; values below .60 suggest the items share too little.
    """
    x, r, n = _complete(data, "kmo", missing)
    inv = np.linalg.inv(r)
    q = -inv / np.sqrt(np.outer(np.diag(inv), np.diag(inv)))  # partial (anti-image) correlations
    off = ~np.eye(len(r), dtype=bool)
    r2, q2 = np.where(off, r**2, 0.0), np.where(off, q**2, 0.0)
    per_item = r2.sum(axis=0) / (r2.sum(axis=0) + q2.sum(axis=0))
    overall = r2.sum() / (r2.sum() + q2.sum())
    out = pd.DataFrame({"msa": list(per_item) + [overall]}, index=list(x.columns) + ["overall"])
    out["n_obs"] = n
    return out


def bartlett_sphericity(data: pd.DataFrame, *, missing: str = "listwise") -> pd.DataFrame:
    """Bartlett's test that the correlation matrix is an identity matrix.

    chisq = -(n - 1 - (2p + 5)/6) log|R| on p(p-1)/2 df, as
    ``psych::cortest.bartlett(cor(x), n)``.
    """
    x, r, n = _complete(data, "bartlett_sphericity", missing)
    p = x.shape[1]
    _, logdet = np.linalg.slogdet(r)
    chisq = -(n - 1 - (2 * p + 5) / 6) * logdet
    df = p * (p - 1) / 2
    return pd.DataFrame({"chisq": [chisq], "df": [df], "pvalue": [stats.chi2.sf(chisq, df)], "n_obs": [n]}, index=["bartlett"])


def _eigen(r: np.ndarray, kind: str) -> np.ndarray:
    if kind == "fa":  # reduced correlation matrix: SMCs on the diagonal (psych::fa.parallel)
        r = r.copy()
        np.fill_diagonal(r, 1 - 1 / np.diag(np.linalg.inv(r)))
    return np.sort(np.linalg.eigvalsh(r))[::-1]


def parallel_analysis(
    data: pd.DataFrame, *, n_iter: int = 100, seed: int | None = None, quantile: float = 0.95, kind: str = "fa",
    missing: str = "listwise",
) -> pd.DataFrame:
    """Horn's (1965) parallel analysis: retain factors whose eigenvalue beats chance.

    Eigenvalues of the observed correlation matrix (``kind="pc"``) or of the
    reduced matrix with squared multiple correlations on the diagonal
    (``kind="fa"``, as ``psych::fa.parallel``'s factor solution) are compared
    with the ``quantile`` of eigenvalues from ``n_iter`` samples of
    uncorrelated normal data of the same size. The suggested number of factors
    (``.attrs["n_factors"]``) counts the leading observed eigenvalues above the
    random ones. Reproducible with ``seed``.
    """
    if not (isinstance(n_iter, int) and n_iter >= 1):
        raise EFAOptionError(f"The 'n_iter' parameter of parallel_analysis must be an int >= 1. Got {n_iter!r} instead.")
    if kind not in ("fa", "pc"):
        raise EFAOptionError(f"The 'kind' parameter of parallel_analysis must be 'fa' or 'pc'. Got {kind!r} instead.")
    if not 0 < quantile < 1:
        raise EFAOptionError(f"The 'quantile' parameter of parallel_analysis must be in (0, 1). Got {quantile!r} instead.")
    x, r, n = _complete(data, "parallel_analysis", missing)
    p = x.shape[1]
    observed = _eigen(r, kind)
    rng = np.random.default_rng(seed)
    sims = np.array([_eigen(np.corrcoef(rng.standard_normal((n, p)), rowvar=False), kind) for _ in range(n_iter)])
    out = pd.DataFrame(
        {
            "observed": observed,
            "random.mean": sims.mean(axis=0),
            f"random.q{round(quantile * 100)}": np.quantile(sims, quantile, axis=0),
        },
        index=pd.RangeIndex(1, p + 1, name="factor"),
    )
    above = observed > out.iloc[:, 2].to_numpy()
    out["retain"] = np.cumprod(above).astype(bool)  # stop at the first eigenvalue below chance
    out.attrs["n_factors"] = int(out["retain"].sum())
    out.attrs["seed"] = seed
    return out


@dataclass(frozen=True)
class EFAResult:
    """An exploratory factor solution with the checks that justify it."""

    loadings: pd.DataFrame  # items x factors (pattern matrix for oblique rotations)
    communalities: pd.Series
    factor_correlations: pd.DataFrame
    variance: pd.DataFrame  # SS loadings, proportion, cumulative
    n_factors: int
    rotation: str
    method: str
    n_obs: int
    kmo: pd.DataFrame | None = None
    bartlett: pd.DataFrame | None = None
    parallel: pd.DataFrame | None = None
    notes: tuple[str, ...] = field(default=())
    constructs: Mapping[str, str] | None = None  # item -> the construct the instrument meant it for

    def loadings_table(self, *, cutoff: float = 0.0) -> pd.DataFrame:
        """Loadings with |value| < cutoff blanked (NaN), items sorted by their main factor."""
        lt = self.loadings.where(self.loadings.abs() >= cutoff)
        main = self.loadings.abs().to_numpy().argmax(axis=1)
        order = np.lexsort((-self.loadings.abs().max(axis=1).to_numpy(), main))
        return lt.iloc[order]

    def _shown_loadings(self) -> pd.DataFrame:
        table = self.loadings_table(cutoff=0.3).assign(h2=self.communalities)
        if self.constructs:
            table.insert(0, "construct", [self.constructs.get(i, "") for i in table.index])
        return table

    def summary(self) -> str:
        fmt = lambda v: f"{v:.3f}"  # noqa: E731
        lines = [f"EFA: {self.n_factors} factor(s), {self.method}, {self.rotation} rotation, n = {self.n_obs}"]
        if self.kmo is not None:
            lines.append(f"KMO overall = {self.kmo.loc['overall', 'msa']:.3f}")
        if self.bartlett is not None:
            b = self.bartlett.iloc[0]
            p = "p < .001" if b["pvalue"] < 0.001 else f"p = {b['pvalue']:.3f}"
            lines.append(f"Bartlett: chisq = {b['chisq']:.2f}, df = {b['df']:.0f}, {p}")
        if self.parallel is not None:
            lines.append(f"Parallel analysis (seed {self.parallel.attrs.get('seed')}) suggests {self.parallel.attrs['n_factors']} factor(s)")
        table = self._shown_loadings()
        lines += ["", "Loadings (|l| >= .30 shown)", table.to_string(float_format=fmt, na_rep="")]
        if self.n_factors > 1:
            lines += ["", "Factor correlations", self.factor_correlations.to_string(float_format=fmt)]
        lines += [*(f"Note: {n}" for n in self.notes)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        fmt = lambda v: f"{v:.3f}"  # noqa: E731
        head = html.escape(self.summary().split("\n\n")[0]).replace("\n", "<br>")
        return (
            f"<p>{head}</p>"
            + self._shown_loadings().to_html(float_format=fmt, na_rep="")
            + "<h4>Factor correlations</h4>"
            + self.factor_correlations.to_html(float_format=fmt)
        )

    def to_dict(self) -> dict[str, Any]:
        def num(v: Any) -> Any:
            v = float(v)
            return v if np.isfinite(v) else None

        return {
            "n_factors": self.n_factors,
            "rotation": self.rotation,
            "method": self.method,
            "n_obs": self.n_obs,
            "kmo": None if self.kmo is None else {k: num(v) for k, v in self.kmo["msa"].items()},
            "bartlett": None if self.bartlett is None else {k: num(v) for k, v in self.bartlett.iloc[0].items()},
            "parallel": None
            if self.parallel is None
            else {
                "n_factors": self.parallel.attrs["n_factors"],
                "seed": self.parallel.attrs.get("seed"),
                "observed": [num(v) for v in self.parallel["observed"]],
                "random": [num(v) for v in self.parallel.iloc[:, 2]],
            },
            "loadings": [
                {"item": item, **{str(f): num(v) for f, v in row.items()}, "h2": num(self.communalities[item])}
                for item, row in self.loadings.iterrows()
            ],
            "factor_correlations": {str(k): {str(j): num(v) for j, v in row.items()} for k, row in self.factor_correlations.iterrows()},
            "variance": {str(k): {str(j): num(v) for j, v in row.items()} for k, row in self.variance.iterrows()},
            "constructs": dict(self.constructs) if self.constructs else None,
            "notes": list(self.notes),
        }


def efa(
    data: pd.DataFrame, n_factors: int, *, rotation: str = "oblimin", method: str = "minres", missing: str = "listwise"
) -> EFAResult:
    """Exploratory factor analysis with an oblique rotation (factor_analyzer).

    ``method`` minres (``psych::fa`` default), ml or principal; ``rotation``
    oblimin (default) or promax, both oblique, so factors may correlate (the
    constructs of Figure 1 do). Returns pattern loadings, communalities, the
    factor correlation matrix and variance explained.
    """
    from factor_analyzer import FactorAnalyzer, Rotator

    x, r, n = _complete(data, "efa", missing)
    p = x.shape[1]
    if not (isinstance(n_factors, (int, np.integer)) and 1 <= n_factors < p):
        raise EFAOptionError(f"The 'n_factors' parameter of efa must be an int in [1, {p - 1}]. Got {n_factors!r} instead.")
    if rotation not in ROTATIONS:
        raise EFAOptionError(f"The 'rotation' parameter of efa must be one of {', '.join(ROTATIONS)}. Got {rotation!r} instead.")
    if method not in _METHODS:
        raise EFAOptionError(f"The 'method' parameter of efa must be one of {', '.join(_METHODS)}. Got {method!r} instead.")
    rot = None if (rotation == "none" or n_factors == 1) else rotation
    corr = np.array(r, copy=True)
    if method == "principal":
        w, v = np.linalg.eigh(corr)
        top = np.argsort(w)[::-1][:n_factors]
        unrotated = v[:, top] * np.sqrt(w[top])
    else:
        # factor_analyzer's public fit() breaks on scikit-learn >= 1.8 (check_array
        # lost force_all_finite), so call its extraction on the correlation matrix
        fa = FactorAnalyzer(n_factors=int(n_factors), rotation=None, method=method)
        unrotated = fa._fit_factor_analysis(corr.copy())
    phi = np.eye(n_factors)
    if rot is not None:
        rotator = Rotator(method=rot)
        load = rotator.fit_transform(unrotated)
        if rotator.phi_ is not None:
            phi = np.asarray(rotator.phi_)
    else:
        load = unrotated
    # signs: each factor's loadings sum positive; order: by variance explained (as psych)
    signs = np.sign(load.sum(axis=0))
    signs[signs == 0] = 1.0
    load, phi = load * signs, phi * np.outer(signs, signs)
    order = np.argsort(-(load**2).sum(axis=0), kind="stable")
    load, phi = load[:, order], phi[np.ix_(order, order)]
    names = [f"F{i + 1}" for i in range(n_factors)]
    h2 = (load @ phi * load).sum(axis=1)  # communality with correlated factors
    ss = (load**2).sum(axis=0)
    prop = ss / x.shape[1]
    cum = np.cumsum(prop)
    variance = pd.DataFrame({"ss.loadings": ss, "proportion": prop, "cumulative": cum}, index=names)
    return EFAResult(
        loadings=pd.DataFrame(load, index=x.columns, columns=names),
        communalities=pd.Series(h2, index=x.columns, name="h2"),
        factor_correlations=pd.DataFrame(phi, index=names, columns=names),
        variance=variance,
        n_factors=int(n_factors),
        rotation=rotation if rot else "none",
        method=method,
        n_obs=n,
    )


def efa_report(
    data: pd.DataFrame,
    instrument: Any | None = None,
    *,
    items: Sequence[str] | None = None,
    n_factors: int | None = None,
    rotation: str = "oblimin",
    method: str = "minres",
    seed: int | None = 20260101,
    n_iter: int = 100,
    missing: str = "listwise",
) -> EFAResult:
    """KMO, Bartlett, parallel analysis and the EFA, in one go.

    With an instrument, the items of its latent constructs are used after
    missing codes and reverse keying are applied (as :func:`reliability_report`).
    ``n_factors`` defaults to what parallel analysis suggests (at least 1).
    """
    if missing not in _MISSING:  # before any work, and named for this function
        raise EFAOptionError(f"The 'missing' parameter of efa_report must be one of {', '.join(_MISSING)}. "
                             f"Got {missing!r} instead.")
    notes: list[str] = []
    constructs = None
    if instrument is not None:
        from analysis.psychometrics.items import construct_ids, is_latent, items_of, recode_items

        if items is None:
            items = [i for c in construct_ids(instrument) if is_latent(instrument, c) for i in items_of(instrument, c)]
        constructs = {i: instrument.item(i).construct for i in items}
        x = recode_items(data, instrument, list(items))
    else:
        x = data[list(items)] if items is not None else data.select_dtypes("number")
    complete = x.dropna()
    if len(complete) < len(x) and missing == "listwise":
        notes.append(f"{len(x) - len(complete)} of {len(x)} respondents ({(len(x) - len(complete)) / len(x):.0%}) "
                     "with a missing answer left out (listwise; missing='pairwise' keeps them).")
    elif len(complete) < len(x):
        notes.append(f"pairwise correlations: {len(complete)} of {len(x)} respondents answered every item.")
    k = kmo(x, missing=missing)
    b = bartlett_sphericity(x, missing=missing)
    pa = parallel_analysis(x, seed=seed, n_iter=n_iter, missing=missing)
    if n_factors is None:
        n_factors = max(1, pa.attrs["n_factors"])
        notes.append(f"n_factors = {n_factors} from parallel analysis.")
    res = efa(x, n_factors, rotation=rotation, method=method, missing=missing)
    if k.loc["overall", "msa"] < 0.6:
        notes.append(f"KMO {k.loc['overall', 'msa']:.2f} < .60: the items may share too little variance for factoring.")
    return EFAResult(**{**res.__dict__, "kmo": k, "bartlett": b, "parallel": pa, "notes": tuple(notes),
                        "constructs": constructs})


def scree_plot(result: EFAResult, path: str | Path) -> Path:
    """Scree plot with the parallel-analysis line, beside the loadings as a heat map.

    Left: observed eigenvalues against the random ones (the factors retained
    are those above the dashed line); right: the pattern loadings, items in
    the order of the loadings table, labelled with their intended construct.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)  # files only; never needs a display
    import matplotlib.pyplot as plt

    path = Path(path)
    table = result.loadings_table()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, max(4.5, 0.22 * len(table) + 1.5)),
                                      gridspec_kw={"width_ratios": [1, 1.2]})
    if result.parallel is not None:
        pa = result.parallel
        k = np.arange(1, len(pa) + 1)
        left.plot(k, pa["observed"], "o-", color="#2166ac", label="observed")
        left.plot(k, pa.iloc[:, 2], "--", color="#b2182b", label=f"random ({pa.columns[2].replace('random.', '')})")
        left.axvline(pa.attrs["n_factors"] + 0.5, color="grey", linewidth=0.8)
        left.legend(frameon=False)
        left.set_title(f"Parallel analysis: {pa.attrs['n_factors']} factor(s)", loc="left", fontsize=10)
    else:
        ev = (result.loadings ** 2).sum().to_numpy()
        left.plot(np.arange(1, len(ev) + 1), ev, "o-", color="#2166ac")
        left.set_title("Sums of squared loadings", loc="left", fontsize=10)
    left.set_xlabel("factor")
    left.set_ylabel("eigenvalue")
    im = right.imshow(table.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    labels = [f"{i} ({result.constructs.get(i, '')})" if result.constructs else str(i) for i in table.index]
    right.set_yticks(range(len(table)), labels, fontsize=7)
    right.set_xticks(range(table.shape[1]), table.columns, fontsize=8)
    right.set_title(f"Loadings ({result.rotation}), n = {result.n_obs}", loc="left", fontsize=10)
    fig.colorbar(im, ax=right, fraction=0.04)
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    except (OSError, ValueError) as err:  # unwritable place or an unknown suffix
        raise EFAError(f"cannot write the plot to {path}: {err}") from None
    finally:
        plt.close(fig)
    return path
