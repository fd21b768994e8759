"""Metadata as the compact JSON a vault stores: one unit's, or a whole batch's without a Python step per unit."""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping, Sequence
from functools import partial
from itertools import chain, compress, repeat
from typing import Any

import numpy as np
import orjson

from sigmavault.errors import InvalidInput
from sigmavault.units.values import json_value

__all__ = ["dumps", "dumps_all", "flat_dicts"]

# NOTE: one encoder, built once: json.dumps with options builds a new one per call (3x slower).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=json_value)
# NOTE: CPython's C encoder called directly: encode() rebuilds it for every call, which is most of
# the cost of a small dict. Same output as _ENCODER; None where the C accelerator is missing.
try:
    _C_ENCODE: Any = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
except (AttributeError, TypeError):
    _C_ENCODE = None

_DICT = frozenset({dict})
_STR = frozenset({str})
_FLAT = frozenset({str, int, float, bool, type(None)})
_IS_FLOAT = partial(operator.is_, float)
# Finite floats whose shortest repr Python prints without an exponent; orjson prints the same digits.
_PLAIN_FLOATS = (1e-4, 1e16)


def dumps(meta: Mapping[str, Any]) -> str:
    """Metadata as the compact JSON stored in the vault (InvalidInput if it cannot be stored)."""
    try:
        if _C_ENCODE is not None and type(meta) is dict:
            return "".join(_C_ENCODE(meta, 0))
        return _ENCODER.encode(meta)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"metadata must be JSON-serialisable (no NaN): {exc}") from None


def flat_dicts(metas: Sequence[Any]) -> bool:
    """Whether every item is a plain ``dict`` of ``str`` keys to str/int/float/bool/None (checked in C)."""
    return (
        _DICT.issuperset(map(type, metas))
        and _STR.issuperset(map(type, chain.from_iterable(metas)))
        and _FLAT.issuperset(map(type, chain.from_iterable(map(dict.values, metas))))
    )


def dumps_all(metas: Sequence[Mapping[str, Any]]) -> list[str]:
    """:func:`dumps` of each mapping; InvalidInput names the first one that cannot be stored."""
    if _orjson_same(metas):
        try:
            # NOTE: orjson is ~4x faster than the C encoder; _orjson_same admits only batches for
            # which its bytes are the stdlib encoder's (tests/test_units.py compares them).
            return list(map(bytes.decode, map(orjson.dumps, metas)))
        except TypeError:  # NOTE: orjson.JSONEncodeError: an integer beyond 64 bits
            pass
    if _C_ENCODE is not None:
        try:
            # NOTE: the C encoder mapped over the batch: no Python frame per unit.
            return list(map("".join, map(_C_ENCODE, metas, repeat(0))))
        except (TypeError, ValueError, RecursionError):
            pass  # found and named below
    out = []
    for i, meta in enumerate(metas):
        try:
            out.append(dumps(meta))
        except InvalidInput as exc:
            raise InvalidInput(f"metadata {i}: {exc}") from None
    return out


def _orjson_same(metas: Sequence[Any]) -> bool:
    """Whether orjson writes exactly what :func:`dumps` writes for every item of ``metas``.

    NOTE: for flat dicts of exact str keys and str/int/bool/None values both write the same bytes
    (orjson refuses an integer past 64 bits and a lone surrogate: the caller falls back). Floats
    differ only in notation: Python switches to an exponent below 1e-4 and from 1e16, orjson
    elsewhere, and orjson writes NaN as null where dumps refuses it; so every float must be 0 or
    finite with 1e-4 <= |x| < 1e16.
    """
    if not metas or not _DICT.issuperset(map(type, metas)):
        return False
    if not _STR.issuperset(map(type, chain.from_iterable(metas))):
        return False
    values = list(chain.from_iterable(map(dict.values, metas)))
    kinds = set(map(type, values))
    if not _FLAT.issuperset(kinds):
        return False
    if float in kinds:
        floats = np.abs(np.fromiter(compress(values, map(_IS_FLOAT, map(type, values))), dtype=np.float64))
        lo, hi = _PLAIN_FLOATS
        with np.errstate(invalid="ignore"):
            if not bool(np.all((floats == 0) | ((floats >= lo) & (floats < hi)))):
                return False
    return True
