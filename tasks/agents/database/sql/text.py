"""A small SQL tokenizer: normalize statements (literals out) and read their filter columns.

No SQL parser is installed (sqlglot / sqlparse are not dependencies), and the job is narrow:
group statements that differ only in literals, and find which ``table.column`` a statement
filters or joins on so an index can be proposed. Anything this light parse does not
understand yields no candidate rather than a wrong one; the what-if timing checks the rest.
Placeholders of both backends are parameters: SQLite's ``?``, ``?N``, ``:name``, ``@name``,
``$name``, PostgreSQL's ``$N`` (pg_stat_statements' texts) and psycopg's ``%s`` / ``%(name)s``,
so a captured psycopg statement and its pg_stat_statements text normalize alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<blob>[xX]'[0-9a-fA-F]*')
  | (?P<str>'(?:[^']|'')*'?)
  | (?P<qident>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
  | (?P<num>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<param>\?\d*|[:@$][A-Za-z_][A-Za-z0-9_]*|\$\d+|%\([^)]*\)[sbt]|%[sbt](?![A-Za-z0-9_]))
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<op><>|<=|>=|==|!=|\|\||<<|>>|->>|->|[-+*/%<>=~&|])
  | (?P<punct>[(),.;])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

KEYWORDS = frozenset(
    """
    abort action add after all alter analyze and as asc attach autoincrement before begin between
    by cascade case cast check collate column commit conflict constraint create cross current
    current_date current_time current_timestamp database default deferrable deferred delete desc
    detach distinct do drop each else end escape except exclusive exists explain fail filter
    following for foreign from full glob group having if ignore immediate in index indexed
    initially inner insert instead intersect into is isnull join key last left like limit match
    natural no not nothing notnull null nulls of offset on or order outer over partition plan
    pragma preceding primary query raise range recursive references regexp reindex release
    rename replace restrict returning right rollback row rows savepoint select set table temp
    temporary then to transaction trigger unbounded union unique update using vacuum values view
    virtual when where window with without true false
    """.split()
)
LITERAL_KINDS = frozenset({"str", "num", "blob", "param"})
_CLAUSE_END = frozenset(
    {"group", "order", "limit", "having", "window", "union", "except", "intersect", "returning",
     "join", "inner", "left", "right", "full", "cross", "natural", "on", "where", "using", "set",
     "from", "values", "select"}
)
_JOIN_WORDS = frozenset({"join", "inner", "left", "right", "full", "cross", "natural", "on", "using"})
_EQ_OPS = frozenset({"=", "==", "is", "in"})
_RANGE_OPS = frozenset({"<", ">", "<=", ">=", "between"})


@dataclass(frozen=True)
class Token:
    kind: str  # word | qident | str | num | blob | param | op | punct | other
    text: str

    @property
    def word(self) -> str:
        """Lower-cased bare word ('' for anything else)."""
        return self.text.lower() if self.kind == "word" else ""

    @property
    def name(self) -> str:
        """The identifier this token names (quotes removed), or ''."""
        if self.kind == "word":
            return self.text
        if self.kind == "qident":
            inner = self.text[1:-1]
            if self.text[0] == "[":
                return inner
            return inner.replace(self.text[0] * 2, self.text[0])
        return ""


def tokenize(sql: str) -> list[Token]:
    """Tokens of ``sql``, whitespace and comments dropped."""
    out: list[Token] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup or "other"
        if kind not in ("ws", "comment"):
            out.append(Token(kind, m.group()))
    return out


def _is_name(tok: Token) -> bool:
    return tok.kind == "qident" or (tok.kind == "word" and tok.word not in KEYWORDS)


def _fold_signs(tokens: list[Token]) -> list[Token]:
    """``= -5`` -> one literal, so negative and positive numbers normalize alike."""
    out: list[Token] = []
    for tok in tokens:
        prev = out[-1] if out else None
        before = out[-2] if len(out) > 1 else None
        unary = before is None or (before.kind in ("op", "punct") and before.text != ")") or before.word in KEYWORDS
        if tok.kind == "num" and prev is not None and prev.text in ("-", "+") and unary:
            out[-1] = Token("num", prev.text + tok.text)
            continue
        out.append(tok)
    return out


def _tuple_end(parts: list[str], i: int) -> int:
    """Index after the placeholder-only tuple ``( ?, ? )`` starting at ``parts[i]``, or -1."""
    if i >= len(parts) or parts[i] != "(":
        return -1
    j = i + 1
    while j < len(parts) and parts[j] in ("?", ","):
        j += 1
    return j + 1 if j < len(parts) and parts[j] == ")" and j > i + 1 else -1


def _collapse_lists(parts: list[str]) -> list[str]:
    """``IN (?, ?, ?)`` -> ``IN (...)``; ``VALUES (?, ?), (?, ?)`` -> ``VALUES (?, ?), ...``."""
    out: list[str] = []
    i = 0
    while i < len(parts):
        end = _tuple_end(parts, i)
        if end > 0 and out and out[-1] == "IN":
            out.append("(...)")
            i = end
            continue
        if end > 0 and out and out[-1] == "VALUES":
            out.extend(parts[i:end])
            first = parts[i:end]
            repeated = False
            while end < len(parts) and parts[end] == "," and parts[end + 1:_tuple_end(parts, end + 1)] == first:
                end = _tuple_end(parts, end + 1)
                repeated = True
            if repeated:
                out.extend([",", "..."])
            i = end
            continue
        out.append(parts[i])
        i += 1
    return out


def _glued(prev: str, part: str) -> bool:
    """Whether ``part`` follows ``prev`` without a space in the normalized text."""
    if not prev or part in (",", ")", ".", ";") or prev in ("(", "."):
        return True
    # a function call or table(column): a name right before "("
    return part == "(" and prev not in KEYWORDS_UPPER and re.match(r"^[A-Za-z_\"`\[]", prev) is not None


def normalize_sql(sql: str) -> str:
    """One text per statement shape: literals and parameters -> ``?``, keywords upper-cased."""
    parts: list[str] = []
    for tok in _fold_signs(tokenize(sql)):
        if tok.kind in LITERAL_KINDS or tok.word in ("true", "false"):
            parts.append("?")
        elif tok.word in KEYWORDS:
            parts.append(tok.text.upper())
        else:
            parts.append(tok.text)
    parts = _collapse_lists(parts)
    while parts and parts[-1] == ";":
        parts.pop()
    text = ""
    prev = ""
    for part in parts:
        text += part if _glued(prev, part) else " " + part
        prev = part
    return text


KEYWORDS_UPPER = frozenset(k.upper() for k in KEYWORDS)


def statement_kind(sql: str) -> str:
    """The first keyword, lower-cased (``select``, ``insert``, ``with`` ...), or ''."""
    for tok in tokenize(sql):
        return tok.word
    return ""


def null_params(sql: str) -> Any:
    """Parameters binding every placeholder of ``sql`` to NULL (for EXPLAIN without values)."""
    named: dict[str, None] = {}
    positional = 0
    for tok in tokenize(sql):
        if tok.kind != "param":
            continue
        if tok.text == "?":
            positional += 1
        elif tok.text[0] == "?":
            positional = max(positional, int(tok.text[1:]))
        else:
            named[tok.text[1:]] = None
    return named if named else (None,) * positional


@dataclass(frozen=True)
class TableRef:
    table: str
    alias: str | None


@dataclass(frozen=True)
class ColumnUse:
    qualifier: str | None  # table name or alias, when written
    column: str
    op: str  # eq | range


def table_refs(tokens: list[Token]) -> list[TableRef]:
    """Tables named after FROM / JOIN / UPDATE / INTO, with their aliases."""
    refs: list[TableRef] = []
    i = 0
    while i < len(tokens):
        word = tokens[i].word
        if word in ("from", "join", "update", "into") or (word == "" and tokens[i].text == "," and _in_from(tokens, i)):
            j = i + 1
            if j < len(tokens) and tokens[j].word in ("or",):  # UPDATE OR REPLACE
                j += 2
            if j < len(tokens) and _is_name(tokens[j]):
                name = tokens[j].name
                if j + 2 < len(tokens) and tokens[j + 1].text == "." and _is_name(tokens[j + 2]):
                    j += 2  # schema.table
                    name = tokens[j].name
                alias = None
                k = j + 1
                if k < len(tokens) and tokens[k].word == "as":
                    k += 1
                if k < len(tokens) and _is_name(tokens[k]):
                    alias = tokens[k].name
                refs.append(TableRef(name, alias))
        i += 1
    return refs


def _in_from(tokens: list[Token], comma: int) -> bool:
    """Whether the comma at ``comma`` separates tables of a FROM list (same depth)."""
    depth = 0
    for i in range(comma - 1, -1, -1):
        text, word = tokens[i].text, tokens[i].word
        if text == ")":
            depth += 1
        elif text == "(":
            if depth == 0:
                return False
            depth -= 1
        elif depth == 0 and word in _CLAUSE_END and word not in _JOIN_WORDS:
            return word == "from"
    return False


def _clauses(tokens: list[Token]) -> list[list[Token]]:
    """The token runs after each WHERE / ON, up to the clause end at the same depth."""
    out: list[list[Token]] = []
    for i, tok in enumerate(tokens):
        if tok.word not in ("where", "on"):
            continue
        depth = 0
        run: list[Token] = []
        for t in tokens[i + 1:]:
            if t.text == "(":
                depth += 1
            elif t.text == ")":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and (t.word in _CLAUSE_END or t.text == ";"):
                break
            run.append(t)
        out.append(run)
    return out


def _conjuncts(clause: list[Token]) -> list[list[Token]] | None:
    """Split a clause on top-level AND; None when it has a top-level OR (no simple index)."""
    parts: list[list[Token]] = [[]]
    depth = 0
    between = False
    for tok in clause:
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            depth -= 1
        elif depth == 0 and tok.word == "between":
            between = True
        elif depth == 0 and tok.word == "or":
            return None
        elif depth == 0 and tok.word == "and":
            if between:
                between = False
            else:
                parts.append([])
                continue
        parts[-1].append(tok)
    return [p for p in parts if p]


def _column_at(part: list[Token], i: int) -> tuple[ColumnUse | None, int]:
    """A column reference starting at ``part[i]`` -> (use without op, index after it)."""
    if i < len(part) and _is_name(part[i]):
        if i + 2 < len(part) and part[i + 1].text == "." and _is_name(part[i + 2]):
            return ColumnUse(part[i].name, part[i + 2].name, ""), i + 3
        if i + 1 < len(part) and part[i + 1].text == "(":
            return None, i  # a function call
        return ColumnUse(None, part[i].name, ""), i + 1
    return None, i


def _operator(part: list[Token], i: int) -> tuple[str, int]:
    if i >= len(part):
        return "", i
    text = part[i].word or part[i].text
    if text == "not" and i + 1 < len(part):
        return "", i
    if text in _EQ_OPS:
        if text == "is" and i + 1 < len(part) and part[i + 1].word == "not":
            return "", i
        return "eq", i + 1
    if text in _RANGE_OPS:
        return "range", i + 1
    return "", i


def filter_columns(sql: str) -> list[ColumnUse]:
    """Columns compared by equality or range in WHERE / ON conjuncts (``col = ?``, ``a.x = b.y``)."""
    tokens = tokenize(sql)
    uses: list[ColumnUse] = []
    for clause in _clauses(tokens):
        for part in _conjuncts(clause) or []:
            left, after = _column_at(part, 0)
            op, rhs = _operator(part, after)
            if left is not None and op:
                uses.append(ColumnUse(left.qualifier, left.column, op))
                right, end = _column_at(part, rhs)
                if right is not None and end == len(part) and op == "eq":
                    uses.append(ColumnUse(right.qualifier, right.column, op))
                continue
            # ``? = col`` / ``5 < col``
            if part and part[0].kind in LITERAL_KINDS:
                op, rhs = _operator(part, 1)
                right, end = _column_at(part, rhs)
                if op and right is not None and end == len(part):
                    uses.append(ColumnUse(right.qualifier, right.column, op))
    return uses


_COLUMN_CLAUSES = frozenset({"where", "on", "using", "group", "order", "having"})
_CLAUSE_WORDS = _COLUMN_CLAUSES | frozenset(
    {"select", "from", "join", "limit", "offset", "set", "values", "into", "returning", "update", "insert",
     "delete", "window", "union", "except", "intersect", "fetch"}
)


def clause_columns(sql: str) -> set[tuple[str | None, str]]:
    """``(qualifier, column)`` of every column named in a WHERE, ON, USING, GROUP BY, ORDER BY or
    HAVING clause (any operator, inside function calls too): the columns an index could serve.

    Select lists, INSERT column lists and SET targets are left out; parentheses keep the clause
    they open in, and a subquery's own clauses count for its columns.
    """
    tokens = tokenize(sql)
    out: set[tuple[str | None, str]] = set()
    clause, stack = "", []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.text == "(":
            stack.append(clause)
        elif tok.text == ")":
            clause = stack.pop() if stack else clause
        elif tok.word in _CLAUSE_WORDS:
            clause = tok.word
        elif clause in _COLUMN_CLAUSES:
            use, end = _column_at(tokens, i)
            if use is not None:
                out.add((use.qualifier, use.column))
                i = end
                continue
        i += 1
    return out
