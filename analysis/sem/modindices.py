"""Modification indices: univariate score tests for parameters not in the model.

As lavaan's ``modindices()`` (Saris, Satorra & Sörbom 1987): the model is
extended with every candidate parameter lavaan would consider (cross-loadings,
residual covariances among observed variables, covariances among latent
variables, regressions among the variables of the structural part, and every
parameter the model fixes), all free and held at the ML estimate (0 for the
new ones). With ``g`` the gradient of lavaan's ML discrepancy
(``fmin = 0.5 F_ML``, groups weighted by n_g / N) and ``I`` the expected
information per case of the extended model, partitioned into the model's own
parameters (2) and the extra ones (1),

    V   = I_11 - I_12 I_22^-1 I_21
    MI  = N g_1^2 / diag(V)             (chi-square, 1 df)
    EPC = -g_1 / diag(V)                (expected parameter change)

With fixed.x covariates (observed exogenous variables), their own (co)variances
and regressions of them on other variables are not reported: the model
conditions on them. ``sepc.lv``, ``sepc.all`` and ``sepc.nox`` rescale the EPC with the model's
implied standard deviations, as lavaan's standardized solutions do (residual
covariances by residual standard deviations). Equality constraints are kept
in I_22 (lavaan's constrained inverse) but are not themselves released; general
constraints (``a == 2*b``) and the inequalities active at the estimates enter as the
bordered inverse of I_22, as lavaan's augmented information (so an active ``c > 0.9``
acts as an equality and can make a fixed parameter, e.g. a marker loading, testable).

The computation works from the ParameterTable and the sample moments alone,
in the RAM formulation: Sigma = F (I - A)^-1 S (I - A)^-T F'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError

__all__ = ["modindices", "modindices_from_partable"]

_EPS_V = np.finfo(float).eps ** (1 / 3)  # lavaan >= 0.6-14: smaller V means "not identified"
_PARAM_OPS = ("=~", "~", "~~", "~1")


# --------------------------------------------------------------------------- variable sets

def _unique(seq) -> list[str]:
    return list(dict.fromkeys(str(s) for s in seq))


def _vnames(pt: pd.DataFrame, ov_order: Sequence[str]) -> dict[str, list[str]]:
    """lavaan's variable sets of one block, derived from the table."""
    lv = _unique(pt.loc[pt["op"] == "=~", "lhs"])
    mentioned = _unique(list(pt.loc[pt["op"].isin(_PARAM_OPS), "lhs"])
                        + list(pt.loc[pt["op"].isin(("=~", "~", "~~")), "rhs"]))
    ov_set = [v for v in mentioned if v not in lv]
    ov = [v for v in ov_order if v in ov_set] + [v for v in ov_set if v not in ov_order]
    ind = _unique(v for v in pt.loc[pt["op"] == "=~", "rhs"] if v not in lv)
    eqs_y = _unique(pt.loc[pt["op"] == "~", "lhs"])
    eqs_x = _unique(pt.loc[pt["op"] == "~", "rhs"])
    # fixed.x covariates: observed, only ever predictors (lavaan marks their rows exo = 1)
    exo_rows = pt[(pt.get("exo", 0) == 1) & (pt["op"] == "~~")] if "exo" in pt.columns \
        else pt.iloc[0:0]
    ov_x = [v for v in ov if v in set(exo_rows["lhs"]) and v not in eqs_y and v not in ind]
    return {"lv": lv, "ov": ov, "ov.ind": ind, "eqs.y": eqs_y, "eqs.x": eqs_x, "ov.x": ov_x,
            "ov.nox": [v for v in ov if v not in ov_x]}


def _candidates(vn: dict[str, list[str]], meanstructure: bool) -> list[tuple[str, str, str]]:
    """lavaan's lav_partable_full() for one block (strict_exo = False)."""
    lv, ov, ov_nox, ov_x = vn["lv"], vn["ov"], vn["ov.nox"], vn["ov.x"]
    eqs = _unique(vn["eqs.y"] + vn["eqs.x"])
    out: list[tuple[str, str, str]] = []
    # 1. loadings of every factor on every observed (non-x) variable
    out += [(f, "=~", v) for f in lv for v in ov_nox if v not in eqs]
    # 2a. (co)variances among observed variables (lower triangle incl. diagonal)
    other = [v for v in ov if v not in set(vn["ov.ind"]) | set(ov_x) | set(eqs)]
    for j, a in enumerate(ov_nox):
        for b in ov_nox[j:]:
            if a in other or b in other:
                continue
            out.append((a, "~~", b))
    for j, a in enumerate(ov_x):
        for b in ov_x[j:]:
            out.append((a, "~~", b))
    # 2b. (co)variances among latent variables
    for j, a in enumerate(lv):
        for b in lv[j:]:
            out.append((a, "~~", b))
    # 3. regressions among the variables of the structural part
    for y in eqs:
        for x in eqs:
            if y == x or (y in vn["ov.ind"] and x in lv):
                continue
            out.append((y, "~", x))
    # 4. intercepts
    if meanstructure:
        out += [(v, "~1", "") for v in ov + lv]
    return out


# --------------------------------------------------------------------------- RAM

def _key(lhs: str, op: str, rhs: str) -> tuple[str, str, str]:
    if op == "~~" and rhs < lhs:
        return rhs, op, lhs
    return lhs, op, rhs


def _ram_derivatives(rows: pd.DataFrame, names: list[str], p: int, meanstructure: bool):
    """Implied moments of one group and their derivatives w.r.t. every row's value.

    Returns (Sigma, mu, C_full, dSigma [k, p, p], dmu [k, p]).
    """
    n = len(names)
    idx = {v: i for i, v in enumerate(names)}
    A = np.zeros((n, n))
    S = np.zeros((n, n))
    m = np.zeros(n)
    kinds = []
    for lhs, op, rhs, est in zip(rows["lhs"], rows["op"], rows["rhs"], rows["est"]):
        est = 0.0 if pd.isna(est) else float(est)
        if op == "=~":
            i, j = idx[rhs], idx[lhs]
            A[i, j] = est
            kinds.append(("A", i, j))
        elif op == "~":
            i, j = idx[lhs], idx[rhs]
            A[i, j] = est
            kinds.append(("A", i, j))
        elif op == "~~":
            i, j = idx[lhs], idx[rhs]
            S[i, j] = S[j, i] = est
            kinds.append(("S", i, j))
        else:  # ~1
            i = idx[lhs]
            m[i] = est
            kinds.append(("m", i, i))
    B = np.linalg.inv(np.eye(n) - A)
    C = B @ S @ B.T
    mu_full = B @ m
    Bp = B[:p]
    k = len(kinds)
    dS = np.zeros((k, p, p))
    dmu = np.zeros((k, p))
    for r, (kind, i, j) in enumerate(kinds):
        if kind == "A":
            o = np.outer(Bp[:, i], C[j, :p])
            dS[r] = o + o.T
            if meanstructure:
                dmu[r] = Bp[:, i] * mu_full[j]
        elif kind == "S":
            o = np.outer(Bp[:, i], Bp[:, j])
            dS[r] = o + o.T if i != j else o
        else:
            dmu[r] = Bp[:, i]
    return C[:p, :p], mu_full[:p], C, dS, dmu


# --------------------------------------------------------------------------- main

def modindices_from_partable(
    partable: pd.DataFrame,
    ov_names: Sequence[str],
    cov: Sequence[np.ndarray],
    nobs: Sequence[int],
    mean: Sequence[np.ndarray | None] | None = None,
    *,
    standardized: bool = True,
    na_remove: bool = True,
    sort: bool = False,
    minimum_value: float = 0.0,
    op: Sequence[str] | str | None = None,
    patterns: Sequence[Any] | None = None,
    constraint_jacobian: np.ndarray | None = None,
) -> pd.DataFrame:
    """Modification indices from a fitted ParameterTable and the sample moments.

    ``patterns``: per group the :class:`analysis.sem.estimators.fiml.MissingPatterns` of a FIML
    fit (columns in ``ov_names`` order); the gradient is then the observed-data likelihood's
    and the information the saturated model's expected information under MAR at the implied
    moments (lavaan's ``modindices()`` default ``information = "expected"``).
    ``constraint_jacobian``: rows of the general constraints binding at the estimates (``==`` and
    active ``<``/``>``), columns the free parameters (``free`` - 1); the model's information is then
    inverted under them (lavaan's augmented inverse), so an active inequality acts as an equality.

    Parameters
    ----------
    partable : ParameterTable with ``lhs, op, rhs, group, free, est`` (and ``exo``).
    ov_names : observed variable names, in the order of `cov`.
    cov, mean, nobs : per group, sample covariance (divisor N), means, cases.

    Returns
    -------
    DataFrame with ``lhs, op, rhs, mi, epc, sepc.lv, sepc.all, sepc.nox``
    (plus ``group`` when there are several groups), lavaan's row order.
    """
    body, groups, meanstructure = _checked_input(partable, cov, nobs, mean)
    ov_order = [str(v) for v in ov_names]
    ext, model_vn = _extended_table(body, groups, ov_order, meanstructure)
    blocks = _score_blocks(ext, groups, model_vn, ov_order, cov, mean, nobs, meanstructure, patterns)
    mi, epc = _score_test(ext, blocks, ntotal=float(sum(nobs)), constraint_jacobian=constraint_jacobian)
    out, keep_row = _mi_table(ext, blocks.implied, mi, epc, standardized)
    return _lavaan_filters(out, keep_row, na_remove=na_remove, op=op, minimum_value=minimum_value,
                           sort=sort, n_groups=len(groups))


class _ScoreBlocks(NamedTuple):
    """The pieces of the extended model's information the score test needs, and its gradient:
    model x model, extra x model and the diagonal of extra x extra (one column per table row)."""

    info_mm: np.ndarray
    info_em: np.ndarray
    diag_ee: np.ndarray
    grad: np.ndarray
    implied: dict[int, dict[str, Any]]
    """Per group the model's variables and implied variances (for the standardized EPCs)."""


def _checked_input(partable, cov, nobs, mean) -> tuple[pd.DataFrame, list[int], bool]:
    """The table's parameter rows, its groups and whether it has a mean structure; refused when
    ordinal, or when the moments do not match the groups."""
    pt = partable.reset_index(drop=True)
    if "group" not in pt.columns:
        pt = pt.assign(group=1)
    body = pt[pt["op"].isin(_PARAM_OPS)]
    if body["op"].isin(["|", "~*~"]).any() or (pt["op"] == "|").any():
        raise AnalysisError("modification indices for ordinal (threshold) models are not "
                            "implemented; refit with continuous indicators")
    groups = sorted(int(g) for g in body["group"].unique())
    if len(cov) != len(groups) or len(nobs) != len(groups):
        raise AnalysisError(f"modindices: the table has {len(groups)} group(s) but "
                            f"{len(cov)} covariance matrices were given")
    meanstructure = bool((body["op"] == "~1").any())
    if meanstructure and (mean is None or any(mu is None for mu in mean)):
        raise AnalysisError("modindices: the model has a mean structure but no sample means")
    return body, groups, meanstructure


def _extended_table(body: pd.DataFrame, groups: list[int], ov_order: list[str],
                    meanstructure: bool) -> tuple[pd.DataFrame, dict[int, dict[str, list[str]]]]:
    """The model's rows (fixed ones freed) and lavaan's candidates, in lavaan's order: the model's
    rows of every group, then the candidates group by group; and each group's variable sets."""
    ext_parts = []
    model_vn: dict[int, dict[str, list[str]]] = {}
    for g in groups:
        own = body[body["group"] == g].copy()
        own["_extra"] = (own["free"].fillna(0).astype(int) == 0)
        own["_model_free"] = own["free"].fillna(0).astype(int)
        seen = {_key(a, o, b) for a, o, b in zip(own["lhs"], own["op"], own["rhs"])}
        vn = model_vn[g] = _vnames(own, ov_order)
        new = [c for c in _candidates(vn, meanstructure) if _key(*c) not in seen]
        add = pd.DataFrame(new, columns=["lhs", "op", "rhs"]).assign(
            group=g, est=0.0, exo=0, label="", _extra=True, _model_free=0)
        if "user" in own.columns:
            add["user"] = 10
        own["_order"] = 0
        add["_order"] = 1
        ext_parts += [own, add]
    ext = pd.concat(ext_parts, ignore_index=True).sort_values("_order", kind="stable")
    return ext.reset_index(drop=True), model_vn


def _score_blocks(ext: pd.DataFrame, groups: list[int], model_vn: dict, ov_order: list[str], cov, mean,
                  nobs, meanstructure: bool, patterns) -> _ScoreBlocks:
    """Information and gradient of the extended model, groups weighted by n_g / N (with FIML
    patterns: the observed-data gradient and the saturated model's information under MAR)."""
    k = len(ext)
    ntotal = float(sum(nobs))
    is_extra = ext["_extra"].to_numpy()
    extra = np.flatnonzero(is_extra)
    model_free = ext["_model_free"].to_numpy()
    model_rows = np.flatnonzero(model_free > 0)
    pos_e = np.full(k, -1)
    pos_e[extra] = np.arange(len(extra))
    pos_m = np.full(k, -1)
    pos_m[model_rows] = np.arange(len(model_rows))
    info_mm = np.zeros((len(model_rows), len(model_rows)))
    info_em = np.zeros((len(extra), len(model_rows)))
    diag_ee = np.zeros(len(extra))
    grad = np.zeros(k)
    implied: dict[int, dict[str, Any]] = {}
    for gi, g in enumerate(groups):
        sel = np.flatnonzero(ext["group"].to_numpy() == g)
        rows = ext.iloc[sel]
        vn = _vnames(rows, ov_order)
        ov, lv = vn["ov"], vn["lv"]
        missing = [v for v in ov if v not in ov_order]
        if missing:
            raise AnalysisError(f"modindices: no sample moments for {', '.join(missing)}")
        pos = [ov_order.index(v) for v in ov]
        Sg = np.asarray(cov[gi], dtype=float)[np.ix_(pos, pos)]
        Sigma, mu, C, dS, dmu = _ram_derivatives(rows, ov + lv, len(ov), meanstructure)
        Si = np.linalg.inv(Sigma)
        w = nobs[gi] / ntotal
        resid = Sg.copy()
        if meanstructure:
            ybar = np.asarray(mean[gi], dtype=float)[pos]
            d = ybar - mu
            resid = resid + np.outer(d, d)
            grad[sel] += w * (-(dmu @ (Si @ d)))
        G = 0.5 * (Si - Si @ resid @ Si)
        grad[sel] += w * np.einsum("ij,kij->k", G, dS)
        kk, p = len(sel), len(ov)
        SidS = Si @ dS                                            # Si dSigma_k
        M = SidS.reshape(kk, p * p)
        Mt = np.swapaxes(SidS, 1, 2).reshape(kk, p * p)
        le, lm = np.flatnonzero(is_extra[sel]), np.flatnonzero(~is_extra[sel] &
                                                               (model_free[sel] > 0))
        ge, gm = pos_e[sel[le]], pos_m[sel[lm]]
        # I_ab = tr(Si dS_a Si dS_b) / 2 + dmu_a' Si dmu_b
        mm = 0.5 * (M[lm] @ Mt[lm].T)
        em = 0.5 * (M[le] @ Mt[lm].T)
        ee = 0.5 * np.einsum("ij,ij->i", M[le], Mt[le])
        if meanstructure:
            mm += dmu[lm] @ Si @ dmu[lm].T
            em += dmu[le] @ Si @ dmu[lm].T
            ee += np.einsum("ij,ij->i", dmu[le] @ Si, dmu[le])
        if patterns is not None:
            x_pos = [ov_order.index(v) for v in model_vn[g]["ov.x"]]
            mm, em, ee = _fiml_blocks(patterns[gi], pos, Sigma, mu, dS, dmu, lm, le, grad, sel, ntotal, x_pos)
        info_mm[np.ix_(gm, gm)] += w * mm
        info_em[np.ix_(ge, gm)] += w * em
        diag_ee[ge] += w * ee
        implied[g] = {"ov": ov, "lv": lv, "ov.x": model_vn[g]["ov.x"],
                      "ov_var": np.diag(Sigma), "lv_var": np.diag(C)[len(ov):]}
    return _ScoreBlocks(info_mm, info_em, diag_ee, grad, implied)


def _score_test(ext: pd.DataFrame, blocks: _ScoreBlocks, ntotal: float,
                constraint_jacobian: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MI and EPC of every extra row: the model's free parameters partitioned out (equality
    constraints through shared free indices or labels: one column per distinct parameter; general
    constraints binding at the estimates through the bordered inverse of the information)."""
    k = len(ext)
    extra = np.flatnonzero(ext["_extra"].to_numpy())
    model_free = ext["_model_free"].to_numpy()
    model_rows = np.flatnonzero(model_free > 0)
    pos_m = np.full(k, -1)
    pos_m[model_rows] = np.arange(len(model_rows))
    labels = ext["label"].fillna("").astype(str).to_numpy() if "label" in ext.columns \
        else np.full(k, "")
    col: dict[Any, int] = {}
    row_col = {}
    for r in model_rows:
        key = ("label", labels[r]) if labels[r] else ("free", int(model_free[r]))
        alias = ("free", int(model_free[r]))
        c = col.get(key, col.get(alias))
        if c is None:
            c = len(set(col.values()))
        col[key] = col[alias] = c
        row_col[r] = c
    K = np.zeros((len(model_rows), len(set(row_col.values()))))
    for r, c in row_col.items():
        K[pos_m[r], c] = 1.0
    I22 = K.T @ blocks.info_mm @ K
    I12 = blocks.info_em @ K
    try:
        if constraint_jacobian is not None and len(constraint_jacobian):
            # column c of K is the free parameter of its rows: reorder H's columns to K's
            free_of_col = np.zeros(K.shape[1], int)
            for r, c in row_col.items():
                free_of_col[c] = int(model_free[r]) - 1
            H = np.asarray(constraint_jacobian, float)[:, free_of_col]
            n, m = I22.shape[0], H.shape[0]
            I22_inv = np.linalg.inv(np.block([[I22, H.T], [H, np.zeros((m, m))]]))[:n, :n]
        else:
            I22_inv = np.linalg.inv(I22)
    except np.linalg.LinAlgError as exc:
        raise AnalysisError("could not compute modification indices; the information "
                            "matrix of the model is singular") from exc
    V = blocks.diag_ee - np.einsum("ij,ij->i", I12 @ I22_inv, I12)
    V = np.where(V < _EPS_V, np.nan, V)
    g1 = blocks.grad[extra]
    return ntotal * g1 ** 2 / V, -g1 / V


def _mi_table(ext: pd.DataFrame, implied: dict, mi: np.ndarray, epc: np.ndarray,
              standardized: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """lhs, op, rhs, group, mi, epc (and the standardized EPCs) of the extra rows, with which
    rows are testable: fixed.x covariates are conditioned on, so their own (co)variances and
    regressions of them on other variables are not (lavaan prints ~0 or, for x ~ f, values of
    its own parameterization); they are left out."""
    extra = np.flatnonzero(ext["_extra"].to_numpy())
    out = ext.iloc[extra][["lhs", "op", "rhs", "group"]].reset_index(drop=True)
    fixed_x = {(g, v) for g, imp in implied.items() for v in imp["ov.x"]}
    keep_row = np.array([
        not ((g, lhs) in fixed_x and (op == "~" or (op == "~~" and (g, rhs) in fixed_x)))
        for lhs, op, rhs, g in zip(out["lhs"], out["op"], out["rhs"], out["group"])])
    out["mi"] = mi
    out["epc"] = epc
    if standardized:
        for col_name, nox, ov_std in (("sepc.lv", False, False), ("sepc.all", False, True),
                                      ("sepc.nox", True, True)):
            out[col_name] = _standardize_epc(out, ext, implied, ov_std=ov_std, nox=nox)
    return out, keep_row


def _lavaan_filters(out: pd.DataFrame, keep_row: np.ndarray, *, na_remove: bool, op, minimum_value: float,
                    sort: bool, n_groups: int) -> pd.DataFrame:
    """lavaan's modindices() arguments: na.remove, op, minimum.value, sort.; no group column
    for a single group."""
    out = out[keep_row]
    if na_remove:
        out = out[out["mi"].notna()]
    if op is not None:
        ops = [op] if isinstance(op, str) else list(op)
        out = out[out["op"].isin(ops)]
    if minimum_value > 0:
        out = out[out["mi"] > minimum_value]
    if sort:
        out = out.sort_values("mi", ascending=False, kind="stable")
    if n_groups == 1:
        out = out.drop(columns="group")
    return out.reset_index(drop=True)


def _fiml_blocks(pat, pos, Sigma, mu, dS, dmu, lm, le, grad, sel, ntotal, x_pos=()):
    """FIML: replace the group's complete-data gradient (in ``grad``, rows ``sel``) by the
    observed-data one, and return the information blocks (model x model, extra x model,
    diag extra) from Delta' A Delta with A the expected information under MAR (the fixed.x
    covariates' own moments masked, as lavaan's h1 information)."""
    from analysis.sem.model import vech_indices

    p = pat.p
    kk = len(sel)
    sig = np.zeros((p, p))
    sig[np.ix_(pos, pos)] = Sigma
    m = np.zeros(p)
    m[pos] = mu
    dS_o = np.zeros((kk, p, p))
    dS_o[:, np.asarray(pos)[:, None], np.asarray(pos)[None, :]] = dS
    dmu_o = np.zeros((kk, p))
    dmu_o[:, pos] = dmu
    g_mu, g_sig = pat.gradient(sig, m)          # dlogl / d(mu, Sigma), full layout
    grad[sel] = -(dmu_o @ g_mu + np.einsum("ij,kij->k", g_sig, dS_o)) / ntotal
    r, c = vech_indices(p)
    delta = np.hstack([dmu_o, dS_o[:, r, c]])
    A = pat.expected_information(sig, m)
    xs = set(x_pos)
    masked = [i for i in range(p) if i in xs] + [p + k for k, (a, b) in enumerate(zip(r, c))
                                                if a in xs and b in xs]
    A[masked, :] = 0.0
    A[:, masked] = 0.0
    full = delta @ A @ delta.T
    return full[np.ix_(lm, lm)], full[np.ix_(le, lm)], np.diag(full)[le]


def _standardize_epc(out: pd.DataFrame, ext: pd.DataFrame, implied: dict[int, dict],
                     *, ov_std: bool, nox: bool) -> np.ndarray:
    """lavaan's std.lv / std.all / std.nox applied to the EPCs (cov.std = TRUE)."""
    res = out["epc"].to_numpy(dtype=float).copy()
    scales = {}
    for g, imp in implied.items():
        gv = ext[(ext["group"] == g) & (ext["op"] == "~~") & (ext["lhs"] == ext["rhs"])]
        scales[g] = (
            {v: np.sqrt(x) if x > 0 else np.nan for v, x in zip(imp["lv"], imp["lv_var"])},
            {v: np.sqrt(x) if x > 0 else np.nan for v, x in zip(imp["ov"], imp["ov_var"])},
            set(imp["ov.x"]) if nox else set(),
            dict(zip(gv["lhs"], np.sqrt(np.abs(gv["est"].astype(float))))),
        )
    for r, (lhs, op, rhs, g) in enumerate(zip(out["lhs"], out["op"], out["rhs"], out["group"])):
        eta, osd, nostd, resvar = scales[g]

        def s_ov(v: str) -> float:
            return osd[v] if (ov_std and v in osd and v not in nostd) else 1.0

        x = res[r]
        if op == "=~":
            x = x * eta[lhs] / (eta[rhs] if rhs in eta else s_ov(rhs))
        elif op == "~":
            x = x / (eta[lhs] if lhs in eta else s_ov(lhs))
            x = x * (eta[rhs] if rhs in eta else s_ov(rhs))
        elif op == "~~" and lhs == rhs:
            x = x / (eta[lhs] ** 2 if lhs in eta else s_ov(lhs) ** 2)
        elif op == "~~":
            for v in (lhs, rhs):
                if v in eta or (ov_std and v not in nostd):
                    x = x / resvar.get(v, np.nan)
        elif op == "~1":
            x = x / (eta[lhs] if lhs in eta else s_ov(lhs))
        elif op == "~*~" and ov_std:   # lavaan's std.all of a scale is 1 (times the EPC's sign)
            x = np.sign(x)
        res[r] = x
    return res


def _wls_modindices(fit: Any, *, standardized: bool = True, na_remove: bool = True, sort: bool = False,
                    minimum_value: float = 0.0, op: Sequence[str] | str | None = None) -> pd.DataFrame:
    """WLSMV/ULSMV as lavaan: the model extended by the candidates (free, at 0), the gradient of
    the (D)WLS fit function and its expected information Delta' W Delta, evaluated with the
    fitted estimator's sample statistics and weights."""
    from analysis.sem.model import Model
    from analysis.sem.syntax import EXPRESSION_OPS

    est, mdl, x = fit.estimator_object, fit.model, np.asarray(fit.x, float)
    pt = mdl.partable[~mdl.partable["op"].isin(EXPRESSION_OPS)].copy()
    pt["est"] = fit.params.loc[pt.index, "est"].to_numpy(float)
    ordered = {v for names in mdl.ordered_names for v in names}
    n_free = int(pt["free"].max())
    # fixed model rows tested too (not the delta scales, the ordered items' own variances and
    # intercepts, or fixed.x moments: lavaan finds those not identified and drops them)
    fixed_ok = ((pt["free"] == 0) & (pt["exo"] != 1)
                & ~((pt["op"] == "~~") & pt["lhs"].isin(ordered) & (pt["lhs"] == pt["rhs"])))
    pt["_extra"] = fixed_ok.to_numpy()
    parts = [pt]
    for g in mdl.groups:
        own = pt[pt["group"] == g]
        seen = {_key(a, o, b) for a, o, b in zip(own["lhs"], own["op"], own["rhs"])}
        vn = _vnames(own[own["op"].isin(_PARAM_OPS)], list(mdl.ov_names[0]))
        new = [c for c in _candidates(vn, True) if _key(*c) not in seen
               and not (c[1] == "~~" and c[0] == c[2] and c[0] in ordered)]
        add = pd.DataFrame(new, columns=["lhs", "op", "rhs"]).assign(
            id=0, user=10, block=g, group=g, free=0, ustart=0.0, start=0.0, exo=0, label="", plabel="",
            est=0.0, _extra=True)
        parts.append(add)
    ext = pd.concat(parts, ignore_index=True)
    extra = np.flatnonzero(ext["_extra"].to_numpy())
    free = ext["free"].to_numpy().copy()
    free[extra] = n_free + 1 + np.arange(len(extra))
    ext["free"] = free
    ext["ustart"] = np.where(ext["_extra"], ext["est"], ext["ustart"])
    ext["id"] = np.arange(1, len(ext) + 1)
    x_ext = np.concatenate([x, ext["est"].to_numpy(float)[extra]])
    model = Model(ext.drop(columns=["_extra"]), meanstructure=mdl.meanstructure)
    wls = est.for_model(model, x_ext)
    grad, info = wls.gradient(x_ext), wls.information(x_ext)
    m_idx, e_idx = np.arange(n_free), n_free + np.arange(len(extra))
    I12 = info[np.ix_(e_idx, m_idx)]
    H = _binding_jacobian(fit)
    try:
        I22 = info[np.ix_(m_idx, m_idx)]
        if H is not None and len(H):    # active inequalities act as equalities (lavaan's augmented inverse)
            I22_inv = np.linalg.inv(np.block([[I22, H.T], [H, np.zeros((len(H),) * 2)]]))[:n_free, :n_free]
        else:
            I22_inv = np.linalg.inv(I22)
    except np.linalg.LinAlgError as exc:
        raise AnalysisError("could not compute modification indices; the information "
                            "matrix of the model is singular") from exc
    V = np.diag(info)[e_idx] - np.einsum("ij,ij->i", I12 @ I22_inv, I12)
    V = np.where(V < _EPS_V, np.nan, V)
    g1 = grad[e_idx]
    out = ext.iloc[extra][["lhs", "op", "rhs", "group"]].reset_index(drop=True)
    out["mi"] = est.ntotal * g1 ** 2 / V
    out["epc"] = -g1 / V
    if standardized:
        implied = {}
        for gi, g in enumerate(model.groups):
            grp = model.group_maps[gi]
            vall, _ = model.implied_all(x_ext)[gi]
            lv = list(model.lv_names[gi])
            implied[g] = {"ov": list(model.ov_names[gi]), "lv": lv, "ov.x": list(model.exo_names[gi]),
                          # latent responses' variances (1 / scale^2 where the scales are free)
                          "ov_var": np.diag(model.implied(x_ext)[gi].sigma)
                          / model.matrices(x_ext, gi)["scales"] ** 2,
                          "lv_var": np.array([vall[grp.names.index(v), grp.names.index(v)] for v in lv])}
        # candidates at 0; fixed model rows (std_lv: latent variances 1) keep their values
        ext_est = ext.assign(est=np.where(ext["user"] == 10, 0.0, ext["est"]))
        ext_est.loc[ext["op"].eq("~~") & ext["lhs"].eq(ext["rhs"]) & ext["lhs"].isin(ordered), "est"] = \
            model.partable.loc[ext["op"].eq("~~") & ext["lhs"].eq(ext["rhs"]) & ext["lhs"].isin(ordered), "ustart"]
        for col_name, nox, ov_std in (("sepc.lv", False, False), ("sepc.all", False, True),
                                      ("sepc.nox", True, True)):
            out[col_name] = _standardize_epc(out, ext_est, implied, ov_std=ov_std, nox=nox)
    # fixed.x covariates are conditioned on: their regressions and (co)variances are not tested
    exo = {(g, v) for gi, g in enumerate(model.groups) for v in model.exo_names[gi]}
    out = out[[not ((g, lhs) in exo and (o == "~" or (o == "~~" and (g, rhs) in exo)))
               for lhs, o, rhs, g in zip(out["lhs"], out["op"], out["rhs"], out["group"])]]
    if na_remove:
        out = out[out["mi"].notna()]
    if op is not None:
        out = out[out["op"].isin([op] if isinstance(op, str) else list(op))]
    if minimum_value > 0:
        out = out[out["mi"] > minimum_value]
    if sort:
        out = out.sort_values("mi", ascending=False, kind="stable")
    if len(mdl.groups) == 1:
        out = out.drop(columns="group")
    return out.reset_index(drop=True)


def modindices(fit: Any, **kwargs: Any) -> pd.DataFrame:
    """Modification indices of a fitted ML model (lavaan's ``modindices(fit)``).

    Parameters
    ----------
    fit : :class:`analysis.sem.results.FitResult` with ``params`` and ``sample_stats``.
    **kwargs : ``standardized``, ``sort``, ``minimum_value``, ``op``, ``na_remove``.

    Examples
    --------
    >>> # In R: modindices(cfa(HS.model, data = HolzingerSwineford1939))
    >>> # mi = modindices(fit_sem(HS_MODEL, data=hs))   # visual =~ x9: mi 36.411
    """
    ss = getattr(fit, "sample_stats", None)
    if ss is None:
        raise AnalysisError("modindices need the sample moments; this fit has no sample_stats")
    if getattr(fit, "estimator", "ML") in ("WLSMV", "ULSMV") and \
            hasattr(getattr(fit, "estimator_object", None), "ostats"):
        return _wls_modindices(fit, **kwargs)
    if getattr(fit, "estimator", "ML") not in ("ML", "MLR", "MLM", "MLF"):
        raise AnalysisError(f"modification indices are implemented for ML-family estimators, "
                            f"not {fit.estimator}")
    kwargs.setdefault("constraint_jacobian", _binding_jacobian(fit))
    missing = str(getattr(fit, "options", {}).get("missing", "listwise")).lower()
    if missing in ("fiml", "ml"):   # lavaan: FIML gradient, expected information under MAR
        est = getattr(fit, "estimator_object", None)
        patterns = getattr(est, "patterns", None)
        if patterns is None:
            raise AnalysisError("modification indices after FIML need the fit's estimator "
                                "(a FitResult from fit_sem with missing='fiml')")
        kwargs["patterns"] = patterns
        return modindices_from_partable(fit.params, est.model.ov_names[0], est.stats.cov, est.nobs,
                                        est.stats.mean, **kwargs)
    return modindices_from_partable(fit.params, ss.ov_names, ss.cov, ss.nobs,
                                    getattr(ss, "mean", None), **kwargs)


def _binding_jacobian(fit: Any) -> np.ndarray | None:
    """The Jacobian of the general constraints binding at the estimates (lavaan's con.jac without
    the inactive inequalities), or None without general constraints."""
    constraints = getattr(getattr(fit, "estimator_object", None), "constraints", None)
    if constraints is None or getattr(fit, "x", None) is None:
        return None
    x = np.asarray(fit.x, float)
    return constraints.jacobian(x)[constraints.binding(x)]
