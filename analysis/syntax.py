"""Parser for lavaan model syntax.

``parse_model(text)`` turns model syntax into a flat list of
:class:`Statement` rows (lhs, op, rhs plus modifiers), the raw material of the
ParameterTable (see :mod:`analysis.partable`). Supported: ``=~ ~ ~~ ~1 |``,
``:=`` definitions, ``== < >`` constraints, labels (``a*x``), fixed values
(``1*x``, ``NA*x`` frees a marker), ``start(0.5)*x``, per-group modifiers
``c(a1, a2)*x`` / ``c(1, NA)*x``, comments (``#``, ``!``), statements split by
newline or ``;`` and continued over lines that end (or start) with an operator.

Errors raise :class:`analysis.errors.ModelSyntaxError` pointing at the line
and column, as lavaan's ``lav_parse_txtloc`` does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .errors import ModelSyntaxError

__all__ = ["Statement", "parse_model", "MODEL_OPS", "EXPRESSION_OPS"]

MODEL_OPS = ("=~", "~", "~~", "~1", "|", "~*~")
EXPRESSION_OPS = (":=", "==", "<", ">")

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_.][A-Za-z0-9_.]*)
  | (?P<string>"[^"]*"|'[^']*')
  | (?P<op>~\*~|=~|~~|<~|:=|==|<=|>=|~|<|>|\||\+|-|\*|/|\^|\(|\)|,|=)
    """,
    re.VERBOSE,
)
# operators that cannot end a complete statement: the statement continues
_CONTINUE_END = {"=~", "~", "~~", "~*~", ":=", "==", "<", ">", "|", "+", "-", "*", "/", "^", "(", ",", "<~"}
_CONTINUE_START = {"+", "*", "=~", "~~", "~", ":=", "==", "|", ")", ","}


@dataclass
class _Tok:
    kind: str
    text: str
    line: int
    col: int


@dataclass
class Statement:
    """One parsed row of model syntax.

    ``fixed``, ``label`` and ``start`` are None or a list with one entry per
    modifier value (one value applies to all groups, ``c(...)`` gives one per
    group). In ``fixed``, NaN means "free" (``NA*x``).
    """

    lhs: str
    op: str
    rhs: str
    fixed: list[float] | None = None
    label: list[str] | None = None
    start: list[float] | None = None
    line: int = 0
    col: int = 0
    source: str = ""
    extra: dict = field(default_factory=dict)


class _Source:
    def __init__(self, text: str):
        self.lines = text.splitlines() or [""]

    def error(self, message: str, tok: _Tok | None) -> ModelSyntaxError:
        if tok is None:
            return ModelSyntaxError(message)
        return ModelSyntaxError(message, tok.line, tok.col, self.lines[tok.line - 1])


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "#!":
            return line[:i]
    return line


def _tokenize(src: _Source) -> list[list[_Tok]]:
    """Tokens grouped into statements (split on newline / ';', joined on continuation)."""
    pieces: list[list[_Tok]] = []
    for lineno, raw in enumerate(src.lines, start=1):
        text = _strip_comment(raw)
        pos = 0
        current: list[_Tok] = []
        while pos < len(text):
            if text[pos] == ";":
                pieces.append(current)
                current = []
                pos += 1
                continue
            m = _TOKEN_RE.match(text, pos)
            if m is None:
                tok = _Tok("bad", text[pos], lineno, pos + 1)
                raise src.error(f"unexpected character {text[pos]!r}", tok)
            if m.lastgroup != "ws":
                current.append(_Tok(m.lastgroup, m.group(), lineno, pos + 1))
            pos = m.end()
        pieces.append(current)
    statements: list[list[_Tok]] = []
    for piece in pieces:
        if not piece:
            continue
        if statements and (statements[-1][-1].text in _CONTINUE_END or _open_parens(statements[-1])
                           or piece[0].text in _CONTINUE_START):
            statements[-1].extend(piece)
        else:
            statements.append(list(piece))
    return statements


def _open_parens(toks: list[_Tok]) -> bool:
    depth = 0
    for t in toks:
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
    return depth > 0


class _Parser:
    def __init__(self, toks: list[_Tok], src: _Source):
        self.toks, self.src, self.i = toks, src, 0

    def peek(self, k: int = 0) -> _Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def next(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            last = self.toks[-1]
            end = _Tok("eol", "", last.line, last.col + len(last.text))
            raise self.src.error("unexpected end of statement", end)
        self.i += 1
        return tok

    def expect(self, text: str) -> _Tok:
        tok = self.next()
        if tok.text != text:
            raise self.src.error(f"expected {text!r} but found {tok.text!r}", tok)
        return tok

    def unexpected(self, tok: _Tok) -> ModelSyntaxError:
        return self.src.error(f"unexpected {tok.text!r}", tok)

    # -- statement ---------------------------------------------------------
    def statement(self) -> list[Statement]:
        op_pos = [k for k, t in enumerate(self.toks) if t.kind == "op" and t.text in
                  ("=~", "~", "~~", "~*~", "<~", ":=", "==", "<", ">", "|", "<=", ">=", "=")]
        if not op_pos:
            tok = self.toks[0]
            raise self.src.error("no operator (=~, ~, ~~, :=, ...) in this statement", tok)
        op_tok = self.toks[op_pos[0]]
        op = op_tok.text
        if op == "=":
            raise self.src.error("unexpected '=' (did you mean '=~', ':=' or '=='?)", op_tok)
        if op in ("<=", ">="):
            raise self.src.error(f"unexpected {op!r} (use '<' or '>')", op_tok)
        if op in EXPRESSION_OPS:
            return [self.expression_statement(op_pos[0])]
        if len(op_pos) > 1:
            raise self.unexpected(self.toks[op_pos[1]])
        if op == "<~":
            raise self.src.error("formative indicators ('<~') are not supported", op_tok)
        # lhs: name (+ name)*
        lhs_names: list[_Tok] = []
        while True:
            tok = self.next()
            if tok is op_tok:
                if not lhs_names:
                    raise self.src.error(f"missing left-hand side before {op!r}", tok)
                break
            if tok.kind != "name":
                raise self.unexpected(tok)
            lhs_names.append(tok)
            nxt = self.peek()
            if nxt is op_tok:
                continue
            if nxt is not None and nxt.text == "+":
                self.i += 1
                continue
            raise self.unexpected(nxt)
        if self.peek() is None:
            raise self.src.error(f"missing right-hand side after {op!r}", op_tok)
        out = []
        for term in self.terms():
            var_tok, mods = term
            row_op = op
            rhs = var_tok.text
            if op == "~" and var_tok.kind == "number":
                if float(var_tok.text) != 1.0:
                    raise self.unexpected(var_tok)
                row_op, rhs = "~1", ""
            elif var_tok.kind != "name":
                raise self.src.error(f"expected a variable name but found {var_tok.text!r}", var_tok)
            if op == "|" and not re.fullmatch(r"t\d+", rhs):
                raise self.src.error(f"thresholds must be named t1, t2, ... (found {rhs!r})", var_tok)
            for lt in lhs_names:
                out.append(Statement(lt.text, row_op, rhs, line=lt.line, col=lt.col,
                                     source=self.src.lines[lt.line - 1].strip(), **mods))
        return out

    def terms(self):
        while True:
            mods: dict = {}
            while True:
                tok = self.next()
                nxt = self.peek()
                if nxt is not None and nxt.text == "*":
                    self.modifier(tok, mods)
                    self.i += 1  # the '*'
                    continue
                if tok.text == "-" or tok.text in ("start", "c", "label", "equal") and nxt is not None \
                        and nxt.text == "(":
                    # a modifier that must be followed by '*'
                    self.modifier(tok, mods)
                    self.expect("*")
                    continue
                var_tok = tok
                break
            if var_tok.kind not in ("name", "number"):
                raise self.unexpected(var_tok)
            yield var_tok, mods
            nxt = self.peek()
            if nxt is None:
                return
            if nxt.text != "+":
                raise self.unexpected(nxt)
            self.i += 1

    def modifier(self, tok: _Tok, mods: dict) -> None:
        if tok.text == "-":
            num = self.next()
            if num.kind != "number":
                raise self.unexpected(num)
            self._set(mods, "fixed", [-float(num.text)], tok)
        elif tok.kind == "number":
            self._set(mods, "fixed", [float(tok.text)], tok)
        elif tok.text == "NA":
            self._set(mods, "fixed", [math.nan], tok)
        elif tok.text in ("start", "label", "equal", "c") and self.peek() is not None and self.peek().text == "(":
            values = self.call_args()
            if tok.text == "start":
                inner = values[0] if len(values) == 1 and isinstance(values[0], list) else values
                self._set(mods, "start", [self._num(v, tok) for v in inner], tok)
            elif tok.text in ("label", "equal"):
                self._set(mods, "label", [str(v) for v in values], tok)
            else:
                if all(isinstance(v, float) for v in values):
                    self._set(mods, "fixed", values, tok)
                elif all(isinstance(v, str) for v in values):
                    self._set(mods, "label", values, tok)
                else:
                    raise self.src.error("c() mixes labels and numbers; use separate modifiers", tok)
        elif tok.kind == "name":
            self._set(mods, "label", [tok.text], tok)
        elif tok.kind == "string":
            self._set(mods, "label", [tok.text[1:-1]], tok)
        else:
            raise self.unexpected(tok)

    def _num(self, v, tok):
        if not isinstance(v, float):
            raise self.src.error(f"start() needs numbers, got {v!r}", tok)
        return v

    def _set(self, mods, key, value, tok):
        if key in mods:
            raise self.src.error(f"two {key} modifiers for the same term", tok)
        mods[key] = value

    def call_args(self) -> list:
        self.expect("(")
        values: list = []
        while True:
            tok = self.next()
            if tok.text == ")" and not values:
                return values
            neg = False
            if tok.text == "-":
                neg, tok = True, self.next()
            if tok.kind == "number":
                values.append(-float(tok.text) if neg else float(tok.text))
            elif tok.text == "NA":
                values.append(math.nan)
            elif tok.text == "c" and self.peek() is not None and self.peek().text == "(":
                values.append(self.call_args())
            elif tok.kind == "name":
                values.append(tok.text)
            elif tok.kind == "string":
                values.append(tok.text[1:-1])
            else:
                raise self.unexpected(tok)
            sep = self.next()
            if sep.text == ")":
                return values
            if sep.text != ",":
                raise self.unexpected(sep)

    def expression_statement(self, k: int) -> Statement:
        op_tok = self.toks[k]
        left, right = self.toks[:k], self.toks[k + 1:]
        if not left:
            raise self.src.error(f"missing left-hand side before {op_tok.text!r}", op_tok)
        if not right:
            raise self.src.error(f"missing right-hand side after {op_tok.text!r}", op_tok)
        for t in left + right:
            if t.kind == "op" and t.text in ("=~", "~", "~~", "~*~", "<~", ":=", "==", "<", ">", "|", "="):
                raise self.unexpected(t)
        if op_tok.text == ":=" and (len(left) != 1 or left[0].kind != "name"):
            raise self.src.error("the left-hand side of ':=' must be a single new name", left[0])
        lhs = "".join(t.text for t in left)     # lavaan stores expressions without spaces
        rhs = "".join(t.text for t in right)
        return Statement(lhs, op_tok.text, rhs, line=left[0].line, col=left[0].col,
                         source=self.src.lines[left[0].line - 1].strip())


def parse_model(text: str) -> list[Statement]:
    """Parse lavaan model syntax into a list of :class:`Statement` rows.

    >>> [(s.lhs, s.op, s.rhs) for s in parse_model("f =~ x1 + a*x2; x1 ~~ x2")]
    [('f', '=~', 'x1'), ('f', '=~', 'x2'), ('x1', '~~', 'x2')]
    """
    if not isinstance(text, str):
        raise ModelSyntaxError(f"model syntax must be a string, got {type(text).__name__}")
    src = _Source(text)
    rows: list[Statement] = []
    for toks in _tokenize(src):
        rows.extend(_Parser(toks, src).statement())
    if not rows:
        raise ModelSyntaxError("the model syntax is empty (no statements found)")
    return rows
