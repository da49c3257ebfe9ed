"""Flight SQL statements routed to the one tenant they name (DESIGN.md "SQL at the connector,
Flight SQL at the gateway").

Through Flight SQL a tenant is a schema of the catalog ``streamkit`` and a dataset is a table:
``SELECT * FROM demo.sensors``, ``streamkit.demo.sensors``, ``"demo"."sales/2024"``. The
gateway never runs SQL: :func:`route` finds the tenant the statement names (exactly one) and
rewrites its qualified table names to the names the tenant's connector knows (the dataset
names, always double-quoted: ``"sensors"``, ``"sales/2024"``). Column references qualified
the same way (``demo.sensors.temp``) are rewritten too. Everything else of the statement is
kept byte for byte.

The rewriting works on tokens (:func:`tokenize`), never on raw text: string literals (with
``''``, ``E'…'`` backslash escapes and ``$$…$$``), quoted identifiers (``"…"``, `````…`````),
comments (``--``, nested ``/* */``) and placeholders are recognised as DataFusion's parser
reads them, so a name inside a string or a comment is never touched.

Parameters (``?`` or ``$1``, ``$2``…) are substituted by the gateway as SQL literals
(:func:`literal`), one per bound value, each written from its Arrow type: a string is
single-quoted with ``'`` doubled (DataFusion gives backslashes no meaning in plain strings),
binary is ``X'hex'``, numbers are digits (negative ones in parentheses, so ``x-?`` never
becomes a ``--`` comment), dates and times are typed ``CAST``\\ s of their ISO text. A
literal always stands between spaces, so it cannot fuse with a neighbouring token
(``E?`` would otherwise turn a string into an escaped one). The connector then plans the
statement as any other, SELECT-only gate included.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from streamkit import errors

CATALOG = "streamkit"
MAX_SQL_CHARS = 64 * 1024
MAX_PARAMETERS = 1000

# Token kinds.
SPACE, COMMENT, WORD, QUOTED, STRING, NUMBER, PLACEHOLDER, PUNCT = (
    "space",
    "comment",
    "word",
    "quoted",
    "string",
    "number",
    "placeholder",
    "punct",
)
_TRIVIA = (SPACE, COMMENT)
_NUMBER = re.compile(r"0[xX][0-9A-Fa-f]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = "0123456789"
# Keywords that end a FROM list at their level (a later ``,`` then separates expressions).
# Not ON or USING: a join condition has no comma at its level, so one after it is the list's.
_END_FROM = frozenset(
    """WHERE GROUP HAVING ORDER LIMIT OFFSET UNION INTERSECT EXCEPT WINDOW QUALIFY FETCH
    SELECT VALUES""".split()  # noqa: SIM905
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str

    @property
    def name(self) -> str:
        """An identifier as the engine reads it: unquoted ones folded to lower case."""
        if self.kind == WORD:
            return self.text.lower()
        close = self.text[-1]
        return self.text[1:-1].replace(close * 2, close)

    def keyword(self) -> str | None:
        return self.text.upper() if self.kind == WORD else None

    def is_punct(self, char: str) -> bool:
        return self.kind == PUNCT and self.text == char


def tokenize(sql: str) -> list[Token]:
    """``sql`` as tokens whose texts, joined, give ``sql`` back; ``invalid`` if a string,
    quoted identifier or comment is not closed."""
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            j = i + 1
            while j < n and sql[j].isspace():
                j += 1
            tokens.append(Token(SPACE, sql[i:j]))
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            tokens.append(Token(COMMENT, sql[i:j]))
        elif sql.startswith("/*", i):
            j = _block_comment_end(sql, i)
            tokens.append(Token(COMMENT, sql[i:j]))
        elif c == "'":
            j = _quoted_end(sql, i, "'")
            tokens.append(Token(STRING, sql[i:j]))
        elif c in '"`':
            j = _quoted_end(sql, i, c)
            if j - i < 3:
                raise errors.invalid("sql: empty quoted identifier")
            tokens.append(Token(QUOTED, sql[i:j]))
        elif c == "$":
            j, kind = _dollar_end(sql, i)
            tokens.append(Token(kind, sql[i:j]))
        elif c == "?":
            j = i + 1
            tokens.append(Token(PLACEHOLDER, "?"))
        elif c in _DIGITS or (
            c == "." and i + 1 < n and sql[i + 1] in _DIGITS and _ends_value(tokens)
        ):
            found = _NUMBER.match(sql, i)
            assert found is not None
            j = found.end()
            tokens.append(Token(NUMBER, sql[i:j]))
        elif c == "_" or c.isalpha():
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            if j - i == 1 and c in "eE" and j < n and sql[j] == "'":
                j = _escaped_string_end(sql, j)  # E'…': backslash escapes
                tokens.append(Token(STRING, sql[i:j]))
            else:
                tokens.append(Token(WORD, sql[i:j]))
        else:
            j = i + 1
            tokens.append(Token(PUNCT, c))
        i = j
    return tokens


def _ends_value(tokens: list[Token]) -> bool:
    """True unless the previous token is a name or a value (then ``.5`` is ``.`` and ``5``)."""
    if not tokens:
        return True
    last = tokens[-1]
    return not (last.kind in (WORD, QUOTED, NUMBER, STRING) or last.is_punct(")"))


def _quoted_end(sql: str, start: int, quote: str) -> int:
    """The end of the string or identifier opened at ``start`` (a doubled quote escapes)."""
    i = start + 1
    while True:
        j = sql.find(quote, i)
        if j < 0:
            what = "string literal" if quote == "'" else "quoted identifier"
            raise errors.invalid(f"sql: unterminated {what}")
        if sql.startswith(quote * 2, j):
            i = j + 2
            continue
        return j + 1


def _escaped_string_end(sql: str, start: int) -> int:
    i = start + 1
    while i < len(sql):
        if sql[i] == "\\" or sql.startswith("''", i):
            i += 2
        elif sql[i] == "'":
            return i + 1
        else:
            i += 1
    raise errors.invalid("sql: unterminated string literal")


def _block_comment_end(sql: str, start: int) -> int:
    depth, i = 0, start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise errors.invalid("sql: unterminated /* comment")


def _dollar_end(sql: str, start: int) -> tuple[int, str]:
    """``$$…$$`` and ``$tag$…$tag$`` strings, else a ``$1`` / ``$name`` placeholder."""
    j = start + 1
    while j < len(sql) and (sql[j].isalnum() or sql[j] == "_"):
        j += 1
    if j < len(sql) and sql[j] == "$" and not sql[start + 1 : j].isdigit():
        tag = sql[start : j + 1]
        end = sql.find(tag, j + 1)
        if end < 0:
            raise errors.invalid("sql: unterminated $$ string")
        return end + len(tag), STRING
    if j == start + 1:
        return j, PUNCT
    return j, PLACEHOLDER


# -- routing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """A statement routed to ``tenant``: its text for the connector, with its parameter slots."""

    tenant: str
    pieces: tuple[str | int, ...]
    """SQL text, and at each parameter slot the index of the parameter (from 0)."""
    parameters: int
    tables: frozenset[str] = field(default=frozenset())
    """The datasets it names (qualified names only)."""

    def render(self, literals: Sequence[str] = ()) -> str:
        """The connector's SQL, with ``literals`` (from :func:`literal`) in the slots."""
        if len(literals) != self.parameters:
            if not literals:
                raise errors.invalid(
                    f"the statement has {self.parameters} parameter(s): prepare it and bind "
                    "their values"
                )
            raise errors.invalid(
                f"the statement has {self.parameters} parameter(s), {len(literals)} were bound"
            )
        return "".join(f" {literals[p]} " if isinstance(p, int) else p for p in self.pieces)


@dataclass
class _Level:
    """What the walk knows of one parenthesis level."""

    select: bool = False
    in_from: bool = False
    expect_table: bool = False


def route(sql: str, default_tenant: str | None = None) -> Statement:
    """The tenant ``sql`` names and its text for that tenant's connector.

    A statement that names no tenant (``SELECT 1``, the connection test of many tools; or
    unqualified tables) goes to ``default_tenant``. ``invalid`` if it is not one SELECT (or
    WITH … SELECT), names no tenant and there is no default, names more than one, uses a
    table function on a qualified name, or a name of more than three parts."""
    if not isinstance(sql, str) or not sql.strip():
        raise errors.invalid("the statement is empty")
    if len(sql) > MAX_SQL_CHARS:
        raise errors.invalid(f"the statement is longer than {MAX_SQL_CHARS} characters")
    tokens = tokenize(sql)
    significant = [i for i, t in enumerate(tokens) if t.kind not in _TRIVIA]
    _check_one_select(tokens, significant)
    while significant and tokens[significant[-1]].is_punct(";"):
        del tokens[significant.pop() :]  # a trailing ';' (and what follows it: trivia)

    replace: dict[int, tuple[int, str]] = {}  # first token -> (last token, new text)
    refs: dict[tuple[str, str], str] = {}  # (tenant, dataset) of table names
    chains: list[tuple[list[int], bool]] = []  # qualified names elsewhere (and if `.*` follows)
    slots: list[tuple[int, int]] = []  # (token index, parameter index)
    styles: set[str] = set()
    levels = [_Level()]
    k = 0
    while k < len(significant):
        index = significant[k]
        token, level = tokens[index], levels[-1]
        word = token.keyword()
        if token.is_punct("("):
            # In table position: a subquery (its SELECT starts afresh) or a join in
            # parentheses, whose first name is a table too.
            table = level.expect_table
            level.expect_table = False
            levels.append(_Level(select=table, in_from=table, expect_table=table))
        elif token.is_punct(")"):
            if len(levels) > 1:
                levels.pop()
        elif token.is_punct(","):
            level.expect_table = level.in_from
        elif token.kind == PLACEHOLDER:
            slots.append((index, _parameter_index(token.text, len(slots), styles)))
        elif word == "SELECT":
            level.select, level.in_from, level.expect_table = True, False, False
        elif word in ("FROM", "JOIN") and level.select:
            level.in_from = level.expect_table = True
        elif word in _END_FROM:
            level.in_from = level.expect_table = False
        elif word == "LATERAL":
            pass  # LATERAL (subquery): the table position stays for what follows
        elif token.kind in (WORD, QUOTED):
            chain = _chain(tokens, significant, k)
            k += 2 * (len(chain) - 1)
            after = significant[k + 1] if k + 1 < len(significant) else None
            called = after is not None and tokens[after].is_punct("(")
            if level.expect_table:
                level.expect_table = False
                if called and len(chain) > 1:
                    raise errors.invalid(
                        "table functions are not available: name datasets as TENANT.DATASET"
                    )
                if not called:
                    _table(tokens, chain, refs, replace)
            else:
                star = (
                    after is not None
                    and tokens[after].is_punct(".")
                    and k + 2 < len(significant)
                    and tokens[significant[k + 2]].is_punct("*")
                )
                if len(chain) + star >= 3:
                    chains.append((chain, star))
        k += 1

    tenants = sorted({tenant for tenant, _ in refs})
    if not tenants and default_tenant:
        tenants = [default_tenant]
    if not tenants:
        raise errors.invalid(
            "the statement names no tenant: write each table as TENANT.DATASET "
            "(e.g. SELECT * FROM demo.sensors), the tenant being the schema"
        )
    if len(tenants) > 1:
        named = ", ".join(repr(t) for t in tenants)
        raise errors.invalid(
            f"the statement names {len(tenants)} tenants ({named}): a statement runs at one "
            "tenant's connector and reads only that tenant's datasets"
        )
    for chain, star in chains:
        _column(tokens, chain, star, refs, replace)
    if "$" in styles and "?" in styles:
        raise errors.invalid("the statement mixes '?' and '$n' parameters")
    parameters = max((p for _, p in slots), default=-1) + 1
    if parameters > MAX_PARAMETERS:
        raise errors.invalid(f"a statement may have at most {MAX_PARAMETERS} parameters")
    return Statement(
        tenants[0],
        _pieces(tokens, replace, dict(slots)),
        parameters,
        frozenset(dataset for _, dataset in refs),
    )


def _check_one_select(tokens: list[Token], significant: list[int]) -> None:
    first = next((tokens[i] for i in significant if not tokens[i].is_punct("(")), None)
    if first is None or first.keyword() not in ("SELECT", "WITH"):
        raise errors.invalid("only SELECT (or WITH … SELECT) statements are allowed")
    semicolons = [p for p, i in enumerate(significant) if tokens[i].is_punct(";")]
    if semicolons and len(semicolons) != len(significant) - semicolons[0]:
        raise errors.invalid("one statement at a time (no ';' between statements)")


def _parameter_index(text: str, seen: int, styles: set[str]) -> int:
    if text == "?":
        styles.add("?")
        return seen
    styles.add("$")
    number = text[1:]
    if not number.isdigit() or int(number) < 1:
        raise errors.invalid(f"parameter {text!r}: use ? or $1, $2, … (named parameters are not)")
    if int(number) > MAX_PARAMETERS:
        raise errors.invalid(f"a statement may have at most {MAX_PARAMETERS} parameters")
    return int(number) - 1


def _chain(tokens: list[Token], significant: list[int], k: int) -> list[int]:
    """The token indexes of the dotted name starting at ``significant[k]``."""
    chain = [significant[k]]
    while (
        k + 2 < len(significant)
        and tokens[significant[k + 1]].is_punct(".")
        and tokens[significant[k + 2]].kind in (WORD, QUOTED)
    ):
        chain.append(significant[k + 2])
        k += 2
    return chain


def _table(
    tokens: list[Token],
    chain: list[int],
    refs: dict[tuple[str, str], str],
    replace: dict[int, tuple[int, str]],
) -> None:
    """A name in table position: ``tenant.dataset`` or ``streamkit.tenant.dataset``."""
    names = [tokens[i].name for i in chain]
    if len(names) == 1:
        return  # a CTE, or a dataset of the tenant the rest of the statement names
    if len(names) > 3:
        raise errors.invalid(
            f"table name {'.'.join(names)!r} has too many parts: write TENANT.DATASET"
        )
    if len(names) == 3 and names[0] != CATALOG:
        raise errors.invalid(f"catalog {names[0]!r}: the only catalog is {CATALOG!r}")
    tenant, dataset = names[-2], names[-1]
    refs[(tenant, dataset)] = quote(dataset)
    replace[chain[0]] = (chain[-1], quote(dataset))


def _column(
    tokens: list[Token],
    chain: list[int],
    star: bool,
    refs: dict[tuple[str, str], str],
    replace: dict[int, tuple[int, str]],
) -> None:
    """``tenant.dataset.column`` or ``tenant.dataset.*`` (or with the catalog first): the
    table part rewritten."""
    names = [tokens[i].name for i in chain] + (["*"] if star else [])
    if len(names) >= 4 and names[0] == CATALOG and (names[1], names[2]) in refs:
        replace[chain[0]] = (chain[2], refs[(names[1], names[2])])
    elif (names[0], names[1]) in refs:
        replace[chain[0]] = (chain[1], refs[(names[0], names[1])])


def _pieces(
    tokens: list[Token], replace: dict[int, tuple[int, str]], slots: dict[int, int]
) -> tuple[str | int, ...]:
    pieces: list[str | int] = []
    i = 0
    while i < len(tokens):
        if i in replace:
            last, text = replace[i]
            pieces.append(text)
            i = last + 1
            continue
        pieces.append(slots[i] if i in slots else tokens[i].text)
        i += 1
    return tuple(pieces)


def quote(name: str) -> str:
    """A dataset (or any) name as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


# -- parameters ----------------------------------------------------------------------------


def quote_string(value: str) -> str:
    """A SQL string literal: single quotes doubled (a plain string has no other escape)."""
    return "'" + value.replace("'", "''") + "'"


def literal(scalar: pa.Scalar) -> str:
    """One bound value as a SQL literal of its type; ``invalid`` for types without one.
    (A timestamp with a time zone becomes its UTC instant, as a timestamp without one.)"""
    kind = scalar.type
    if pa.types.is_dictionary(kind):
        return literal(scalar.value) if scalar.is_valid else "NULL"
    if not scalar.is_valid or pa.types.is_null(kind):
        return "NULL"
    if pa.types.is_boolean(kind):
        return "TRUE" if scalar.as_py() else "FALSE"
    if pa.types.is_integer(kind):
        number = int(scalar.as_py())
        return f"({number})" if number < 0 else str(number)
    if pa.types.is_floating(kind):
        return _float(float(scalar.as_py()))
    if pa.types.is_decimal(kind):
        text = format(scalar.as_py(), "f")
        return f"CAST({quote_string(text)} AS DECIMAL({kind.precision},{kind.scale}))"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or _is(kind, "string_view"):
        return quote_string(str(scalar.as_py()))
    if (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
        or _is(kind, "binary_view")
    ):
        return f"X'{bytes(scalar.as_py()).hex()}'"
    if pa.types.is_date(kind):
        return f"CAST({quote_string(_text(scalar))} AS DATE)"
    if pa.types.is_timestamp(kind):
        return f"CAST({quote_string(_text(scalar))} AS TIMESTAMP)"
    if pa.types.is_time(kind):
        return f"CAST({quote_string(_text(scalar))} AS TIME)"
    raise errors.invalid(f"a parameter of type {kind} cannot be bound (use a string or a number)")


def _is(kind: pa.DataType, name: str) -> bool:
    check = getattr(pa.types, f"is_{name}", None)
    return bool(check(kind)) if check is not None else False


def _float(value: float) -> str:
    if math.isnan(value):
        return "CAST('NaN' AS DOUBLE)"
    if math.isinf(value):
        return f"CAST('{'-' if value < 0 else ''}Infinity' AS DOUBLE)"
    text = repr(value)
    if "e" not in text and "." not in text:
        text += ".0"
    return f"({text})" if text.startswith("-") else text


def _text(scalar: pa.Scalar) -> str:
    """Dates and times as pyarrow writes them (ISO 8601, every digit of their unit)."""
    return str(scalar.cast(pa.string()).as_py())


def bound_literals(parameters: pa.Table | None) -> list[str]:
    """The literals of one set of bound values (one row; no table or no rows: none)."""
    if parameters is None or parameters.num_rows == 0:
        return []
    if parameters.num_rows != 1:
        raise errors.invalid(
            f"bind one row of parameter values per execution ({parameters.num_rows} were bound)"
        )
    return [literal(column[0]) for column in parameters.columns]
