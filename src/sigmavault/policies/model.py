"""The policy record and the validation of what callers hand in."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from sigmavault import validate
from sigmavault.embed import check_matrix
from sigmavault.errors import InvalidInput
from sigmavault.types import Vector

__all__ = ["SOURCES", "STATES", "Policy", "PolicySource", "PolicyState", "new_policy_id"]

PolicySource = Literal["instant", "background", "deep", "imported"]
PolicyState = Literal["active", "archived"]
SOURCES: tuple[PolicySource, ...] = get_args(PolicySource)
STATES: tuple[PolicyState, ...] = get_args(PolicyState)
_KIND = re.compile(r"^[A-Za-z0-9_\-.:]{1,64}$")


@dataclass(frozen=True, slots=True)
class Policy:
    """One learned runtime parameter set, typed by ``kind`` and placed by its ``embedding``.

    ``provenance`` lists the ids this entry stands for (the entries consolidation or pruning
    folded into it, transitively); ``replaced_by`` is set on archived entries. Times are Unix
    seconds (UTC). ``score`` is the cosine similarity to the vector given to ``search()``.
    """

    id: str
    kind: str
    params: Any
    confidence: float
    source: PolicySource
    state: PolicyState
    created_at: float
    last_accessed: float
    provenance: tuple[str, ...] = ()
    replaced_by: str | None = None
    embedding: Vector | None = field(default=None, repr=False, compare=False)
    fisher: Vector | None = field(default=None, repr=False, compare=False)
    score: float | None = field(default=None, compare=False)

    def to_dict(self, *, vectors: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; embedding and Fisher diagonal only with ``vectors=True``."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "params": self.params,
            "confidence": self.confidence,
            "source": self.source,
            "state": self.state,
            "created_at": self.created_at,
            "last_accessed": self.last_accessed,
            "provenance": list(self.provenance),
            "replaced_by": self.replaced_by,
            "dim": None if self.embedding is None else int(self.embedding.shape[0]),
            "fisher_len": None if self.fisher is None else int(self.fisher.shape[0]),
        }
        if vectors:
            out["embedding"] = None if self.embedding is None else [float(v) for v in self.embedding]
            out["fisher"] = None if self.fisher is None else [float(v) for v in self.fisher]
        if self.score is not None:
            out["score"] = self.score
        return out


def new_policy_id() -> str:
    """24 hex characters that sort by creation time: 11 of milliseconds, 13 random."""
    return f"{int(time.time() * 1000):011x}{os.urandom(7).hex()[:13]}"


def check_id(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 256 or "\0" in value:
        raise InvalidInput(f"policy id {validate.show(value)}: use a non-empty string of at most 256 characters")
    return value


def check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise InvalidInput(f"policy kind {validate.show(kind)}: use 1-64 letters, digits, '_', '-', '.' or ':'")
    return kind


def check_source(source: Any) -> PolicySource:
    return validate.choice(source, "policy source", SOURCES)  # type: ignore[no-any-return]


def check_states(states: str | Sequence[str]) -> tuple[PolicyState, ...]:
    """``"all"``, one state, or several."""
    checked = validate.choices(states, "states", STATES, words=("all",))
    if checked == "all":
        return STATES
    return (checked,) if isinstance(checked, str) else tuple(checked)  # type: ignore[return-value]


def check_confidence(value: Any) -> float:
    return validate.number(value, "confidence", lo=0.0, hi=1.0)  # type: ignore[no-any-return]


def check_threshold(value: Any, what: str) -> float:
    return validate.number(value, what, lo=-1.0, hi=1.0)  # type: ignore[no-any-return]


def check_k(value: Any, what: str = "k") -> int:
    return validate.integer(value, what, lo=1, hi=1 << 40)  # type: ignore[no-any-return]


def dump_params(value: Any) -> str:
    validate.json_doc(value, "params")
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"params must be JSON-serialisable (no NaN): {exc}") from None


def embedding_vector(value: Any, *, dim: int | None = None, what: str = "embedding") -> Vector:
    """A finite, non-zero float32 vector (validated, not normalised)."""
    vec = check_matrix(value, rows=1, dim=dim, what=what)[0]
    if not np.any(vec):
        raise InvalidInput(f"{what} is all zeros; cosine similarity is undefined for it")
    return np.asarray(vec, dtype=np.float32)


def fisher_vector(value: Any) -> Vector:
    """A Fisher information diagonal: finite, non-negative float32 values."""
    vec = check_matrix(value, rows=1, what="fisher")[0]
    if (vec < 0).any():
        raise InvalidInput("fisher: a Fisher information diagonal has no negative entries")
    return np.asarray(vec, dtype=np.float32)


def check_time(value: Any, what: str) -> float:
    return validate.number(value, what, lo=-1e15, hi=1e15)  # type: ignore[no-any-return]
