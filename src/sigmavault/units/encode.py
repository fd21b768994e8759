"""Metadata as the compact JSON a vault stores: one unit's, or a whole batch's without a Python step per unit."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

from sigmavault.errors import InvalidInput
from sigmavault.units.values import json_value

__all__ = ["dumps", "dumps_all"]

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


def dumps(meta: Mapping[str, Any]) -> str:
    """Metadata as the compact JSON stored in the vault (InvalidInput if it cannot be stored)."""
    try:
        if _C_ENCODE is not None and type(meta) is dict:
            return "".join(_C_ENCODE(meta, 0))
        return _ENCODER.encode(meta)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"metadata must be JSON-serialisable (no NaN): {exc}") from None


def dumps_all(metas: Sequence[Mapping[str, Any]]) -> list[str]:
    """:func:`dumps` of each mapping; InvalidInput names the first one that cannot be stored."""
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
