"""`where` clauses: a small, documented subset of the Mongo-style filter language, compiled to SQL.

Grammar::

    where   := {key: value | {op: operand, ...}, ..., "$and": [where, ...], "$or": [where, ...]}
    key     := a metadata key; dots reach into nested objects ("author.name")
    op      := $eq | $ne | $gt | $gte | $lt | $lte | $in | $nin
    value   := str | int | float | bool | None  (a bare value means $eq; None matches a missing key)

Keys at the same level are AND-ed. $gt/$gte/$lt/$lte take numbers; $in/$nin take a non-empty list.
Values are always bound as SQL parameters, never pasted into the statement.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sigmavault.errors import InvalidFilter

__all__ = ["compile_where"]

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_COMPARE = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_SCALARS = (str, int, float, bool, type(None))


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
    expr = f"json_extract({column}, '{path}')"
    if not isinstance(cond, Mapping):
        return _compare(expr, "$eq", cond, key, params)
    if not cond:
        raise InvalidFilter(f"empty condition for {key!r}")
    return "(" + " AND ".join(_compare(expr, op, val, key, params) for op, val in cond.items()) + ")"


def _compare(expr: str, op: str, value: Any, key: str, params: list[Any]) -> str:
    if op in ("$in", "$nin"):
        if not isinstance(value, list | tuple) or not value or not all(isinstance(v, _SCALARS) for v in value):
            raise InvalidFilter(f"{key}: {op} takes a non-empty list of scalars")
        if any(v is None for v in value):
            raise InvalidFilter(f"{key}: {op} cannot hold None; use {{'{key}': None}} for a missing key")
        params.extend(value)
        marks = ", ".join("?" * len(value))
        if op == "$in":
            return f"{expr} IN ({marks})"
        return f"({expr} IS NULL OR {expr} NOT IN ({marks}))"
    if op not in _COMPARE:
        raise InvalidFilter(f"{key}: unknown operator {op!r}; use one of {', '.join([*_COMPARE, '$in', '$nin'])}")
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidFilter(f"{key}: {op} takes a number, got {type(value).__name__}")
    elif not isinstance(value, _SCALARS):
        raise InvalidFilter(f"{key}: values must be str, int, float, bool or None, got {type(value).__name__}")
    if value is None:
        return f"{expr} IS {'NOT ' if op == '$ne' else ''}NULL"
    params.append(value)
    # NOTE: `IS NOT` (not `!=`) so that $ne also matches units where the key is missing.
    return f"{expr} {'IS NOT' if op == '$ne' else _COMPARE[op]} ?"
