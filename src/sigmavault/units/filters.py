"""`where` clauses: a small, documented subset of the Mongo-style filter language, compiled to SQL.

Grammar::

    where   := {key: value | {op: operand, ...}, ..., "$and": [where, ...], "$or": [where, ...]}
    key     := a metadata key; dots reach into nested objects ("author.name")
    op      := $eq | $ne | $gt | $gte | $lt | $lte | $in | $nin
    value   := str | int | float | bool | None  (a bare value means $eq; None matches a missing key)

Keys at the same level are AND-ed. $gt/$gte/$lt/$lte take a number (matching stored numbers) or a
text, date or datetime (matching stored text, compared as text: datetimes are stored as fixed-width
UTC ISO-8601, so this is time order; see :mod:`sigmavault.units.values`); $in/$nin take a
non-empty list. datetime, date, UUID, Decimal and numpy scalars are converted as they are stored.
A value only ever equals a stored value of the same JSON type: 1 matches 1 and 1.0 but never
"1" or true, and a string never matches a nested object. $gt/$gte/$lt/$lte match numbers only
(a stored boolean never satisfies them). $ne and $nin also match units without the key.
Values are always bound as SQL parameters, never pasted into the statement.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from typing import Any

from sigmavault.errors import InvalidFilter
from sigmavault.units.values import json_value

__all__ = ["compile_where"]

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_OPS = ("$eq", "$ne", *_RANGE, "$in", "$nin")
_SCALARS = (str, int, float, bool, type(None))
_INT64 = 2**63


def compile_where(where: Mapping[str, Any] | None, column: str = "metadata") -> tuple[str, list[Any]]:
    """Return ``(sql, params)`` for use after ``WHERE``; ``("1", [])`` when there is no filter."""
    if where is None:
        return "1", []
    if not isinstance(where, Mapping):
        raise InvalidFilter(f"where must be a mapping like {{'topic': 'a'}}, got {type(where).__name__}")
    params: list[Any] = []
    sql = _clause(where, column, params)
    return sql, params


def _clause(where: Mapping[str, Any], column: str, params: list[Any]) -> str:
    parts: list[str] = []
    for key, cond in where.items():
        if not isinstance(key, str):
            raise InvalidFilter(f"where keys must be strings, got {key!r}")
        if key in ("$and", "$or"):
            if not isinstance(cond, list) or not cond or not all(isinstance(c, Mapping) for c in cond):
                raise InvalidFilter(f"{key} takes a non-empty list of where clauses")
            joiner = " AND " if key == "$and" else " OR "
            parts.append("(" + joiner.join(_clause(c, column, params) for c in cond) + ")")
        elif key.startswith("$"):
            raise InvalidFilter(f"unknown top-level operator {key!r}; use $and or $or")
        else:
            parts.append(_field(key, cond, column, params))
    return "(" + " AND ".join(parts) + ")" if parts else "1"


def _field(key: str, cond: Any, column: str, params: list[Any]) -> str:
    if not _KEY.match(key):
        raise InvalidFilter(f"metadata key {key!r} may use letters, digits, '_', '-' and '.' only")
    path = "$" + "".join(f'."{seg}"' for seg in key.split("."))
    ref = (f"json_type({column}, '{path}')", f"json_extract({column}, '{path}')")
    if not isinstance(cond, Mapping):
        return _equal(ref, _scalar(key, cond), params)
    if not cond:
        raise InvalidFilter(f"empty condition for {key!r}")
    return "(" + " AND ".join(_compare(ref, op, val, key, params) for op, val in cond.items()) + ")"


def _compare(ref: tuple[str, str], op: Any, value: Any, key: str, params: list[Any]) -> str:
    jtype, expr = ref
    if op == "$eq":
        return _equal(ref, _scalar(key, value), params)
    if op == "$ne":
        return f"NOT {_equal(ref, _scalar(key, value), params)}"
    if op in ("$in", "$nin"):
        if not isinstance(value, list | tuple) or not value:
            raise InvalidFilter(f"{key}: {op} takes a non-empty list of scalars")
        values = [_scalar(key, v) for v in value]
        if any(v is None for v in values):
            raise InvalidFilter(f"{key}: {op} cannot hold None; use {{'{key}': None}} for a missing key")
        found = _one_of(ref, values, params)
        return found if op == "$in" else f"NOT {found}"
    if op in _RANGE:
        value = _scalar(key, value)
        if isinstance(value, str):
            # NOTE: text compares as text: ISO dates and datetimes (stored fixed-width, UTC) in time order
            params.append(value)
            return f"COALESCE({jtype} = 'text' AND {expr} {_RANGE[op]} ?, 0)"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidFilter(f"{key}: {op} takes a number, a text, a date or a datetime, got {type(value).__name__}")
        params.append(value)
        return f"COALESCE({jtype} IN ('integer', 'real') AND {expr} {_RANGE[op]} ?, 0)"
    raise InvalidFilter(f"{key}: unknown operator {op!r}; use one of {', '.join(_OPS)}")


def _scalar(key: str, value: Any) -> Any:
    """Check a filter value: a JSON scalar SQLite can bind exactly (datetime, UUID, ... as stored)."""
    if not isinstance(value, _SCALARS) and not isinstance(value, list | tuple | set | frozenset | Mapping):
        with contextlib.suppress(TypeError, ValueError):  # NOTE: refused just below, with the filter's wording
            value = json_value(value)
    if not isinstance(value, _SCALARS):
        kind = type(value).__name__
        raise InvalidFilter(f"{key}: values must be str, int, float, bool or None, got {kind}")
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        raise InvalidFilter(f"{key}: integer {value} does not fit in 64 bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidFilter(f"{key}: {value} is not a finite number")
    return value


def _equal(ref: tuple[str, str], value: Any, params: list[Any]) -> str:
    """True (never NULL) when the stored value has ``value``'s JSON type and equals it."""
    jtype, _ = ref
    if value is None:
        return f"({jtype} IS NULL OR {jtype} = 'null')"
    return _one_of(ref, [value], params)


def _one_of(ref: tuple[str, str], values: list[Any], params: list[Any]) -> str:
    """True (never NULL) when the stored value equals one of ``values`` (same JSON type)."""
    jtype, expr = ref
    bools = sorted({"true" if v else "false" for v in values if isinstance(v, bool)})
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    texts = [v for v in values if isinstance(v, str)]
    terms = []
    if bools:
        terms.append(f"{jtype} IN ({', '.join(repr(b) for b in bools)})")
    for kinds, group in (("'integer', 'real'", numbers), ("'text'", texts)):
        if group:
            params.extend(group)
            terms.append(f"({jtype} IN ({kinds}) AND {expr} IN ({', '.join('?' * len(group))}))")
    # NOTE: COALESCE turns SQL's NULL (missing key) into false, so NOT of this stays correct.
    return f"COALESCE({' OR '.join(terms)}, 0)"
