"""General constraints on parameters: ``a == 2*b``, ``a + b == 1``, ``a > 0.5``, ``v > 0``.

lavaan syntax, as lavaan estimates them (its ``nlminb.constr``): the discrepancy
function is minimized subject to the constraints (SLSQP from the unconstrained
solution, then Newton steps on the KKT conditions of the equality and active
inequality constraints), and the standard errors come from the information
bordered by the Jacobian H of those constraints (lavaan's
``lav_model_information_augment_invert``):

    C = top-left block of [[A, H'], [H, 0]]^-1,   vcov = C A V A C

with A the information and V the unconstrained covariance (so C itself for
se = "standard", where V = A^-1, and the constrained sandwich for robust SEs).
Each equality constraint adds a degree of freedom and takes a parameter off
``npar`` (inequality constraints do neither), as lavaan counts them.

``label == label`` and ``label == number`` stay what they were (one shared free
parameter, a fixed value); every other ``==`` and all ``<``/``>`` rows are
general constraints. Expressions may use labels, ``:=`` parameters, numbers,
``+ - * / ^`` and ``exp log sqrt abs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.sem.defined import DefinedParameters, central_differences, compile_expression, expression_names
from analysis.errors import ModelSpecificationError

__all__ = ["Constraints", "general_constraint_rows", "inverse_information"]

ACTIVE_TOL = 1e-6   # an inequality with |slack| below this is on its bound


def _is_number(text: str) -> bool:
    try:
        float(str(text).replace(" ", ""))
    except ValueError:
        return False
    return True


def general_constraint_rows(pt: pd.DataFrame) -> np.ndarray:
    """Mask of the rows that are general constraints (not label == label / label == number)."""
    ops = pt["op"].tolist()
    if not any(op in ("==", "<", ">") for op in ops):   # most models: no constraint rows at all
        return np.zeros(len(ops), dtype=bool)
    labels = set(pt.loc[pt["label"].astype(str) != "", "label"].astype(str))
    out = []
    for op, lhs, rhs in zip(ops, pt["lhs"].tolist(), pt["rhs"].tolist()):
        if op in ("<", ">"):
            out.append(True)
        elif op == "==":
            simple = (lhs in labels and (rhs in labels or _is_number(rhs))) or \
                     (rhs in labels and _is_number(lhs))
            out.append(not simple)
        else:
            out.append(False)
    return np.asarray(out, dtype=bool)


@dataclass
class _Constraint:
    row: int          # position in the ParameterTable
    kind: str         # "eq" or "ineq"
    text: str         # as lavaan prints it: "a - (2*b)"
    fn: object        # value(env): lhs - rhs (eq) or the slack, >= 0 when satisfied (ineq)


class Constraints:
    """The general constraints of a ParameterTable, as functions of the free-parameter vector."""

    def __init__(self, pt: pd.DataFrame):
        self.pt = pt
        self.defined = DefinedParameters(pt)
        known = set(self.defined.free) | set(self.defined.fixed) | set(self.defined.names)
        self.items: list[_Constraint] = []
        for i in np.flatnonzero(general_constraint_rows(pt)):
            op, lhs, rhs = pt["op"].iat[i], str(pt["lhs"].iat[i]), str(pt["rhs"].iat[i])
            names = [n for n in expression_names(lhs) + expression_names(rhs) if n not in known]
            if names:
                raise ModelSpecificationError(
                    f"constraint '{lhs} {op} {rhs}' uses {', '.join(repr(n) for n in names)}, which "
                    "is neither a parameter label nor a defined (:=) parameter")
            if not expression_names(lhs) + expression_names(rhs):
                raise ModelSpecificationError(f"constraint '{lhs} {op} {rhs}' has no parameter in it")
            # lavaan's form: lhs - (rhs); for '<' the slack is rhs - lhs
            expr = f"({lhs}) - ({rhs})" if op != "<" else f"({rhs}) - ({lhs})"
            text = f"{lhs} - ({rhs})" if op != "<" else f"{rhs} - ({lhs})"
            self.items.append(_Constraint(int(i), "eq" if op == "==" else "ineq", text,
                                          compile_expression(expr)))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_equality(self) -> int:
        return sum(c.kind == "eq" for c in self.items)

    def values(self, x: np.ndarray) -> np.ndarray:
        env = self.defined.env(x)
        for name, fn in zip(self.defined.names, self.defined.functions):
            try:
                env[name] = fn(env)
            except (ZeroDivisionError, OverflowError, ValueError):
                env[name] = np.nan
        out = np.empty(len(self.items))
        with np.errstate(all="ignore"):
            for k, c in enumerate(self.items):
                try:
                    out[k] = c.fn(env)
                except (ZeroDivisionError, OverflowError, ValueError):
                    out[k] = np.nan
        return out

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """Central differences in every free parameter (the expressions are smooth and cheap)."""
        return central_differences(self.values, x, range(len(x)), len(self.items))

    def binding(self, x: np.ndarray) -> np.ndarray:
        """Mask of the equality and the active inequality constraints at ``x``."""
        v = self.values(x)
        return np.array([c.kind == "eq" or abs(v[k]) < ACTIVE_TOL for k, c in enumerate(self.items)], bool)

    # ---------------------------------------------------------------- estimation
    def minimize(self, est, x0: np.ndarray, unconstrained=None):
        """The constrained minimum of ``est.objective``; returns an optimize.OptimizeResult."""
        from scipy.optimize import minimize as sp_minimize

        from analysis.sem.optimize import OptimizeResult

        x = np.asarray(unconstrained.x if unconstrained is not None and unconstrained.converged else x0, float)
        if unconstrained is not None and unconstrained.converged and self.n_equality == 0 \
                and np.all(self.values(x) >= 0):
            return unconstrained          # every inequality holds at the unconstrained minimum
        eq = [k for k, c in enumerate(self.items) if c.kind == "eq"]
        ineq = [k for k, c in enumerate(self.items) if c.kind == "ineq"]
        cons = []
        if eq:
            cons.append({"type": "eq", "fun": lambda z: self.values(z)[eq], "jac": lambda z: self.jacobian(z)[eq]})
        if ineq:
            cons.append({"type": "ineq", "fun": lambda z: self.values(z)[ineq],
                         "jac": lambda z: self.jacobian(z)[ineq]})

        def fun(z):
            f = est.objective(z)
            return f if np.isfinite(f) else 1e10

        res = sp_minimize(fun, x, jac=lambda z: est.gradient(z), constraints=cons, method="SLSQP",
                          options={"ftol": 1e-14, "maxiter": 1000})
        x, ok = self._polish(est, res.x)
        feasible = np.all(np.abs(self.values(x)[eq]) < 1e-8) and np.all(self.values(x)[ineq] > -1e-8)
        converged = bool(ok and feasible and np.isfinite(est.objective(x)))
        message = "converged (constrained)" if converged else f"constrained optimization: {res.message}"
        return OptimizeResult(x, est.objective(x), est.gradient(x), int(res.nit), converged, message,
                              "slsqp-constrained")

    def _polish(self, est, x, steps: int = 8):
        """Newton steps on the KKT conditions of the binding constraints (SLSQP stops near, not at,
        the solution): [[A, H'], [H, 0]] [dx, lam] = [-g, -c]."""
        x = np.asarray(x, float)
        binding = self.binding(x)
        if not binding.any():
            return x, True
        for _ in range(steps):
            g = est.gradient(x)
            a = est.information(x)
            h = self.jacobian(x)[binding]
            c = self.values(x)[binding]
            n, m = len(x), int(binding.sum())
            kkt = np.block([[a, h.T], [h, np.zeros((m, m))]])
            try:
                sol = np.linalg.solve(kkt, -np.concatenate([g, c]))
            except np.linalg.LinAlgError:
                sol = np.linalg.lstsq(kkt, -np.concatenate([g, c]), rcond=None)[0]
            dx = sol[:n]
            t = 1.0
            lagr = lambda z, lam=sol[n:]: est.objective(z) + lam @ self.values(z)[binding]  # noqa: E731
            base = lagr(x)
            while t > 1e-4 and not np.isfinite(lagr(x + t * dx)):
                t /= 2
            x_new = x + t * dx
            if np.max(np.abs(x_new - x)) < 1e-12 or not np.isfinite(base):
                x = x_new
                break
            x = x_new
        return x, True

    # ---------------------------------------------------------------- inference
    def vcov(self, est, x: np.ndarray) -> np.ndarray:
        """lavaan's constrained covariance: the bordered inverse C of the information, C A V A C."""
        a = est.information(x) * est.ntotal
        c = self.bordered_inverse(a, x)     # a generalized inverse when constraints are redundant
        try:
            out = c @ a @ est.vcov(x) @ a @ c
        except np.linalg.LinAlgError:      # identified only through the constraints: standard SEs
            out = c
        # a parameter pinned by its constraints (b > 0.8 active) has no sampling variance: exactly 0
        # (lavaan shows 0 or NA, its rounding noise), so that z and p are left empty
        pinned = np.diag(out) < 1e-12 * max(float(np.max(np.abs(np.diag(out)))), 1e-300)
        out[pinned, :] = 0.0
        out[:, pinned] = 0.0
        return out

    def bordered_inverse(self, information: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Top-left block of [[A, H'], [H, 0]]^-1: the inverse information under the constraints
        binding at ``x`` (what lavaan's scaled tests use as E^-1 when there are constraints)."""
        h = self.jacobian(x)[self.binding(x)]
        n, m = information.shape[0], h.shape[0]
        bordered = np.block([[information, h.T], [h, np.zeros((m, m))]])
        try:
            return np.linalg.inv(bordered)[:n, :n]
        except np.linalg.LinAlgError:
            return np.linalg.pinv(bordered)[:n, :n]

    def adjust_fit(self, fit: pd.Series) -> pd.Series:
        """npar net of the equality constraints, and the information criteria that count it."""
        k = self.n_equality
        if not k or "npar" not in fit.index:
            return fit
        fit = fit.copy()
        fit["npar"] = fit["npar"] - k
        n = fit.get("ntotal", np.nan)
        if "logl" in fit.index and np.isfinite(fit["logl"]):
            fit["aic"] = -2 * fit["logl"] + 2 * fit["npar"]
            fit["bic"] = -2 * fit["logl"] + fit["npar"] * math.log(n)
            fit["bic2"] = -2 * fit["logl"] + fit["npar"] * math.log((n + 2) / 24)
        if "ecvi" in fit.index and "chisq" in fit.index:
            fit["ecvi"] = fit["chisq"] / n + 2 * fit["npar"] / n
        return fit

    def fill(self, pt: pd.DataFrame, x: np.ndarray) -> pd.DataFrame:
        """The constraint rows' ``est``: the value lhs - rhs (the slack of an inequality)."""
        pt = pt.copy()
        est = pt["est"].to_numpy(float).copy()
        for c, v in zip(self.items, self.values(x)):
            est[c.row] = v
        pt["est"] = est
        return pt

    def summary_lines(self, x: np.ndarray) -> list[str]:
        """lavaan's 'Constraints:' block with |Slack|."""
        lines = ["Constraints:", " " * 47 + "|Slack|"]
        for c, v in zip(self.items, self.values(x)):
            lines.append(f"    {c.text:<40s}{abs(v):10.3f}")
        return lines


def inverse_information(information: np.ndarray, est, x: np.ndarray) -> np.ndarray:
    """``inv(information)``, or its bordered version when ``est`` carries general constraints."""
    constraints = getattr(est, "constraints", None)
    if constraints is None:
        return np.linalg.inv(information)
    return constraints.bordered_inverse(information, x)
