"""Diagonally weighted and unweighted least squares on ordinal moments (WLSMV, ULSMV).

The sample moments are lavaan's WLS.obs for ordered items: thresholds and
polychoric correlations, with their asymptotic covariance Gamma (see
:mod:`analysis.sem.polychoric`). The fit function, per group and weighted by
N_g / N, is lavaan's ``0.5 (s - sigma)' W (s - sigma)`` with
W = diag(Gamma)^-1 (DWLS) or I (ULS), so ``chisq = 2 N F``; SEs are the
sandwich ``E^-1 (Delta'W Gamma W Delta) E^-1 / N`` (lavaan se="robust.sem"),
and the test is the mean-and-variance adjusted (scaled-shifted) statistic.
The delta parameterization (lavaan's default) fixes the scales to 1 so that
the residual variances of the latent responses are 1 minus their common
variance; they are reported that way.
"""
from __future__ import annotations

import numpy as np
from analysis.sem import distributions as st

from analysis.errors import DataError
from analysis.sem.fitindices import hoelter_indices, incremental_indices, rmsea_indices, robust_fit_indices
from analysis.sem.polychoric import mixed_stats, ordinal_codes, ordinal_stats
from analysis.sem.estimators.inference import EstimatorCombinationError, refuse_combination
from analysis.sem.estimators.scaling import sandwich, scaled_shifted, ugamma_traces

__all__ = ["ConditionalWLSEstimator", "WLSEstimator", "make_estimator"]


class WLSEstimator:
    """DWLS (WLSMV) or ULS (ULSMV) on thresholds and polychoric correlations.

    Parameters
    ----------
    model : analysis.sem.model.Model with all observed variables ordered.
    frames : list of DataFrames per group (the ordered items, raw codes, NaN = missing).
    estimator : "WLSMV" or "ULSMV".
    missing : "listwise" (lavaan's default) or "pairwise".
    """

    def __init__(self, model, frames, *, estimator: str = "WLSMV", missing: str = "listwise",
                 group_labels=(), collapse_sparse: bool = False, parameterization: str = "delta"):
        from analysis.sem.data import SampleStats

        self.model = model
        self.name = estimator.upper()
        self.parameterization = parameterization
        self.test_kind = "scaled.shifted"
        import pandas as pd

        ov = model.ov_names[0]
        ordset = set(model.ordered_names[0])
        self.ordered_mask = np.array([v in ordset for v in ov])
        mixed = not self.ordered_mask.all()
        if mixed and missing == "pairwise":
            raise EstimatorCombinationError(
                "missing='pairwise' is available when every observed variable is ordered; with "
                "continuous variables in the model use missing='listwise'")
        labels = list(group_labels)
        ordered = [v for v in ov if v in ordset]
        self.ostats = []
        allf = pd.concat(frames, keys=range(len(frames)))
        groups = np.asarray(allf.index.get_level_values(0))
        codes, self.levels = ordinal_codes(allf, ordered, groups=groups if len(frames) > 1 else None,
                                           collapse_sparse=collapse_sparse)
        allf = allf.copy()
        allf[ordered] = codes[ordered]
        parts = [allf[groups == g] for g in range(len(frames))]
        for g, part in enumerate(parts):
            try:
                if mixed:
                    self.ostats.append(mixed_stats(part[model.ov_names[g]], self.ordered_mask))
                else:
                    self.ostats.append(ordinal_stats(part[model.ov_names[g]], missing=missing))
            except DataError as err:
                where = f" (group '{labels[g]}')" if len(parts) > 1 and labels else ""
                raise type(err)(f"{err}{where}") from None
        for g, os_ in enumerate(self.ostats):
            want = len(model.th_names[g])
            if len(os_.th) - int((~self.ordered_mask).sum()) != want:
                raise DataError(f"the model has {want} thresholds but the data give {len(os_.th)}; "
                                "check the categories of the ordered items")
        self._weigh_groups()
        # lavaan's WLS.obs from Model.delta's [tau, mu, vech(Sigma)]: per variable its thresholds
        # (ordered) or minus its mean (continuous); variances of continuous variables; off-diagonal vech
        self._sel = [self._selection(g) for g in range(model.n_groups)]
        covs = [s.cov if mixed else s.corr for s in self.ostats]
        means = [np.where(self.ordered_mask, 0.0, s.means) if mixed else np.zeros(len(s.names))
                 for s in self.ostats]
        self.stats = SampleStats(tuple(model.ov_names[0]), tuple(covs), tuple(means), tuple(self.nobs),
                                 tuple(str(x) for x in labels))
        self.missing = missing

    def _weigh_groups(self) -> None:
        """Group sizes and weights from the sample statistics, and the (D)WLS weight: the
        inverse diagonal of Gamma (WLSMV) or ones (ULSMV)."""
        self.nobs = [s.nobs for s in self.ostats]
        self.ntotal = int(sum(self.nobs))
        self.weights = np.asarray(self.nobs, float) / self.ntotal
        # lavaan's (D)WLS group fit function carries (N_g - 1) / N_g, so chisq_g = (N_g - 1) F_g
        self._fw = np.asarray([(n - 1) / n for n in self.nobs]) * self.weights
        self.s = [s.wls_obs for s in self.ostats]
        self.gamma = [s.gamma for s in self.ostats]
        if self.name == "ULSMV":
            self.W = [np.ones(len(v)) for v in self.s]
        else:
            self.W = [1.0 / np.diag(gm) for gm in self.gamma]

    def _selection(self, g):
        """Signed selection matrix from Model.delta's rows to lavaan's WLS.obs order."""
        model = self.model
        lay = model.moment_layout(g)
        ov = model.ov_names[g]
        p = len(ov)
        n_mom = lay["sigma"].stop
        th_var = [name.split("|")[0] for name in model.th_names[g]]
        r, c = np.tril_indices(p)
        order = np.lexsort((r, c))
        r, c = r[order], c[order]
        rows = []                                       # (moment row, sign)
        for j, v in enumerate(ov):
            if self.ordered_mask[j]:
                rows += [(lay["tau"].start + k, 1.0) for k, tv in enumerate(th_var) if tv == v]
            else:
                rows.append((lay["mu"].start + j, -1.0))
        diag = {int(r_): k for k, (r_, c_) in enumerate(zip(r, c)) if r_ == c_}
        rows += [(lay["sigma"].start + diag[j], 1.0) for j in range(p) if not self.ordered_mask[j]]
        rows += [(lay["sigma"].start + k, 1.0) for k in np.flatnonzero(r != c)]
        S = np.zeros((len(rows), n_mom))
        for i, (row, sign) in enumerate(rows):
            S[i, row] = sign
        return S

    # ------------------------------------------------------------------
    def _full_moments(self, mom):
        """[tau, mu, vech(Sigma)] of one group in Model.delta's row order."""
        p = mom.sigma.shape[0]
        r, c = np.tril_indices(p)
        order = np.lexsort((r, c))
        tau = mom.tau if mom.tau is not None else np.zeros(0)
        return np.concatenate([tau, mom.mu if self.model.meanstructure else np.zeros(0),
                               mom.sigma[r[order], c[order]]])

    def implied_moments(self, x):
        out = []
        for g, mom in enumerate(self.model.implied(x)):
            full = self._full_moments(mom)
            if self.parameterization == "theta":
                full = self._theta_standardized(g, mom)[0]
            out.append(self._sel[g] @ full)
        return out

    def _delta(self, x):
        if self.parameterization != "theta":
            return [S @ d for d, S in zip(self.model.delta(x), self._sel)]
        moms, deltas = self.model.implied_delta(x)
        return [S @ self._theta_standardized(g, mom)[1] @ d
                for g, (mom, d, S) in enumerate(zip(moms, deltas, self._sel))]

    def _theta_standardized(self, g, mom):
        """Theta parameterization: the residual variances of the latent responses are parameters
        (fixed to 1 in the first group) and the moments fitted to the polychorics are those of
        the standardized responses: tau* = d tau, mu* = d mu, Sigma* = D Sigma D with
        d_i = Sigma_ii^-1/2 for ordered variables (1 for continuous ones). Returns the standardized
        [tau, mu, vech Sigma] and its Jacobian with respect to the unstandardized ones."""
        model = self.model
        p = mom.sigma.shape[0]
        ordered = self.ordered_mask
        d = np.where(ordered, 1.0 / np.sqrt(np.abs(np.diag(mom.sigma))), 1.0)
        ddv = np.where(ordered, -0.5 * d ** 3, 0.0)          # d d_i / d Sigma_ii
        r, c = np.tril_indices(p)
        order = np.lexsort((r, c))
        r, c = r[order], c[order]
        full = self._full_moments(mom)
        n_tau = 0 if mom.tau is None else len(mom.tau)
        n_mu = p if model.meanstructure else 0
        n = len(full)
        jac = np.zeros((n, n))
        diag_pos = {int(i): n_tau + n_mu + k for k, (i, j) in enumerate(zip(r, c)) if i == j}
        out = full.copy()
        if n_tau:
            th_var = np.array([model.ov_names[g].index(name.split("|")[0]) for name in model.th_names[g]])
            out[:n_tau] = d[th_var] * mom.tau
            jac[np.arange(n_tau), np.arange(n_tau)] = d[th_var]
            np.add.at(jac, (np.arange(n_tau), [diag_pos[v] for v in th_var]), ddv[th_var] * mom.tau)
        if n_mu:
            rows = n_tau + np.arange(p)
            out[rows] = d * mom.mu
            jac[rows, rows] = d
            np.add.at(jac, (rows, [diag_pos[i] for i in range(p)]), ddv * mom.mu)
        base = n_tau + n_mu
        sig = mom.sigma[r, c]
        out[base:] = d[r] * d[c] * sig
        rows = base + np.arange(len(r))
        jac[rows, rows] = d[r] * d[c]
        np.add.at(jac, (rows, [diag_pos[i] for i in r]), ddv[r] * d[c] * sig)
        np.add.at(jac, (rows, [diag_pos[j] for j in c]), d[r] * ddv[c] * sig)
        return out, jac

    def objective(self, x) -> float:
        f = 0.0
        for w, s, sig, W in zip(self._fw, self.s, self.implied_moments(x), self.W):
            d = s - sig
            f += w * 0.5 * float(np.sum(W * d * d))
        return f

    def gradient(self, x) -> np.ndarray:
        g = np.zeros(self.model.n_free)
        for w, s, sig, W, D in zip(self._fw, self.s, self.implied_moments(x), self.W, self._delta(x)):
            g -= w * D.T @ (W * (s - sig))
        return g

    def information(self, x) -> np.ndarray:
        return sum(w * D.T @ (W[:, None] * D) for w, W, D in zip(self.weights, self.W, self._delta(x)))

    def scoring_step(self, x, with_info: bool = True):
        D = self._delta(x)
        f, g = 0.0, np.zeros(self.model.n_free)
        info = np.zeros((self.model.n_free,) * 2)
        for w, fw, s, sig, W, Dg in zip(self.weights, self._fw, self.s, self.implied_moments(x), self.W, D):
            d = s - sig
            f += fw * 0.5 * float(np.sum(W * d * d))
            g -= fw * Dg.T @ (W * d)
            if with_info:
                info += w * Dg.T @ (W[:, None] * Dg)
        return f, g, (info if with_info else None)

    se_kind = "robust.sem"      # or "standard" (lavaan's se="standard": the expected information alone)

    def vcov(self, x) -> np.ndarray:
        self.x_hat = np.asarray(x, float)
        self._apply_delta_theta(x)
        D = self._delta(x)
        E_inv = np.linalg.inv(self.information(x))
        if self.se_kind == "standard":
            return E_inv / (self.ntotal - self.model.n_groups)
        B = sum(w * Dg.T @ (W[:, None] * gm * W[None, :]) @ Dg
                for w, W, gm, Dg in zip(self.weights, self.W, self.gamma, D))
        # lavaan divides by N - G for (D)WLS/ULS (lav_utils_get_ntotal)
        return sandwich(E_inv, B, self.ntotal - self.model.n_groups)

    def df(self) -> int:
        # fixed.x covariates' means and (co)variances are fitted exactly, not tested (as df_of)
        exo = sum(len(e) * (len(e) + 1) // 2 + len(e) for e in self.model.exo_names)
        return int(sum(len(s) for s in self.s) - self.model.n_free - exo + self.model.n_eq_constraints)

    def _scaled(self, chisq, df, V, D, x=None):
        from analysis.sem.constraints import inverse_information

        E = sum(w * Dg.T @ v @ Dg for w, v, Dg in zip(self.weights, V, D))
        # the model's test (x given) under general constraints uses the bordered inverse
        E_inv = inverse_information(E, self, x) if x is not None else np.linalg.inv(E)
        tr1, tr2 = ugamma_traces(V, D, E_inv, self.gamma, self.nobs)
        return scaled_shifted(chisq, df, tr1, tr2)

    def test(self, x) -> dict:
        self.x_hat = np.asarray(x, float)
        self._apply_delta_theta(x)
        chisq = max(2.0 * self.ntotal * self.objective(x), 0.0)
        df = self.df()
        out = {"test": "standard", "chisq": chisq, "df": df,
               "pvalue": self._pvalue(chisq, df)}
        out.update(self._scaled(chisq, df, [np.diag(W) for W in self.W], self._delta(x), x))
        return out

    def second_test(self, x, name: str) -> dict:
        """A test lavaan adds beside the scaled-shifted one (test="satorra.bentler" or
        "mean.var.adjusted"): the same statistic and U Gamma traces, scaled the other way."""
        from analysis.sem.estimators.scaling import mean_var_adjusted, satorra_bentler

        own = self.test(x)
        tr1, tr2 = own.get("trace.UGamma", np.nan), own.get("trace.UGamma2", np.nan)
        if name == "satorra.bentler":
            return satorra_bentler(own["chisq"], own["df"], tr1)
        return mean_var_adjusted(own["chisq"], own["df"], tr1, tr2)

    def _pvalue(self, chisq, df) -> float:
        # lavaan gives no p value for the unscaled ULS statistic (it is not chi-square distributed)
        if self.name == "ULSMV" or df <= 0:
            return np.nan
        return float(st.chi2.sf(chisq, df))

    def ugamma_pieces(self):
        """(V, Delta, Gamma, nobs) at the estimates, for scaled difference tests."""
        return [np.diag(W) for W in self.W], self._delta(self.x_hat), self.gamma, self.nobs

    def baseline(self) -> dict:
        """Independence model: thresholds free, correlations zero (the thresholds fit exactly)."""
        chisq = 0.0
        D = []
        nth_all = sum(len(s) - len(o.pairs) for s, o in zip(self.s, self.ostats))
        off = 0
        for fw, s, W, o in zip(self._fw, self.s, self.W, self.ostats):
            nth = len(s) - len(o.pairs)                 # thresholds, means and variances: saturated
            chisq += self.ntotal * fw * float(np.sum(W[nth:] * s[nth:] ** 2))
            d = np.zeros((len(s), nth_all))
            d[np.arange(nth), off + np.arange(nth)] = 1.0
            off += nth
            D.append(d)
        df = int(sum(len(s) for s in self.s) - nth_all)
        out = {"chisq": chisq, "df": df, "pvalue": self._pvalue(chisq, df)}
        out.update(self._scaled(chisq, df, [np.diag(W) for W in self.W], D))
        return out

    def extra_fit_measures(self, x, test, fit) -> dict:
        """WLS fit keys: baseline from the independence model, scaled indices; no likelihood."""
        base = self.baseline()
        chisq, df = test["chisq"], test["df"]
        b2, bdf = base["chisq"], base["df"]
        g = self.model.n_groups
        n = self.ntotal - g            # lavaan's N for (D)WLS/ULS indices (lav_utils_get_ntotal)
        out = {"npar": self.model.n_free, "fmin": chisq / (2 * self.ntotal), "baseline.chisq": b2,
               "baseline.df": bdf, "baseline.pvalue": base["pvalue"],
               **incremental_indices(chisq, df, b2, bdf), **rmsea_indices(chisq, df, n, g),
               "ntotal": self.ntotal,
               **hoelter_indices(chisq, df, n),
               "logl": np.nan, "unrestricted.logl": np.nan, "aic": np.nan, "bic": np.nan,
               "bic2": np.nan}
        out.update(self._residual_indices(x))
        robust = self.catml_robust(x) if self.ordered_mask.all() else None
        out.update(robust_fit_indices(test, base, n, g, robust=robust))
        return out

    def _thresholds_or_means_equal(self) -> bool:
        """lavaan's catML refit drops the threshold and mean rows; equality constraints on them
        (group_equal thresholds/means, shared labels) make it fail and the robust indices NA."""
        pt = self.model.partable
        shared = pt.loc[pt["free"] > 0, "free"].duplicated(keep=False)
        rows = pt.loc[pt["free"] > 0][shared]
        return bool(rows["op"].isin(["|", "~1"]).any())

    def catml_robust(self, x) -> dict | None:
        """lavaan's robust CFI/TLI/RMSEA pieces for categorical data (lav_fit_catml_dwls, 0.6-14).

        The ML discrepancy between the polychoric matrix R and the implied correlations
        (XX3, at the DWLS estimates) with ks = tr(WiU' V WiU Gamma_rr), WiU = I - Delta E^-1 Delta' W,
        V the normal-theory weight of the correlations; the null model uses tr(Gamma_rr).
        """
        from analysis.sem.estimators.base import ml_weight
        if self._thresholds_or_means_equal():
            return None
        fg = self.weights
        xx3 = xx3n = 0.0
        Dl, Wl, Vl, Gl = [], [], [], []
        for w, o, mom, D, W, gam in zip(fg, self.ostats, self.model.implied(x), self._delta(x),
                                        self.W, self.gamma):
            R = o.corr
            sig = mom.sigma
            if self.parameterization == "theta":
                # the y* variances are not 1 under theta; lavaan compares R with the implied correlations
                sd = np.sqrt(np.diag(sig))
                sig = sig / np.outer(sd, sd)
            if np.linalg.eigvalsh(R).min() < np.sqrt(np.finfo(float).eps):
                return None
            p = R.shape[0]
            n_g = o.nobs
            ld_s, ld_r = np.linalg.slogdet(sig)[1], np.linalg.slogdet(R)[1]
            xx3 += n_g * (ld_s + np.trace(R @ np.linalg.inv(sig)) - ld_r - p)
            xx3n += n_g * (-ld_r)
            nth = len(D) - len(o.pairs)
            r, c = np.tril_indices(p)
            order = np.lexsort((r, c))
            off = np.flatnonzero(r[order] != c[order])
            V = ml_weight(np.linalg.inv(sig))[np.ix_(off, off)]
            Dl.append(D[nth:])
            Wl.append(w * np.diag(W[nth:]))
            Vl.append(w * V)
            Gl.append(gam[nth:, nth:] / w)
        from scipy.linalg import block_diag
        Wall, Vall, Gall = block_diag(*Wl), block_diag(*Vl), block_diag(*Gl)
        Dall = np.vstack(Dl)
        E_inv = np.linalg.inv(self.information(x))
        WiU = np.eye(len(Wall)) - Dall @ E_inv @ Dall.T @ Wall
        ks = float(np.trace(WiU.T @ Vall @ WiU @ Gall))
        df3 = self.df()
        df3n = sum(len(o.pairs) for o in self.ostats)
        c3 = ks / df3 if df3 > 0 else np.nan
        return {"XX3": xx3, "df3": df3, "c.hat3": c3, "XX3.scaled": xx3 / c3,
                "XX3.null": xx3n, "df3.null": df3n, "c.hat3.null": float(np.trace(Gall)) / df3n}

    def _residual_indices(self, x) -> dict:
        """srmr/rmr/crmr on the correlation metric with thresholds as the "mean" part
        (lavaan: polychoric minus implied correlations; unit diagonals add nothing), and
        gfi/agfi/pgfi/wrmr with the WLS weights."""
        keys = dict.fromkeys(["rmr", "rmr_nomean", "crmr", "crmr_nomean", "gfi", "wrmr"], 0.0)
        nel = sum(len(s) for s in self.s)
        for w, o, mom, s, sig, W in zip(self.weights, self.ostats, self.model.implied(x), self.s,
                                        self.implied_moments(x), self.W):
            p, nth = len(o.names), len(o.th)
            pstar = p * (p + 1) / 2
            i, j = o.pairs[:, 0], o.pairs[:, 1]
            sd = np.sqrt(np.diag(mom.sigma))
            rc = np.sum((o.corr[i, j] - mom.sigma[i, j] / (sd[i] * sd[j])) ** 2)
            rt = np.sum((s[:nth] - sig[:nth]) ** 2)
            keys["rmr"] += w * np.sqrt((rc + rt) / (pstar + nth))
            keys["rmr_nomean"] += w * np.sqrt(rc / pstar)
            keys["crmr"] += w * np.sqrt((rc + rt) / (pstar - p + nth))
            keys["crmr_nomean"] += w * np.sqrt(rc / (pstar - p))
            d = s - sig
            keys["gfi"] += w * (1.0 - np.sum(W * d * d) / np.sum(W * s * s))
        chisq = 2 * self.ntotal * self.objective(x)
        # lavaan's choice for several groups: the total chi-square over the first group's number
        # of sample statistics (fitMeasures: nel <- length(WLS.obs[[1]])), documented in engine.md
        keys["wrmr"] = float(np.sqrt(chisq / len(self.s[0])))
        df = self.df()
        out = {"rmr": keys["rmr"], "rmr_nomean": keys["rmr_nomean"], "srmr": keys["rmr_nomean"],
               "srmr_bentler": keys["rmr"], "srmr_bentler_nomean": keys["rmr_nomean"],
               "crmr": keys["crmr"], "crmr_nomean": keys["crmr_nomean"],
               "srmr_mplus": np.nan, "srmr_mplus_nomean": np.nan,
               "gfi": keys["gfi"], "agfi": 1 - (nel / df) * (1 - keys["gfi"]) if df > 0 else 1.0,
               "pgfi": (df / nel) * keys["gfi"], "wrmr": keys["wrmr"]}
        return out

    def residual_variances(self, x) -> list[np.ndarray]:
        """Delta parameterization: theta_j = 1 / d_j^2 - common variance of y*_j."""
        out = []
        for g, mom in enumerate(self.model.implied(x)):
            mats = self.model.matrices(x, g)
            scales = mats["scales"]
            p = len(scales)
            current = np.diag(mats["S"])[:p]
            common = np.diag(mom.sigma) / scales ** 2 - current
            out.append(1.0 / scales ** 2 - common)
        return out

    def set_residual_variances(self, x):
        """Delta parameterization: put the residual variances implied by ``x`` into the model
        (e.g. at estimates pooled over imputations)."""
        self._apply_delta_theta(x)

    def for_model(self, model, x):
        """This fit's estimator for ``model`` (the same items with more parameters, as the
        modification indices' extended model) at its parameters ``x``."""
        import copy

        out = copy.copy(self)
        out.model = model
        out._sel = [out._selection(g) for g in range(model.n_groups)]
        out.__dict__.pop("_theta_rows", None)
        out._apply_delta_theta(x)
        return out

    def _apply_delta_theta(self, x):
        """Set the fixed residual variances of the latent responses to their delta-parameterization
        values, so that the table, the implied moments and the standardized solution show them
        (thresholds and correlations do not depend on them). Under the theta parameterization the
        residual variances are parameters: the table's scales (~*~) show 1/sqrt(Var(y*)) instead."""
        pt = self.model.partable
        if self.parameterization == "theta":
            for g, mom in enumerate(self.model.implied(x)):
                gnum = self.model.groups[g]
                for j, v in enumerate(self.model.ov_names[g]):
                    rows = (pt["op"] == "~*~") & (pt["lhs"] == v) & (pt["group"] == gnum) & (pt["free"] == 0)
                    if self.ordered_mask[j] and rows.any():
                        pt.loc[rows, "ustart"] = 1.0 / np.sqrt(mom.sigma[j, j])
            return
        if not hasattr(self, "_theta_rows"):
            # ordered items' rows only: a fixed.x covariate's variance stays its sample value
            keep = ((pt["op"] == "~~") & (pt["lhs"] == pt["rhs"]) & (pt["free"] == 0)
                    & (pt["user"] == 0) & (pt["exo"] != 1)).to_numpy()
            lhs, grp = pt["lhs"].to_numpy(), pt["group"].to_numpy()
            self._theta_rows = []
            for g, gnum in enumerate(self.model.groups):
                pos = {v: j for j, v in enumerate(self.model.ov_names[g])}
                rows = [(pt.index[i], pos[lhs[i]]) for i in np.flatnonzero(keep & (grp == gnum))
                        if lhs[i] in pos]
                self._theta_rows.append(rows)
        rows, values = [], []
        for g, theta in enumerate(self.residual_variances(x)):
            grp = self.model.group_maps[g]
            for idx, j in self._theta_rows[g]:
                rows.append(idx)
                values.append(theta[j])
                grp.S0[j, j] = theta[j]
        if rows:   # one write: this runs at every step of the standardized SEs' differences
            pt.loc[rows, "ustart"] = values


class ConditionalWLSEstimator(WLSEstimator):
    """WLSMV / ULSMV conditional on the fixed.x covariates (lavaan's conditional.x = TRUE, its
    default for ordered items with observed exogenous covariates).

    The sample statistics are those of the endogenous observed variables given x
    (:func:`analysis.sem.polychoric.conditional_stats`): thresholds (or minus intercepts), the
    slopes on x, residual variances of continuous variables and residual correlations. The
    model's counterparts come from its joint implied moments with x: ``Pi = S_yx S_xx^-1``,
    residual covariances ``S_yy - Pi S_xy`` and thresholds at x = 0, ``tau + Pi mu_x`` (the
    covariates' moments are fixed, so the chain rule goes through S_yx, S_yy, tau and mu only).
    """

    def __init__(self, model, frames, *, estimator: str = "WLSMV", group_labels=(),
                 collapse_sparse: bool = False, parameterization: str = "delta",
                 missing: str = "listwise"):
        import pandas as pd

        from analysis.sem.data import SampleStats
        from analysis.sem.polychoric import conditional_stats

        self.model = model
        self.name = estimator.upper()
        self.parameterization = parameterization
        self.test_kind = "scaled.shifted"
        self.missing = missing
        labels = list(group_labels)
        ov = model.ov_names[0]
        exo = set(model.exo_names[0])
        ordset = set(model.ordered_names[0])
        self.y_names = [v for v in ov if v not in exo]
        self.x_names = [v for v in ov if v in exo]
        self.ordered_mask = np.array([v in ordset for v in self.y_names])
        ordered = [v for v in self.y_names if v in ordset]
        if missing == "pairwise":
            # fixed.x (lavaan): cases missing a covariate are deleted, and the covariates' moments
            # are fixed at their values in the cases used (divisor N - 1, as with complete cases)
            complete = [f[self.x_names].notna().all(axis=1).to_numpy() for f in frames]
            deleted = sum(int((~c).sum()) for c in complete)
            frames = [f[c] for f, c in zip(frames, complete)]
            if deleted:
                import warnings

                from analysis.errors import SEMWarning
                warnings.warn(f"{deleted} case(s) deleted because of missing values in exogenous "
                              "covariate(s) with fixed.x = TRUE (as lavaan)", SEMWarning, stacklevel=3)
            self._refix_exo(frames)
        allf = pd.concat(frames, keys=range(len(frames)))
        groups = np.asarray(allf.index.get_level_values(0))
        codes, self.levels = ordinal_codes(allf, ordered, groups=groups if len(frames) > 1 else None,
                                           collapse_sparse=collapse_sparse)
        allf = allf.copy()
        allf[ordered] = codes[ordered]
        self.ostats = []
        for g in range(len(frames)):
            part = allf[groups == g]
            try:
                self.ostats.append(conditional_stats(part[self.y_names], self.ordered_mask,
                                                     part[self.x_names].to_numpy(float),
                                                     names=self.y_names, x_names=self.x_names,
                                                     missing=missing))
            except DataError as err:
                where = f" (group '{labels[g]}')" if len(frames) > 1 and labels else ""
                raise type(err)(f"{err}{where}") from None
        for g, os_ in enumerate(self.ostats):
            want = len(model.th_names[g])
            if int(os_.numeric.sum()) + want != len(os_.th):
                raise DataError(f"the model has {want} thresholds but the data give "
                                f"{len(os_.th) - int(os_.numeric.sum())}; check the categories of the ordered items")
        self._weigh_groups()
        self._maps = [self._index_maps(g) for g in range(model.n_groups)]
        # sample statistics on the joint (y, x) scale for the result: the y block rebuilt from
        # the residual covariances and slopes, the covariates' moments as fixed.x keeps them
        covs, means = [], []
        x0 = np.zeros(model.n_free)
        for g, (o, mom) in enumerate(zip(self.ostats, model.implied(x0))):
            yi, xi = self._maps[g]["yi"], self._maps[g]["xi"]
            sxx, mux = mom.sigma[np.ix_(xi, xi)], mom.mu[xi]
            p = len(ov)
            cov, mean = np.zeros((p, p)), np.zeros(p)
            cov[np.ix_(yi, yi)] = o.cov + o.slopes @ sxx @ o.slopes.T
            cov[np.ix_(yi, xi)] = o.slopes @ sxx
            cov[np.ix_(xi, yi)] = cov[np.ix_(yi, xi)].T
            cov[np.ix_(xi, xi)] = sxx
            mean[yi] = np.where(o.numeric, [t[0] for t in o.thresholds], 0.0) + np.where(
                o.numeric, o.slopes @ mux, 0.0)
            mean[xi] = mux
            covs.append(cov)
            means.append(mean)
        self.stats = SampleStats(tuple(ov), tuple(covs), tuple(means), tuple(self.nobs),
                                 tuple(str(x) for x in labels))

    def _refix_exo(self, frames):
        """The covariates' fixed means and (co)variances (divisor N - 1) in each group's cases."""
        pt = self.model.partable
        for g, frame in enumerate(frames):
            grp = self.model.group_maps[g]
            X = frame[self.x_names].to_numpy(float)
            mean = X.mean(axis=0)
            cov = (X - mean).T @ (X - mean) / (len(X) - 1)
            sub = pt[(pt["exo"] == 1) & (pt["group"] == self.model.groups[g])]
            for idx, row in sub.iterrows():
                i = self.x_names.index(row["lhs"])
                a = grp.names.index(row["lhs"])
                if row["op"] == "~1":
                    val = float(mean[i])
                    grp.M0[a] = val
                else:
                    val = float(cov[i, self.x_names.index(row["rhs"])])
                    b = grp.names.index(row["rhs"])
                    grp.S0[a, b] = grp.S0[b, a] = val
                pt.at[idx, "ustart"] = val

    def _index_maps(self, g):
        model = self.model
        ov = model.ov_names[g]
        pos = {v: i for i, v in enumerate(ov)}
        yi = np.array([pos[v] for v in self.y_names], dtype=int)
        xi = np.array([pos[v] for v in self.x_names], dtype=int)
        ypos = {v: k for k, v in enumerate(self.y_names)}
        th_y = np.array([ypos[name.split("|")[0]] for name in model.th_names[g]], dtype=int)
        ordered = [pos[v] for v, o in zip(self.y_names, self.ordered_mask) if o]
        grp = model.group_maps[g]
        ai, aj, _ = grp.cells["A"]
        causes = set(aj.tolist()) | set(np.flatnonzero(np.any(grp.A0 != 0, axis=0)).tolist())
        return {"yi": yi, "xi": xi, "th_y": th_y, "lay": model.moment_layout(g),
                "vr": grp.vr, "vc": grp.vc, "pairs": self.ostats[g].pairs,
                "ord": np.array(ordered, dtype=int), "ord_y": np.flatnonzero(self.ordered_mask),
                # lavaan's special case of setResidualElements: no latent variable and only ordered
                # endogenous variables (every PSI element is a zeroed dummy)
                "phantom": not model.lv_names[g] and bool(self.ordered_mask.all()),
                "predictor": any(j in causes for j in ordered)}

    def _conditional(self, g, mom, J=None, standardize=True):
        """lavaan's WLS.est of one group from the joint implied moments (and its Jacobian from
        Model.delta's rows). Returns ``(wls_est, residual covariance given x)``, or
        ``(wls_est, Jacobian)`` when ``J`` is given. Under the theta parameterization the ordered
        y* are standardized by their residual sd given x (lavaan's setDeltaElements)."""
        mp = self._maps[g]
        yi, xi, th_y, pairs = mp["yi"], mp["xi"], mp["th_y"], mp["pairs"]
        num = ~self.ordered_mask
        sig, mu = mom.sigma, mom.mu
        sxx_inv = np.linalg.inv(sig[np.ix_(xi, xi)])
        syx = sig[np.ix_(yi, xi)]
        pi = syx @ sxx_inv
        mux = mu[xi]
        res = sig[np.ix_(yi, yi)] - pi @ syx.T
        tau = mom.tau if mom.tau is not None else np.zeros(0)
        th_cond = tau + pi[th_y] @ mux
        icpt = mu[yi] - pi @ mux
        if J is not None:
            lay = mp["lay"]
            n = J.shape[1]
            p = sig.shape[0]
            dS = np.zeros((p, p, n))
            Js = J[lay["sigma"]]
            dS[mp["vr"], mp["vc"]] = Js
            dS[mp["vc"], mp["vr"]] = Js
            dsyx = dS[np.ix_(yi, xi)]
            dpi = np.einsum("iqn,qr->irn", dsyx, sxx_inv)
            dres = dS[np.ix_(yi, yi)] - np.einsum("iqn,jq->ijn", dpi, syx) - np.einsum("iq,jqn->ijn", pi, dsyx)
            dth = J[lay["tau"]] + np.einsum("kqn,q->kn", dpi[th_y], mux)
            dicpt = J[lay["mu"]][yi] - np.einsum("iqn,q->in", dpi, mux)
        if standardize and self.parameterization == "theta":
            py = len(yi)
            dg = np.diag(res)
            d = np.where(self.ordered_mask, 1.0 / np.sqrt(np.abs(dg)), 1.0)
            if J is not None:
                dd = np.where(self.ordered_mask, -0.5 * d ** 3, 0.0)[:, None] * dres[np.arange(py), np.arange(py)]
                dth = d[th_y][:, None] * dth + th_cond[:, None] * dd[th_y]
                dpi = d[:, None, None] * dpi + pi[:, :, None] * dd[:, None, :]
                dres = (np.outer(d, d)[:, :, None] * dres + dd[:, None, :] * (d[None, :] * res)[:, :, None]
                        + dd[None, :, :] * (d[:, None] * res)[:, :, None])
            th_cond = d[th_y] * th_cond
            pi = d[:, None] * pi
            res = np.outer(d, d) * res
        i, j = pairs[:, 0], pairs[:, 1]
        starts = np.concatenate([[0], np.cumsum([int(np.sum(th_y == v)) for v in range(len(yi))])])
        th_rows = [(-icpt[v:v + 1], v, True) if num[v] else (th_cond[starts[v]:starts[v + 1]], v, False)
                   for v in range(len(yi))]
        out = np.concatenate([b for b, _, _ in th_rows] + [pi.ravel(order="F"), np.diag(res)[num], res[i, j]])
        if J is None:
            return out, res
        rows = [-dicpt[v:v + 1] if is_num else dth[starts[v]:starts[v + 1]] for _, v, is_num in th_rows]
        rows.append(dpi.transpose(1, 0, 2).reshape(len(xi) * len(yi), n))
        d_diag = dres[np.arange(len(yi)), np.arange(len(yi))]
        rows += [d_diag[num], dres[i, j]]
        return out, np.vstack(rows)

    def _set_thetas(self, x) -> list[np.ndarray]:
        """lavaan's delta parameterization (setResidualElements): the residual variances of the
        ordered y* are 1/d^2 minus the diagonal of their residual covariance given x computed with
        those residual variances at zero (at one, less one, when every residual is such a dummy).
        For a CFA or MIMIC model this makes Var(y* | x) = 1/d^2; when an ordered y* predicts
        another variable it is lavaan's one-pass value, reproduced as it is."""
        x = np.asarray(x, dtype=float)
        out = []
        for g, grp in enumerate(self.model.group_maps):
            mp = self._maps[g]
            j = mp["ord"]
            base = 1.0 if mp["phantom"] else 0.0
            grp.S0[j, j] = base
            mom = self.model.group_moments(grp, self.model.group_core(grp, x))
            _, res = self._conditional(g, mom, standardize=False)
            d = self.model.matrices(x, g)["scales"]
            theta = 1.0 / d[j] ** 2 - (np.diag(res)[mp["ord_y"]] / d[j] ** 2 - base)
            grp.S0[j, j] = theta
            out.append(theta)
        return out

    def implied_moments(self, x):
        if self.parameterization == "delta":
            self._set_thetas(x)
        return [self._conditional(g, mom)[0] for g, mom in enumerate(self.model.implied(x))]

    def _delta(self, x):
        x = np.asarray(x, dtype=float)
        if self.parameterization == "delta":
            self._set_thetas(x)
        if self.parameterization != "delta" or not any(mp["predictor"] for mp in self._maps):
            moms, deltas = self.model.implied_delta(x)
            return [self._conditional(g, mom, J)[1] for g, (mom, J) in enumerate(zip(moms, deltas))]
        # an ordered y* predicts another variable: its residual variance moves with x (lavaan's
        # one-pass rule), so the Jacobian goes by central differences
        cols = []
        for k in range(len(x)):
            h = 1e-6 * max(1.0, abs(x[k]))
            up, dn = x.copy(), x.copy()
            up[k] += h
            dn[k] -= h
            cols.append([(a - b) / (2 * h) for a, b in zip(self.implied_moments(up), self.implied_moments(dn))])
        self._set_thetas(x)     # leave the model at x
        return [np.column_stack([c[g] for c in cols]) for g in range(self.model.n_groups)]

    def df(self) -> int:
        return int(sum(len(s) for s in self.s) - self.model.n_free + self.model.n_eq_constraints)

    def catml_robust(self, x):
        return None         # lavaan 0.6-14 gives no robust CFI/TLI/RMSEA with conditional.x

    _ROBUST_NA = ("cfi.robust", "tli.robust", "nnfi.robust", "rni.robust", "rmsea.robust",
                  "rmsea.ci.lower.robust", "rmsea.ci.upper.robust", "rmsea.pvalue.robust",
                  "rmsea.notclose.pvalue.robust")

    def extra_fit_measures(self, x, test, fit) -> dict:
        out = super().extra_fit_measures(x, test, fit)
        return {**out, **{k: np.nan for k in self._ROBUST_NA if k not in out}}   # NA, as lavaan prints

    def _residual_indices(self, x) -> dict:
        """lavaan's rmr/srmr/crmr with conditional.x: residuals of the residual covariances given x
        (raw; divided by the sample residual sds for srmr; as correlations for crmr) and of the
        ordered items' thresholds; lavaan counts every observed variable, covariates included,
        in the number of moments, and leaves the slopes out."""
        keys = dict.fromkeys(["rmr", "rmr_nomean", "srmr_bentler", "srmr_bentler_nomean", "crmr",
                              "crmr_nomean", "gfi"], 0.0)
        nel = sum(len(s) for s in self.s)
        for g, (w, o, mom, s, W) in enumerate(zip(self.weights, self.ostats, self.model.implied(x),
                                                   self.s, self.W)):
            sig, res = self._conditional(g, mom)
            nvar = len(self.model.ov_names[g])
            i, j = o.pairs[:, 0], o.pairs[:, 1]
            S = o.cov
            sd, isd = np.sqrt(np.diag(S)), np.sqrt(np.diag(res))
            ordered_th = np.repeat(self.ordered_mask, [len(t) for t in o.thresholds])
            rt = np.sum(((s - sig)[:len(o.th)][ordered_th]) ** 2)
            nth = int(ordered_th.sum())
            raw = np.sum((S - res)[i, j] ** 2)
            bentler = np.sum(((S - res) / np.outer(sd, sd))[i, j] ** 2)
            bollen = np.sum((S / np.outer(sd, sd) - res / np.outer(isd, isd))[i, j] ** 2)
            npair = len(i)
            keys["rmr"] += w * np.sqrt((raw + rt) / (npair + nth + nvar))
            keys["rmr_nomean"] += w * np.sqrt(raw / (npair + nvar))
            keys["srmr_bentler"] += w * np.sqrt((bentler + rt) / (npair + nth + nvar))
            keys["srmr_bentler_nomean"] += w * np.sqrt(bentler / (npair + nvar))
            keys["crmr"] += w * np.sqrt((bollen + rt) / (npair + nth))
            keys["crmr_nomean"] += w * np.sqrt(bollen / npair)
            d = s - sig
            keys["gfi"] += w * (1.0 - np.sum(W * d * d) / np.sum(W * s * s))
        chisq = 2 * self.ntotal * self.objective(x)
        df = self.df()
        return {**{k: keys[k] for k in keys if k != "gfi"}, "srmr": keys["srmr_bentler_nomean"],
                "srmr_mplus": np.nan, "srmr_mplus_nomean": np.nan, "gfi": keys["gfi"],
                "agfi": 1 - (nel / df) * (1 - keys["gfi"]) if df > 0 else 1.0,
                "pgfi": (df / nel) * keys["gfi"], "wrmr": float(np.sqrt(chisq / len(self.s[0])))}

    def residual_covariances(self, x) -> list[np.ndarray]:
        """Per group the implied covariance matrix of the endogenous variables given the covariates
        at ``x`` (lavaan's implied res.cov; the sample's is ``ostats[g].cov``)."""
        if self.parameterization == "delta":
            self._set_thetas(x)
        return [self._conditional(g, mom)[1] for g, mom in enumerate(self.model.implied(x))]

    def residual_variances(self, x) -> list[np.ndarray]:
        """Delta parameterization: the residual variances of y* (lavaan's rule, :meth:`_set_thetas`),
        in the layout of the observed variables (other entries unused)."""
        out = []
        for g, theta in enumerate(self._set_thetas(x)):
            full = np.zeros(len(self.model.ov_names[g]))
            full[self._maps[g]["ord"]] = theta
            out.append(full)
        return out

    def _apply_delta_theta(self, x):
        if self.parameterization != "theta":
            return super()._apply_delta_theta(x)
        # theta: the residual variances are parameters; the scales (~*~) show 1 / sd(y* | x)
        pt = self.model.partable
        for g, mom in enumerate(self.model.implied(x)):
            _, res = self._conditional(g, mom, standardize=False)
            gnum = self.model.groups[g]
            for k, v in enumerate(self.y_names):
                rows = (pt["op"] == "~*~") & (pt["lhs"] == v) & (pt["group"] == gnum) & (pt["free"] == 0)
                if self.ordered_mask[k] and rows.any():
                    pt.loc[rows, "ustart"] = 1.0 / np.sqrt(res[k, k])

    def for_model(self, model, x):
        import copy

        out = copy.copy(self)
        out.model = model
        out._maps = [out._index_maps(g) for g in range(model.n_groups)]
        out.__dict__.pop("_theta_rows", None)
        out._apply_delta_theta(x)
        return out


def make_estimator(model, stats, *, data=None, options=None):
    """WLSMV / ULSMV for fit_sem."""
    from analysis.sem.estimators.scaling import group_arrays

    options = options or {}
    name = options.get("estimator", "WLSMV").upper()
    missing = options.get("missing", "listwise")
    refuse_combination(name, missing, True)
    if data is None:
        raise EstimatorCombinationError(f"estimator {name} needs the raw data")
    import pandas as pd
    arrays = group_arrays(data, model)
    frames = [pd.DataFrame(a, columns=model.ov_names[g]) for g, a in enumerate(arrays)]
    parameterization = str(options.get("parameterization", "delta")).lower()
    conditional = bool(options.get("conditional_x")) and any(model.exo_names)
    cls = ConditionalWLSEstimator if conditional else WLSEstimator
    est = cls(model, frames, estimator=name, missing="pairwise" if missing == "pairwise" else "listwise",
              group_labels=tuple(stats.group_labels),
              collapse_sparse=bool(options.get("collapse_sparse", False)),
              parameterization=parameterization)
    if str(options.get("se", "")).lower() == "standard":
        est.se_kind = "standard"
    return est
