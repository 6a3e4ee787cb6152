"""The compiled model: RAM matrices per group, implied moments and their Jacobian.

For group ``g`` the variables are the observed ones (``ov_names[g]``, in the
ParameterTable's order) followed by the latent ones. With ``A`` the directed
paths (``A[i, j]`` = effect of j on i), ``S`` the (residual) covariances and
``m`` the intercepts, ``B = (I - A)^-1`` and ``E = B[:p]`` (the observed rows):

    Sigma = E S E'        mu = E m

and for ordered variables (delta parameterization, scales ``d`` from ``~*~``)
``Sigma* = D Sigma D`` and thresholds ``d_v (tau_k - mu_v)``.

``delta(x)`` gives the analytic Jacobian of the stacked moments
``[tau, mu, vech(Sigma)]`` (``vech``: lower triangle column by column, as
lavaan) with respect to the free vector ``x``, built from precomputed index
maps with no Python loop over parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.sem.partable import vnames, n_free
from analysis.sem.syntax import EXPRESSION_OPS

__all__ = ["Model", "Moments", "vech_indices"]


@dataclass
class Moments:
    """Model-implied moments of one group (``tau`` None without ordered variables)."""

    sigma: np.ndarray
    mu: np.ndarray
    tau: np.ndarray | None = None


_VECH: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def vech_indices(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of vech (lower triangle, column-major, as lavaan); cached."""
    if p not in _VECH:
        cols, rows = np.triu_indices(p)        # column-major lower triangle = row-major upper
        _VECH[p] = (rows.astype(int), cols.astype(int))
    return _VECH[p]


class _Group:
    """Index maps of one group (cells of A, S, m, tau and scales, free or fixed)."""

    def __init__(self, rows: list[tuple], g: int, nfree: int, meanstructure: bool):
        # rows: (lhs, op, rhs, free, ustart, exo) of this group's model rows, in table order
        self.g = g
        v = vnames([(l, o, r) for l, o, r, *_ in rows])
        self.ov, self.lv, self.ordered = v["ov"], v["lv"], v["ov.ord"]
        exo = {n for l, o, r, f, u, e in rows if e == 1 and o == "~~" for n in (l, r)}
        self.exo = [n for n in self.ov if n in exo]
        names = self.ov + [n for n in self.lv if n not in set(self.ov)]
        self.names = names
        pos = {n: i for i, n in enumerate(names)}
        self.p, self.m = len(self.ov), len(names)
        p, m = self.p, self.m
        self.A0 = np.zeros((m, m))
        self.S0 = np.zeros((m, m))
        self.M0 = np.zeros(m)
        self.D0 = np.ones(p)
        # thresholds in lavaan's order: by ordered variable, then t1, t2, ...
        ov_pos = {n: i for i, n in enumerate(self.ov)}
        th = sorted((k for k, row in enumerate(rows) if row[1] == "|"),
                    key=lambda k: (ov_pos[rows[k][0]], int(rows[k][2][1:])))
        self.th_names = [f"{rows[k][0]}|{rows[k][2]}" for k in th]
        self.th_var = np.array([pos[rows[k][0]] for k in th], dtype=int)
        self.T0 = np.zeros(len(th))
        cells = {"A": [], "S": [], "M": [], "T": [], "D": []}
        th_pos = {k: i for i, k in enumerate(th)}
        for idx, (l, op, r, free, ustart, _) in enumerate(rows):
            free = int(free)
            val = ustart if free == 0 else 0.0
            val = 0.0 if pd.isna(val) else float(val)
            if op == "=~":
                kind, i, j = "A", pos[r], pos[l]
                self.A0[i, j] = val
            elif op == "~":
                kind, i, j = "A", pos[l], pos[r]
                self.A0[i, j] = val
            elif op == "~~":
                kind, i, j = "S", pos[l], pos[r]
                self.S0[i, j] = self.S0[j, i] = val
            elif op == "~1":
                kind, i, j = "M", pos[l], 0
                self.M0[i] = val
            elif op == "|":
                kind, i, j = "T", th_pos[idx], 0
                self.T0[i] = val
            elif op == "~*~":
                kind, i, j = "D", pos[l], 0
                self.D0[i] = val if free == 0 else 1.0
            else:  # pragma: no cover - check_partable refuses other ops
                continue
            if free > 0:
                cells[kind].append((i, j, free - 1))
        self.cells = {k: (np.array([c[0] for c in v], dtype=int), np.array([c[1] for c in v], dtype=int),
                          np.array([c[2] for c in v], dtype=int)) for k, v in cells.items()}
        self.meanstructure = meanstructure
        self.has_scales = bool(len(self.cells["D"][0])) or np.any(self.D0 != 1.0)
        self.vr, self.vc = vech_indices(p)
        self.I = np.eye(m)
        self.n_tau = len(self.T0)
        self.n_mu = p if meanstructure else 0
        self.n_moments = self.n_tau + self.n_mu + len(self.vr)
        # mapping cell-columns -> free parameters (equality constraints: several cells, one x)
        order = np.concatenate([self.cells[k][2] for k in ("T", "M", "A", "S", "D")])
        self.n_cells = len(order)
        self.P = np.zeros((len(order), nfree))
        self.P[np.arange(len(order)), order] = 1.0
        # without equality constraints each cell is its own parameter: J @ P only places columns
        self.cell_params = order if len(np.unique(order)) == len(order) else None
        self.ix = self._delta_indices()

    def _delta_indices(self) -> dict:
        """Broadcast index arrays for delta: rows (vech) x columns (cells), built once."""
        ix = {}
        c0 = 0
        for key, name in (("T", "t"), ("M", "m"), ("A", "a"), ("S", "s"), ("D", "d")):
            i, j, _ = self.cells[key]
            ix[f"n{name}"] = len(i)
            ix[f"{name}_cols"] = np.arange(c0, c0 + len(i))
            c0 += len(i)
        ix["t_rows"] = self.cells["T"][0]
        ix["mi"] = self.cells["M"][0]
        vr, vc = self.vr[:, None], self.vc[:, None]
        ai, aj, _ = self.cells["A"]
        ix["ai"], ix["aj"] = ai[None, :], aj[None, :]
        ix["vr_a"], ix["vc_a"] = vr, vc
        si, sj, _ = self.cells["S"]
        ix["si"], ix["sj"] = si[None, :], sj[None, :]
        ix["vr_s"], ix["vc_s"] = vr, vc
        ix["s_half"] = np.where(si == sj, 0.5, 1.0)[None, :]
        ix["di"], ix["dk"] = self.cells["D"][0], self.cells["D"][2]
        return ix

    def fill(self, x: np.ndarray):
        A, S, M, T, D = self.A0.copy(), self.S0.copy(), self.M0.copy(), self.T0.copy(), self.D0.copy()
        i, j, k = self.cells["A"]
        A[i, j] = x[k]
        i, j, k = self.cells["S"]
        S[i, j] = x[k]
        S[j, i] = x[k]
        i, _, k = self.cells["M"]
        M[i] = x[k]
        i, _, k = self.cells["T"]
        T[i] = x[k]
        i, _, k = self.cells["D"]
        D[i] = x[k]
        return A, S, M, T, D


class Model:
    """A ParameterTable compiled into RAM matrices per group.

    >>> from analysis.sem.partable import build_partable
    >>> model = Model(build_partable("f =~ x1 + x2 + x3"))
    >>> model.n_free, model.ov_names[0]
    (6, ['x1', 'x2', 'x3'])
    """

    def __init__(self, partable: pd.DataFrame, meanstructure: bool | None = None):
        self.partable = partable
        if meanstructure is None:
            meanstructure = bool((partable["op"] == "~1").any())
        self.meanstructure = meanstructure
        self.n_free = n_free(partable)
        # general equality constraints (a == 2*b, analysis.sem.constraints): one degree of freedom each
        from analysis.sem.constraints import general_constraint_rows

        self.n_eq_constraints = int((general_constraint_rows(partable) & (partable["op"] == "==").to_numpy()).sum())
        self.groups = [int(g) for g in sorted(partable["group"].unique()) if g > 0]
        self.n_groups = len(self.groups)
        cols = [partable[c].tolist() for c in ("lhs", "op", "rhs", "free", "ustart", "exo", "group")]
        table = [row for row in zip(*cols) if row[1] not in EXPRESSION_OPS]
        # per group: index maps of the RAM matrices (estimators fill them at x)
        self.group_maps = [_Group([row[:6] for row in table if row[6] == g], g, self.n_free, meanstructure)
                   for g in self.groups]
        self.ov_names = [grp.ov for grp in self.group_maps]
        self.lv_names = [grp.lv for grp in self.group_maps]
        self.ordered_names = [grp.ordered for grp in self.group_maps]
        self.th_names = [grp.th_names for grp in self.group_maps]
        self.exo_names = [grp.exo for grp in self.group_maps]
        free = partable[partable["free"] > 0].drop_duplicates("free").sort_values("free")
        self.x_names = [f"{l}{o}{r}" + (f".g{g}" if self.n_groups > 1 else "")
                        for l, o, r, g in zip(free["lhs"], free["op"], free["rhs"], free["group"])]
        start = free["start"].to_numpy(dtype=float)
        self.x_start = np.where(np.isfinite(start), start, 0.0)

    # ------------------------------------------------------------------
    def matrices(self, x: np.ndarray, group: int = 0) -> dict[str, np.ndarray]:
        """RAM matrices of one group (0-based index): A, S, m, tau, scales."""
        A, S, M, T, D = self.group_maps[group].fill(np.asarray(x, dtype=float))
        return {"A": A, "S": S, "m": M, "tau": T, "scales": D}

    def group_core(self, grp: _Group, x: np.ndarray):
        """One group's RAM matrices at ``x``, (I - A)^-1, its observed rows and the unscaled moments."""
        A, S, M, T, D = grp.fill(x)
        B = np.linalg.inv(grp.I - A)
        E = B[: grp.p]
        sigma = E @ S @ E.T
        mu = E @ M
        return A, S, M, T, D, B, E, sigma, mu

    def implied(self, x: np.ndarray) -> list[Moments]:
        """Implied moments per group."""
        x = np.asarray(x, dtype=float)
        return [self.group_moments(grp, self.group_core(grp, x)) for grp in self.group_maps]

    def implied_all(self, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Implied covariance matrix and means of all variables (observed + latent) per group."""
        out = []
        for grp in self.group_maps:
            A, S, M, T, D, B, E, sigma, mu = self.group_core(grp, np.asarray(x, dtype=float))
            out.append((B @ S @ B.T, B @ M))
        return out

    def delta(self, x: np.ndarray) -> list[np.ndarray]:
        """Jacobian of ``[tau, mu, vech(Sigma)]`` per group with respect to ``x``."""
        x = np.asarray(x, dtype=float)
        return [self._delta_group(grp, self.group_core(grp, x)) for grp in self.group_maps]

    def implied_delta(self, x: np.ndarray) -> tuple[list[Moments], list[np.ndarray]]:
        """``implied(x)`` and ``delta(x)`` sharing one matrix inversion per group."""
        x = np.asarray(x, dtype=float)
        moms, deltas = [], []
        for grp in self.group_maps:
            core = self.group_core(grp, x)
            moms.append(self.group_moments(grp, core))
            deltas.append(self._delta_group(grp, core))
        return moms, deltas

    def group_moments(self, grp: _Group, core) -> Moments:
        """Implied moments (scaled, with thresholds) of one group from its ``group_core``."""
        A, S, M, T, D, B, E, sigma, mu = core
        tau = None
        if grp.n_tau:
            tau = D[grp.th_var] * (T - mu[grp.th_var])
        if grp.has_scales:
            sigma = sigma * np.outer(D, D)
            mu = mu * D
        return Moments(sigma=sigma, mu=mu, tau=tau)

    def _delta_group(self, grp: _Group, core) -> np.ndarray:
        A, S, M, T, D, B, E, sigma, mu_raw = core
        ix = grp.ix
        C = B @ S @ E.T                      # m x p
        J = np.zeros((grp.n_moments, grp.n_cells))
        s0 = grp.n_tau + grp.n_mu
        # thresholds: tau_k itself
        if ix["nt"]:
            J[ix["t_rows"], ix["t_cols"]] = 1.0
        # mu: intercepts m_i -> E[:, i];  A cells: E[:, i] (B m)[j]
        dmu = np.zeros((grp.p, grp.n_cells))
        if ix["nm"]:
            dmu[:, ix["m_cols"]] = E[:, ix["mi"]]
        if ix["na"]:
            ai, aj, a_cols = ix["ai"], ix["aj"], ix["a_cols"]
            # dSigma[r,c] = E[r,i] C[j,c] + E[c,i] C[j,r]
            J[s0:, a_cols] = E[ix["vr_a"], ai] * C[aj, ix["vc_a"]] + E[ix["vc_a"], ai] * C[aj, ix["vr_a"]]
            dmu[:, a_cols] = E[:, ai[0]] * (B @ M)[aj[0]]
        # S cells: E[r,i]E[c,j] + E[r,j]E[c,i] (once on the diagonal)
        if ix["ns"]:
            si, sj = ix["si"], ix["sj"]
            J[s0:, ix["s_cols"]] = (E[ix["vr_s"], si] * E[ix["vc_s"], sj]
                                    + E[ix["vr_s"], sj] * E[ix["vc_s"], si]) * ix["s_half"]
        vr, vc = grp.vr, grp.vc
        dk = ix["dk"]
        if grp.has_scales:
            J[s0:] *= (D[vr] * D[vc])[:, None]
            dmu_scaled = dmu * D[:, None]
            if len(dk):
                di, d_cols = ix["di"], ix["d_cols"]
                # dSigma*[r,c]/dd_i = (1[r=i] d_c + d_r 1[c=i]) Sigma[r,c]
                blk = ((vr[:, None] == di) * D[vc][:, None] + (vc[:, None] == di) * D[vr][:, None])
                J[s0:, d_cols] = blk * sigma[vr, vc][:, None]
                dmu_scaled[:, d_cols] = (np.arange(grp.p)[:, None] == di) * mu_raw[:, None]
        else:
            dmu_scaled = dmu
        if grp.n_mu:
            J[grp.n_tau:s0] = dmu_scaled
        if grp.n_tau:
            # implied thresholds d_v (tau_k - mu_v): chain through mu and the scales
            v = grp.th_var
            nt = grp.n_tau
            J[:nt] = J[:nt] * D[v][:, None] - D[v][:, None] * dmu[v]
            if len(dk):
                J[:nt, ix["d_cols"]] = (v[:, None] == ix["di"]) * (T - mu_raw[v])[:, None]
        if grp.cell_params is None:
            return J @ grp.P
        out = np.zeros((J.shape[0], grp.P.shape[1]))
        out[:, grp.cell_params] = J
        return out

    def chain_gradient(self, x: np.ndarray, gmats: list[np.ndarray], gmus: list[np.ndarray | None],
                       core: list | None = None) -> np.ndarray:
        """Gradient wrt ``x`` of a function F of the implied moments, from per group
        ``G = dF/dSigma`` (p x p, symmetric, dF = sum_rc G_rc dSigma_rc) and ``dF/dmu``.

        The chain rule through the RAM matrices with a few p x m products, without
        forming ``delta`` (cheaper for large models): for a path a_ij,
        dF = 2 (E' G C')_ij + (E' g_mu)_i (B m)_j; for a covariance s_ij, 2 (E' G E)_ij
        (once on the diagonal); for an intercept m_i, (E' g_mu)_i.
        """
        x = np.asarray(x, dtype=float)
        grad = np.zeros(self.n_free)
        for gi, grp in enumerate(self.group_maps):
            c = core[gi] if core is not None else self.group_core(grp, x)
            if grp.n_tau or grp.has_scales:
                J = self._delta_group(grp, c)
                lay = self.moment_layout(gi)
                r, cc = grp.vr, grp.vc
                gv = gmats[gi][r, cc] * np.where(r == cc, 1.0, 2.0)
                grad += J[lay["sigma"]].T @ gv
                if gmus[gi] is not None and grp.n_mu:
                    grad += J[lay["mu"]].T @ gmus[gi]
                continue
            A, S, M, T, D, B, E, sigma, mu = c
            G = gmats[gi]
            EG = E.T @ G                               # m x p
            cell = []
            gm = E.T @ gmus[gi] if (gmus[gi] is not None and grp.n_mu) else None
            mi, _, _ = grp.cells["M"]
            cell.append(gm[mi] if gm is not None else np.zeros(len(mi)))
            ai, aj, _ = grp.cells["A"]
            if len(ai):
                ga = 2.0 * (EG @ (B @ S @ E.T).T)[ai, aj]
                if gm is not None:
                    ga = ga + gm[ai] * (B @ M)[aj]
                cell.append(ga)
            si, sj, _ = grp.cells["S"]
            if len(si):
                EGE = EG @ E
                cell.append(np.where(si == sj, 1.0, 2.0) * EGE[si, sj])
            # cell order of P: thresholds, intercepts, paths, covariances (no thresholds here)
            grad += grp.P.T @ np.concatenate(cell)
        return grad

    @property
    def df(self) -> int:
        """Sample moments minus free parameters. Moments: (co)variances (for ordered variables
        correlations and thresholds instead of variances and means), minus those of fixed.x
        covariates, plus means with a mean structure."""
        moments = 0
        for grp in self.group_maps:
            p, px, po = grp.p, len(grp.exo), len(grp.ordered)
            moments += p * (p + 1) // 2 - po - px * (px + 1) // 2 + grp.n_tau
            if self.meanstructure:
                moments += p - px - po
        return moments - self.n_free + self.n_eq_constraints

    # ------------------------------------------------------------------
    def moment_layout(self, group: int = 0) -> dict[str, slice]:
        """Row slices of ``delta`` for one group: ``tau``, ``mu``, ``sigma``."""
        grp = self.group_maps[group]
        return {"tau": slice(0, grp.n_tau), "mu": slice(grp.n_tau, grp.n_tau + grp.n_mu),
                "sigma": slice(grp.n_tau + grp.n_mu, grp.n_moments)}

    def to_partable(self, x: np.ndarray) -> pd.DataFrame:
        """A copy of the table with ``est`` filled from ``x`` (fixed rows keep their value)."""
        pt = self.partable.copy()
        free = pt["free"].to_numpy()
        est = pt["ustart"].to_numpy(dtype=float).copy()
        est[free > 0] = np.asarray(x)[free[free > 0] - 1]
        est[pt["op"].isin(EXPRESSION_OPS).to_numpy()] = np.nan
        pt["est"] = est
        return pt
