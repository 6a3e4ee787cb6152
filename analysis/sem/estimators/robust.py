"""Robust standard errors, scaled test statistics and robust fit indices.

Formulas (as lavaan 0.6 implements them; read there, nothing copied):

* sandwich ``A^-1 B A^-1 / N`` (Huber-White; MLR: A observed information,
  B first-order case-wise scores; MLM/WLSMV: A = Delta'V Delta, B = Delta'V Gamma V Delta);
* ``U = V - V Delta E^-1 Delta' V`` and the traces ``tr(U Gamma)``,
  ``tr((U Gamma)^2)``: Satorra-Bentler mean-scaled statistic (MLM) and the
  mean-and-variance adjusted scaled-shifted statistic (WLSMV, ULSMV, Asparouhov
  & Muthén 2010);
* Yuan-Bentler, Mplus variant (MLR): ``tr(A1^-1 B1) - tr(E^-1 B0)`` with the
  saturated model's observed information A1 and first-order matrix B1;
* robust CFI/TLI/RMSEA of Brosseau-Liard & Savalei (2012, 2014): the
  unscaled statistic with the scaling factor as ``c.hat``;
* scaled difference tests: Satorra & Bentler (2001) for MLM/MLR, Satorra
  (2000) scaled-shifted for WLSMV/ULSMV (lavaan's ``lavTestLRT`` defaults).
"""
from __future__ import annotations

import numpy as np

from analysis.sem.fitindices import robust_fit_indices
from analysis.sem.results import InvalidTestStatistic, TestStatistic
from analysis.sem.estimators.ml import MLEstimator
from analysis.sem.estimators.scaling import adf_gamma, pchisq, sandwich, scaled_test, ugamma_traces

__all__ = ["MLMEstimator", "mlm_estimator", "scaled_difference", "satorra_bentler_2001"]


# --------------------------------------------------------------------------
# scaled difference tests
# --------------------------------------------------------------------------
_DIFF_NULL = "the restricted model fits as well as the less restricted one"


def scaled_difference(fit_restricted, fit_general) -> TestStatistic | InvalidTestStatistic:
    """Scaled chi-square difference test of two nested robust fits.

    MLM/MLR: Satorra & Bentler (2001), ``cd = (df0 c0 - df1 c1) / (df0 - df1)``,
    ``T = (T0 - T1) / cd`` (lavaan ``method = "satorra.bentler.2001"``).
    WLSMV/ULSMV: Satorra (2000) with the scaled-shifted correction, which
    needs the restricted model's ``U`` and the general model's Jacobian
    (lavaan's default ``method = "satorra.2000"``); each fit must carry its
    estimator object as ``fit.estimator`` (or be that estimator's ``_robust``).

    Each argument is a fitted result with ``fit_indices`` / ``fit`` mapping
    (chisq, df, chisq.scaling.factor) or such a mapping itself. The result is a
    TestStatistic (``res["chisq.diff.scaled"]`` etc. read it with lavaan's names).
    """
    f0, f1 = _indices(fit_restricted), _indices(fit_general)
    if _kind(fit_restricted) == "standard" or "chisq.scaling.factor" not in f0:
        raise ValueError("scaled_difference needs two robust fits (MLM, MLR, WLSMV or ULSMV); "
                         "for ML use the ordinary likelihood-ratio test")
    t0, t1 = float(f0["chisq"]), float(f1["chisq"])
    d0, d1 = int(f0["df"]), int(f1["df"])
    if d0 == d1:
        raise ValueError("the two models have the same degrees of freedom; they are not nested")
    if d0 < d1:   # accept either order, as lavaan's lavTestLRT
        f0, f1, t0, t1, d0, d1 = f1, f0, t1, t0, d1, d0
        fit_restricted, fit_general = fit_general, fit_restricted
    kind = f0.get("test.scaled") or _kind(fit_restricted)
    ddf = d0 - d1
    if kind in ("scaled.shifted",):
        est0 = _estimator(fit_restricted)
        est1 = _estimator(fit_general)
        if est0 is None or est1 is None:
            raise ValueError("the Satorra (2000) difference test needs the fitted estimators "
                             "of both models (WLSMV/ULSMV)")
        return _satorra_2000(est0, est1, t0 - t1, ddf)
    return satorra_bentler_2001(t0, d0, float(f0["chisq.scaling.factor"]),
                                t1, d1, float(f1["chisq.scaling.factor"]))


def satorra_bentler_2001(t0: float, df0: float, c0: float, t1: float, df1: float,
                         c1: float) -> TestStatistic | InvalidTestStatistic:
    """Satorra-Bentler (2001) scaled difference of two standard statistics (lavaan's
    ``lavTestLRT(method = "satorra.bentler.2001")``).

    Model 0 is the more restricted (larger df), ``c`` the scaling factors
    (``chisq.scaling.factor``; 1 for a saturated general model, as lavaan).
    ``cd = (df0 c0 - df1 c1) / (df0 - df1)``, ``T = (T0 - T1) / cd`` on df0 - df1
    degrees of freedom, not clamped (a negative T has p = 1). A scaling factor
    that is not positive leaves the test undefined (lavaan: NA with a warning):
    an InvalidTestStatistic with the reason.
    """
    ddf = df0 - df1
    if not ddf > 0:
        return InvalidTestStatistic("the models have the same degrees of freedom", name="chisq.diff")
    if df1 == 0:
        c1 = 1.0
    cd = (df0 * c0 - df1 * c1) / ddf
    if not cd > 0:
        return InvalidTestStatistic(
            f"negative scaling factor of the difference ({cd:.4g}); use the "
            "Satorra-Bentler (2010) strictly positive test", name="chisq.diff")
    t = (t0 - t1) / cd
    return TestStatistic(t, ddf, pchisq(t, ddf), name="chisq.diff", null=_DIFF_NULL,
                         method="satorra.bentler.2001", scaling_factor=cd, unscaled=t0 - t1)


def _indices(fit):
    if isinstance(fit, dict):
        return fit
    for attr in ("fit_indices", "fit", "fit_measures"):
        v = getattr(fit, attr, None)
        if v is not None:
            return dict(v)
    raise TypeError("expected a fitted model or a dict of fit measures")


def _kind(fit):
    est = _estimator(fit)
    return None if est is None else getattr(est, "test_kind", None)


def _estimator(fit):
    if hasattr(fit, "ugamma_pieces") or hasattr(fit, "test_kind"):
        return fit
    for est in (getattr(fit, "estimator", None), getattr(fit, "estimator_object", None)):
        if hasattr(est, "ugamma_pieces") or hasattr(est, "test_kind"):
            return est
    return None


def _satorra_2000(est0, est1, t_diff, ddf):
    """Satorra (2000) scaled-shifted difference test (as lavaan's lav_test_diff_Satorra2000).

    Everything at the general model's estimates: weight V, Jacobian Delta1, Gamma and
    information P; the constraints A are the orthogonal complement of
    H = Delta1^+ Delta0 (lavaan's "delta" method), U = V Delta1 P^-1 A'(A P^-1 A')^-1 A P^-1 Delta1' V.
    """
    V, D1, Gamma, nobs = est1.ugamma_pieces()
    _, D0, _, _ = est0.ugamma_pieces()
    fg = np.asarray(nobs, float) / np.sum(nobs)
    P = sum(f * d.T @ v @ d for f, d, v in zip(fg, D1, V))
    P_inv = np.linalg.inv(P)
    H = np.linalg.pinv(np.vstack(D1)) @ np.vstack(D0)
    u, s, _ = np.linalg.svd(H, full_matrices=True)
    rank = int((s > s.max() * max(H.shape) * np.finfo(float).eps).sum())
    A = u[:, rank:].T
    APA = A @ P_inv @ A.T
    keep = ~((np.abs(APA.sum(0)) < np.sqrt(np.finfo(float).eps)) &
             (np.abs(APA.sum(1)) < np.sqrt(np.finfo(float).eps)))
    A = A[keep]
    PAAPAAP = P_inv @ A.T @ np.linalg.pinv(A @ P_inv @ A.T) @ A @ P_inv
    from scipy.linalg import block_diag

    G = block_diag(*[f * gam for f, gam in zip(fg, Gamma)])
    Vall = block_diag(*V)
    PI = np.vstack(D1)
    U = Vall @ PI @ PAAPAAP @ PI.T @ Vall
    UG = U @ G
    tr1 = float(sum(f * np.trace(v @ gam @ v @ d @ PAAPAAP @ d.T)
                    for f, v, gam, d in zip(fg, V, Gamma, D1)))
    tr2 = float(np.trace(UG @ UG))
    m = ddf
    a = np.sqrt(m / tr2)
    b = m - a * tr1
    stat = max(t_diff * a + b, 0.0)
    return TestStatistic(stat, ddf, pchisq(stat, ddf), name="chisq.diff", null=_DIFF_NULL,
                         method="satorra.2000", scaling_factor=1.0 / a, shift=b, unscaled=t_diff)


# --------------------------------------------------------------------------
# MLM (Satorra-Bentler)
# --------------------------------------------------------------------------
class MLMEstimator(MLEstimator):
    """Complete-data ML with Satorra-Bentler robust SEs and scaled test (lavaan ``estimator="MLM"``)."""

    name = "MLM"
    test_kind = "satorra.bentler"    # or scaled.shifted, mean.var.adjusted, yuan.bentler, None
    se_kind = "robust.sem"           # or "standard": the expected information alone

    def _setup(self, data):
        self.gamma = [adf_gamma(Y, self.model.meanstructure, self._xi(g)) for g, Y in enumerate(data)]

    def _xi(self, g):
        names = self.model.ov_names[g]
        return [names.index(v) for v in self.model.exo_names[g]]

    def _pieces(self, x):
        V = self.weight_matrices(x)
        deltas = self.model.delta(x)
        D = []
        for g, d in enumerate(deltas):
            lay = self.model.moment_layout(g)
            first = lay["mu"].start if self.model.meanstructure else lay["sigma"].start
            D.append(d[first:lay["sigma"].stop])
        return V, D

    def ugamma_pieces(self):
        V, D = self._pieces(self.x_hat)
        return V, D, self.gamma, list(self.stats.nobs)

    def vcov(self, x):
        self.x_hat = np.asarray(x, float)
        if self.se_kind == "standard":
            return MLEstimator.vcov(self, x)
        V, D = self._pieces(x)
        E_inv = np.linalg.inv(self.information(x))
        B = sum(w * d.T @ v @ gam @ v @ d for w, d, v, gam in zip(self.weights, D, V, self.gamma))
        return sandwich(E_inv, B, self.ntotal)

    def test(self, x):
        self.x_hat = np.asarray(x, float)
        out = super().test(x)
        if self.test_kind is None:
            return out
        V, D = self._pieces(x)
        from analysis.sem.constraints import inverse_information   # bordered under a == 2*b, b > 0.8

        E_inv = inverse_information(self.information(x), self, x)
        tr, tr2 = ugamma_traces(V, D, E_inv, self.gamma, self.stats.nobs)
        out.update(scaled_test(self.test_kind, out["chisq"], out["df"], tr, tr2))
        return out

    def baseline_robust(self, exo_cov=None):
        """Independence model (diagonal Sigma, saturated means; fixed.x covariates keep their
        sample block and are not parameters; with fixed_x=False the covariances among the
        observed exogenous variables are free parameters, as lavaan) with its scaling.
        ``exo_cov`` (per group) fixes the covariates' block at other values (pooling: semTools
        refits the baseline with the first imputation's block); only the scaling uses it."""
        from analysis.sem.fitindices import observed_exogenous
        from analysis.sem.estimators.base import ml_weight
        ms = self.model.meanstructure
        chisq, V, D = 0.0, [], []
        q = 0
        for g, s in enumerate(self.stats.cov):
            p = s.shape[0]
            xi = self._xi(g)
            bx = observed_exogenous(self.model, g)
            keep = [i for i in range(p) if i not in xi]
            free_cov = [(a, b) for j, a in enumerate(bx) for b in bx[j + 1:] if a not in xi]
            sb = np.diag(np.diag(s))
            if bx:
                sb[np.ix_(bx, bx)] = s[np.ix_(bx, bx)]
            chisq += self.stats.nobs[g] * (np.linalg.slogdet(sb)[1] - np.linalg.slogdet(s)[1])
            if exo_cov is not None and xi:
                sb[np.ix_(xi, xi)] = exo_cov[g]
            W = np.linalg.inv(sb)
            v = ml_weight(W)
            r, c = np.tril_indices(p)
            order = np.lexsort((r, c))
            r, c = r[order], c[order]
            if ms:
                full = np.zeros((p + len(r),) * 2)
                full[:p, :p] = W
                full[p:, p:] = v
                v = full
            V.append(v)
            D.append((p, r, c, keep, free_cov))
            q += len(keep) * (2 if ms else 1) + len(free_cov)
        Dm, off = [], 0
        for p, r, c, keep, free_cov in D:
            k = len(keep)
            d = np.zeros(((p if ms else 0) + len(r), q))
            if ms:
                d[keep, off + np.arange(k)] = 1.0
                off += k
            d[(p if ms else 0) + np.flatnonzero(r == c)[keep], off + np.arange(k)] = 1.0
            off += k
            pos = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(r, c))}
            for a, b in free_cov:
                d[(p if ms else 0) + pos[(max(a, b), min(a, b))], off] = 1.0
                off += 1
            Dm.append(d)
        E = sum(w * d.T @ v @ d for w, d, v in zip(self.weights, Dm, V))
        df = sum(p * (p - 1) // 2 - len(fc) - (p - len(keep)) * (p - len(keep) - 1) // 2
                 for p, _, _, keep, fc in D)
        tr, tr2 = ugamma_traces(V, Dm, np.linalg.inv(E), self.gamma, self.stats.nobs)
        out = {"chisq": chisq, "df": df, "pvalue": pchisq(chisq, df)}
        out.update(scaled_test(self.test_kind or "satorra.bentler", chisq, df, tr, tr2))
        return out

    def extra_fit_measures(self, x, test, fit):
        if self.test_kind is None:     # robust.sem SEs with the standard test: no scaled keys
            return {}
        base = self.baseline_robust()
        return robust_fit_indices(test, base, self.ntotal, self.model.n_groups, continuous=True)


def mlm_estimator(model, stats, data):
    est = MLMEstimator(model, stats)
    est._setup(data)
    return est
