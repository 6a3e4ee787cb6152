"""A tiny, safe language for relevance (skip-logic) conditions.

Conditions are parsed to a small AST (never ``eval``) and can be evaluated on a
dict of answers or rendered for the fielding targets::

    >>> from instruments.relevance import parse, evaluate, to_xlsform, to_redcap
    >>> expr = parse("REPR1 == 1 and AGE >= 3")
    >>> evaluate(expr, {"REPR1": 1, "AGE": 4})
    True
    >>> to_xlsform(expr)
    '${REPR1} = 1 and ${AGE} >= 3'
    >>> to_redcap(expr)
    "[repr1] = '1' and [age] >= 3"

Grammar (keywords are lower case; item ids as in the instrument)::

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | atom
    atom       := "(" expr ")" | ITEM op value | ITEM ["not"] "in" "[" value ("," value)* "]"
    op         := "==" | "=" | "!=" | "<" | "<=" | ">" | ">="
    value      := integer | decimal | 'text' | "text"

Semantics: a comparison on an unanswered item (absent or None) is false,
whatever the operator; ``not`` then inverts as usual.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Union

__all__ = [
    "RelevanceSyntaxError",
    "Compare",
    "In",
    "And",
    "Or",
    "Not",
    "parse",
    "evaluate",
    "referenced_items",
    "comparisons",
    "to_text",
    "to_xlsform",
    "to_redcap",
    "to_javascript",
]


class RelevanceSyntaxError(ValueError):
    """A condition that does not parse; ``position`` is the 0-based offset."""

    def __init__(self, message: str, text: str, position: int):
        self.message = message
        self.text = text
        self.position = position
        super().__init__(f"{message} at position {position + 1} in {text!r}")


Value = Union[int, float, str]


@dataclass(frozen=True)
class Compare:
    item: str
    op: str  # one of == != < <= > >=
    value: Value


@dataclass(frozen=True)
class In:
    item: str
    values: tuple[Value, ...]
    negate: bool = False


@dataclass(frozen=True)
class And:
    terms: tuple["Expr", ...]


@dataclass(frozen=True)
class Or:
    terms: tuple["Expr", ...]


@dataclass(frozen=True)
class Not:
    term: "Expr"


Expr = Union[Compare, In, And, Or, Not]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>-?\d+(?:\.\d+)?)
      | (?P<str>'[^']*'|"[^"]*")
      | (?P<op>==|!=|<=|>=|<|>|=)
      | (?P<punct>[()\[\],])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in"}


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            start = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise RelevanceSyntaxError(f"unexpected character {text[start]!r}", text, start)
        kind = m.lastgroup
        value = m.group(kind)
        start = m.start(kind)
        if kind == "name" and value in _KEYWORDS:
            kind = "kw"
        tokens.append((kind, value, start))
        pos = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, expected: str):
        kind, value, pos = self.peek()
        got = "end of condition" if kind == "end" else repr(value)
        raise RelevanceSyntaxError(f"expected {expected}, got {got}", self.text, pos)

    def expect(self, kind: str, value: str | None = None, what: str | None = None):
        k, v, _ = self.peek()
        if k != kind or (value is not None and v != value):
            self.fail(what or repr(value or kind))
        return self.take()

    def parse(self) -> Expr:
        if self.peek()[0] == "end":
            self.fail("a condition")
        expr = self.or_()
        if self.peek()[0] != "end":
            self.fail("'and', 'or' or end of condition")
        return expr

    def or_(self) -> Expr:
        terms = [self.and_()]
        while self.peek()[:2] == ("kw", "or"):
            self.take()
            terms.append(self.and_())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def and_(self) -> Expr:
        terms = [self.not_()]
        while self.peek()[:2] == ("kw", "and"):
            self.take()
            terms.append(self.not_())
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def not_(self) -> Expr:
        if self.peek()[:2] == ("kw", "not"):
            self.take()
            return Not(self.not_())
        return self.atom()

    def value(self) -> Value:
        kind, v, _ = self.peek()
        if kind == "num":
            self.take()
            return float(v) if "." in v else int(v)
        if kind == "str":
            self.take()
            return v[1:-1]
        self.fail("a number or a quoted text")

    def atom(self) -> Expr:
        kind, v, _ = self.peek()
        if (kind, v) == ("punct", "("):
            self.take()
            expr = self.or_()
            self.expect("punct", ")", "')'")
            return expr
        if kind != "name":
            self.fail("an item id")
        item = self.take()[1]
        kind, v, _ = self.peek()
        if kind == "op":
            self.take()
            return Compare(item, "==" if v == "=" else v, self.value())
        negate = False
        if (kind, v) == ("kw", "not"):
            self.take()
            negate = True
            kind, v, _ = self.peek()
        if (kind, v) == ("kw", "in"):
            self.take()
            self.expect("punct", "[", "'['")
            values = [self.value()]
            while self.peek()[:2] == ("punct", ","):
                self.take()
                values.append(self.value())
            self.expect("punct", "]", "',' or ']'")
            return In(item, tuple(values), negate)
        self.fail("a comparison (==, !=, <, <=, >, >=) or 'in'")


def parse(text: str) -> Expr:
    """Parse a condition; raises :class:`RelevanceSyntaxError` with the position."""
    if not isinstance(text, str):
        raise RelevanceSyntaxError("a condition must be text", str(text), 0)
    return _Parser(text).parse()


def _as_expr(expr: Expr | str) -> Expr:
    return parse(expr) if isinstance(expr, str) else expr


def comparisons(expr: Expr | str) -> list[Compare | In]:
    """The leaf comparisons, left to right."""
    expr = _as_expr(expr)
    if isinstance(expr, (Compare, In)):
        return [expr]
    if isinstance(expr, Not):
        return comparisons(expr.term)
    return [leaf for t in expr.terms for leaf in comparisons(t)]


def referenced_items(expr: Expr | str) -> list[str]:
    """Item ids the condition reads, in order of first use."""
    out: list[str] = []
    for leaf in comparisons(expr):
        if leaf.item not in out:
            out.append(leaf.item)
    return out


# --- evaluation ------------------------------------------------------------

def _coerce(answer: Any, like: Value, op: str) -> Any:
    """Compare like with like: form tools often hand over codes as text.

    Follows JavaScript's loose comparison so that :func:`to_javascript` agrees:
    text is read as a number when compared with a number; a number equals text
    only if it prints the same; ordering a number against text is never true.
    """
    if isinstance(like, (int, float)) and isinstance(answer, str):
        try:
            return float(answer)
        except ValueError:
            return answer
    if isinstance(like, str) and not isinstance(answer, str):
        if op not in ("==", "!="):
            return None
        if isinstance(answer, float) and answer.is_integer():
            return str(int(answer))  # JavaScript prints 5.0 as "5"
        return str(answer)
    return answer


def _compare(a: Any, op: str, b: Value) -> bool:
    if a is None:
        return False
    try:
        return {
            "==": lambda: a == b,
            "!=": lambda: a != b,
            "<": lambda: a < b,
            "<=": lambda: a <= b,
            ">": lambda: a > b,
            ">=": lambda: a >= b,
        }[op]()
    except TypeError:  # text compared with a number: not satisfied
        return False


def _missing(answer: Any) -> bool:
    """Unanswered: absent, None, NaN, or blank text (what web forms send)."""
    if isinstance(answer, str):
        return answer.strip() == ""
    return answer is None or (isinstance(answer, float) and answer != answer)


def evaluate(expr: Expr | str, answers: Mapping[str, Any]) -> bool:
    """Whether the condition holds for ``answers`` (item id -> answer)."""
    expr = _as_expr(expr)
    if isinstance(expr, Compare):
        a = answers.get(expr.item)
        return not _missing(a) and _compare(_coerce(a, expr.value, expr.op), expr.op, expr.value)
    if isinstance(expr, In):
        a = answers.get(expr.item)
        if _missing(a):
            return False
        hit = any(_compare(_coerce(a, v, "=="), "==", v) for v in expr.values)
        return hit != expr.negate
    if isinstance(expr, Not):
        return not evaluate(expr.term, answers)
    if isinstance(expr, And):
        return all(evaluate(t, answers) for t in expr.terms)
    return any(evaluate(t, answers) for t in expr.terms)


# --- renderers -------------------------------------------------------------

def _lit(v: Value, quote: str = "'") -> str:
    if isinstance(v, str):
        return f"{quote}{v}{quote}"
    return repr(v)


def _render(expr: Expr, leaf, not_, and_=" and ", or_=" or ", top=True) -> str:
    if isinstance(expr, (Compare, In)):
        return leaf(expr)
    if isinstance(expr, Not):
        return not_(_render(expr.term, leaf, not_, and_, or_, top=False))
    sep = and_ if isinstance(expr, And) else or_
    body = sep.join(_render(t, leaf, not_, and_, or_, top=False) for t in expr.terms)
    return body if top else f"({body})"


def to_text(expr: Expr | str) -> str:
    """Canonical form in this language (round-trips through :func:`parse`)."""

    def leaf(e):
        if isinstance(e, Compare):
            return f"{e.item} {e.op} {_lit(e.value)}"
        vals = ", ".join(_lit(v) for v in e.values)
        return f"{e.item} {'not in' if e.negate else 'in'} [{vals}]"

    return _render(_as_expr(expr), leaf, lambda s: f"not {s}")


def to_xlsform(expr: Expr | str) -> str:
    """XLSForm / ODK ``relevant`` column: ``${REPR1} = 1 and ${AGE} >= 3``."""
    ops = {"==": "=", "!=": "!="}

    def leaf(e):
        if isinstance(e, Compare):
            return f"${{{e.item}}} {ops.get(e.op, e.op)} {_lit(e.value)}"
        op, sep = ("!=", " and ") if e.negate else ("=", " or ")
        parts = [f"${{{e.item}}} {op} {_lit(v)}" for v in e.values]
        return parts[0] if len(parts) == 1 else "(" + sep.join(parts) + ")"

    return _render(_as_expr(expr), leaf, lambda s: f"not({s})")


_NEGATED = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}


def _push_not(expr: Expr, negate: bool = False) -> Expr:
    """Move ``not`` down to the comparisons (REDCap logic has no ``not``)."""
    if isinstance(expr, Not):
        return _push_not(expr.term, not negate)
    if isinstance(expr, Compare):
        return Compare(expr.item, _NEGATED[expr.op], expr.value) if negate else expr
    if isinstance(expr, In):
        return In(expr.item, expr.values, expr.negate != negate)
    terms = tuple(_push_not(t, negate) for t in expr.terms)
    if negate:
        return Or(terms) if isinstance(expr, And) else And(terms)
    return type(expr)(terms)


def to_redcap(expr: Expr | str) -> str:
    """REDCap branching logic: ``[repr1] = '1' and [age] >= 3``.

    REDCap variable names are lower case; choice codes compare as quoted text,
    order comparisons take bare numbers; ``!=`` is ``<>``.
    """

    def leaf(e):
        name = f"[{e.item.lower()}]"
        if isinstance(e, Compare):
            if e.op in ("==", "!="):
                return f"{name} {'=' if e.op == '==' else '<>'} '{e.value}'"
            return f"{name} {e.op} {_lit(e.value)}"
        op, sep = ("<>", " and ") if e.negate else ("=", " or ")
        parts = [f"{name} {op} '{v}'" for v in e.values]
        return parts[0] if len(parts) == 1 else "(" + sep.join(parts) + ")"

    return _render(_push_not(_as_expr(expr)), leaf, lambda s: s)


def to_javascript(expr: Expr | str, answers: str = "answers") -> str:
    """A JavaScript boolean expression over the object ``answers``.

    Same semantics as :func:`evaluate`: a comparison on an unanswered item
    (``undefined``, ``null``, blank text) is false; ``==`` is loose so ``"1" == 1``.
    """

    def ref(item):
        return f"{answers}[{json.dumps(item)}]"

    def leaf(e):
        r = ref(e.item)
        answered = f"{r} != null && String({r}).trim() !== \"\""
        if isinstance(e, Compare):
            return f"({answered} && {r} {e.op} {json.dumps(e.value)})"
        vals = ", ".join(json.dumps(v) for v in e.values)
        hit = f"[{vals}].some(v => v == {r})"
        return f"({answered} && {'!' if e.negate else ''}{hit})"

    return _render(_as_expr(expr), leaf, lambda s: f"!{s}", " && ", " || ")
