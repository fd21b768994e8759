"""Metadata values beyond JSON's own: how each is stored, so filters and readers agree.

JSON holds str, int, float, bool, None, lists and objects; loaders hand over more. Each extra type
is stored as the JSON value below, and that JSON value is what reads return:

=====================================  ==============================================================
given                                  stored and returned
=====================================  ==============================================================
``datetime``                           ISO-8601 text in UTC, fixed width:
                                       ``"2024-05-01T12:00:00.000000+00:00"`` (a naive datetime is
                                       taken as UTC), so text order is time order and ``$gt``-style
                                       filters given a ``datetime`` compare correctly
``date``                               ``"2024-05-01"``
numpy scalars (``np.int64``, ...)      the Python ``int`` / ``float`` / ``bool``
numpy arrays                           nested lists
``UUID``                               its canonical text, ``"1b4e28ba-2fa1-11d2-883f-0016d3cca427"``
``Decimal``                            ``float`` (finite values only)
``set`` / ``frozenset``                a sorted list (sorted by ``repr`` when elements do not order)
``tuple``                              a list (JSON has no tuple)
=====================================  ==============================================================
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

import numpy as np

__all__ = ["json_value"]


def json_value(value: Any) -> Any:
    """The JSON value stored for ``value`` (called by the encoder for types JSON lacks)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        out = float(value)
        if not math.isfinite(out):
            raise ValueError(f"Decimal {value} is not a finite number")
        return out
    if isinstance(value, set | frozenset):
        try:
            return sorted(value)
        except TypeError:
            return sorted(value, key=repr)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
