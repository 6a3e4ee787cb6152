"""Two-level SEM (respondents nested in clusters), as lavaan fits it.

A model in lavaan's two-level syntax has a ``level: 1`` (within) and a
``level: 2`` (between) block. Each block is an ordinary SEM of its level's
variables; the ParameterTable holds both, with ``level`` (1, 2) and ``block``
(= level: one group) columns. The compiled :class:`~analysis.sem.model.Model`
treats the two blocks like two groups, so ``Sigma_W, mu_W`` (level 1) and
``Sigma_B, mu_B`` (level 2) and their Jacobians come from the same RAM code.

The likelihood (lavaan's ``lav_mvnorm_cluster``; derivation in
``docs/multilevel.md``): with ``y`` the level-1 variables (within-only and
shared) and ``z`` the between-only ones, cluster ``j`` of size ``n_j`` has
within deviations ``y_ij - ybar_j`` (covariance ``Sigma_W``, ``n_j - 1`` degrees
of freedom) independent of its between vector ``b_j = (ybar_j, z_j)``, which is
normal with mean ``mu`` and covariance ``V(n_j) = Sigma_B + diag(Sigma_W / n_j, 0)``.
So ``-2 logL = (N - J) [log|Sigma_W| + tr(Sigma_W^-1 S_PW)]
+ sum_s m_s [log|V(s)| + tr(V(s)^-1 (C_s + d_s d_s'))] + p_y sum_j log n_j
+ const``, summed over the distinct cluster sizes ``s`` (``m_s`` clusters, mean
``bbar_s`` of their between vectors, ``d_s = bbar_s - mu``, covariance ``C_s``).
That is a multi-group normal likelihood, so the gradient, the expected
information and the per-cluster scores (MLR) follow the single-level ML forms.

The saturated model (h1: free ``Sigma_W``, ``Sigma_B`` and means) comes from
lavaan's EM (:func:`saturated_em`, with its stopping rule, so chisq, SRMR and the
ICCs are lavaan's numbers); the baseline (variances only, at both levels) is
fitted with the same code as the model; chisq is ``2 (logL_h1 - logL)``.
Standard errors use the observed information (the Hessian), lavaan's default for
two-level models; MLR the sandwich with cluster scores and the Yuan-Bentler
(Mplus) scaled test. Missing answers: :class:`TwoLevelFIML` (case-wise). Several
groups: the same model per group, blocks ``2 (group - 1) + level``, and
:class:`GroupSum` adds the groups' likelihoods.
"""

from __future__ import annotations

import dataclasses
import math
import warnings as _warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from analysis.sem import distributions as sps

from analysis.errors import (
    DataError,
    HeywoodCaseWarning,
    IdentificationWarning,
    ModelSpecificationError,
    NonConvergenceWarning,
    OptionError,
    SEMWarning,
    warning_record,
)
from analysis.sem.data import sample_moments
from analysis.sem.estimators.inference import Inference
from analysis.sem.syntax import EXPRESSION_OPS, Statement, has_levels, parse_model

__all__ = [
    "has_levels",
    "build_twolevel_partable",
    "ClusterData",
    "MissingClusterData",
    "TwoLevelML",
    "TwoLevelFIML",
    "GroupSum",
    "TwoLevelSummary",
    "fit_twolevel",
    "icc",
    "icc_report",
    "composite_reliability_levels",
    "BetweenBoundaryWarning",
    "saturated_em",
    "icc_from_moments",
]


class BetweenBoundaryWarning(SEMWarning):
    """A between-level variance estimate is at (or beyond) zero."""


# --------------------------------------------------------------------------
# syntax -> ParameterTable
# --------------------------------------------------------------------------
def _level_numbers(statements: list[Statement]) -> dict[str, int]:
    labels = list(dict.fromkeys(s.level for s in statements if s.level is not None))
    if len(labels) != 2:
        raise ModelSpecificationError(
            f"a two-level model needs exactly two 'level:' blocks (within and between); found "
            f"{len(labels)} ({', '.join(labels) or 'none'})")
    known = {"1": 1, "within": 1, "2": 2, "between": 2}
    numbers = {lab: i + 1 for i, lab in enumerate(labels)}   # lavaan: in order of appearance
    for lab, k in numbers.items():
        if known.get(lab.lower(), k) != k:
            raise ModelSpecificationError(
                f"level {lab!r} is given as level {k}: write the within level (level: 1) first")
    return numbers


def build_twolevel_partable(model, *, observed=None, std_lv: bool = False, fixed_x: bool = True,
                            n_groups: int = 1, group_equal=(), group_partial=()) -> pd.DataFrame:
    """The ParameterTable of a two-level model, with lavaan's defaults.

    Each level is built like a single-level model with a mean structure; then,
    as lavaan does, the within-level intercepts of variables that also appear
    at level 2 are fixed to 0 (their mean lives at the between level). Labels
    shared across levels (and ``a == b``) make one free parameter. With
    ``n_groups`` the model is repeated per group (``group_equal`` as
    :func:`analysis.sem.partable.build_partable`); blocks run group by group, the
    within block first (lavaan's order: block = 2 (group - 1) + level).

    >>> pt = build_twolevel_partable("level: 1\\n fw =~ y1 + y2 + y3\\nlevel: 2\\n fb =~ y1 + y2 + y3")
    >>> pt.groupby("level")["free"].apply(lambda f: int((f > 0).sum())).tolist()
    [6, 9]
    """
    from analysis.sem.partable import COLUMNS, build_partable, exo_names, observed_names

    statements = parse_model(model) if isinstance(model, str) else list(model)
    numbers = _level_numbers(statements)
    exprs = [s for s in statements if s.op in EXPRESSION_OPS]
    for s in statements:
        if s.op in ("<", ">"):
            raise ModelSpecificationError(
                f"line {s.line}: inequality constraint '{s.lhs} {s.op} {s.rhs}' is not supported")
        if s.op == "|":
            raise ModelSpecificationError(
                f"line {s.line}: thresholds ('|'): ordered variables are not supported in two-level "
                "models here")
    by_level = {k: [s for s in statements if s.level is not None and numbers[s.level] == k]
                for k in (1, 2)}
    for k, sts in by_level.items():
        if not sts:
            raise ModelSpecificationError(f"level {k} has no statements")

    def build(k, fx):
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", SEMWarning)
            return build_partable(by_level[k], observed=observed, meanstructure=True, std_lv=std_lv,
                                  fixed_x=fx, n_groups=n_groups, group_equal=group_equal,
                                  group_partial=group_partial)

    tables = {k: build(k, fixed_x) for k in (1, 2)}
    ov = {k: observed_names(tables[k]) for k in (1, 2)}
    if fixed_x:
        # lavaan: a covariate exogenous at one level but endogenous at the other is endogenous
        for k in (1, 2):
            other = 3 - k
            exo_k = set(exo_names(tables[k]))
            clash = [v for v in exo_k if v in ov[other] and v not in set(exo_names(tables[other]))]
            if clash:
                _warnings.warn(f"variable(s) {', '.join(sorted(clash))} are exogenous at one level but "
                               "endogenous at the other; they are treated as endogenous (their "
                               f"variances are free at level {k})", SEMWarning, stacklevel=2)
                tables[k] = build(k, False)
    both = set(ov[1]) & set(ov[2])
    parts = []
    for k in (1, 2):
        t = tables[k][~tables[k]["op"].isin(EXPRESSION_OPS)].copy()
        t["level"] = k
        t["block"] = 2 * (t["group"] - 1) + k
        # group_equal labels rows with their plabel (".p2."): those name rows of this level only
        auto = t["label"].str.fullmatch(r"\.p\d+\.")
        t["_label"] = np.where(auto, f"level{k}" + t["label"], t["label"])
        t["_auto"] = auto
        if k == 1:
            # only the sum of the within and between means of a shared variable is identified
            fix = (t["op"] == "~1") & t["lhs"].isin(both) & (t["exo"] == 0)
            t.loc[fix, "free"], t.loc[fix, "ustart"] = 0, 0.0
        t["_free"] = [f"{k}:{f}" if f > 0 else "" for f in t["free"]]
        parts.append(t)
    pt = pd.concat(parts, ignore_index=True).sort_values(["group", "level"], kind="stable", ignore_index=True)
    # a label shared with a fixed row (e.g. a marker loading) fixes its rows at every level at
    # that value, as lavaan: equal to a fixed parameter means fixed
    for label, rows in pt[(pt["label"] != "") & ~pt["_auto"]].groupby("label").groups.items():
        fixed = pt.loc[rows][pt.loc[rows, "free"] == 0]
        if len(rows) > 1 and len(fixed):
            pt.loc[rows, ["free", "ustart", "_free"]] = [0, float(fixed["ustart"].iloc[0]), ""]

    # one free index per distinct parameter: rows sharing a level-free index or a label
    parent: dict = {}

    def find(a):
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    def union(a, b):
        parent[find(a)] = find(b)

    free_rows = [i for i in pt.index if pt.at[i, "_free"]]
    for i in free_rows:
        union(("row", i), ("free", pt.at[i, "_free"]))
        if pt.at[i, "_label"]:
            union(("row", i), ("label", pt.at[i, "_label"]))
    labels = set(pt["label"]) - {""}
    extra_rows = []
    for s in exprs:
        if s.op == "==":
            if s.lhs in labels and s.rhs in labels:
                union(("label", s.lhs), ("label", s.rhs))
            else:
                lab, other = (s.lhs, s.rhs) if s.lhs in labels else (s.rhs, s.lhs)
                try:
                    value = float(other)
                except ValueError:
                    raise ModelSpecificationError(
                        f"line {s.line}: constraint '{s.lhs} == {s.rhs}' is not supported: only "
                        "label == label and label == number are") from None
                if lab not in labels:
                    raise ModelSpecificationError(f"line {s.line}: unknown label {lab!r} in '{s.lhs} == {s.rhs}'")
                hit = pt["label"] == lab
                pt.loc[hit, "free"], pt.loc[hit, "ustart"], pt.loc[hit, "_free"] = 0, value, ""
        extra_rows.append(dict(lhs=s.lhs, op=s.op, rhs=s.rhs, user=2, block=0, group=0, level=0,
                               free=0, ustart=math.nan, start=math.nan, exo=0, label="", _free=""))
    index: dict = {}
    pt["free"] = [index.setdefault(find(("row", i)), len(index) + 1) if pt.at[i, "_free"] else 0
                  for i in pt.index]
    if extra_rows:
        pt = pd.concat([pt, pd.DataFrame(extra_rows)], ignore_index=True)
    pt["id"] = np.arange(1, len(pt) + 1)
    pt["plabel"] = [f".p{i}." for i in pt["id"]]
    # rows equal across groups carry the plabel of the first of them, as lavaan shows them
    auto = pt["_auto"].fillna(False).astype(bool) & (pt["free"] > 0)
    first = pt[pt["free"] > 0].drop_duplicates("free").set_index("free")["plabel"]
    pt.loc[auto, "label"] = pt.loc[auto, "free"].map(first)
    pt["start"] = pt["ustart"]
    cols = COLUMNS[:7] + ["level"] + COLUMNS[7:]
    pt = pt[cols].copy()
    pt["level"] = pt["level"].astype(int)
    if (pt["op"] == ":=").any():
        from analysis.sem.defined import DefinedParameters
        DefinedParameters(pt)    # unknown labels are named here
    return pt


def _check_cluster_column(data: pd.DataFrame, cluster: str) -> None:
    import difflib

    columns = list(map(str, data.columns))
    if cluster not in columns:
        close = difflib.get_close_matches(str(cluster), columns, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"cluster column {cluster!r} not found in the data{hint}")


def level_blocks_as_groups(pt: pd.DataFrame) -> pd.DataFrame:
    """The table the RAM code compiles: each level block as a 'group'."""
    out = pt.copy()
    out["group"] = np.where(out["level"] > 0, out["block"], 0)
    return out


# --------------------------------------------------------------------------
# data: the cluster statistics the likelihood needs
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterData:
    """Sufficient statistics of two-level data for a given y/z split."""

    y_names: tuple[str, ...]          # level-1 variables (within-only and shared)
    z_names: tuple[str, ...]          # between-only variables
    nobs: int
    cluster_sizes: np.ndarray         # n_j, one per cluster (in order of cluster_ids)
    cluster_ids: tuple
    s_pw: np.ndarray                  # pooled within covariance, divisor N - J
    between: np.ndarray               # J x (py + pz): (ybar_j, z_j)
    within_scatter: np.ndarray        # J x py x py: sum_i (y_ij - ybar_j)(...)'
    total_mean: np.ndarray            # grand means of y, then cluster means of z
    total_cov: np.ndarray             # covariance of y over respondents (divisor N)

    @property
    def n_clusters(self) -> int:
        return len(self.cluster_sizes)

    def size_classes(self):
        """(size, count, mean, covariance divisor count) of the between vectors by cluster size."""
        out = []
        for s in np.unique(self.cluster_sizes):
            b = self.between[self.cluster_sizes == s]
            cov, m = sample_moments(b)
            out.append((int(s), len(b), m, cov))
        return out

    @classmethod
    def from_frame(cls, data: pd.DataFrame, cluster: str, y_names, z_names) -> ClusterData:
        y_names, z_names = list(y_names), list(z_names)
        ids = data[cluster].to_numpy()
        codes, uniq = pd.factorize(ids, sort=False)
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
        y = data[y_names].to_numpy(dtype=float)[order]
        z = data[z_names].to_numpy(dtype=float)[order] if z_names else np.zeros((len(y), 0))
        sizes = np.bincount(codes)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        ybar = np.add.reduceat(y, starts, axis=0) / sizes[:, None]
        dev = y - ybar[codes]
        scatter = np.einsum("ni,nj->nij", dev, dev)
        within = np.add.reduceat(scatter, starts, axis=0)
        zj = z[starts]
        if z_names:
            spread = np.abs(z - zj[codes]).max(axis=0)
            bad = [v for v, s in zip(z_names, spread) if s > 1e-8 * max(1.0, np.abs(z).max())]
            if bad:
                v = bad[0]
                k = z_names.index(v)
                where = int(np.flatnonzero(np.abs(z[:, k] - zj[codes, k]) > 1e-8)[0])
                raise DataError(
                    f"between-level variable '{v}' is not constant within cluster "
                    f"{uniq[codes[where]]!r} of '{cluster}': a variable used only at level 2 must be a "
                    "property of the cluster (use it at level 1 too, or aggregate it first)")
        n, j = len(y), len(sizes)
        if j < 2:
            raise DataError(f"'{cluster}' has only {j} cluster: a two-level model needs many clusters")
        if n == j:
            raise DataError(f"every cluster of '{cluster}' has one respondent: there is no within level")
        total_cov, y_mean = sample_moments(y)
        return cls(tuple(y_names), tuple(z_names), n, sizes, tuple(uniq), within.sum(axis=0) / (n - j),
                   np.hstack([ybar, zj]), within, np.concatenate([y_mean, zj.mean(axis=0)]), total_cov)


# --------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------
def _vech_pairs(p):
    from analysis.sem.model import vech_indices

    return vech_indices(p)


class TwoLevelML:
    """Two-level normal ML on the surface :func:`analysis.sem.optimize.minimize` drives.

    ``objective`` is ``-logL / N`` (minus an offset), so the information is per
    case as for single-level ML; ``minus2logl`` is lavaan's ``-2 logL`` with its
    constant.
    """

    name = "ML"

    def __init__(self, model, data: ClusterData, blocks: tuple[int, int] = (0, 1)):
        self.model, self.data = model, data
        self.blocks = blocks                      # the (within, between) blocks of this group
        ov1, ov2 = list(model.ov_names[blocks[0]]), list(model.ov_names[blocks[1]])
        if list(data.y_names) != ov1:
            raise ValueError("ClusterData.y_names must be the level-1 variables of the model")
        self.py = len(ov1)
        names = ov1 + list(data.z_names)
        self.idx2 = np.array([names.index(v) for v in ov2], dtype=int)
        self.shared = np.isin(ov1, ov2)           # level-1 variables also at level 2
        self.pb = len(names)
        self.ntotal = data.nobs
        self.classes = data.size_classes()
        self.offset = 0.0
        n, j = data.nobs, data.n_clusters
        pz = len(data.z_names)
        # lavaan's fmin leaves out the log(2 pi) terms (but keeps p_y sum log n_j)
        self.log2pi_terms = (n * self.py + j * pz) * math.log(2 * math.pi)
        self.constant = self.log2pi_terms + self.py * float(np.sum(np.log(data.cluster_sizes)))
        # vech(V) positions of vech(Sigma_W) (y block) and vech(Sigma_B) (scattered)
        r1, c1 = _vech_pairs(self.py)
        r2, c2 = _vech_pairs(len(ov2))
        rb, cb = _vech_pairs(self.pb)
        pos = {(a, b): k for k, (a, b) in enumerate(zip(rb, cb))}
        self._map1 = np.array([pos[(max(a, b), min(a, b))] for a, b in zip(r1, c1)])
        a2, b2 = self.idx2[r2], self.idx2[c2]
        self._map2 = np.array([pos[(max(a, b), min(a, b))] for a, b in zip(a2, b2)])
        self._nvb = len(rb)

    # implied pieces ---------------------------------------------------------
    def _levels(self, x):
        moments = self.model.implied(x)
        return moments[self.blocks[0]], moments[self.blocks[1]]

    def _pieces(self, x):
        m1, m2 = self._levels(x)
        sw = m1.sigma
        sb = np.zeros((self.pb, self.pb))
        sb[np.ix_(self.idx2, self.idx2)] = m2.sigma
        mu = np.zeros(self.pb)
        mu[: self.py] += m1.mu
        mu[self.idx2] += m2.mu
        return sw, sb, mu

    def _v(self, sw, sb, n):
        v = sb.copy()
        v[: self.py, : self.py] += sw / n
        return v

    def minus2logl(self, x) -> float:
        """lavaan's -2 logL (with its constant); inf where a covariance is not positive definite."""
        sw, sb, mu = self._pieces(x)
        d = self.data
        try:
            lw = np.linalg.cholesky(sw)
        except np.linalg.LinAlgError:
            return math.inf
        wi = np.linalg.inv(sw)
        nj = d.nobs - d.n_clusters
        total = nj * (2 * np.sum(np.log(np.diag(lw))) + np.sum(wi * d.s_pw))
        for s, m, bbar, c in self.classes:
            v = self._v(sw, sb, s)
            try:
                lv = np.linalg.cholesky(v)
            except np.linalg.LinAlgError:
                return math.inf
            vi = np.linalg.inv(v)
            dd = bbar - mu
            total += m * (2 * np.sum(np.log(np.diag(lv))) + np.sum(vi * c) + dd @ vi @ dd)
        return float(total + self.constant)

    def objective(self, x) -> float:
        return self.minus2logl(x) / (2 * self.ntotal) - self.offset

    def _moment_gradients(self, x):
        """d(-2 logL)/d(Sigma_W, mu_W, Sigma_B, mu_B) in the blocks' own variable order."""
        sw, sb, mu = self._pieces(x)
        d = self.data
        wi = np.linalg.inv(sw)
        gw = (d.nobs - d.n_clusters) * (wi - wi @ d.s_pw @ wi)
        gv = np.zeros((self.pb, self.pb))
        gmu = np.zeros(self.pb)
        for s, m, bbar, c in self.classes:
            vi = np.linalg.inv(self._v(sw, sb, s))
            dd = bbar - mu
            vd = vi @ dd
            g = m * (vi - vi @ c @ vi - np.outer(vd, vd))
            gw += g[: self.py, : self.py] / s
            gv += g
            gmu -= 2 * m * vd
        return gw, gmu[: self.py], gv[np.ix_(self.idx2, self.idx2)], gmu[self.idx2]

    def gradient(self, x) -> np.ndarray:
        try:
            gw, gm1, gb, gm2 = self._moment_gradients(x)
        except np.linalg.LinAlgError:       # a singular Sigma_W or V: no gradient there
            return np.full(self.model.n_free, np.nan)
        gmats = [np.zeros((len(n), len(n))) for n in self.model.ov_names]
        gmus = [np.zeros(len(n)) for n in self.model.ov_names]
        (b1, b2) = self.blocks
        gmats[b1], gmats[b2], gmus[b1], gmus[b2] = gw, gb, gm1, gm2
        return self.model.chain_gradient(x, gmats, gmus) / (2 * self.ntotal)

    def _jacobians(self, x):
        """Jacobians of vech(Sigma_W), mu_W, vech(Sigma_B), mu_B (model's delta rows)."""
        deltas = self.model.delta(x)
        out = []
        for g in self.blocks:
            lay = self.model.moment_layout(g)
            out += [deltas[g][lay["sigma"]], deltas[g][lay["mu"]]]
        return out

    def _score_jacobians(self, x):
        """The Jacobians the cluster scores use: lavaan's, whose scores give a shared variable's
        mean to level 2 only. Its within-level mean is not always 0 (a within covariate's fixed.x
        mean times its slopes), but lavaan's MLR meat leaves that path out, so this does too."""
        js1, jm1, js2, jm2 = self._jacobians(x)
        jm1 = np.where(self.shared[:, None], 0.0, jm1)
        return js1, jm1, js2, jm2

    def information(self, x) -> np.ndarray:
        """Expected information per case (the normal-theory weight of each independent piece)."""
        from analysis.sem.estimators.base import ml_weight

        sw, sb, mu = self._pieces(x)
        js1, jm1, js2, jm2 = self._jacobians(x)
        d = self.data
        info = (d.nobs - d.n_clusters) * js1.T @ ml_weight(np.linalg.inv(sw)) @ js1
        jmu = np.zeros((self.pb, js1.shape[1]))
        jmu[: self.py] += jm1
        jmu[self.idx2] += jm2
        jb = np.zeros((self._nvb, js1.shape[1]))
        np.add.at(jb, self._map2, js2)
        for s, m, bbar, c in self.classes:
            vi = np.linalg.inv(self._v(sw, sb, s))
            jv = jb.copy()
            np.add.at(jv, self._map1, js1 / s)
            info += m * (jv.T @ ml_weight(vi) @ jv + jmu.T @ vi @ jmu)
        return info / self.ntotal

    def hessian(self, x, h: float = 1e-5) -> np.ndarray:
        """Observed information per case: the Hessian of the objective, by Richardson
        differences of the analytic gradient."""
        x = np.asarray(x, dtype=float)
        k = len(x)
        hess = np.zeros((k, k))
        for i in range(k):
            e = np.zeros(k)
            step = h * max(1.0, abs(x[i]))
            e[i] = step
            g = [self.gradient(x + c * e) for c in (-2, -1, 1, 2)]
            hess[:, i] = (g[0] - 8 * g[1] + 8 * g[2] - g[3]) / (12 * step)
        return (hess + hess.T) / 2

    def cluster_scores(self, x) -> np.ndarray:
        """J x k: each cluster's gradient of its -logL (the MLR meat)."""
        sw, sb, mu = self._pieces(x)
        d = self.data
        wi = np.linalg.inv(sw)
        js1, jm1, js2, jm2 = self._score_jacobians(x)
        r1, c1 = _vech_pairs(self.py)
        r2, c2 = _vech_pairs(len(self.idx2))
        w1 = np.where(r1 == c1, 1.0, 2.0)
        w2 = np.where(r2 == c2, 1.0, 2.0)
        vinv = {s: np.linalg.inv(self._v(sw, sb, s)) for s, *_ in self.classes}
        sizes = d.cluster_sizes
        dev = d.between - mu
        gw = (sizes - 1)[:, None, None] * wi - np.einsum("ab,jbc,cd->jad", wi, d.within_scatter, wi)
        gmu = np.zeros((len(sizes), self.pb))
        gb = np.zeros((len(sizes), self.pb, self.pb))
        for s, vi in vinv.items():
            sel = sizes == s
            vd = dev[sel] @ vi
            g = vi[None] - np.einsum("ja,jb->jab", vd, vd)
            gb[sel] = g
            gw[sel] += g[:, : self.py, : self.py] / s
            gmu[sel] = -2 * vd
        g2 = gb[:, self.idx2][:, :, self.idx2]
        scores = (gw[:, r1, c1] * w1) @ js1 + gmu[:, : self.py] @ jm1 \
            + (g2[:, r2, c2] * w2) @ js2 + gmu[:, self.idx2] @ jm2
        return scores / 2

    def implied_levels(self, x):
        """(Sigma_W, mu_W, Sigma_B, mu_B) of each level's own variables."""
        m1, m2 = self._levels(x)
        return m1.sigma, m1.mu, m2.sigma, m2.mu


class GroupSum:
    """Several groups' two-level likelihoods as one estimator (multi-group two-level ML):
    the objective, gradient and information are the groups' own weighted by n_g / N, the
    cluster scores are stacked."""

    name = "ML"

    def __init__(self, estimators: list):
        self.parts = estimators
        self.ntotal = sum(e.ntotal for e in estimators)
        self.model = estimators[0].model
        self.weights = [e.ntotal / self.ntotal for e in estimators]

    def _sum(self, method, x):
        return sum(w * getattr(e, method)(x) for w, e in zip(self.weights, self.parts))

    def objective(self, x) -> float:
        return float(self._sum("objective", x))

    def gradient(self, x) -> np.ndarray:
        return self._sum("gradient", x)

    def information(self, x) -> np.ndarray:
        return self._sum("information", x)

    def hessian(self, x) -> np.ndarray:
        return self._sum("hessian", x)

    def minus2logl(self, x) -> float:
        return float(sum(e.minus2logl(x) for e in self.parts))

    def cluster_scores(self, x) -> np.ndarray:
        # lavaan 0.6 weights each group's cross-product of cluster scores by G n_g / N (its
        # robust SEs of group g are sqrt(G n_g / N) times the plain sandwich): kept, so that
        # MLR agrees with lavaan
        g = len(self.parts)
        return np.vstack([e.cluster_scores(x) * math.sqrt(g * e.ntotal / self.ntotal) for e in self.parts])


# --------------------------------------------------------------------------
# saturated and baseline models: ordinary tables, fitted by the same code
# --------------------------------------------------------------------------
def _moment_table(ov1, ov2, *, saturated: bool, exo: dict[int, list[str]]) -> pd.DataFrame:
    """Level 1: (co)variances of ov1, free means of within-only variables; level 2: of ov2
    with free means. ``saturated`` frees every covariance, else only variances (baseline);
    the covariances among a level's fixed.x covariates stay (fixed), as in lavaan's baseline."""
    rows = []
    shared = set(ov1) & set(ov2)
    for k, ov in ((1, ov1), (2, ov2)):
        xs = set(exo.get(k, ()))
        for i, a in enumerate(ov):
            for b in ov[i:]:
                is_exo = a in xs and b in xs
                if a == b or saturated or is_exo:
                    rows.append((a, "~~", b, k, 0 if is_exo else 1, int(is_exo)))
        for a in ov:
            if k == 1 and a in shared:
                rows.append((a, "~1", "", k, 0, 0))
            else:
                rows.append((a, "~1", "", k, 0 if a in xs else 1, int(a in xs)))
    pt = pd.DataFrame(rows, columns=["lhs", "op", "rhs", "level", "free", "exo"])
    pt["ustart"] = np.where((pt["free"] == 0) & (pt["exo"] == 0), 0.0, np.nan)
    pt["free"] = np.where(pt["free"] > 0, np.cumsum(pt["free"]), 0)
    pt["block"], pt["group"], pt["user"], pt["label"] = pt["level"], pt["level"], 0, ""
    pt["start"] = pt["ustart"]
    return pt


def _moment_start(pt: pd.DataFrame, sw, mw, sb, mb, ov1, ov2) -> np.ndarray:
    """Start (or fixed.x) value of each row of a moment table from level matrices."""
    out = np.full(len(pt), np.nan)
    for i, (l, o, r, k) in enumerate(zip(pt["lhs"], pt["op"], pt["rhs"], pt["level"])):
        ov, s, m = (ov1, sw, mw) if k == 1 else (ov2, sb, mb)
        if o == "~~":
            out[i] = s[ov.index(l), ov.index(r)]
        elif o == "~1":
            out[i] = m[ov.index(l)]
    return out


def _estimator(mdl, data, blocks: tuple[int, int] = (0, 1)):
    """Complete-data ML, or FIML when the data carry missing answers."""
    if isinstance(data, MissingClusterData):
        return TwoLevelFIML(mdl, data, blocks)
    return TwoLevelML(mdl, data, blocks)


def _fit_table(pt: pd.DataFrame, data, control: dict | None = None):
    from analysis.sem.model import Model
    from analysis.sem.optimize import minimize

    mdl = Model(level_blocks_as_groups(pt), meanstructure=True)
    est = _estimator(mdl, data)
    opt = minimize(est, mdl.x_start, **(control or {}))
    return mdl, est, opt


@dataclass
class _GroupData:
    """One group's data and saturated model: what the fit needs of each group."""

    n: int
    blocks: tuple[int, int]
    cdata: ClusterData
    mdata: "MissingClusterData | None"
    sw: np.ndarray
    mw: np.ndarray
    sb: np.ndarray
    mb: np.ndarray
    m2ll_h1: float
    h1_pt: pd.DataFrame
    base_pt: pd.DataFrame
    h1_df: int              # h1 moments minus the fixed.x ones
    loglik_x: float
    icc: pd.Series

    @property
    def incomplete(self) -> bool:
        return self.mdata is not None

    @property
    def data_for(self):
        """What the estimators read: the cluster statistics, or the answers for FIML."""
        return self.mdata if self.mdata is not None else self.cdata

    @classmethod
    def build(cls, kept, cluster, ov1, ov2, exo, blocks, control) -> _GroupData:
        z_names = [v for v in ov2 if v not in ov1]
        incomplete = bool(kept[ov1 + z_names].isna().to_numpy().any())
        mdata = MissingClusterData.from_frame(kept, cluster, ov1, z_names) if incomplete else None
        cdata = mdata.complete if incomplete else ClusterData.from_frame(kept, cluster, ov1, z_names)
        sw, mw, sb, mb, logl_h1 = saturated_em(cdata, ov2)          # lavaan's EM
        m2ll_h1 = -2 * logl_h1
        # the h1 as a model table (for the MLR trace): a shared variable's mean at level 2
        shared = np.array([v in ov2 for v in ov1], dtype=bool)
        h1_pt = _moment_table(ov1, ov2, saturated=True, exo={})
        mb_fold = mb + np.array([mw[ov1.index(v)] if v in ov1 else 0.0 for v in ov2])
        h1_pt["start"] = _moment_start(h1_pt, sw, np.where(shared, 0.0, mw), sb, mb_fold, ov1, ov2)
        if incomplete:
            # lavaan fits the unrestricted model by FIML (from the EM of the filled-in data here)
            _, h1_est, h1_opt = _fit_table(h1_pt, mdata, control)
            sw, mw, sb, mb = h1_est.implied_levels(h1_opt.x)
            m2ll_h1 = h1_est.minus2logl(h1_opt.x)
            h1_pt["start"] = h1_opt.x[np.maximum(h1_pt["free"].to_numpy(), 1) - 1]
            h1_pt.loc[h1_pt["free"] == 0, "start"] = h1_pt.loc[h1_pt["free"] == 0, "ustart"]
        # fixed.x moments: the covariances of each level's covariates and their means (a
        # covariate at both levels has its mean at level 2 only)
        n_exo = sum(len(v) * (len(v) + 1) // 2 for v in exo.values()) + len(exo[2]) \
            + len([v for v in exo[1] if v not in ov2])
        base_pt = _moment_table(ov1, ov2, saturated=False, exo=exo)
        base_pt["start"] = _moment_start(base_pt, sw, mw, sb, mb, ov1, ov2)
        base_pt["ustart"] = np.where(base_pt["exo"] == 1, base_pt["start"], base_pt["ustart"])
        return cls(cdata.nobs, blocks, cdata, mdata, sw, mw, sb, mb, m2ll_h1, h1_pt, base_pt,
                   int(h1_pt["free"].max()) - n_exo, _loglik_x(kept, cluster, exo, ov1, ov2),
                   icc_from_moments(sw, sb, ov1, ov2))


# --------------------------------------------------------------------------
# the fit, in lavaan's steps
# --------------------------------------------------------------------------
def fit_twolevel(model, data: pd.DataFrame, *, cluster: str, estimator: str = "ML",
                 missing: str = "listwise", std_lv: bool = False, fixed_x: bool = True,
                 se: str = "standard", test: str = "standard", control: dict | None = None,
                 warn: bool = True, group: str | None = None, group_equal=(), group_partial=()):
    """Fit a two-level SEM (lavaan's ``sem(model, data, cluster = "COL")``).

    Called by :func:`analysis.sem.fit_sem` when the syntax has ``level:``
    blocks. ``estimator``: "ML" (observed-information SEs) or "MLR"
    (cluster-robust Huber-White SEs and the Yuan-Bentler scaled test). ``group``:
    a multi-group two-level model (the same model in every group, each group with
    its own clusters; ``group_equal``/``group_partial`` as fit_sem), as lavaan fits
    it with one ``group:`` block per group.
    """
    from analysis.sem.data import check_model_data
    from analysis.sem.results import FitResult, TestStatistic
    from analysis.sem.standardize import rsquare, standardize

    # 1. options -------------------------------------------------------------
    estimator = (estimator or "ML").upper()
    if estimator not in ("ML", "MLR"):
        raise OptionError(f"The 'estimator' parameter of fit_sem must be ML or MLR for a two-level "
                          f"model. Got {estimator!r} instead.")
    missing = {"ml": "fiml", "fiml": "fiml", "listwise": "listwise"}.get(str(missing).lower())
    if missing is None:
        raise OptionError("The 'missing' parameter of fit_sem must be 'listwise' or 'fiml' for a "
                          "two-level model.")
    if cluster is None:
        raise OptionError("the model has 'level:' blocks (a two-level model): name the cluster column "
                          "(cluster='COL' in Python, --cluster COL on the command line)")
    se = "standard" if se in (None, "default") else se
    test = "standard" if test in (None, "default") else test
    if se not in ("standard", "robust.huber.white", "robust", "none") or \
            test not in ("standard", "yuan.bentler.mplus", "none"):
        raise OptionError("two-level models take se='standard' (or 'robust') and test='standard' "
                          "(MLR gives the Yuan-Bentler scaled test)")
    if not isinstance(data, pd.DataFrame):
        raise OptionError("a two-level model needs the raw data (data=, a DataFrame), not sample_cov")
    _check_cluster_column(data, cluster)
    records: list[dict] = []

    # 3. parameter table (before the data: it says which variables are needed)
    syntax = model if isinstance(model, str) else ""
    group_labels: list[str] = []
    if group is not None:
        _check_cluster_column(data, group)
        group_labels = [str(v) for v in pd.unique(data[group].dropna())]   # lavaan: order of appearance
        if len(group_labels) < 2:
            raise DataError(f"group column {group!r} has {len(group_labels)} group(s): a multi-group model "
                            "needs at least two")
    n_groups = max(len(group_labels), 1)
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always", SEMWarning)
        pt = model.copy() if isinstance(model, pd.DataFrame) else \
            build_twolevel_partable(model, observed=list(map(str, data.columns)), std_lv=std_lv,
                                    fixed_x=fixed_x, n_groups=n_groups, group_equal=group_equal,
                                    group_partial=group_partial)
    records += [{"type": "model", "category": type(w.message).__name__, "message": str(w.message)}
                for w in caught]
    ipt = level_blocks_as_groups(pt)
    from analysis.sem.model import Model

    mdl0 = Model(ipt, meanstructure=True)
    ov1, ov2 = list(mdl0.ov_names[0]), list(mdl0.ov_names[1])
    z_names = [v for v in ov2 if v not in ov1]
    ov_all = ov1 + z_names

    # 2. data ------------------------------------------------------------------
    check = check_model_data(data, ov_all, missing=missing)
    for text in check.warnings:
        records.append({"type": "data", "category": "DataWarning", "message": text})
    kept = check.data.copy()
    position = pd.Series(np.arange(1, len(data) + 1), index=data.index)   # data rows from 1
    for col in [cluster] + ([group] if group is not None else []):
        values = data.loc[kept.index, col]
        if values.isna().any():
            rows = position.loc[values.index[values.isna().to_numpy()]].tolist()
            records.append({"type": "data", "category": "DataWarning", "message": (
                f"{len(rows)} row(s) have no value in the {'cluster' if col == cluster else 'group'} column "
                f"'{col}' and were dropped (data rows {', '.join(map(str, rows[:10]))}"
                f"{', ...' if len(rows) > 10 else ''})")})
            kept = kept[values.notna().to_numpy()]
        kept[col] = data.loc[kept.index, col].to_numpy()
    exo = {k: sorted(set(ipt.loc[(ipt["level"] == k) & (ipt["exo"] == 1), "lhs"])) for k in (1, 2)}
    covariates = sorted(set(exo[1]) | set(exo[2]))
    if missing == "fiml" and covariates:
        # fixed.x: the covariates' moments are fixed at the data, so (as lavaan) cases with a
        # missing covariate are deleted, not fitted by FIML
        no_x = kept[covariates].isna().any(axis=1).to_numpy()
        if no_x.any():
            rows = position.loc[kept.index[no_x]].tolist()
            text = (f"{len(rows)} case(s) deleted because of missing values in exogenous covariate(s) "
                    f"{', '.join(c for c in covariates if kept[c].isna().any())} with fixed.x = TRUE (as "
                    f"lavaan; data rows {', '.join(map(str, rows[:10]))}{', ...' if len(rows) > 10 else ''})")
            records.append({"type": "data", "category": "DataWarning", "message": text, "n_deleted": len(rows)})
            if warn:
                _warnings.warn(text, SEMWarning, stacklevel=3)
            kept = kept[~no_x]
    parts = [kept] if group is None else [kept[kept[group].astype(str) == lab] for lab in group_labels]

    # 4. sample statistics per group: the saturated (h1) two-level model ------------
    groups = [_GroupData.build(part, cluster, ov1, ov2, exo, (2 * g, 2 * g + 1), control)
              for g, part in enumerate(parts)]
    incomplete = any(gd.incomplete for gd in groups)

    # 5. start values (fixed.x covariates at their h1 moments) ------------------
    start = np.full(len(ipt), np.nan)
    for g, gd in enumerate(groups):
        rows = np.flatnonzero((pt["group"] == g + 1).to_numpy())
        start[rows] = _level_start_values(ipt.iloc[rows], gd.sw, gd.mw, gd.sb, gd.mb, ov1, ov2, gd.n)
    ipt["start"] = start
    exo_rows = (ipt["exo"] == 1).to_numpy()
    ipt.loc[exo_rows, "ustart"] = ipt.loc[exo_rows, "start"]
    pt.loc[exo_rows, "ustart"] = ipt.loc[exo_rows, "start"]
    # a covariate at both levels has its mean at level 2: its within mean is 0, as in lavaan
    shared_mean = ((ipt["level"] == 1) & (ipt["op"] == "~1") & (ipt["exo"] == 1) & ipt["lhs"].isin(ov2)).to_numpy()
    ipt.loc[shared_mean, "ustart"] = pt.loc[shared_mean, "ustart"] = 0.0

    # 6. model --------------------------------------------------------------------
    mdl = Model(ipt, meanstructure=True)
    ests = []
    for gd in groups:
        e = _estimator(mdl, gd.data_for, gd.blocks)
        e.offset = gd.m2ll_h1 / (2 * gd.n)
        ests.append(e)
    est = ests[0] if n_groups == 1 else GroupSum(ests)

    # 7. optimize ----------------------------------------------------------------
    from analysis.sem.optimize import minimize

    opt = minimize(est, mdl.x_start, **(control or {}))
    x = opt.x
    advice = ""
    for gd, lab in zip(groups, group_labels or [""]):
        flat = [v for v in ov1 if v in ov2 and gd.icc[v] < 0.01]
        if not flat:
            continue   # (almost) no between-cluster variance: the between model has nothing to explain
        where = f" in group {lab}" if lab else ""
        advice = (f"; {', '.join(flat)} {'has' if len(flat) == 1 else 'have'} an ICC below .01{where} (almost "
                  "no variance between clusters): fix their level-2 variances to zero, drop them from level 2, "
                  "or fit a single-level model with cluster-robust SEs (cluster= without level: blocks)")
        records.append(warning_record(
            BetweenBoundaryWarning,
            f"ICC below .01 for {', '.join(f'{v} ({gd.icc[v]:.3f})' for v in flat)}{where} with "
            f"{gd.cdata.n_clusters} clusters: the between-level part of these variables is (almost) nothing, "
            "so their between-level parameters are weakly determined" + advice[advice.index(":"):],
            variables=flat, level=2))
    if not opt.converged:
        records.append(warning_record(NonConvergenceWarning,
                                      f"the two-level model did not converge after {opt.iterations} "
                                      f"iterations ({opt.message}); estimates are not trustworthy{advice}",
                                      iterations=opt.iterations))

    # 8. vcov: observed information (MLR: sandwich with cluster scores) -----------
    n = sum(gd.n for gd in groups)
    vcov, a_inv, scores = None, None, None
    if se != "none":
        try:
            a_inv = np.linalg.inv(n * est.hessian(x))
            if estimator == "MLR" or se.startswith("robust"):
                scores = est.cluster_scores(x)
                vcov = a_inv @ (scores.T @ scores) @ a_inv
            else:
                vcov = a_inv
            if not np.all(np.isfinite(vcov)) or np.any(np.diag(vcov) < 0):
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            vcov = None
            records.append(warning_record(IdentificationWarning,
                                          "could not compute standard errors: the information matrix "
                                          "could not be inverted; the model may not be identified"))

    # 9. test ----------------------------------------------------------------------
    m2ll = est.minus2logl(x)
    m2ll_h1 = sum(gd.m2ll_h1 for gd in groups)
    npar = mdl.n_free
    df = sum(gd.h1_df for gd in groups) - npar
    chisq = max(m2ll - m2ll_h1, 0.0)
    tst = {"chisq": chisq, "df": df, "pvalue": float(sps.chi2.sf(chisq, df)) if df > 0 else math.nan}
    trace_h1 = None
    if estimator == "MLR" and test != "none" and vcov is not None:
        trace_h1 = sum(_h1_trace(gd.data_for, gd.h1_pt, exo) for gd in groups)
        if df > 0:
            trace_h0 = _trace(a_inv, scores)
            c = (trace_h1 - trace_h0) / df
            if not c > 0:
                # as lavaan: no scaled test (NA) when the scaling factor is not positive
                text = (f"the Yuan-Bentler scaling factor is not positive ({c:.4g}): the scaled test and the "
                    f"scaled and robust fit measures are not available (NA); with {sum(gd.cdata.n_clusters for gd in groups)} "
                    "clusters the cluster-robust information is too unstable -- report the ML test, or "
                    "collect more clusters")
                records.append(warning_record(SEMWarning, text, scaling_factor=float(c)))
                if warn:
                    _warnings.warn(text, SEMWarning, stacklevel=3)
                c = math.nan
            tst.update({"chisq.scaled": chisq / c, "df.scaled": df, "chisq.scaling.factor": c,
                        "pvalue.scaled": float(sps.chi2.sf(chisq / c, df)),
                        "trace.UGamma": trace_h1 - trace_h0,     # kept when c is NA (scaled RMSEA)
                        "scaling.factor.h1": trace_h1 / sum(gd.h1_df for gd in groups),
                        # lavaan divides by its free rows (a label shared by two rows counts twice)
                        "scaling.factor.h0": trace_h0 / int((ipt["free"] > 0).sum())})
        else:   # df = 0: lavaan's scaled test is the unscaled one with no scaling factor
            tst.update({"chisq.scaled": chisq, "df.scaled": df, "chisq.scaling.factor": math.nan,
                        "pvalue.scaled": math.nan})

    # 10. fit measures: the baseline (variances only, at both levels) per group -------
    base_df = sum(gd.h1_df - int(gd.base_pt["free"].max()) for gd in groups)
    base_chisq = math.nan
    base_fits = []
    if test != "none":   # test="none" (e.g. simulation refits) skips the baseline model
        base_fits = [_fit_table(gd.base_pt, gd.data_for, control)[1:] for gd in groups]
        base_chisq = max(sum(b.minus2logl(o.x) for b, o in base_fits) - m2ll_h1, 0.0)
    per_group = [(gd.n, (gd.sw, gd.sb), e.implied_levels(x)) for gd, e in zip(groups, ests)]
    # lavaan's fmin: -2 logL without its log(2 pi) terms over 2N, per group, weighted by n_g / N
    fmin = sum(gd.n / n * (e.minus2logl(x) - e.log2pi_terms) / (2 * n) for gd, e in zip(groups, ests))
    fit = _fit_measures(tst, base_chisq, base_df, m2ll, m2ll_h1, npar, n,
                        sum(gd.cdata.n_clusters for gd in groups), per_group,
                        sum(gd.loglik_x for gd in groups), fmin)
    if "chisq.scaled" in tst:
        # the baseline's own scaling factor, from its Hessian and cluster scores
        trace_base = sum(_trace(np.linalg.inv(b.ntotal * b.hessian(o.x)), b.cluster_scores(o.x))
                         for b, o in base_fits)
        c_base = (trace_h1 - trace_base) / base_df
        c_base = c_base if c_base > 0 else math.nan     # as the model's: NA when not positive
        scaled = _scaled_measures(tst, base_chisq, base_df, c_base, n, n_groups)
        fit = pd.concat([fit, scaled])
    if incomplete:
        # lavaan's robust indices with missing data use other corrections, which it does not
        # compute for two-level models either: NA (its fitMeasures() lists them as NA)
        robust = ["cfi", "tli", "nnfi", "rni", "rmsea", "rmsea.ci.lower", "rmsea.ci.upper", "rmsea.pvalue",
                  "rmsea.notclose.pvalue"]
        fit = pd.concat([fit.drop([k + ".robust" for k in robust], errors="ignore"),
                         pd.Series(math.nan, index=[k + ".robust" for k in robust])])

    # estimates, SEs; 11. standardize; 12. defined ----------------------------------
    from analysis.sem.estimators.inference import fill_inference, set_inference

    ipt = mdl.to_partable(x)
    ipt = fill_inference(ipt, x, vcov)
    defined = (ipt["op"] == ":=").to_numpy()
    if defined.any():
        from analysis.sem.defined import DefinedParameters

        dp = DefinedParameters(ipt)
        vals = dp.values(x)
        e = ipt["est"].to_numpy(float).copy()
        e[defined] = vals
        ipt["est"] = e
        if vcov is not None:
            jac = dp.jacobian(x)
            set_inference(ipt, defined, vals, np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, vcov, jac), 0)))
    ipt = standardize(ipt, mdl, x)
    if vcov is not None:   # delta-method SEs of std.lv and std.all (lavaan's standardizedSolution)
        from analysis.sem.standardize import standardized_se

        for col, values in standardized_se(mdl, x, vcov).items():
            ipt[f"{col}.se"] = values
    r2 = rsquare(ipt, mdl, x)
    if r2 is not None:   # rsquare numbers the blocks: back to group and level
        block = r2["group"].astype(int)
        r2 = r2.assign(group=(block - 1) // 2 + 1, level=(block - 1) % 2 + 1)
    out_pt = ipt.copy()
    out_pt["group"] = pt["group"].to_numpy()
    records += _boundary_warnings(out_pt, {g + 1: gd.icc for g, gd in enumerate(groups)})
    records += _vanishing_factors(out_pt)
    records += _heywood(out_pt)
    if warn:
        for rec in records:
            cat = {c.__name__: c for c in (HeywoodCaseWarning, NonConvergenceWarning,
                                           IdentificationWarning, BetweenBoundaryWarning)}.get(rec.get("category"))
            if cat is not None:
                _warnings.warn(rec["message"], cat, stacklevel=3)

    tests = [TestStatistic(float(chisq), float(df), float(tst["pvalue"]))]
    if "chisq.scaled" in tst:
        tests.append(TestStatistic(float(tst["chisq.scaled"]), float(df), float(tst["pvalue.scaled"]),
                                   name="chisq.scaled", method="yuan.bentler.mplus",
                                   scaling_factor=tst["chisq.scaling.factor"]))
    robust = estimator == "MLR" or se.startswith("robust")
    options = {"estimator": estimator, "missing": missing, "cluster": cluster, "std_lv": std_lv,
               "group_equal": list(group_equal or ()),
               "fixed_x": fixed_x, "meanstructure": True,
               "se": "robust.huber.white" if robust else se,
               "test": "yuan.bentler.mplus" if estimator == "MLR" else test,
               "information": "observed"}
    summaries = [TwoLevelSummary(
        cluster=cluster, n_clusters=gd.cdata.n_clusters,
        cluster_sizes=tuple(int(v) for v in gd.cdata.cluster_sizes), icc=gd.icc,
        within=_moments_frame(gd.sw, gd.mw, ov1), between=_moments_frame(gd.sb, gd.mb, ov2),
        implied_within=_moments_frame(*e.implied_levels(x)[:2], ov1),
        implied_between=_moments_frame(*e.implied_levels(x)[2:], ov2)) for gd, e in zip(groups, ests)]
    levels = summaries[0]
    if n_groups > 1:   # the first group's pieces, all clusters counted, and every group's own
        levels = dataclasses.replace(
            levels, n_clusters=sum(sm.n_clusters for sm in summaries),
            cluster_sizes=tuple(v for sm in summaries for v in sm.cluster_sizes),
            groups=tuple(zip(group_labels, summaries)))
    patterns = sum(gd.mdata.n_patterns for gd in groups if gd.incomplete)
    return FitResult(
        params=out_pt, fit_indices=fit, estimator=estimator, converged=bool(opt.converged),
        iterations=int(opt.iterations), optimizer=opt.method, nobs=tuple(gd.n for gd in groups),
        group_labels=tuple(group_labels), group=group,
        tests=tuple(tests), warnings=tuple(records), r2=r2, options=options,
        missing={**dict(check.missing), **({"n_patterns": patterns} if incomplete else {})},
        model=mdl, x=x, sample_stats=None, vcov=vcov, syntax=syntax,
        estimator_object=est, optimization=opt, data_check=check,
        inference=Inference(se=options["se"], test=options["test"], information="observed", missing=missing,
                            test_information="hessian" if estimator == "MLR" else "observed"),
        twolevel=levels)


@dataclass(frozen=True)
class TwoLevelSummary:
    """What a two-level fit adds: clusters, ICCs and the per-level moments."""

    cluster: str
    n_clusters: int
    cluster_sizes: tuple[int, ...]
    icc: pd.Series
    """lavInspect(fit, "icc"): between share of each level-1 variable's variance (h1)."""
    within: dict
    """Within-level sample statistics (h1): ``{"cov": DataFrame, "mean": Series}``."""
    between: dict
    implied_within: dict
    implied_between: dict
    groups: tuple = ()
    """Multi-group fits: ``(label, TwoLevelSummary)`` of every group (the fields above are
    the first group's, with every cluster counted)."""

    def to_dict(self) -> dict:
        def mom(m):
            return {"cov": m["cov"].to_dict(), "mean": m["mean"].to_dict()}

        if self.groups:
            return {"cluster": self.cluster, "nclusters": self.n_clusters,
                    "groups": {lab: sm.to_dict() for lab, sm in self.groups}}

        return {"cluster": self.cluster, "nclusters": self.n_clusters,
                "cluster_size": {"min": min(self.cluster_sizes), "max": max(self.cluster_sizes),
                                 "mean": float(np.mean(self.cluster_sizes))},
                "icc": self.icc.to_dict(), "h1": {"within": mom(self.within), "between": mom(self.between)},
                "implied": {"within": mom(self.implied_within), "between": mom(self.implied_between)}}


def _moments_frame(cov, mean, names) -> dict:
    return {"cov": pd.DataFrame(cov, index=names, columns=names), "mean": pd.Series(mean, index=names)}


def icc_from_moments(sw, sb, ov1, ov2) -> pd.Series:
    """ICC of each level-1 variable: between variance over total (0 for within-only ones)."""
    out = {}
    for i, v in enumerate(ov1):
        if v in ov2:
            b = sb[ov2.index(v), ov2.index(v)]
            out[v] = float(b / (sw[i, i] + b))
        else:
            out[v] = 0.0
    return pd.Series(out, name="icc")


def _level_start_values(ipt, sw, mw, sb, mb, ov1, ov2, n) -> np.ndarray:
    """Start values per level from that level's h1 moments (lavaan starts from them too)."""
    from analysis.sem.data import SampleStats
    from analysis.sem.optimize import start_values

    start = np.full(len(ipt), np.nan)
    for k, ov, s, m in ((1, ov1, sw, mw), (2, ov2, sb, mb)):
        rows = np.flatnonzero((ipt["level"] == k).to_numpy())
        sub = ipt.iloc[rows].copy()
        sub["group"] = 1
        stats = SampleStats(tuple(ov), (s,), (m,), (n,))
        start[rows] = start_values(sub.reset_index(drop=True), stats)
    lv2 = (ipt["level"] == 2) & (ipt["op"] == "~~") & (ipt["lhs"] == ipt["rhs"]) & (ipt["free"] > 0)
    # a between variance that starts at ~0 cannot move: start it at a small positive value
    for i in np.flatnonzero(lv2.to_numpy()):
        v = ipt.iloc[i]["lhs"]
        ref = sb[ov2.index(v), ov2.index(v)] if v in ov2 else 0.05
        start[i] = max(start[i], 0.05 * max(ref, 1e-3)) if np.isfinite(start[i]) else 0.05
    return start


def _h1_trace(data, h1_pt, exo) -> float:
    """tr(A1^-1 B1) of the saturated model at its estimates (A: observed information, B: cross-
    product of cluster scores), the fixed.x moments left out: the h1 half of the Yuan-Bentler
    (Mplus) scaling ``c = [tr(A1^-1 B1) - tr(A0^-1 B0)] / df``, as lavaan computes it."""
    from analysis.sem.model import Model

    h1_mdl = Model(level_blocks_as_groups(h1_pt), meanstructure=True)
    h1_est = _estimator(h1_mdl, data)
    x_h1 = h1_mdl.x_start
    a1 = h1_est.hessian(x_h1) * h1_est.ntotal
    s1 = h1_est.cluster_scores(x_h1)
    keep = np.ones(a1.shape[0], dtype=bool)
    for k, names in exo.items():
        rows = (h1_pt["level"] == k) & h1_pt["lhs"].isin(names) & (h1_pt["free"] > 0) & \
            ((h1_pt["op"] == "~1") | h1_pt["rhs"].isin(names))
        keep[h1_pt.loc[rows, "free"].to_numpy() - 1] = False
    return _trace(np.linalg.inv(a1[np.ix_(keep, keep)]), s1[:, keep])


def _trace(a_inv, scores) -> float:
    """tr(A^-1 B) with B the cross-product of the cluster scores."""
    return float(np.sum(a_inv * (scores.T @ scores)))


def _scaled_measures(tst, base_chisq, base_df, c_base, n, n_groups=1) -> pd.Series:
    """lavaan's scaled and robust fit measures under MLR, from the model's and the baseline's
    Yuan-Bentler tests (the single-level code: analysis.sem.estimators.robust)."""
    from analysis.sem.estimators.robust import robust_fit_indices

    c = tst["chisq.scaling.factor"]
    test = {"trace.UGamma": c * tst["df"], **tst, "test.scaled": "yuan.bentler.mplus"}
    baseline = {"chisq": base_chisq, "df": base_df, "chisq.scaled": base_chisq / c_base, "df.scaled": base_df,
                "pvalue.scaled": float(sps.chi2.sf(base_chisq / c_base, base_df)),
                "chisq.scaling.factor": c_base}
    return pd.Series(robust_fit_indices(test, baseline, n, n_groups), dtype=float)


def _loglik_x(kept, cluster, exo, ov1, ov2) -> float:
    """Log-likelihood of the fixed.x covariates, as lavaan subtracts it from logl: a saturated
    normal of the within-only covariates over the respondents plus one of the between-only
    covariates over the clusters (lavaan's ``loglik.x.w + loglik.x.b``; a covariate at both
    levels is in neither)."""
    def h1_loglik(values):
        n, p = values.shape
        logdet = np.linalg.slogdet(sample_moments(values)[0])[1]
        return -n / 2 * (p * math.log(2 * math.pi) + logdet + p)

    total = 0.0
    within_only = [v for v in exo.get(1, ()) if v not in ov2]   # lavaan leaves shared covariates out
    between_only = [v for v in exo.get(2, ()) if v not in ov1]
    if within_only:
        total += h1_loglik(kept[within_only].to_numpy(dtype=float))
    if between_only:
        total += h1_loglik(kept.groupby(cluster, sort=False)[between_only].first().to_numpy(dtype=float))
    return total


def _force_pd(m, tol: float = 1e-6) -> np.ndarray:
    """lavaan's ``lav_matrix_symmetric_force_pd``: eigenvalues below ``tol`` times the largest
    are raised to it (a 1 x 1 matrix to ``tol``)."""
    if m.shape == (1, 1):
        return np.array([[max(m[0, 0], tol)]])
    values, vectors = np.linalg.eigh(m)
    top = abs(values[-1])
    values = np.where(values / top < tol, tol * top, values)
    return (vectors * values) @ vectors.T


def _srmr_level(s, sigma) -> float:
    def cor(m):
        d = np.sqrt(np.diag(m))
        return m / np.outer(d, d)

    if np.any(np.diag(sigma) <= 0):
        return math.nan
    r = cor(s) - cor(sigma)
    rows, cols = np.tril_indices(len(s))
    return float(np.sqrt(np.sum(r[rows, cols] ** 2) / len(rows)))


def _fit_measures(tst, base_chisq, base_df, m2ll, m2ll_h1, npar, n, n_clusters, per_group,
                  loglik_x=0.0, fmin=math.nan) -> pd.Series:
    """lavaan's fit measures of a two-level fit. ``per_group``: ``(n_g, (S_W, S_B) of the h1,
    implied (Sigma_W, mu_W, Sigma_B, mu_B))`` of each group; SRMR per level is weighted by
    n_g / N and RMSEA carries lavaan's sqrt(G). ``fmin``: lavaan's two-level objective."""
    from analysis.sem.fitindices import incremental_indices, rmsea_indices

    chisq, df = tst["chisq"], tst["df"]
    g = len(per_group)
    # with fixed.x covariates, lavaan reports the likelihood of the rest given them
    logl, logl_h1 = -m2ll / 2 - loglik_x, -m2ll_h1 / 2 - loglik_x
    srmr_w = sum(ng / n * _srmr_level(h1[0], imp[0]) for ng, h1, imp in per_group)
    # lavaan compares the between h1 with the implied matrix forced positive definite (a
    # negative level-2 residual variance would otherwise leave its correlations undefined)
    srmr_b = sum(ng / n * _srmr_level(h1[1], _force_pd(imp[2])) for ng, h1, imp in per_group)
    out = {
        "npar": npar, "fmin": fmin, "chisq": chisq, "df": df, "pvalue": tst["pvalue"],
        "baseline.chisq": base_chisq, "baseline.df": base_df,
        "baseline.pvalue": float(sps.chi2.sf(base_chisq, base_df)) if base_df > 0 else math.nan,
        **incremental_indices(chisq, df, base_chisq, base_df),
        "logl": logl, "unrestricted.logl": logl_h1,
        "aic": -2 * logl + 2 * npar, "bic": -2 * logl + npar * math.log(n),
        "ntotal": n, "bic2": -2 * logl + npar * math.log((n + 2) / 24),
        **rmsea_indices(chisq, df, n, n_groups=g),
        "rmsea.ci.level": 0.90, "rmsea.close.h0": 0.05, "rmsea.notclose.h0": 0.08,
        "srmr": srmr_w + srmr_b, "srmr_within": srmr_w, "srmr_between": srmr_b,
        "nclusters": n_clusters,
    }
    return pd.Series(out, dtype=float)


def _vanishing_factors(pt) -> list[dict]:
    """A between factor whose variance goes to 0 while its loadings grow (the likelihood's
    ridge when its indicators share no between variance): say so, instead of numbers."""
    recs = []
    lv_rows = pt[(pt["op"] == "=~") & (pt["level"] == 2)]
    for (g, f), loads in lv_rows.groupby(["group", "lhs"]):
        var = pt[(pt["lhs"] == f) & (pt["rhs"] == f) & (pt["op"] == "~~") & (pt["level"] == 2)
                 & (pt["group"] == g)]
        if var.empty or var["free"].iloc[0] == 0:
            continue
        psi, lam = float(var["est"].iloc[0]), float(loads["est"].abs().max())
        if abs(psi) < 1e-3 and lam > 10:
            recs.append(warning_record(
                BetweenBoundaryWarning,
                f"the between-level factor '{f}' has (almost) no variance ({psi:.2g}) and loadings up to "
                f"{lam:.3g}: its indicators share (almost) no variance between clusters, so the factor is "
                "not identified by the data; drop it (or some indicators) from level 2", variable=f, level=2))
    return recs


def _heywood(pt) -> list[dict]:
    recs = []
    for l, o, r, lev, e in zip(pt["lhs"], pt["op"], pt["rhs"], pt["level"], pt["est"]):
        if o == "~~" and l == r and e < 0:
            recs.append(warning_record(HeywoodCaseWarning,
                                       f"negative variance estimate for '{l}' at level {lev} ({e:.4g}): "
                                       "a Heywood case", variable=l, level=int(lev)))
    return recs


def _boundary_warnings(pt, iccs: dict) -> list[dict]:
    """A free between-level variance at zero: say so, with the item's ICC and what to do.
    ``iccs``: the ICCs of each group (numbered from 1)."""
    recs = []
    rows = pt[(pt["level"] == 2) & (pt["op"] == "~~") & (pt["lhs"] == pt["rhs"]) & (pt["free"] > 0)]
    for l, e, se, g in zip(rows["lhs"], rows["est"], rows["se"], rows["group"]):
        icc_g = iccs.get(int(g), pd.Series(dtype=float))
        small = e <= 1e-4 or (np.isfinite(se) and se > 0 and e < 1e-3 * max(se, 1e-12) * 10 and e < 0.01)
        if not small:
            continue
        icc_note = f" (ICC {icc_g[l]:.3f})" if l in icc_g.index else ""
        recs.append(warning_record(
            BetweenBoundaryWarning,
            f"the between-level variance of '{l}' is at the boundary ({e:.3g}){icc_note}: the data show "
            f"(almost) no between-cluster variation in '{l}' beyond the model; fix it to zero at level 2 "
            f"('{l} ~~ 0*{l}'), or drop '{l}' from the between level, and check that there are enough "
            "clusters", variable=l, level=2))
    return recs


def icc(data: pd.DataFrame, variables, *, cluster: str) -> pd.DataFrame:
    """ICC(1) of each variable from the saturated two-level model of ``variables`` jointly
    (lavaan's ``lavInspect(fit, "icc")``): between variance / (within + between), both from
    lavaan's EM. Rows listwise complete on ``variables``.

    Returns columns ``variable, icc, within, between, n_obs, n_clusters, design_effect``
    (the design effect ``1 + (mean cluster size - 1) ICC`` of a mean or proportion).

    >>> # In R: lavInspect(sem("level: 1\n y1 ~~ y2\nlevel: 2\n y1 ~~ y2", d, cluster = "c"), "icc")
    """
    from analysis.sem.data import check_model_data

    variables = list(variables)
    _check_cluster_column(data, cluster)
    check = check_model_data(data, variables, missing="listwise")
    kept = check.data.copy()
    cl = data.loc[kept.index, cluster]
    kept, cl = kept[cl.notna()], cl[cl.notna()]
    kept[cluster] = cl.to_numpy()
    cdata = ClusterData.from_frame(kept, cluster, variables, [])
    sw, _, sb, _, _ = saturated_em(cdata, variables)
    value = icc_from_moments(sw, sb, variables, variables).to_numpy()
    mean_size = float(np.mean(cdata.cluster_sizes))
    return pd.DataFrame({"variable": variables, "icc": value, "within": np.diag(sw), "between": np.diag(sb),
                         "n_obs": cdata.nobs, "n_clusters": cdata.n_clusters,
                         "design_effect": 1 + (mean_size - 1) * value})


def icc_report(data: pd.DataFrame, instrument, *, cluster: str, constructs=None) -> pd.DataFrame:
    """ICCs of an instrument's items and construct scores (each on its own answered cases).

    Items are recoded from the instrument first (missing codes, reverse keys); construct
    scores are the instrument's scores (:func:`instruments.score.score_columns`). Columns:
    ``kind`` (item / construct), ``construct``, then those of :func:`icc`.
    """
    from instruments.score import clean_items, score_columns

    _check_cluster_column(data, cluster)
    ids = [c.id for c in instrument.constructs if constructs is None or c.id in constructs]
    items = {c: [it.id for it in instrument.items_of(c) if it.id in data.columns
                 and getattr(it, "role", "item") == "item"] for c in ids}
    items = {c: v for c, v in items.items() if v}
    if not items:
        raise DataError(f"the data have none of the items of {', '.join(ids) or 'the instrument'}")
    clean = clean_items(data, instrument, [i for v in items.values() for i in v]).astype(float)
    scores = score_columns(clean, instrument)
    frame = pd.concat([clean, scores[[c for c in items if c in scores.columns]]], axis=1)
    frame[cluster] = data[cluster].to_numpy()
    out = []
    for c, its in items.items():
        for name, kind in [(i, "item") for i in its] + ([(c, "construct")] if c in frame.columns else []):
            one = frame[[name, cluster]].dropna()
            row = icc(one, [name], cluster=cluster).iloc[0].to_dict()
            out.append({"kind": kind, "construct": c, **row})
    return pd.DataFrame(out)


def saturated_em(cdata: ClusterData, ov2, *, tol: float = 1e-4, max_iter: int = 5000):
    """The saturated (h1) two-level model by EM, as lavaan computes its h1 (lavaan 0.6's
    ``lav_mvnorm_cluster_em_sat``: identity/zero start, stop when the log-likelihood gains less
    than ``tol``, at most ``max_iter`` steps: lavaan 0.6-14 calls it with 1e-4 and 5000).

    E-step: the between effects ``u_j`` of the level-1 variables given cluster j's means and
    between-only values; M-step: moments of ``u_j`` and of the within deviations
    ``y_ij - u_j``. Returns ``(Sigma_W, mu_W, Sigma_B, mu_B, logl)`` in the levels' own
    variable orders. Stopping where lavaan stops keeps chisq, SRMR and the ICCs on lavaan's
    numbers (the exact maximum lies ~1e-2 higher in logL; see docs/multilevel.md).
    All clusters of one size share their matrices, so each step is a few batched products.
    """
    y_names, z_names = list(cdata.y_names), list(cdata.z_names)
    py, pz = len(y_names), len(z_names)
    n, j = cdata.nobs, cdata.n_clusters
    sizes = cdata.cluster_sizes
    ybar = cdata.between[:, :py]
    z = cdata.between[:, py:]
    y1y1 = cdata.within_scatter.sum(axis=0) + (ybar * sizes[:, None]).T @ ybar
    s_zz, mu_z = sample_moments(z)  # over the clusters
    within_only = np.array([v not in ov2 for v in y_names], dtype=bool)
    sw, sb, syz = np.eye(py), np.diag((~within_only).astype(float)), np.zeros((py, pz))
    mw, mb = np.zeros(py), np.zeros(py)
    uniq, cls, counts = np.unique(sizes, return_inverse=True, return_counts=True)
    uniq_f = uniq.astype(float)
    idx2 = [(y_names + z_names).index(v) for v in ov2]
    b = np.hstack([z, ybar])
    loglik = _SizeClassLoglik(cdata, ov2)

    def implied(sw, sb, syz, mw, mb):
        """lavaan's 2l -> implied map: within-only variables have no between part."""
        sb_y = np.where(np.outer(~within_only, ~within_only), sb, 0.0)
        full = np.zeros((py + pz, py + pz))
        full[:py, :py], full[:py, py:], full[py:, :py], full[py:, py:] = sb_y, syz, syz.T, s_zz
        mu_b = np.concatenate([np.where(within_only, 0.0, mb), mu_z])
        return sw, mw, full[np.ix_(idx2, idx2)], mu_b[idx2]

    fx_old = -loglik(*implied(sw, sb, syz, mw, mb)) / 2
    for _ in range(max_iter):
        s1 = np.hstack([syz, sb])                                 # Cov(u, (z, ybar))
        mu = np.concatenate([mu_z, mw + mb])
        omega = np.empty((len(uniq), pz + py, pz + py))          # Cov((z, ybar)) per size
        omega[:, :pz, :pz], omega[:, :pz, pz:], omega[:, pz:, :pz] = s_zz, syz.T, syz
        omega[:, pz:, pz:] = sw / uniq_f[:, None, None] + sb
        k = s1 @ np.linalg.inv(omega)                             # sizes x py x (pz + py)
        ev = mb + np.einsum("jab,jb->ja", k[cls], b - mu)
        covv = sb - k @ s1.T
        covv = (covv + np.swapaxes(covv, 1, 2)) / 2
        cb = np.einsum("s,sab->ab", counts, covv) + ev.T @ ev
        nev = ev * sizes[:, None]
        cw2 = np.einsum("s,sab->ab", counts * uniq_f, covv) + nev.T @ ev - ybar.T @ nev - nev.T @ ybar
        m_w = ((ybar - ev) * sizes[:, None]).sum(axis=0) / n
        m_b = ev.mean(axis=0)
        sw = (y1y1 + cw2) / n - np.outer(m_w, m_w)
        sb = cb / j - np.outer(m_b, m_b)
        syz = ((z.T @ ev) / j - np.outer(mu_z, m_b)).T
        mw, mb = m_w, m_b
        # within-only variables have no between part: keep it at zero
        sb[within_only, :], sb[:, within_only], syz[within_only, :], mb[within_only] = 0.0, 0.0, 0.0, 0.0
        fx = -loglik(*implied(sw, sb, syz, mw, mb)) / 2
        if fx - fx_old < tol:
            break
        fx_old = fx
    return (*implied(sw, sb, syz, mw, mb), fx)


class _SizeClassLoglik:
    """-2 logL at given level moments (level-1 order y, level-2 order ov2), batched over the
    distinct cluster sizes."""

    def __init__(self, cdata: ClusterData, ov2):
        y_names = list(cdata.y_names)
        names = y_names + list(cdata.z_names)
        self.py, self.pb = len(y_names), len(names)
        self.idx2 = [names.index(v) for v in ov2]
        classes = cdata.size_classes()
        self.size = np.array([c[0] for c in classes], dtype=float)
        self.count = np.array([c[1] for c in classes], dtype=float)
        self.bbar = np.array([c[2] for c in classes])
        self.cov = np.array([c[3] for c in classes])
        self.n_within = cdata.nobs - cdata.n_clusters
        self.s_pw = cdata.s_pw
        self.const = (cdata.nobs * self.py + cdata.n_clusters * len(cdata.z_names)) * math.log(2 * math.pi) \
            + self.py * float(np.sum(np.log(cdata.cluster_sizes)))

    def __call__(self, sw, mw, sb2, mb2) -> float:
        py, pb = self.py, self.pb
        sb = np.zeros((pb, pb))
        sb[np.ix_(self.idx2, self.idx2)] = sb2
        mu = np.zeros(pb)
        mu[:py] += mw
        mu[self.idx2] += mb2
        total = 0.0
        if py:
            sign, logdet = np.linalg.slogdet(sw)
            if sign <= 0:
                return math.inf
            total = self.n_within * (logdet + np.sum(np.linalg.inv(sw) * self.s_pw))
        v = np.broadcast_to(sb, (len(self.size), pb, pb)).copy()
        v[:, :py, :py] += sw / self.size[:, None, None]
        sign, logdet = np.linalg.slogdet(v)
        if np.any(sign <= 0):
            return math.inf
        vi = np.linalg.inv(v)
        d = self.bbar - mu
        quad = np.einsum("sab,sab->s", vi, self.cov) + np.einsum("sa,sab,sb->s", d, vi, d)
        return float(total + np.sum(self.count * (logdet + quad)) + self.const)




# --------------------------------------------------------------------------
# missing data: case-wise (FIML) two-level likelihood
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class MissingClusterData:
    """Each cluster's observed answers, for the FIML two-level likelihood.

    Per cluster: ``values`` (the observed entries: every respondent's observed level-1
    answers, then the cluster's observed between-only values), ``var`` (each entry's
    position in ``(y, z)``) and ``resp`` (the respondent of each entry, -1 for z).
    ``complete`` holds mean-imputed statistics, used only for start values and the
    scoring steps' approximate information.
    """

    y_names: tuple[str, ...]
    z_names: tuple[str, ...]
    nobs: int
    clusters: tuple
    complete: ClusterData
    n_patterns: int

    @classmethod
    def from_frame(cls, data: pd.DataFrame, cluster: str, y_names, z_names) -> MissingClusterData:
        y_names, z_names = list(y_names), list(z_names)
        codes, uniq = pd.factorize(data[cluster].to_numpy(), sort=False)
        y = data[y_names].to_numpy(dtype=float)
        z = data[z_names].to_numpy(dtype=float) if z_names else np.zeros((len(y), 0))
        py = len(y_names)
        clusters = []
        for c in range(len(uniq)):
            rows = np.flatnonzero(codes == c)
            yc, zc = y[rows], z[rows]
            zj = np.full(len(z_names), np.nan)
            for k, v in enumerate(z_names):
                seen = zc[~np.isnan(zc[:, k]), k]
                if len(seen):
                    if np.abs(seen - seen[0]).max() > 1e-8 * max(1.0, abs(seen[0])):
                        raise DataError(
                            f"between-level variable '{v}' is not constant within cluster {uniq[c]!r} of "
                            f"'{cluster}': a variable used only at level 2 must be a property of the cluster")
                    zj[k] = seen[0]
            obs = ~np.isnan(yc)
            resp_i, var_i = np.nonzero(obs)
            zo = np.flatnonzero(~np.isnan(zj))
            values = np.concatenate([yc[obs], zj[zo]])
            var = np.concatenate([var_i, py + zo]).astype(int)
            resp = np.concatenate([resp_i, np.full(len(zo), -1)]).astype(int)
            clusters.append((values, var, resp))
        filled = data.copy()
        for v in y_names + z_names:
            filled[v] = filled[v].fillna(filled[v].mean())
        if z_names:   # the imputed z must stay constant within a cluster
            filled[z_names] = filled.groupby(cluster)[z_names].transform("first")
        patterns = len({tuple(r) for r in np.isnan(y).tolist()})
        return cls(tuple(y_names), tuple(z_names), len(y), tuple(clusters),
                   ClusterData.from_frame(filled, cluster, y_names, z_names), patterns)


class TwoLevelFIML(TwoLevelML):
    """Two-level ML with missing answers (lavaan's ``missing = "ml"`` for clustered data).

    Cluster j's observed entries are jointly normal: ``Cov(y_ik, y_il) = Sigma_B[k, l] +
    [i = i'] Sigma_W[k, l]`` over its respondents' observed answers, and the between-only
    values add their ``Sigma_B`` rows. Each cluster's matrix is built from index maps and
    its gradient scattered back to ``Sigma_W``, ``Sigma_B`` and the means.
    """

    def __init__(self, model, mdata: MissingClusterData, blocks: tuple[int, int] = (0, 1)):
        super().__init__(model, mdata.complete, blocks)
        self.mdata = mdata
        self.ntotal = mdata.nobs
        self._maps = []
        for values, var, resp in mdata.clusters:
            same = (resp[:, None] == resp[None, :]) & (resp[:, None] >= 0)
            self._maps.append((values, var, same, np.ix_(var, var)))
        n_entries = sum(len(m[0]) for m in self._maps)
        self.constant = self.log2pi_terms = n_entries * math.log(2 * math.pi)

    def _full(self, x):
        sw, sb, mu = self._pieces(x)
        swf = np.zeros((self.pb, self.pb))
        swf[: self.py, : self.py] = sw
        return swf, sb, mu

    def _cluster_terms(self, x):
        swf, sb, mu = self._full(x)
        for values, var, same, grid in self._maps:
            sig = sb[grid] + np.where(same, swf[grid], 0.0)
            yield values - mu[var], sig, var, same, grid

    def minus2logl(self, x) -> float:
        total = 0.0
        for r, sig, *_ in self._cluster_terms(x):
            try:
                chol = np.linalg.cholesky(sig)
            except np.linalg.LinAlgError:
                return math.inf
            w = np.linalg.solve(chol, r)
            total += 2 * np.sum(np.log(np.diag(chol))) + w @ w
        return float(total + self.constant)

    def _cluster_moment_grads(self, x):
        """Per cluster d(-2 logL_j) / d(Sigma_W (py x py), Sigma_B (pb x pb), mu (pb))."""
        for r, sig, var, same, grid in self._cluster_terms(x):
            inv = np.linalg.inv(sig)
            ir = inv @ r
            g = inv - np.outer(ir, ir)
            gb = np.zeros((self.pb, self.pb))
            np.add.at(gb, grid, g)
            gw = np.zeros((self.pb, self.pb))
            np.add.at(gw, grid, np.where(same, g, 0.0))
            gmu = np.zeros(self.pb)
            np.add.at(gmu, var, -2 * ir)
            yield gw[: self.py, : self.py], gb, gmu

    def _moment_gradients(self, x):
        gw = np.zeros((self.py, self.py))
        gb = np.zeros((self.pb, self.pb))
        gmu = np.zeros(self.pb)
        for a, b, c in self._cluster_moment_grads(x):
            gw += a
            gb += b
            gmu += c
        return gw, gmu[: self.py], gb[np.ix_(self.idx2, self.idx2)], gmu[self.idx2]

    def cluster_scores(self, x) -> np.ndarray:
        js1, jm1, js2, jm2 = self._score_jacobians(x)
        r1, c1 = _vech_pairs(self.py)
        r2, c2 = _vech_pairs(len(self.idx2))
        w1 = np.where(r1 == c1, 1.0, 2.0)
        w2 = np.where(r2 == c2, 1.0, 2.0)
        rows = []
        for gw, gb, gmu in self._cluster_moment_grads(x):
            g2 = gb[np.ix_(self.idx2, self.idx2)]
            rows.append((gw[r1, c1] * w1) @ js1 + gmu[: self.py] @ jm1
                        + (g2[r2, c2] * w2) @ js2 + gmu[self.idx2] @ jm2)
        return np.array(rows) / 2


# --------------------------------------------------------------------------
# composite reliability per level (semTools' compRelSEM for two-level CFAs)
# --------------------------------------------------------------------------
def _level_pieces(fit, level: int):
    """Loadings (indicators x factors), factor covariance and the h1 covariance of one level."""
    pt = fit.params
    rows = pt[(pt["level"] == level) & (pt["op"] == "=~")]
    lv = list(dict.fromkeys(rows["lhs"]))
    ov = list(fit.model.ov_names[level - 1])
    lam = pd.DataFrame(0.0, index=ov, columns=lv)
    for l, r, e in zip(rows["lhs"], rows["rhs"], rows["est"]):
        lam.loc[r, l] = e
    cov_all, _ = fit.model.implied_all(fit.x)[level - 1]
    names = list(fit.model.group_maps[level - 1].names)
    idx = [names.index(f) for f in lv]
    phi = pd.DataFrame(cov_all[np.ix_(idx, idx)], index=lv, columns=lv)
    sample = (fit.twolevel.within if level == 1 else fit.twolevel.between)["cov"]
    return lam, phi, sample


def composite_reliability_levels(fit, *, config=(), shared=()) -> pd.DataFrame:
    """Composite reliability of a two-level CFA, as semTools' ``compRelSEM`` (Lai 2021).

    - ``config``: constructs with a within and a between factor of the same name and
      indicators: ``omega_W`` (within composite) and ``omega_2L`` (total composite, common
      variance of both levels over the total variance).
    - ``shared``: between-only constructs: ``omega_B`` (common between variance over the
      variance of a cluster mean, ``Sigma_B + Sigma_W / n``, with ``1/n`` averaged over
      clusters) and ``IRR`` (between share of that variance).
    - neither: each factor's omega within its own level.

    Denominators use the h1 (sample) covariance matrices, as ``obs.var = TRUE``.
    Returns columns ``construct, level, coefficient, estimate``.

    >>> # In R: compRelSEM(fit, config = "f"); compRelSEM(fit, shared = "fb")
    """
    if fit.twolevel is None:
        raise OptionError("composite_reliability_levels needs a two-level fit (level: blocks, cluster=)")
    lam1, phi1, s1 = _level_pieces(fit, 1)
    lam2, phi2, s2 = _level_pieces(fit, 2)
    rows = []

    def inds(lam, f):
        return [v for v in lam.index if lam.loc[v, f] != 0]

    for f in config:
        if f not in lam1.columns or f not in lam2.columns:
            raise ModelSpecificationError(f"configural construct '{f}' must be a factor of the same name at "
                                          "both levels")
        ind = inds(lam1, f)
        if ind != inds(lam2, f):
            raise ModelSpecificationError(f"configural construct '{f}' has different indicators at the two levels")
        c1 = float(np.sum(np.outer(lam1.loc[ind, f], lam1.loc[ind, f]) * phi1.loc[f, f]))
        c2 = float(np.sum(np.outer(lam2.loc[ind, f], lam2.loc[ind, f]) * phi2.loc[f, f]))
        t1, t2 = float(s1.loc[ind, ind].to_numpy().sum()), float(s2.loc[ind, ind].to_numpy().sum())
        rows += [(f, "within", "omega_W", c1 / t1), (f, "total", "omega_2L", (c1 + c2) / (t1 + t2))]
    inv_n = float(np.mean(1.0 / np.asarray(fit.twolevel.cluster_sizes, dtype=float)))
    for f in shared:
        if f not in lam2.columns:
            raise ModelSpecificationError(f"shared construct '{f}' is not a between-level factor")
        ind = inds(lam2, f)
        within_ind = [v for v in ind if v in s1.index]
        c2 = float(np.sum(np.outer(lam2.loc[ind, f], lam2.loc[ind, f]) * phi2.loc[f, f]))
        t2 = float(s2.loc[ind, ind].to_numpy().sum())
        t1 = float(s1.loc[within_ind, within_ind].to_numpy().sum()) * inv_n
        rows += [(f, "between", "omega_B", c2 / (t1 + t2)), (f, "between", "IRR", t2 / (t1 + t2))]
    if not config and not shared:
        for level, lam, phi, s in ((1, lam1, phi1, s1), (2, lam2, phi2, s2)):
            for f in lam.columns:
                ind = inds(lam, f)
                c = float(np.sum(np.outer(lam.loc[ind, f], lam.loc[ind, f]) * phi.loc[f, f]))
                rows.append((f, "within" if level == 1 else "between", "omega",
                             c / float(s.loc[ind, ind].to_numpy().sum())))
    return pd.DataFrame(rows, columns=["construct", "level", "coefficient", "estimate"])
