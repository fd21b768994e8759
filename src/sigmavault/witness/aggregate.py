"""Aggregates over the plain numeric columns: count, mean, min, max and percentiles per group.

One SELECT reads the key columns and the field (never a payload or an embedding), numpy groups
them with one stable sort and computes each group's percentiles with ``np.percentile`` (linear
interpolation), so the figures are numpy's on the same data.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np

from sigmavault import validate
from sigmavault.errors import InvalidInput
from sigmavault.witness.entry import NUMERIC_FIELDS
from sigmavault.witness.query import Filters

__all__ = ["GROUP_KEYS", "duration_ms", "model_usage", "stats"]

# Group key -> SQL expression over witness_entries e; "time" is bucketed in numpy.
GROUP_KEYS = {
    "model": "COALESCE(e.model_id, 0)",
    "time": "e.ts_ms",
    "session_id": "e.session_id",
    "error_type": "e.error_type",
}
_NUMERIC_KEYS = {"model", "time"}
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def duration_ms(value: Any, what: str = "bucket") -> int:
    """A positive duration in ms from an int (ms), a timedelta, or text such as ``"15m"``, ``"1h"``, ``"7d"``."""
    if isinstance(value, timedelta):
        ms = value.total_seconds() * 1000
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise InvalidInput(f"{what} {value!r}: write a number and a unit (ms, s, m, h, d, w), e.g. '1h'")
        ms = float(match.group(1)) * _UNITS_MS[match.group(2)]
    elif isinstance(value, int) and not isinstance(value, bool):
        ms = value
    else:
        raise InvalidInput(f"{what} must be milliseconds (int), a timedelta or text like '1h', got {value!r}")
    if ms < 1:
        raise InvalidInput(f"{what} must be at least 1 ms, got {value!r}")
    return int(ms)


def _keys(by: str | Sequence[str] | None) -> tuple[str, ...]:
    if by is None:
        return ()
    if not isinstance(by, str | Sequence):
        raise InvalidInput(f"by must be a key name or a list of them, got {validate.show(by)}")
    keys = (by,) if isinstance(by, str) else tuple(validate.ident(k, "by") for k in by)
    aliases = {"session": "session_id", "bucket": "time"}
    keys = tuple(aliases.get(k, k) for k in keys)
    for key in keys:
        if key not in GROUP_KEYS:
            raise InvalidInput(f"cannot group by {key!r}; use any of: {', '.join(GROUP_KEYS)}")
    if len(set(keys)) != len(keys):
        raise InvalidInput(f"by names a key twice: {keys}")
    return keys


def _percentiles(values: Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidInput(f"percentiles must be a list of numbers in 0..100, got {validate.show(values)}")
    return tuple(validate.number(p, "percentiles", lo=0.0, hi=100.0) for p in values)


def stats(
    conn: sqlite3.Connection,
    filters: Filters,
    *,
    field: str,
    by: str | Sequence[str] | None,
    percentiles: Sequence[float],
    bucket: Any,
) -> list[dict[str, Any]]:
    """One dict per group: the group's keys, then count, mean, min, max and ``p<N>`` per percentile."""
    validate.choice(field, "field (a numeric field to aggregate)", NUMERIC_FIELDS)
    keys = _keys(by)
    ps = _percentiles(percentiles)
    bucket_ms = duration_ms(bucket) if "time" in keys else 0
    where, params = filters.sql()
    columns = ", ".join([*(GROUP_KEYS[k] for k in keys), f"e.{field}"])
    rows = conn.execute(f"SELECT {columns} FROM witness_entries e WHERE e.{field} IS NOT NULL AND {where}", params)
    data = rows.fetchall()
    if not data:
        return []
    width = len(keys) + 1
    codes: list[np.ndarray[Any, Any]] = []
    labels: list[list[Any]] = []
    if all(k in _NUMERIC_KEYS for k in keys):
        # NOTE: one flat fromiter is ~3x faster than np.array over a list of tuples.
        flat = np.fromiter(itertools.chain.from_iterable(data), dtype=np.float64, count=width * len(data))
        table = flat.reshape(len(data), width)
        values = table[:, -1]
        columns_data: list[Any] = [table[:, i] for i in range(len(keys))]
    else:
        transposed = list(zip(*data, strict=True))
        values = np.asarray(transposed[-1], dtype=np.float64)
        columns_data = [transposed[i] for i in range(len(keys))]
    names = _model_names(conn) if "model" in keys else {}
    for key, col in zip(keys, columns_data, strict=True):
        if key in _NUMERIC_KEYS:
            arr = np.asarray(col, dtype=np.int64)
            if key == "time":
                arr = (arr // bucket_ms) * bucket_ms
            uniq, inverse = np.unique(arr, return_inverse=True)
            codes.append(inverse.reshape(-1))
            labels.append([names.get(int(u)) if key == "model" else int(u) for u in uniq])
        else:
            index: dict[Any, int] = {}
            codes.append(np.fromiter((index.setdefault(v, len(index)) for v in col), dtype=np.int64, count=len(col)))
            labels.append(list(index))
    combined = np.zeros(len(values), dtype=np.int64)
    for code, label in zip(codes, labels, strict=True):
        combined = combined * len(label) + code
    order = np.argsort(combined, kind="stable")
    sorted_codes = combined[order]
    sorted_values = values[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_codes)) + 1])
    ends = np.concatenate([starts[1:], [len(sorted_values)]])
    out = []
    for start, end in zip(starts, ends, strict=True):
        group = sorted_values[start:end]
        row: dict[str, Any] = {}
        rest = int(sorted_codes[start])
        for key, label in reversed(list(zip(keys, labels, strict=True))):
            rest, pos = divmod(rest, len(label))
            row[key] = label[pos]
        row = {k: row[k] for k in keys}
        row.update(count=int(group.size), mean=float(group.mean()), min=float(group.min()), max=float(group.max()))
        if ps:
            for p, v in zip(ps, np.percentile(group, ps), strict=True):
                row[f"p{p:g}"] = float(v)
        out.append(row)
    out.sort(key=lambda r: tuple((r[k] is not None, r[k]) for k in keys))
    return out


def _model_names(conn: sqlite3.Connection) -> dict[int, str | None]:
    names: dict[int, str | None] = {int(i): str(n) for i, n in conn.execute("SELECT id, name FROM witness_models")}
    names[0] = None
    return names


def model_usage(conn: sqlite3.Connection, filters: Filters) -> list[dict[str, Any]]:
    """Per model: requests, share, errors, token sums, mean quality and mean total latency."""
    where, params = filters.sql()
    rows = conn.execute(
        "SELECT m.name, COUNT(*), SUM(e.failed), SUM(e.prompt_tokens), SUM(e.completion_tokens), AVG(e.quality), "
        "AVG(e.total_ms), MIN(e.ts_ms), MAX(e.ts_ms) FROM witness_entries e "
        f"LEFT JOIN witness_models m ON m.id = e.model_id WHERE {where} GROUP BY e.model_id ORDER BY COUNT(*) DESC",
        params,
    ).fetchall()
    total = sum(int(r[1]) for r in rows)
    return [
        {
            "model": r[0],
            "requests": int(r[1]),
            "share": int(r[1]) / total,
            "errors": int(r[2] or 0),
            "prompt_tokens": int(r[3] or 0),
            "completion_tokens": int(r[4] or 0),
            "mean_quality": r[5],
            "mean_total_ms": r[6],
            "first_ms": int(r[7]),
            "last_ms": int(r[8]),
        }
        for r in rows
    ]
