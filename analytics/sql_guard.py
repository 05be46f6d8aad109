"""Which analyst SQL may run against ClickHouse: one read of the ``likes`` data, nothing more.

``check_query`` returns a statement, or raises ``QueryRefused`` saying why. A returned
statement is exactly one read (SELECT, WITH ... SELECT, UNION / INTERSECT / EXCEPT of
selects, or DESCRIBE) that

- reads only plain tables of database ``likes`` (unqualified names resolve there, or to
  the query's own CTEs) and the catalogue tables in ``SYSTEM_TABLES``: no table
  function, no other database;
- calls no function that reaches outside ClickHouse (``OUTSIDE_FUNCTION_PREFIXES``),
  wherever the call appears;
- carries no SETTINGS, FORMAT or INTO clause, so the caller's limits and output hold.

The statement returned is rendered from the parse tree that was checked, without
comments: ClickHouse runs what was checked, never text the parser skipped or read
differently. SQL the parser does not fully understand is refused, not passed through.
"""

from __future__ import annotations

import itertools

from sqlglot import Token, TokenType, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError

DATABASE = "likes"
# Checking costs about 25 µs of pure-Python CPU per character (tokenize, parse, render),
# on the GIL of the process that also runs the analytics flow: 20 000 characters is ~0.5 s.
MAX_SQL_CHARS = 20_000

# Catalogue tables that describe schemas and storage, so analysts can find columns and
# table sizes. The rest of `system` (processes, query logs, settings, users) stays out.
SYSTEM_TABLES = frozenset({"one", "tables", "columns", "parts"})

# Lower-case name prefixes of functions that read or write outside ClickHouse: local
# files, URLs, object stores, other servers and databases, external programs, the
# client's input stream, model files. Matched against every call, scalar or table.
OUTSIDE_FUNCTION_PREFIXES = frozenset(
    {
        "file",
        "url",
        "s3",
        "remote",
        "mysql",
        "postgresql",
        "jdbc",
        "odbc",
        "hdfs",
        "azure",
        "executable",
        "input",
        "catboost",
    }
)

_READS = "only a read may run: SELECT, WITH ... SELECT, UNION/INTERSECT/EXCEPT or DESCRIBE"
_READ_STARTS = frozenset(
    {TokenType.SELECT, TokenType.WITH, TokenType.L_PAREN, TokenType.DESCRIBE, TokenType.DESC}
)
_READ_ROOTS = (exp.Select, exp.SetOperation, exp.Subquery, exp.Describe)
_WRITES = (
    exp.DML,
    exp.DDL,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Command,
    exp.Set,
    exp.Use,
    exp.Into,
    exp.Kill,
    exp.Pragma,
    exp.Copy,
    exp.Grant,
)
_CLAUSES = {
    "settings": "a SETTINGS clause is not allowed: the service sets the query's limits",
    "format": "a FORMAT clause is not allowed: the service chooses the result format",
    "into": "INTO is not allowed: results only come back to you",
}
_DIALECT = Dialect.get_or_raise("clickhouse")


class QueryRefused(ValueError):
    """A query that will not run, with the reason in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"query refused: {reason}")
        self.reason = reason


def check_query(sql: str) -> str:
    """The single read statement to run for ``sql``; raises ``QueryRefused`` otherwise."""
    try:
        tokens = _tokens(sql)
        _check_start(tokens)
        root = _parse_one(tokens, sql)
        _check_tree(root)
        text = root.sql(dialect=_DIALECT, comments=False)
        _check_calls(_tokens(text))
    except RecursionError:
        raise QueryRefused("the query is nested too deeply") from None
    return text


def _tokens(sql: str) -> list[Token]:
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"the query is longer than {MAX_SQL_CHARS} characters")
    try:
        tokens = _DIALECT.tokenize(sql)
    except TokenError as e:
        raise QueryRefused(f"the SQL does not parse: {_first_line(str(e))}") from None
    if not tokens or all(t.token_type is TokenType.SEMICOLON for t in tokens):
        raise QueryRefused("the query is empty")
    return tokens


def _check_start(tokens: list[Token]) -> None:
    first = tokens[0]
    if first.token_type not in _READ_STARTS:
        raise QueryRefused(f"{_READS}; this statement starts with {first.text.upper()}")
    if any(t.token_type is TokenType.INTO for t in tokens):
        raise QueryRefused(_CLAUSES["into"])


def _parse_one(tokens: list[Token], sql: str) -> exp.Expr:
    try:
        trees = [t for t in _DIALECT.parser().parse(tokens, sql) if t is not None]
    except ParseError as e:
        raise QueryRefused(f"the SQL does not parse: {_parse_message(e)}") from None
    if len(trees) != 1:
        raise QueryRefused(f"send one statement per query, not {len(trees)}")
    root = trees[0]
    if not isinstance(root, _READ_ROOTS):
        raise QueryRefused(f"{_READS}; this is {_statement_kind(root)}")
    return root


def _check_tree(root: exp.Expr) -> None:
    for node in root.walk():
        if isinstance(node, _WRITES):
            raise QueryRefused(f"{_READS}; this query contains {_statement_kind(node)}")
        if isinstance(node, exp.Table):
            _check_table(node)
        elif isinstance(node, exp.From | exp.Join):
            _check_source(node)
        elif isinstance(node, exp.In):
            _check_in(node)
        elif isinstance(node, exp.Describe):
            _check_describe(node)
        if isinstance(node, exp.Query):
            for clause, reason in _CLAUSES.items():
                if node.args.get(clause):
                    raise QueryRefused(reason)


def _check_table(table: exp.Table) -> None:
    if isinstance(table.this, exp.Func):
        name = _function_name(table.this)
        raise QueryRefused(f"table function {name}() is not allowed; read the likes tables")
    if not isinstance(table.this, exp.Identifier) or table.args.get("catalog"):
        raise QueryRefused(f"{table.sql(dialect=_DIALECT)} is not a plain table name")
    alias = table.args.get("alias")
    if isinstance(alias, exp.TableAlias) and alias.columns:
        raise QueryRefused(f"{table.sql(dialect=_DIALECT)}: a column list after a table name")
    _check_table_name(table.db, table.name)


def _check_table_name(db: str, name: str) -> None:
    if db in ("", DATABASE) or (db == "system" and name in SYSTEM_TABLES):
        return
    allowed = ", ".join(f"system.{t}" for t in sorted(SYSTEM_TABLES))
    raise QueryRefused(f"table {db}.{name} is not readable; only likes.* and {allowed} are")


def _check_source(node: exp.From | exp.Join) -> None:
    if isinstance(node, exp.Join) and node.args.get("kind") == "ARRAY":
        return
    source = node.this.this if isinstance(node.this, exp.Final) else node.this
    if not isinstance(source, exp.Table | exp.Subquery):
        kind = source.key.upper()
        raise QueryRefused(f"FROM and JOIN take a table or a subquery, not {kind}")


def _check_describe(node: exp.Describe) -> None:
    """``DESCRIBE f(...)`` parses as a table ``f`` with a column list: a table function."""
    extras = [k for k in ("expressions", "partition", "format", "style") if node.args.get(k)]
    if not isinstance(node.this, exp.Table | exp.Subquery) or extras:
        raise QueryRefused("DESCRIBE takes one table name or a subquery, nothing else")


def _check_in(node: exp.In) -> None:
    """``x IN db.table`` reads that table, though the parser sees a column."""
    field = node.args.get("field")
    if isinstance(field, exp.Column) and field.table:
        if field.args.get("db"):
            raise QueryRefused(f"{field.sql(dialect=_DIALECT)} is not a plain table name")
        _check_table_name(field.table, field.name)


def _check_calls(tokens: list[Token]) -> None:
    """Every call in the statement as ClickHouse will read it, whatever the parse tree."""
    for name, following in itertools.pairwise(tokens):
        if following.token_type is not TokenType.L_PAREN or name.token_type is TokenType.STRING:
            continue
        if name.text.lower().startswith(tuple(OUTSIDE_FUNCTION_PREFIXES)):
            raise QueryRefused(f"function {name.text}() reaches outside ClickHouse")


def _function_name(func: exp.Func) -> str:
    if isinstance(func, exp.Anonymous):
        return func.name
    return func.sql(dialect=_DIALECT).split("(", 1)[0]


def _statement_kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return f"a {node.name.upper()} statement"
    words = node.sql(dialect=_DIALECT).split(None, 1)
    return f"a {words[0].upper()} statement" if words else f"a {node.key.upper()} statement"


def _parse_message(error: ParseError) -> str:
    if not error.errors:
        return _first_line(str(error))
    first = error.errors[0]
    where = f"line {first.get('line')}, column {first.get('col')}"
    near = str(first.get("highlight") or "")[:40]
    return f"{first.get('description')} at {where}" + (f" near {near!r}" if near else "")


def _first_line(message: str) -> str:
    return (message.strip().splitlines() or [""])[0][:200]
