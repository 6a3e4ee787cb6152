"""Defined parameters (``:=``): values and delta-method standard errors.

Expressions are parsed with :mod:`ast` and evaluated by walking a whitelist
of nodes (numbers, labels, ``+ - * / ^``, parentheses, ``exp log sqrt abs``);
model text is never passed to ``eval``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecificationError

__all__ = ["expression_names", "compile_expression", "DefinedParameters", "central_differences", "label_values",
           "defined_values", "defined_jacobian"]

_FUNCS: dict[str, Callable[[float], float]] = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs,
}
_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.Pow: lambda a, b: a ** b}
_UNARY = {ast.USub: lambda a: -a, ast.UAdd: lambda a: a}


def _parse(expr: str) -> ast.AST:
    text = expr.replace("^", "**")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ModelSpecificationError(f"cannot read the expression '{expr}'") from None
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load,
                               ast.Call, ast.Constant, *_BINOPS, *_UNARY))
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            ok = False
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name)
                                               and node.func.id in _FUNCS and len(node.args) == 1
                                               and not node.keywords):
            ok = False
        if not ok:
            raise ModelSpecificationError(
                f"the expression '{expr}' may only use labels, numbers, + - * / ^, parentheses "
                "and exp(), log(), sqrt(), abs()")
    return tree


def expression_names(expr: str) -> list[str]:
    """Labels used by an expression, in order of appearance."""
    tree = _parse(expr)
    funcs = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in funcs]
    return list(dict.fromkeys(names))


class _Expression:
    """A parsed ``:=`` expression: call it with a ``{label: value}`` mapping.

    A plain object holding the syntax tree (no closure state), so it pickles
    and runs the same on a Dask worker as in this process.
    """

    def __init__(self, expr: str):
        self.expr = expr
        self.tree = _parse(expr)

    def __call__(self, env: dict) -> float:
        return float(self._ev(self.tree.body, env))

    def _ev(self, node, env):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self._ev(node.left, env), self._ev(node.right, env))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._ev(node.operand, env))
        if isinstance(node, ast.Call):
            return _FUNCS[node.func.id](self._ev(node.args[0], env))
        raise ModelSpecificationError(f"unsupported element in '{self.expr}'")  # pragma: no cover


def compile_expression(expr: str) -> Callable[[dict], float]:
    """A function of a ``{label: value}`` mapping that evaluates ``expr``."""
    return _Expression(expr)


class DefinedParameters:
    """The ``:=`` rows of a table, compiled once: values and Jacobian as functions of ``x``."""

    def __init__(self, pt: pd.DataFrame):
        self.free: dict[str, int] = {}
        self.fixed: dict[str, float] = {}
        for lab, free, ustart, grp in zip(pt["label"].tolist(), pt["free"].tolist(), pt["ustart"].tolist(),
                                          pt["group"].tolist()):
            if not lab or grp <= 0 or lab in self.free or lab in self.fixed:
                continue
            if free > 0:
                self.free[lab] = int(free) - 1
            else:
                self.fixed[lab] = float(ustart)
        ops = pt["op"].tolist()
        self.names = [l for l, o in zip(pt["lhs"].tolist(), ops) if o == ":="]
        self.functions = [compile_expression(r) for r, o in zip(pt["rhs"].tolist(), ops) if o == ":="]

    def env(self, x: np.ndarray) -> dict[str, float]:
        env = dict(self.fixed)
        env.update({lab: float(x[k]) for lab, k in self.free.items()})
        return env

    def values(self, x: np.ndarray, env: dict | None = None) -> np.ndarray:
        env = self.env(x) if env is None else dict(env)
        out = np.empty(len(self.names))
        with np.errstate(all="ignore"):
            for i, (name, fn) in enumerate(zip(self.names, self.functions)):
                try:
                    out[i] = env[name] = fn(env)
                except (ZeroDivisionError, OverflowError, ValueError):  # e.g. a/b at a draw where b = 0
                    out[i] = env[name] = np.nan
        return out

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """Central differences over the free parameters the labels use (others have zero columns)."""
        return central_differences(self.values, x, sorted(set(self.free.values())), len(self.names))


def central_differences(values: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                        columns, n_rows: int) -> np.ndarray:
    """Jacobian of ``values(x)`` by central differences in the given columns of ``x`` (others zero).

    The step is relative (1e-6 of |x_k|, at least 1e-6): ``:=`` effects and
    constraints are smooth, cheap expressions of a few labels.
    """
    x = np.asarray(x, dtype=float)
    jac = np.zeros((n_rows, len(x)))
    for k in columns:
        h = 1e-6 * max(1.0, abs(x[k]))
        xp, xm = x.copy(), x.copy()
        xp[k] += h
        xm[k] -= h
        jac[:, k] = (values(xp) - values(xm)) / (2 * h)
    return jac


def label_values(pt: pd.DataFrame, x: np.ndarray, values: str | None = None) -> dict[str, float]:
    """Value of every label: from ``x`` for free rows, else the row's value.

    ``values`` names a column to read instead of ``x`` (e.g. "std.all").
    """
    out: dict[str, float] = {}
    col = pt[values].tolist() if values is not None else [None] * len(pt)
    for lab, free, ustart, grp, v in zip(pt["label"].tolist(), pt["free"].tolist(), pt["ustart"].tolist(),
                                         pt["group"].tolist(), col):
        if not lab or grp <= 0 or lab in out:
            continue
        if values is not None:
            out[lab] = float(v)
        elif free > 0:
            out[lab] = float(x[free - 1])
        else:
            out[lab] = float(ustart)
    return out


def defined_values(pt: pd.DataFrame, x: np.ndarray, values: str | None = None) -> dict[str, float]:
    """Values of the ``:=`` parameters (in table order; later ones may use earlier ones)."""
    dp = DefinedParameters(pt)
    env = label_values(pt, x, values)
    return dict(zip(dp.names, dp.values(x, env)))


def defined_jacobian(pt: pd.DataFrame, x: np.ndarray) -> np.ndarray:
    """Jacobian (n_defined x n_free) of the defined parameters, central differences."""
    return DefinedParameters(pt).jacobian(x)
