"""Parser for lavaan model syntax.

``parse_model(text)`` turns model syntax into a flat list of
:class:`Statement` rows (lhs, op, rhs plus modifiers), the raw material of the
ParameterTable (see :mod:`analysis.sem.partable`). Supported: ``=~ ~ ~~ ~1 |``,
``:=`` definitions, ``== < >`` constraints, labels (``a*x``), fixed values
(``1*x``, ``NA*x`` frees a marker), ``start(0.5)*x``, per-group modifiers
``c(a1, a2)*x`` / ``c(1, NA)*x``, comments (``#``, ``!``), statements split by
newline or ``;`` and continued over lines that end (or start) with an operator.
A line ``level: 1`` / ``level: 2`` (or ``level: within`` / ``level: between``)
opens a block of a two-level model; the statements after it carry that
``level`` label (see :mod:`analysis.sem.twolevel`).

Errors raise :class:`analysis.errors.ModelSyntaxError` pointing at the line
and column, as lavaan's ``lav_parse_txtloc`` does.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field

from analysis.errors import ModelSyntaxError

__all__ = ["Statement", "parse_model", "has_levels", "MODEL_OPS", "EXPRESSION_OPS", "MODEL_LIMITS"]

MODEL_OPS = ("=~", "~", "~~", "~1", "|", "~*~")
# The largest model the suite reads: beyond these a model is refused with the line at fault,
# before any work (a model is text from anyone: a shared study folder, a web form).
MODEL_LIMITS = {
    "characters": 1_000_000,
    "statements": 20_000,
    "latent_variables": 200,       # each pair may covary: 200 already means ~20,000 parameters
    "observed_variables": 2_000,
    "expression_terms": 1_000,     # tokens in one := / == / < / > expression
    "nesting": 50,                 # parentheses and signs in a row, e.g. ((a)) or --a
    "number": 1e15,                # |value| beyond which doubles no longer hold the integers
    "free_parameters": 5_000,
    "moments_x_parameters": 25_000_000,  # the moments' derivatives: 200 MB of doubles
}
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
    level: str | None = None
    """Label of the ``level:`` block the statement is in (None: a single-level model)."""


class _Source:
    def __init__(self, text: str):
        self.lines = text.splitlines() or [""]

    def error(self, message: str, tok: _Tok | None) -> ModelSyntaxError:
        if tok is None:
            return ModelSyntaxError(message)
        line, col = self.lines[tok.line - 1], tok.col
        if len(line) > 120:  # a long line is shown around the problem, the caret kept under it
            start = max(col - 60, 0)
            line, col = ("…" if start else "") + line[start:start + 120] + "…", col - start + bool(start)
            return _shown_at(ModelSyntaxError(message, tok.line, tok.col, line), col)
        return ModelSyntaxError(message, tok.line, tok.col, line)


def _shown_at(err: ModelSyntaxError, col: int) -> ModelSyntaxError:
    """The error with its caret at ``col`` of the (shortened) source line it shows."""
    text = f"line {err.line}, col {err.col}: {err.message}\n  {err.source_line}\n  {' ' * (max(col, 1) - 1)}^"
    err.args = (text,)
    return err


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
                if m.lastgroup == "number" and not abs(float(m.group())) <= MODEL_LIMITS["number"]:
                    shown = m.group() if len(m.group()) <= 24 else m.group()[:20] + "…"
                    raise src.error(f"the number {shown} is too large (the limit is "
                                    f"{MODEL_LIMITS['number']:.0e})", current[-1])
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

    def call_args(self, depth: int = 0) -> list:
        opening = self.expect("(")
        if depth > 1:  # start(c(...)) is as deep as lavaan's modifiers go
            raise self.src.error("c() nested in c(): a modifier holds one value per group", opening)
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
                values.append(self.call_args(depth + 1))
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
        _check_expression(right, self.src)
        lhs = "".join(t.text for t in left)     # lavaan stores expressions without spaces
        rhs = "".join(t.text for t in right)
        return Statement(lhs, op_tok.text, rhs, line=left[0].line, col=left[0].col,
                         source=self.src.lines[left[0].line - 1].strip())


def _check_expression(toks: list[_Tok], src: _Source) -> None:
    """Refuse an expression too long, too deeply nested or with constants that overflow,
    before anything builds a syntax tree of it (deep trees exhaust the recursion limit)."""
    if len(toks) > MODEL_LIMITS["expression_terms"]:
        raise src.error(f"this expression has {len(toks)} terms; at most {MODEL_LIMITS['expression_terms']} "
                        "are read", toks[0])
    depth, signs = 0, 0
    for prev, tok in zip([None] + toks[:-1], toks):
        depth += (tok.text == "(") - (tok.text == ")")
        unary = tok.text in "+-" and (prev is None or prev.text in ("(", ",", "+", "-", "*", "/", "^"))
        signs = signs + 1 if unary else 0
        if depth + signs > MODEL_LIMITS["nesting"]:
            raise src.error(f"this expression is nested more than {MODEL_LIMITS['nesting']} levels deep", tok)
    try:
        tree = ast.parse("".join(t.text for t in toks).replace("^", "**"), mode="eval")
    except SyntaxError:  # the defined-parameter reader says what it cannot read
        return
    try:
        _fold(tree.body)
    except OverflowError:
        raise src.error("a constant in this expression is too large to compute", toks[0]) from None
    except ZeroDivisionError:
        raise src.error("this expression divides by zero", toks[0]) from None


def _fold(node: ast.AST) -> float | None:
    """The value of a constant part of an expression (None where it depends on a label)."""
    if isinstance(node, ast.Constant):
        return float(node.value) if isinstance(node.value, (int, float)) else None
    if isinstance(node, ast.UnaryOp):
        v = _fold(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp):
        a, b = _fold(node.left), _fold(node.right)
        if b is None:
            return None
        if isinstance(node.op, ast.Div) and b == 0:
            raise ZeroDivisionError
        if isinstance(node.op, ast.Pow) and abs(b) > 1_000 and (a is None or abs(a) > 1):
            raise OverflowError  # x^b overflows for any |x| > 1 (and a label may be)
        if a is None:
            return None
        ops = {ast.Add: float.__add__, ast.Sub: float.__sub__, ast.Mult: float.__mul__,
               ast.Div: float.__truediv__, ast.Pow: float.__pow__}
        value = ops[type(node.op)](a, b) if type(node.op) in ops else None
        if value is not None and not math.isfinite(value):
            raise OverflowError
        return value
    for child in ast.iter_child_nodes(node):  # calls: check their arguments
        _fold(child)
    return None


def has_levels(statements) -> bool:
    """True when the syntax (text, parsed statements or a ParameterTable) has ``level:`` blocks."""
    if isinstance(statements, str):
        statements = parse_model(statements)
    columns = getattr(statements, "columns", None)
    if columns is not None:   # a ParameterTable
        return "level" in columns and bool((statements["level"] > 1).any())
    return any(getattr(s, "level", None) is not None for s in statements)


_LEVEL_RE = re.compile(r"^\s*level\s*:\s*(?P<label>[A-Za-z0-9_.]+)\s*;?\s*$", re.IGNORECASE)


def _level_blocks(src: _Source) -> list[tuple[int, str]]:
    """(line, label) of each ``level:`` line; those lines are blanked for the tokenizer."""
    blocks = []
    for lineno, raw in enumerate(src.lines, start=1):
        m = _LEVEL_RE.match(_strip_comment(raw))
        if m:
            blocks.append((lineno, m.group("label")))
            src.lines[lineno - 1] = ""
        elif re.match(r"^\s*(group|class)\s*:", _strip_comment(raw), re.IGNORECASE):
            raise ModelSyntaxError("'group:' / 'class:' blocks are not supported: write the model once and "
                                   "fit several groups with group= (--group COL), also for two-level "
                                   "models", lineno, 1, raw)
        elif re.match(r"^\s*level\s*:", _strip_comment(raw), re.IGNORECASE):
            raise ModelSyntaxError("a level line holds only the level's name, e.g. 'level: 1' or "
                                   "'level: within'", lineno, 1, raw)
        elif blocks and re.match(r"^\s*[A-Za-z_.][\w.]*\s*\|\s*[A-Za-z_.][\w.]*\s*~", _strip_comment(raw)):
            raise ModelSyntaxError("random slopes ('s | y ~ x') are not supported; fit the slope as fixed "
                                   "(y ~ x at level 1) or use Mplus/lavaan for random slopes",
                                   lineno, raw.index("|") + 1, raw)
    return blocks


def _assign_levels(rows: list[Statement], blocks: list[tuple[int, str]], src: _Source) -> None:
    labels = [label for _, label in blocks]
    dup = [lab for i, lab in enumerate(labels) if lab in labels[:i]]
    if dup:
        line = blocks[labels.index(dup[0], labels.index(dup[0]) + 1)][0]
        raise ModelSyntaxError(f"level {dup[0]!r} is opened twice; write each level's statements "
                               "in one block", line, 1, f"level: {dup[0]}")
    for s in rows:
        opened = [label for line, label in blocks if line < s.line]
        if not opened:
            if s.op in EXPRESSION_OPS:
                continue
            raise ModelSyntaxError("this statement comes before the first 'level:' line; in a "
                                   "two-level model every statement belongs to a level",
                                   s.line, s.col, src.lines[s.line - 1])
        s.level = None if s.op in EXPRESSION_OPS else opened[-1]


def _check_size(rows: list[Statement], src: _Source) -> None:
    """Refuse, at the first line beyond it, a model with more variables than MODEL_LIMITS allows."""
    latent: dict[str, Statement] = {}
    names: dict[str, Statement] = {}
    for s in rows:
        if s.op in EXPRESSION_OPS:
            continue
        if s.op == "=~":
            latent.setdefault(s.lhs, s)
        for v in (s.lhs, s.rhs):
            if v:
                names.setdefault(v, s)
        for kind, pool in (("latent_variables", latent), ("observed_variables", names)):
            limit = MODEL_LIMITS[kind] + (len(latent) if kind == "observed_variables" else 0)
            if len(pool) > limit:
                what = kind.replace("_", " ")
                raise ModelSyntaxError(f"the model has more than {MODEL_LIMITS[kind]:,} {what}; at most "
                                       f"{MODEL_LIMITS[kind]:,} are read (MODEL_LIMITS in analysis/sem/syntax.py)",
                                       s.line, s.col, src.lines[s.line - 1])


def parse_model(text: str) -> list[Statement]:
    """Parse lavaan model syntax into a list of :class:`Statement` rows.

    >>> [(s.lhs, s.op, s.rhs) for s in parse_model("f =~ x1 + a*x2; x1 ~~ x2")]
    [('f', '=~', 'x1'), ('f', '=~', 'x2'), ('x1', '~~', 'x2')]
    """
    if not isinstance(text, str):
        raise ModelSyntaxError(f"model syntax must be a string, got {type(text).__name__}")
    if len(text) > MODEL_LIMITS["characters"]:
        raise ModelSyntaxError(f"the model syntax has {len(text):,} characters; at most "
                               f"{MODEL_LIMITS['characters']:,} are read")
    src = _Source(text)
    blocks = _level_blocks(src)
    rows: list[Statement] = []
    statements = _tokenize(src)
    if len(statements) > MODEL_LIMITS["statements"]:
        extra = statements[MODEL_LIMITS["statements"]][0]
        raise src.error(f"the model has {len(statements):,} statements; at most "
                        f"{MODEL_LIMITS['statements']:,} are read", extra)
    for toks in statements:
        rows.extend(_Parser(toks, src).statement())
    _check_size(rows, src)
    if blocks:
        _assign_levels(rows, blocks, src)
    if not rows:
        raise ModelSyntaxError("the model syntax is empty (no statements found)")
    return rows
