"""Defined parameters (``:=``): values and delta-method standard errors.

Expressions are parsed with :mod:`ast` and evaluated by walking a whitelist
of nodes (numbers, labels, ``+ - * / ^``, parentheses, ``exp log sqrt abs``);
model text is never passed to ``eval``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecificationError

__all__ = ["expression_names", "compile_expression", "DefinedParameters", "central_differences", "label_values",
           "defined_values", "defined_jacobian"]

_FUNCS: dict[str, Callable[[float], float]] = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs,
}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
# the steps of a compiled expression (see _Expression): push a number, push a label's value, apply
_PUSH, _LABEL, _BINARY, _UNARY_OP, _CALL = range(5)


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

    The checked syntax tree is flattened once into postfix steps (operands before their
    operator, left before right, as the tree is walked), which a small stack machine runs:
    the same arithmetic in the same order as walking the tree, without re-walking it at every
    evaluation (the delta method evaluates each expression hundreds of times). A plain object
    of numbers, names and operators, so it pickles and runs the same on a Dask worker.
    """

    def __init__(self, expr: str):
        self.expr = expr
        self.steps: list[tuple[int, object]] = []
        self._flatten(_parse(expr).body)

    def _flatten(self, node) -> None:
        if isinstance(node, ast.Constant):
            self.steps.append((_PUSH, float(node.value)))
        elif isinstance(node, ast.Name):
            self.steps.append((_LABEL, node.id))
        elif isinstance(node, ast.BinOp):
            self._flatten(node.left)
            self._flatten(node.right)
            self.steps.append((_BINARY, _BINOPS[type(node.op)]))
        elif isinstance(node, ast.UnaryOp):
            self._flatten(node.operand)
            self.steps.append((_UNARY_OP, _UNARY[type(node.op)]))
        elif isinstance(node, ast.Call):
            self._flatten(node.args[0])
            self.steps.append((_CALL, _FUNCS[node.func.id]))
        else:  # pragma: no cover - _parse admits nothing else
            raise ModelSpecificationError(f"unsupported element in '{self.expr}'")

    def __call__(self, env: dict) -> float:
        stack: list = []
        for kind, arg in self.steps:
            if kind == _PUSH:
                stack.append(arg)
            elif kind == _LABEL:
                stack.append(env[arg])
            elif kind == _BINARY:
                right = stack.pop()
                stack[-1] = arg(stack[-1], right)
            else:   # a unary operator or one of exp/log/sqrt/abs
                stack[-1] = arg(stack[-1])
        return float(stack[0])


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
