"""The witness record: one flat :class:`WitnessEntry` per request, and the check that admits it.

``normalize`` runs on the caller's thread inside ``record()``, so it validates just enough that
the background writer can never fail on an entry (types, finiteness, JSON-safe routing) and
copies embeddings, so a caller may reuse its buffers at once. It returns a plain tuple in
:data:`FIELDS` order: a tuple is the cheapest thing to build and to hand to another thread.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sigmavault.errors import InvalidInput
from sigmavault.types import Vector

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
_MAX_ID = 256
_MAX_TS = 2**53  # ms; any later value is a unit mistake (ns or µs given as ms)

# A validated entry in FIELDS order (see normalize).
Pending = tuple[Any, ...]


def new_request_id() -> str:
    """32 hex digits: 12 of the time in ms, then 20 random. Ids made later sort later, so the
    request-id index grows at its end instead of splitting pages at random."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


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
    """Validate ``entry`` and return it as a tuple in :data:`FIELDS` order with canonical types."""
    values: tuple[Any, ...]
    if isinstance(entry, WitnessEntry):
        e = entry
        values = (
            e.request_id, e.session_id, e.timestamp, e.model, e.quality, e.embedding_ms, e.retrieval_ms,
            e.routing_ms, e.generation_ms, e.total_ms, e.prompt_tokens, e.completion_tokens, e.context_ids,
            e.query_embedding, e.response_embedding, e.routing, e.error_type, e.error_message,
        )  # fmt: skip
    elif isinstance(entry, Mapping):
        if not _FIELD_SET.issuperset(entry.keys()):
            extra = sorted(str(k) for k in entry.keys() - _FIELD_SET)
            raise InvalidInput(f"unknown witness field(s) {extra}; the fields are: {', '.join(FIELDS)}")
        g = entry.get
        values = (
            g("request_id"), g("session_id"), g("timestamp"), g("model"), g("quality"), g("embedding_ms"),
            g("retrieval_ms"), g("routing_ms"), g("generation_ms"), g("total_ms"), g("prompt_tokens"),
            g("completion_tokens"), g("context_ids"), g("query_embedding"), g("response_embedding"),
            g("routing"), g("error_type"), g("error_message"),
        )  # fmt: skip
    else:
        raise InvalidInput(f"a witness entry is a sigmavault.WitnessEntry or a mapping, not {type(entry).__name__}")
    rid, sid, ts, model, quality, e_ms, r_ms, ro_ms, g_ms, t_ms, pt, ct, ctx, qv, rv, routing, etype, emsg = values
    if rid is None:
        rid = new_request_id()
    else:
        _check_id(rid, "request_id")
    return (
        rid,
        None if sid is None else _check_id(sid, "session_id"),
        now_ms() if ts is None else to_ms(ts, "timestamp"),
        None if model is None else _check_id(model, "model"),
        None if quality is None else _number(quality, "quality", negative=True),
        None if e_ms is None else _number(e_ms, "embedding_ms"),
        None if r_ms is None else _number(r_ms, "retrieval_ms"),
        None if ro_ms is None else _number(ro_ms, "routing_ms"),
        None if g_ms is None else _number(g_ms, "generation_ms"),
        None if t_ms is None else _number(t_ms, "total_ms"),
        None if pt is None else _count(pt, "prompt_tokens"),
        None if ct is None else _count(ct, "completion_tokens"),
        _context(ctx),
        None if qv is None else _vector(qv, "query_embedding"),
        None if rv is None else _vector(rv, "response_embedding"),
        None if routing is None else _routing(routing),
        None if etype is None else _check_id(etype, "error_type"),
        None if emsg is None else _text(emsg, "error_message"),
    )


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


def _check_id(value: Any, what: str) -> str:
    if type(value) is not str or not value or len(value) > _MAX_ID:
        raise InvalidInput(f"{what} must be a non-empty string of at most {_MAX_ID} characters, got {value!r:.80}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}")
    return value


def _number(value: Any, what: str, *, negative: bool = False) -> float:
    if type(value) is float:
        x = value
    elif type(value) is int:
        x = float(value)
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(f"{what} must be a number, got {type(value).__name__}")
    else:
        x = float(value)
    if not math.isfinite(x) or (x < 0 and not negative):
        raise InvalidInput(f"{what} must be a finite{'' if negative else ', non-negative'} number, got {value!r}")
    return x


def _count(value: Any, what: str) -> int:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InvalidInput(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def _context(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | bytes):
        raise InvalidInput("context_ids must be a list of unit ids, not a single string")
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
    if not isinstance(value, Mapping):
        raise InvalidInput(f"routing must be a mapping (model, context_bucket, temperature, ...), got {type(value)}")
    out: dict[str, Any] = {}
    for key, v in value.items():
        if type(key) is not str:
            raise InvalidInput(f"routing keys must be strings, got {key!r}")
        if v is None or type(v) in (str, int, float, bool):
            if type(v) is float and not math.isfinite(v):
                raise InvalidInput(f"routing[{key!r}] must be finite, got {v!r}")
            out[key] = v
        elif isinstance(v, numbers.Integral):
            out[key] = int(v)
        elif isinstance(v, numbers.Real):
            out[key] = _number(v, f"routing[{key!r}]", negative=True)
        elif isinstance(v, list | tuple):
            out[key] = [_scalar(x, f"routing[{key!r}]") for x in v]
        else:
            raise InvalidInput(
                f"routing[{key!r}] must be a string, number, bool, None or a list of them, got {type(v).__name__}"
            )
    return out


def _scalar(v: Any, what: str) -> Any:
    """One JSON scalar of a routing list (finite numbers, strings, bools, None)."""
    if v is None or type(v) in (str, bool, int):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return _number(v, what, negative=True)
    raise InvalidInput(f"{what} may hold strings, numbers, bools or None, got {type(v).__name__}")
