"""Argument checks shared by every public method: one line at the top of a method, one clear
:class:`InvalidInput` naming the argument when a value is wrong, before anything is read or written.

Each check returns the value in the form the method uses (``ids`` a list, ``integer`` an ``int``), so
a method can write ``k = validate.integer(k, "k", lo=1)``. Messages never print a hostile value whole:
:func:`show` bounds what is echoed (a value nested 2,000 levels deep must not blow the stack while
the error is built).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from sigmavault.errors import InvalidInput

__all__ = [
    "MAX_DEPTH",
    "MAX_ID",
    "choice",
    "choices",
    "flag",
    "ident",
    "ids",
    "integer",
    "json_doc",
    "number",
    "path",
    "show",
    "text",
]

# Types unit metadata accepts and converts (sigmavault.units.values): checked here, converted there.
_EXTENDED = (dt.date, uuid.UUID, Decimal, np.generic, np.ndarray)
MAX_ID = 1024  # longest id or label, in characters
MAX_DEPTH = 100  # deepest JSON nesting a stored document may have
_I64 = (1 << 63) - 1  # SQLite stores integers as signed 64-bit; anything larger overflows its binding


def show(value: Any, limit: int = 60) -> str:
    """A short, always-printable description of ``value`` for an error message."""
    try:
        text = repr(value)
    except (RecursionError, ValueError, TypeError):  # NOTE: hostile __repr__ or deep nesting
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def ident(value: Any, name: str, *, optional: bool = False) -> Any:
    """A non-empty id or label of at most :data:`MAX_ID` characters without NUL; ``None`` if ``optional``."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID or "\0" in value:
        need = "a non-empty string (or None)" if optional else "a non-empty string"
        raise InvalidInput(f"{name} must be {need} of at most {MAX_ID} characters without NUL, got {show(value)}")
    return value


def ids(value: Any, name: str) -> list[str]:
    """One id or a sequence of ids, as a list (duplicates kept, order kept)."""
    if isinstance(value, str):
        return [ident(value, name)]
    if not isinstance(value, Sequence | set | frozenset) or isinstance(value, bytes | bytearray):
        raise InvalidInput(f"{name} must be an id or a list of ids, got {show(value)}")
    return [ident(v, f"{name}[{i}]") for i, v in enumerate(value)]


def text(value: Any, name: str, *, optional: bool = False, empty: bool = True) -> Any:
    """A string (``empty=False``: with some non-space character); ``None`` if ``optional``."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or "\0" in value or (not empty and not value.strip()):
        raise InvalidInput(f"{name} must be a{' non-empty' if not empty else ''} string without NUL, got {show(value)}")
    return value


def integer(value: Any, name: str, *, lo: int = 0, hi: int = _I64, optional: bool = False) -> Any:
    """An ``int`` (not a bool) in ``[lo, hi]``; ``None`` if ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be an integer in [{lo}, {hi}], got {show(value)}")
    return int(value)


def number(value: Any, name: str, *, lo: float = -math.inf, hi: float = math.inf, optional: bool = False) -> Any:
    """A finite real number in ``[lo, hi]`` as a float; ``None`` if ``optional``."""
    if value is None and optional:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        try:
            f = float(value)
        except OverflowError:
            ok = False
        else:
            ok = math.isfinite(f) and lo <= f <= hi
    if not ok:
        raise InvalidInput(f"{name} must be a finite number in [{lo}, {hi}], got {show(value)}")
    return f


def flag(value: Any, name: str) -> bool:
    """A bool (numpy arrays and other truthy things are refused: their truth is ambiguous)."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be True or False, got {show(value)}")
    return value


def choice(value: Any, name: str, allowed: Iterable[str], *, optional: bool = False) -> Any:
    """One of ``allowed``; ``None`` if ``optional``."""
    if value is None and optional:
        return None
    options = tuple(allowed)
    if not isinstance(value, str) or value not in options:
        raise InvalidInput(f"{name} must be one of {', '.join(map(repr, options))}, got {show(value)}")
    return value


def choices(value: Any, name: str, allowed: Iterable[str], *, words: Iterable[str] = ()) -> Any:
    """One of ``allowed`` (or of ``words`` such as ``"all"``), or a non-empty sequence of ``allowed``.

    Returned as given (a string or a list) so the method's own parsing still applies.
    """
    options = tuple(allowed)
    if isinstance(value, str):
        return choice(value, name, (*options, *words))
    if not isinstance(value, Sequence) or isinstance(value, bytes | bytearray) or not value:
        listed = ", ".join(map(repr, options))
        raise InvalidInput(f"{name} must be one of {listed} or a list of them, got {show(value)}")
    return [choice(v, f"{name}[{i}]", options) for i, v in enumerate(value)]


def json_doc(
    value: Any,
    name: str,
    *,
    optional: bool = True,
    max_depth: int = MAX_DEPTH,
    error: type[InvalidInput] = InvalidInput,
    extended: bool = False,
) -> Any:
    """A JSON document (dict/list/str/finite number/bool/None, string keys) at most ``max_depth`` deep.

    Walked without recursion, so a hostile value nested thousands of levels deep is refused cleanly.
    ``extended`` also lets through what unit metadata stores by conversion (datetime, date, numpy
    scalars and arrays, UUID, Decimal, set, frozenset; see ``sigmavault.units.values``).
    """
    if value is None:
        if optional:
            return None
        raise error(f"{name} is required")
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise error(f"{name} is nested deeper than {max_depth} levels")
        if isinstance(item, Mapping):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise error(f"{name}: keys must be strings, got {show(key)}")
                stack.append((sub, depth + 1))
        elif isinstance(item, list | tuple) or (extended and isinstance(item, set | frozenset)):
            stack.extend((sub, depth + 1) for sub in item)
        elif extended and isinstance(item, _EXTENDED):
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise error(f"{name} holds {item!r}; JSON has no NaN or infinity")
        elif not (item is None or isinstance(item, str | int | bool)):
            raise error(f"{name} must be JSON (dicts, lists, strings, numbers), it holds {show(item)}")
    return value


def path(value: Any, name: str) -> str:
    """A usable filesystem path: a non-empty str or PathLike, no NUL, names of at most 255 bytes."""
    try:
        raw = os.fspath(value)
    except TypeError:
        raise InvalidInput(f"{name} must be a path (str or os.PathLike), got {show(value)}") from None
    if isinstance(raw, bytes):
        raise InvalidInput(f"{name} must be a text path, got bytes")
    if not raw or "\0" in raw:
        raise InvalidInput(f"{name} must be a non-empty path without NUL, got {show(raw)}")
    too_long = [part for part in raw.split(os.sep) if len(part.encode("utf-8", "surrogateescape")) > 255]
    if too_long or len(raw) > 4096:
        raise InvalidInput(f"{name}: a path name is longer than the filesystem allows (255 bytes), {show(raw)}")
    return str(raw)
