"""The witness record: one flat :class:`WitnessEntry` per request, and the check that admits it.

``normalize`` runs on the caller's thread inside ``record()``, so it validates just enough that
the background writer can never fail on an entry (types, finiteness, JSON-safe routing) and
copies embeddings, so a caller may reuse its buffers at once. It returns a plain tuple in
:data:`FIELDS` order: a tuple is the cheapest thing to build and to hand to another thread.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import operator
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sigmavault import validate
from sigmavault.errors import InvalidInput
from sigmavault.types import Vector
from sigmavault.validate import MAX_ID

__all__ = [
    "FIELDS",
    "LATENCY_FIELDS",
    "NUMERIC_FIELDS",
    "Pending",
    "WitnessEntry",
    "WitnessHit",
    "new_request_id",
    "normalize",
    "now_ms",
    "to_ms",
]

FIELDS = (
    "request_id", "session_id", "timestamp", "model", "quality",
    "embedding_ms", "retrieval_ms", "routing_ms", "generation_ms", "total_ms",
    "prompt_tokens", "completion_tokens", "context_ids", "query_embedding", "response_embedding",
    "routing", "error_type", "error_message",
)  # fmt: skip
LATENCY_FIELDS = ("embedding_ms", "retrieval_ms", "routing_ms", "generation_ms", "total_ms")
# Fields kept in plain SQL columns, so aggregates read them without decoding anything.
NUMERIC_FIELDS = (*LATENCY_FIELDS, "quality", "prompt_tokens", "completion_tokens")
ROUTING_KEYS = ("model", "context_bucket", "temperature", "top_p", "confidence")
_FIELD_SET = frozenset(FIELDS)
_BLANK: dict[str, Any] = dict.fromkeys(FIELDS)
_GET = operator.itemgetter(*FIELDS)
_MAX_TS = 2**53  # ms; any later value is a unit mistake (ns or µs given as ms)
_I64 = (1 << 63) - 1  # SQLite integers are signed 64-bit
_INF = math.inf

# A validated entry in FIELDS order (see normalize).
Pending = tuple[Any, ...]


def new_request_id() -> str:
    """32 hex digits: 12 of the time in ms, then 20 random. Ids made later sort later, so the
    request-id index grows at its end instead of splitting pages at random."""
    # NOTE: random.getrandbits, not os.urandom: no system call per record (the random module is
    # seeded from the OS per process and reseeded after fork, which is all uniqueness needs).
    return "%032x" % (time.time_ns() // 1_000_000 << 80 | random.getrandbits(80))


def now_ms() -> int:
    """The current UTC time in integer milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessEntry:
    """An audit record of one request. Every field but ``request_id`` is optional.

    ``timestamp`` is UTC milliseconds since the epoch (``now`` when absent); latencies are in
    milliseconds; ``routing`` holds the routing decision (``model``, ``context_bucket``,
    ``temperature``, ``top_p``, ``confidence``, or other JSON scalars and flat lists of them: the
    runtime also keeps its cached-token count, extra latencies and retrieval scores there); ``request_id`` is
    generated when absent. Entries read back carry ``seq``, their place in the log.
    """

    request_id: str | None = None
    session_id: str | None = None
    timestamp: int | None = None
    model: str | None = None
    quality: float | None = None
    embedding_ms: float | None = None
    retrieval_ms: float | None = None
    routing_ms: float | None = None
    generation_ms: float | None = None
    total_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    context_ids: tuple[str, ...] = ()
    query_embedding: Vector | None = field(default=None, repr=False, compare=False)
    response_embedding: Vector | None = field(default=None, repr=False, compare=False)
    routing: Mapping[str, Any] | None = None
    error_type: str | None = None
    error_message: str | None = None
    seq: int | None = field(default=None, compare=False)

    @property
    def failed(self) -> bool:
        return self.error_type is not None or self.error_message is not None

    @property
    def time(self) -> datetime | None:
        """``timestamp`` as an aware UTC datetime."""
        return None if self.timestamp is None else datetime.fromtimestamp(self.timestamp / 1000, UTC)

    def to_dict(self, *, embeddings: bool = False) -> dict[str, Any]:
        """A JSON-ready dict of the fields (embeddings as lists only when asked: they are large)."""
        out: dict[str, Any] = {"seq": self.seq}
        for name in FIELDS:
            value = getattr(self, name)
            if name.endswith("_embedding"):
                if not embeddings:
                    continue
                value = None if value is None else [float(x) for x in value]
            elif name == "context_ids":
                value = list(value)
            elif name == "routing":
                value = None if value is None else dict(value)
            out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class WitnessHit:
    """A similarity result: cosine ``score`` (higher is closer) and the entry."""

    score: float
    entry: WitnessEntry


def normalize(entry: WitnessEntry | Mapping[str, Any]) -> Pending:
    """Validate ``entry`` and return it as a tuple in :data:`FIELDS` order with canonical types.

    NOTE: this is the caller's hot path. Each field's common case (a float, an int, a plain
    ASCII string) is checked inline; only anything else takes a call into the slower checks, so
    an entry is admitted without one function call per field. The checks are validate.py's.
    """
    if type(entry) is dict or isinstance(entry, WitnessEntry | Mapping):
        values = _values(entry)
    else:
        raise InvalidInput(f"a witness entry is a sigmavault.WitnessEntry or a mapping, not {type(entry).__name__}")
    rid, sid, ts, model, quality, e_ms, r_ms, ro_ms, g_ms, t_ms, pt, ct, ctx, qv, rv, routing, etype, emsg = values
    return (
        new_request_id() if rid is None else rid if _plain_id(rid) else _ident(rid, "request_id"),
        None if sid is None else sid if _plain_id(sid) else _ident(sid, "session_id"),
        now_ms() if ts is None else ts if type(ts) is int and 0 <= ts < _MAX_TS else to_ms(ts, "timestamp"),
        None if model is None else model if _plain_id(model) else _ident(model, "model"),
        None if quality is None else quality if type(quality) is float and -_INF < quality < _INF
        else _number(quality, "quality", lo=-_INF),
        None if e_ms is None else e_ms if type(e_ms) is float and 0.0 <= e_ms < _INF else _number(e_ms, "embedding_ms"),
        None if r_ms is None else r_ms if type(r_ms) is float and 0.0 <= r_ms < _INF else _number(r_ms, "retrieval_ms"),
        None if ro_ms is None else ro_ms if type(ro_ms) is float and 0.0 <= ro_ms < _INF
        else _number(ro_ms, "routing_ms"),
        None if g_ms is None else g_ms if type(g_ms) is float and 0.0 <= g_ms < _INF
        else _number(g_ms, "generation_ms"),
        None if t_ms is None else t_ms if type(t_ms) is float and 0.0 <= t_ms < _INF else _number(t_ms, "total_ms"),
        None if pt is None else pt if type(pt) is int and 0 <= pt <= _I64 else _count(pt, "prompt_tokens"),
        None if ct is None else ct if type(ct) is int and 0 <= ct <= _I64 else _count(ct, "completion_tokens"),
        _context(ctx),
        None if qv is None else _vector(qv, "query_embedding"),
        None if rv is None else _vector(rv, "response_embedding"),
        None if routing is None else _routing(routing),
        None if etype is None else etype if _plain_id(etype) else _ident(etype, "error_type"),
        None if emsg is None else emsg if type(emsg) is str else _text(emsg, "error_message"),
    )  # fmt: skip


def _values(entry: WitnessEntry | Mapping[str, Any]) -> tuple[Any, ...]:
    """The 18 field values of ``entry`` in FIELDS order (None where absent)."""
    if isinstance(entry, WitnessEntry):
        e = entry
        return (
            e.request_id, e.session_id, e.timestamp, e.model, e.quality, e.embedding_ms, e.retrieval_ms,
            e.routing_ms, e.generation_ms, e.total_ms, e.prompt_tokens, e.completion_tokens, e.context_ids,
            e.query_embedding, e.response_embedding, e.routing, e.error_type, e.error_message,
        )  # fmt: skip
    # NOTE: one merge and one itemgetter, both in C, instead of 18 .get() calls.
    merged = _BLANK | entry if type(entry) is dict else {**_BLANK, **entry}
    if len(merged) != len(FIELDS):
        extra = sorted(str(k) for k in merged.keys() - _FIELD_SET)
        raise InvalidInput(f"unknown witness field(s) {extra}; the fields are: {', '.join(FIELDS)}")
    values: tuple[Any, ...] = _GET(merged)
    return values


def to_ms(value: Any, what: str = "time") -> int:
    """Milliseconds since the epoch from an int/float (already ms) or a datetime (naive means UTC)."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return round(moment.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(f"{what} must be UTC milliseconds (int) or a datetime, got {type(value).__name__}")
    ms = float(value)
    if not 0 <= ms < _MAX_TS:
        raise InvalidInput(f"{what} {value!r} is not a plausible UTC time in milliseconds since 1970")
    return round(ms)


def _plain_id(value: Any) -> bool:
    """The common case of an id: a plain ASCII string that validate.ident admits."""
    return type(value) is str and 0 < len(value) <= MAX_ID and value.isascii() and "\0" not in value


def _ident(value: Any, what: str) -> str:
    text = str(validate.ident(value, what))
    _storable(text, what)
    return text


def _text(value: Any, what: str) -> str:
    # NOTE: not validate.text: an error message goes into the JSON payload, where NUL and lone
    # surrogates are stored fine, and the runtime records str(exc), whatever the exception holds.
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {validate.show(value)}")
    return str(value)


def _storable(text: str, what: str) -> None:
    # NOTE: a lone surrogate cannot be encoded as UTF-8, so SQLite could never store the entry and
    # the writer would retry it forever: refuse it here, on the caller's thread.
    try:
        text.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} holds a lone surrogate, which is not valid text: {validate.show(text)}") from None


def _number(value: Any, what: str, *, lo: float = 0.0) -> float:
    """Any real number (numpy's included) as a float, finite and at least ``lo``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        with contextlib.suppress(OverflowError, ValueError):
            value = float(value)
    return float(validate.number(value, what, lo=lo))


def _count(value: Any, what: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        value = int(value)
    return int(validate.integer(value, what, lo=0))


def _context(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is list or type(value) is tuple:
        ids = tuple(value)
    elif isinstance(value, str | bytes):
        raise InvalidInput("context_ids must be a list of unit ids, not a single string")
    else:
        try:
            ids = tuple(value)
        except TypeError:
            raise InvalidInput(f"context_ids must be a list of unit ids, got {type(value).__name__}") from None
    for uid in ids:
        if type(uid) is not str:
            raise InvalidInput(f"context_ids must hold strings, got {type(uid).__name__}")
    return ids


def _vector(value: Any, what: str) -> Vector:
    # NOTE: always a copy, so the caller may reuse its buffer as soon as record() returns.
    if type(value) is np.ndarray and value.dtype == np.float32 and value.ndim == 1:
        vec = value.copy()
    else:
        try:
            vec = np.array(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"{what}: not a numeric vector ({exc})") from None
        if vec.ndim == 2 and vec.shape[0] == 1:
            vec = vec[0]
    if vec.ndim != 1 or vec.size == 0:
        raise InvalidInput(f"{what} must be a non-empty 1-d vector, got shape {vec.shape}")
    # NOTE: one dot product is finite exactly when no element is NaN/inf, unless it overflows;
    # only then is the slower element-wise test needed.
    if not math.isfinite(float(vec.dot(vec))) and not np.isfinite(vec).all():
        raise InvalidInput(f"{what} contains NaN or infinity")
    return vec


def _routing(value: Any) -> dict[str, Any]:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise InvalidInput(f"routing must be a mapping (model, context_bucket, temperature, ...), got {type(value)}")
    out = dict(value)  # NOTE: a copy: the caller may change its mapping once record() returned
    for key, v in out.items():
        if type(key) is not str:
            raise InvalidInput(f"routing keys must be strings, got {validate.show(key)}")
        t = type(v)
        # NOTE: x - x is 0.0 exactly for a finite float (NaN and infinities give NaN).
        if not (t is str or (t is float and v - v == 0.0) or v is None or t is int or t is bool):
            out[key] = _routing_value(key, v)  # replacing a value while iterating is allowed
    return out


def _routing_value(key: str, v: Any) -> Any:
    what = f"routing[{key!r}]"
    if isinstance(v, list | tuple):
        return [_scalar(x, what) for x in v]
    if isinstance(v, numbers.Number | np.bool_):
        return _scalar(v, what)
    raise InvalidInput(f"{what} must be a string, number, bool, None or a list of them, got {type(v).__name__}")


def _scalar(v: Any, what: str) -> Any:
    """One JSON scalar of a routing value (finite numbers, strings, bools, None)."""
    if v is None or type(v) in (str, bool, int):
        return v
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return _number(v, what, lo=-_INF)
    raise InvalidInput(f"{what} may hold strings, numbers, bools or None, got {type(v).__name__}")
