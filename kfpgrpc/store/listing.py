"""List queries: KFP's JSON filter, sort_by and keyset page tokens, compiled to SQL.

Every list is ordered by (sort column, id) and resumed with a row-value comparison against the
last row of the previous page, so each page is an index range scan whatever its depth. The page
token carries the sort, the filter and the scope, so a client may send the token alone.

total_size is exact at the time of each call (KFP counts on every call too; clients show it as
"n runs", "page i of m"). A list with a count table (see Counts) answers it by summing a few rows
of that table when the scope and filter name only the columns it counts, instead of counting up
to every row of the list (a count of 10^6 runs costs 60 ms, seconds with a filter).
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from google.protobuf import json_format

from kfpgrpc.clock import MAX_TIME_US, MICROS_PER_SECOND, MIN_TIME_US
from kfpgrpc.domain import Page
from kfpgrpc.errors import FieldViolation, InvalidArgument
from kfpgrpc.store.database import Database
from kfpgrpc.v1 import filter_pb2

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200
# Filter bounds. SQLite allows 32,766 bound values and expressions 1,000 deep; predicates are
# AND-ed and a time key's IN list becomes an OR of ranges (two values each), so these keep every
# filter far inside both. Tokens carry the filter, so its length bounds theirs.
MAX_FILTER_LENGTH = 65_536
MAX_PREDICATES = 100
MAX_FILTER_VALUES = 500  # single values and IN list elements of all predicates together
MAX_PAGE_TOKEN_LENGTH = 2 * MAX_FILTER_LENGTH
_INT64 = range(-(2**63), 2**63)
Op = filter_pb2.Predicate.Operation


class Kind(Enum):
    TEXT = "text"
    TIME = "time"  # INTEGER microseconds, 0 = unset
    ENUM = "enum"  # TEXT holding a KFP enum value name


@dataclass(frozen=True)
class Column:
    kind: Kind
    sortable: bool = False
    enum_names: tuple[str, ...] = ()  # for Kind.ENUM, the names in number order


@dataclass(frozen=True)
class Counts:
    """A table holding, in its column `counted`, how many rows of a list's table have each
    combination of values of `columns` (named as in that table), kept exact by triggers in the
    transactions that change them. A predicate on those columns alone selects the same
    combinations there as rows in the list's table, so summing the selected counts is the count
    of the rows, and it reads as many rows as there are combinations."""

    table: str
    columns: frozenset[str]
    counted: str


@dataclass(frozen=True)
class Listing:
    """What one List RPC may filter and sort on. Column names are the API keys."""

    table: str
    id_column: str
    columns: Mapping[str, Column]
    aliases: Mapping[str, str] = field(default_factory=dict)  # KFP's short keys, e.g. "name"
    default_sort: str = "created_at"
    counts: Counts | None = None  # how total_size may be summed instead of counted

    def resolve(self, key: str) -> str | None:
        key = self.aliases.get(key, key)
        return key if key in self.columns else None


@dataclass(frozen=True)
class ListRequest:
    page_size: int = 0
    page_token: str = ""
    sort_by: str = ""
    filter: str = ""


@dataclass(frozen=True)
class Query:
    """A validated list request, ready to run."""

    listing: Listing
    scope: tuple[tuple[str, str], ...]  # equality conditions the RPC itself imposes
    sort_column: str
    descending: bool
    filter_text: str
    conditions: tuple[tuple[str, str, tuple[Any, ...]], ...]  # (column, SQL, params) from the filter
    page_size: int
    after: tuple[Any, Any] | None  # (sort value, id) of the last row already returned

    def _where(self, with_keyset: bool) -> tuple[str, list[Any]]:
        clauses = [f"{column} = ?" for column, _ in self.scope]
        params: list[Any] = [value for _, value in self.scope]
        for _, sql, values in self.conditions:
            clauses.append(sql)
            params.extend(values)
        if with_keyset and self.after is not None:
            comparison = "<" if self.descending else ">"
            if self._sorted_by_id:
                clauses.append(f"{self.sort_column} {comparison} ?")
                params.append(self.after[1])
            else:
                clauses.append(f"({self.sort_column}, {self.listing.id_column}) {comparison} (?, ?)")
                params.extend(self.after)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    @property
    def _sorted_by_id(self) -> bool:
        return self.sort_column == self.listing.id_column

    def page_sql(self, select: str) -> tuple[str, list[Any]]:
        """SELECT `select` for one page, plus one row to tell whether another page follows."""
        where, params = self._where(with_keyset=True)
        direction = "DESC" if self.descending else "ASC"
        order = f"{self.sort_column} {direction}"
        if not self._sorted_by_id:  # the id breaks ties; sorting by it twice would defeat the index
            order += f", {self.listing.id_column} {direction}"
        return f"SELECT {select} FROM {self.listing.table}{where} ORDER BY {order} LIMIT ?", [
            *params,
            self.page_size + 1,
        ]

    def count_sql(self) -> tuple[str, list[Any]]:
        """The total_size query: a sum over the listing's count table when the scope and the
        filter name only columns it counts, else a count of the matching rows."""
        where, params = self._where(with_keyset=False)
        counts = self.listing.counts
        named = {column for column, _ in self.scope} | {column for column, _, _ in self.conditions}
        if counts is not None and named <= counts.columns:
            return f"SELECT COALESCE(SUM({counts.counted}), 0) FROM {counts.table}{where}", params
        return f"SELECT COUNT(*) FROM {self.listing.table}{where}", params

    def next_page_token(self, last_row: Mapping[str, Any]) -> str:
        token = {
            "list": self.listing.table,
            "sort": self.sort_column,
            "desc": self.descending,
            "filter": self.filter_text,
            "scope": [list(pair) for pair in self.scope],
            "after": [last_row[self.sort_column], last_row[self.listing.id_column]],
        }
        return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode()


async def fetch_page(db: Database, query: Query, select: str, from_row: Callable[[sqlite3.Row], T]) -> Page[T]:
    """Run a query: one page of items, the total count and the next page's token."""
    sql, params = query.page_sql(select)
    count_sql, count_params = query.count_sql()
    async with db.snapshot() as conn:
        rows = list(await conn.execute_fetchall(sql, params))
        (total,) = next(iter(await conn.execute_fetchall(count_sql, count_params)))
    token = query.next_page_token(rows[query.page_size - 1]) if len(rows) > query.page_size else ""
    return Page([from_row(row) for row in rows[: query.page_size]], total, token, lambda i: query.next_page_token(rows[i]))


def build_query(listing: Listing, request: ListRequest, scope: Sequence[tuple[str, str]] = ()) -> Query:
    """Validate a list request; raise InvalidArgument naming each bad field."""
    scope = tuple(scope)
    violations: list[FieldViolation] = []
    page_size = DEFAULT_PAGE_SIZE
    if request.page_size < 0:
        violations.append(FieldViolation("page_size", f"must not be negative, got {request.page_size}"))
    elif request.page_size:
        page_size = min(request.page_size, MAX_PAGE_SIZE)

    sort_by, filter_text, after = request.sort_by, request.filter, None
    if request.page_token:
        try:
            token_sort, token_filter, after = _read_token(listing, request.page_token, scope)
        except ValueError as exc:
            violations.append(FieldViolation("page_token", str(exc)))
        else:
            if sort_by and _sort_key(listing, sort_by) != _sort_key(listing, token_sort):
                violations.append(FieldViolation("sort_by", "differs from the sort of page_token"))
            if filter_text and filter_text != token_filter:
                violations.append(FieldViolation("filter", "differs from the filter of page_token"))
            sort_by, filter_text = token_sort, token_filter

    sort_column, descending = listing.default_sort, False
    try:
        sort_column, descending = _parse_sort(listing, sort_by)
    except ValueError as exc:
        violations.append(FieldViolation("sort_by", str(exc)))
    conditions: list[tuple[str, str, tuple[Any, ...]]] = []
    if filter_text:
        conditions, filter_violations = _parse_filter(listing, filter_text)
        violations.extend(filter_violations)
    if violations:
        raise InvalidArgument(violations)
    return Query(listing, scope, sort_column, descending, filter_text, tuple(conditions), page_size, after)


def _parse_sort(listing: Listing, sort_by: str) -> tuple[str, bool]:
    words = sort_by.split()
    if not words:
        return listing.default_sort, False
    column = listing.resolve(words[0])
    if column is None or not listing.columns[column].sortable:
        sortable = sorted(k for k, c in listing.columns.items() if c.sortable)
        raise ValueError(f"cannot sort by {words[0]!r}; sortable fields: {', '.join(sortable)}")
    if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
        raise ValueError(f"expected \"field\", \"field asc\" or \"field desc\", got {sort_by!r}")
    return column, len(words) == 2 and words[1].lower() == "desc"


def _sort_key(listing: Listing, sort_by: str) -> tuple[str, bool] | None:
    try:
        return _parse_sort(listing, sort_by)
    except ValueError:
        return None


def _read_token(listing: Listing, token: str, scope: tuple[tuple[str, str], ...]) -> tuple[str, str, tuple[Any, Any]]:
    """Return (sort_by, filter, after) from a token; the sort comes back as "column[ desc]".
    A token is client input: every part is checked, so that a forged one is a ValueError
    rather than a failing query."""
    forged = ValueError("is not a page token returned by this list")
    if len(token) > MAX_PAGE_TOKEN_LENGTH:
        raise forged
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        kind, sort, desc, filter_text = data["list"], data["sort"], data["desc"], data["filter"]
        token_scope = tuple(tuple(pair) for pair in data["scope"])
        after_value, after_id = data["after"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError):
        raise forged from None
    column = listing.columns.get(sort) if isinstance(sort, str) else None
    if (
        kind != listing.table
        or column is None
        or not column.sortable
        or not isinstance(desc, bool)
        or not isinstance(filter_text, str)
        or not isinstance(after_id, str)
        or not _stored_form(column, after_value)
    ):
        raise forged
    if token_scope != scope:
        raise ValueError("belongs to a different list (its parent resource differs)")
    return (f"{sort} desc" if desc else sort), filter_text, (after_value, after_id)


def _stored_form(column: Column, value: Any) -> bool:
    """Whether `value` is of the column's stored type (and range), as a real row's is."""
    if column.kind is Kind.TIME:
        return type(value) is int and value in _INT64
    return isinstance(value, str)


def _parse_filter(listing: Listing, text: str) -> tuple[list[tuple[str, str, tuple[Any, ...]]], list[FieldViolation]]:
    if len(text) > MAX_FILTER_LENGTH:
        return [], [FieldViolation("filter", f"must be at most {MAX_FILTER_LENGTH} characters, got {len(text)}")]
    if "%" in text and not text.lstrip().startswith("{"):
        text = urllib.parse.unquote(text)  # KFP clients send it URL-encoded
    parsed = filter_pb2.Filter()
    try:
        json_format.Parse(text, parsed)
    except json_format.ParseError as exc:
        return [], [FieldViolation("filter", f"is not a valid KFP filter: {exc}")]
    if len(parsed.predicates) > MAX_PREDICATES:
        return [], [FieldViolation("filter", f"has {len(parsed.predicates)} predicates; at most {MAX_PREDICATES} are allowed")]
    value_count = sum(_value_count(predicate) for predicate in parsed.predicates)
    if value_count > MAX_FILTER_VALUES:
        return [], [FieldViolation("filter", f"has {value_count} values in its predicates; at most {MAX_FILTER_VALUES} are allowed")]
    conditions, violations = [], []
    for index, predicate in enumerate(parsed.predicates):
        try:
            conditions.append(_predicate_sql(listing, predicate))
        except _PredicateError as exc:
            violations.append(FieldViolation(f"filter.predicates[{index}].{exc.part}", str(exc)))
    return conditions, violations


class _PredicateError(ValueError):
    def __init__(self, part: str, message: str) -> None:
        super().__init__(message)
        self.part = part


_COMPARISONS = {
    Op.EQUALS: "=",
    Op.NOT_EQUALS: "!=",
    Op.GREATER_THAN: ">",
    Op.GREATER_THAN_EQUALS: ">=",
    Op.LESS_THAN: "<",
    Op.LESS_THAN_EQUALS: "<=",
}
_LIST_VALUES = ("int_values", "long_values", "string_values")


def _value_count(predicate: filter_pb2.Predicate) -> int:
    which = predicate.WhichOneof("value")
    return len(getattr(predicate, which).values) if which in _LIST_VALUES else 1


def _predicate_sql(listing: Listing, predicate: filter_pb2.Predicate) -> tuple[str, str, tuple[Any, ...]]:
    """(the column, SQL, params) of one predicate."""
    column_name = listing.resolve(predicate.key)
    if column_name is None:
        raise _PredicateError("key", f"unknown key {predicate.key!r}; valid keys: {', '.join(sorted(listing.columns))}")
    sql, params = _column_predicate_sql(listing.columns[column_name], column_name, predicate)
    return column_name, sql, params


def _column_predicate_sql(column: Column, column_name: str, predicate: filter_pb2.Predicate) -> tuple[str, tuple[Any, ...]]:
    op = predicate.operation
    which = predicate.WhichOneof("value")
    if op == Op.OPERATION_UNSPECIFIED:
        raise _PredicateError("operation", "is required")
    if op not in Op.values():  # proto3 enums are open: a number JSON names need not exist
        raise _PredicateError("operation", f"{op} is not an operation; one of: {', '.join(Op.keys()[1:])}")
    if which is None:
        raise _PredicateError("value", "is required")
    if op == Op.IN:
        if which not in _LIST_VALUES:
            raise _PredicateError("value", "IN takes int_values, long_values or string_values")
        values = [_column_value(column, column_name, which, v) for v in getattr(predicate, which).values]
        if not values:
            raise _PredicateError("value", "IN needs at least one value")
        if column.kind is Kind.TIME:
            return _time_in(column_name, values)
        return f"{column_name} IN ({', '.join('?' * len(values))})", tuple(v for v, _ in values)
    if which in _LIST_VALUES:
        raise _PredicateError("value", f"{Op.Name(op)} takes a single value, not {which}")
    value, whole_second = _column_value(column, column_name, which, getattr(predicate, which))
    if op == Op.IS_SUBSTRING:
        if column.kind is not Kind.TEXT:
            raise _PredicateError("operation", f"IS_SUBSTRING applies to string keys; {column_name!r} is not one")
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"{column_name} LIKE ? ESCAPE '\\'", (f"%{escaped}%",)
    if column.kind is Kind.ENUM and op not in (Op.EQUALS, Op.NOT_EQUALS):
        raise _PredicateError("operation", f"{Op.Name(op)} does not apply to {column_name!r}; use EQUALS, NOT_EQUALS or IN")
    if column.kind is Kind.TIME and whole_second:
        return _time_comparison(column_name, op, value)
    return f"{column_name} {_COMPARISONS[op]} ?", (value,)


def _time_comparison(column: str, op: int, start: int) -> tuple[str, tuple[Any, ...]]:
    """A time given to the second covers that whole second, as KFP stores seconds."""
    end = start + MICROS_PER_SECOND - 1
    return {
        Op.EQUALS: (f"{column} BETWEEN ? AND ?", (start, end)),
        Op.NOT_EQUALS: (f"{column} NOT BETWEEN ? AND ?", (start, end)),
        Op.GREATER_THAN: (f"{column} > ?", (end,)),
        Op.GREATER_THAN_EQUALS: (f"{column} >= ?", (start,)),
        Op.LESS_THAN: (f"{column} < ?", (start,)),
        Op.LESS_THAN_EQUALS: (f"{column} <= ?", (end,)),
    }[op]


def _time_in(column: str, values: list[tuple[Any, bool]]) -> tuple[str, tuple[Any, ...]]:
    parts, params = [], []
    for value, _ in values:
        sql, values_params = _time_comparison(column, Op.EQUALS, value)
        parts.append(sql)
        params.extend(values_params)
    return "(" + " OR ".join(parts) + ")", tuple(params)


def _column_value(column: Column, name: str, which: str, raw: Any) -> tuple[Any, bool]:
    """Convert a predicate value to the column's stored form; also say if it is a whole second."""
    if column.kind is Kind.TEXT:
        if which not in ("string_value", "string_values"):
            raise _PredicateError("value", f"{name!r} is a string key; use string_value(s)")
        return raw, False
    if column.kind is Kind.ENUM:
        if which in ("string_value", "string_values"):
            if raw not in column.enum_names[1:]:
                raise _PredicateError("value", f"{raw!r} is not a {name} value; one of: {', '.join(column.enum_names[1:])}")
            return raw, False
        if which in ("int_value", "int_values", "long_value", "long_values") and 0 < raw < len(column.enum_names):
            return column.enum_names[raw], False
        raise _PredicateError("value", f"{raw!r} is not a {name} value; one of: {', '.join(column.enum_names[1:])}")
    if which == "timestamp_value":  # JSON parsing keeps it within Timestamp's range
        return raw.seconds * MICROS_PER_SECOND + raw.nanos // 1000, raw.nanos == 0
    if which in ("int_value", "int_values", "long_value", "long_values"):
        if not MIN_TIME_US <= raw * MICROS_PER_SECOND <= MAX_TIME_US:
            raise _PredicateError(
                "value", f"{raw} Unix seconds is outside the years 1 to 9999 a time key holds"
            )
        return raw * MICROS_PER_SECOND, True  # Unix seconds, as KFP
    raise _PredicateError("value", f"{name!r} is a time key; use timestamp_value or long_value (Unix seconds)")
