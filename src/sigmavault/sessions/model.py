"""The session record and the validation of what callers hand in."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from sigmavault import validate
from sigmavault.embed import check_matrix
from sigmavault.errors import InvalidInput
from sigmavault.types import Vector

__all__ = ["STATES", "Row", "Session", "SessionState", "new_session_id"]

SessionState = Literal["open", "closed", "expired"]
STATES: tuple[SessionState, ...] = get_args(SessionState)

# A cached session, decrypted but not parsed: (sid, user_id, state, turn_count, created_at,
# last_active, active_adapter, kv_ref, metadata JSON, context float32 bytes or None).
Row = tuple[str, str | None, str, int, float, float, str | None, str | None, str, bytes | None]


@dataclass(frozen=True, slots=True)
class Session:
    """Per-conversation state of a serving runtime.

    Times are Unix seconds (UTC). ``context`` is the stored context embedding (read-only float32,
    as given, not normalised). ``score`` is the cosine similarity to the context given to
    ``find()``, and ``None`` everywhere else.
    """

    session_id: str
    user_id: str | None
    state: SessionState
    turn_count: int
    created_at: float
    last_active: float
    active_adapter: str | None
    kv_ref: str | None
    metadata: dict[str, Any]
    context: Vector | None = field(default=None, repr=False, compare=False)
    score: float | None = field(default=None, compare=False)

    @classmethod
    def from_row(cls, row: Row, score: float | None = None) -> Session:
        ctx = None if row[9] is None else np.frombuffer(row[9], dtype=np.float32)
        return cls(
            session_id=row[0],
            user_id=row[1],
            state=row[2],  # type: ignore[arg-type]
            turn_count=row[3],
            created_at=row[4],
            last_active=row[5],
            active_adapter=row[6],
            kv_ref=row[7],
            metadata=json.loads(row[8]),
            context=ctx,
            score=score,
        )

    def to_dict(self, *, vectors: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; the context vector itself only with ``vectors=True``."""
        out: dict[str, Any] = {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "state": self.state,
            "turn_count": self.turn_count,
            "created_at": self.created_at,
            "last_active": self.last_active,
            "active_adapter": self.active_adapter,
            "kv_ref": self.kv_ref,
            "metadata": self.metadata,
            "context_dim": None if self.context is None else int(self.context.shape[0]),
        }
        if vectors:
            out["context"] = None if self.context is None else [float(x) for x in self.context]
        if self.score is not None:
            out["score"] = self.score
        return out


def new_session_id() -> str:
    """24 hex characters that sort by creation time: 11 of milliseconds, 13 random."""
    return f"{int(time.time() * 1000):011x}{os.urandom(7).hex()[:13]}"


def check_id(value: Any, what: str = "session_id") -> str:
    if not isinstance(value, str) or not value or len(value) > 256 or "\0" in value:
        raise InvalidInput(f"{what} {validate.show(value)}: use a non-empty string of at most 256 characters")
    return value


def check_label(value: Any, what: str) -> str | None:
    """An optional short string field (user id, adapter name, KV reference)."""
    return validate.ident(value, what, optional=True)  # type: ignore[no-any-return]


def check_state(value: Any) -> SessionState:
    return validate.choice(value, "session state", STATES)  # type: ignore[no-any-return]


def check_states(states: str | Sequence[str]) -> tuple[SessionState, ...]:
    """``"all"``, one state, or several."""
    checked = validate.choices(states, "states", STATES, words=("all",))
    if checked == "all":
        return STATES
    return (checked,) if isinstance(checked, str) else tuple(checked)  # type: ignore[return-value]


def check_time(value: Any, what: str) -> float:
    """Unix seconds (finite, within SQLite's REAL range)."""
    return validate.number(value, what, lo=-1e15, hi=1e15)  # type: ignore[no-any-return]


def check_count(value: Any, what: str) -> int:
    return validate.integer(value, what, lo=0, hi=1 << 62)  # type: ignore[no-any-return]


def dump_metadata(value: Any) -> str:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"metadata must be a mapping, got {type(value).__name__}")
    validate.json_doc(value, "metadata")
    try:
        return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"metadata must be JSON-serialisable (no NaN): {exc}") from None


def context_bytes(value: Any) -> bytes | None:
    """A context embedding as float32 bytes; ``None`` stays ``None``."""
    if value is None:
        return None
    vec = check_matrix(value, rows=1, what="context")[0]
    if not np.any(vec):
        raise InvalidInput("context is all zeros; cosine similarity is undefined for it")
    return bytes(vec.tobytes())
