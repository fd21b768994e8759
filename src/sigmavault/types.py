"""Plain data classes that cross layer boundaries: units, hits, edges, check reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from sigmavault.errors import InvalidInput

__all__ = ["CheckReport", "Edge", "Hit", "Reporter", "State", "Unit", "Vector"]

Vector = npt.NDArray[np.float32]
# (label, done, total) of long work the vault starts by itself (an ANN index built or extended at a
# search); a face (the CLI) draws it, the parts only report.
Reporter = Callable[[str, int, int], None]


class State(str, Enum):  # noqa: UP042 - str() stays "State.ACTIVE"; StrEnum would change it
    """Lifecycle of a unit. Only ``active`` units are searched unless a search asks otherwise."""

    ACTIVE = "active"
    ARCHIVED = "archived"
    EXPIRED = "expired"
    CORRUPTED = "corrupted"

    @classmethod
    def parse(cls, value: str | State) -> State:
        if not isinstance(value, str | State):
            raise InvalidInput(f"a state must be a string such as 'active', got a {type(value).__name__}")
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise InvalidInput(f"unknown state {value!r}; use one of: {names}") from None


@dataclass(frozen=True, slots=True)
class Unit:
    """One semantic unit: text, metadata, lifecycle and provenance.

    ``created_at`` and ``accessed_at`` are Unix seconds (UTC). ``vector`` is filled by ``get``
    (as stored: unit-normalised for cosine collections) and left ``None`` by bulk listings.
    """

    id: str
    collection: str
    text: str | None
    metadata: dict[str, Any]
    kind: str
    state: State
    created_at: float
    accessed_at: float
    access_count: int
    conversation_id: str | None
    parent_id: str | None
    semantic_hash: int
    kv_ref: str | None
    vector: Vector | None = field(default=None, repr=False, compare=False)

    def to_dict(self, *, vectors: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; the vector (a list of floats) only with ``vectors=True``: it is large."""
        out: dict[str, Any] = {
            "id": self.id,
            "collection": self.collection,
            "text": self.text,
            "metadata": self.metadata,
            "kind": self.kind,
            "state": self.state.value,
            "created_at": self.created_at,
            "accessed_at": self.accessed_at,
            "access_count": self.access_count,
            "conversation_id": self.conversation_id,
            "parent_id": self.parent_id,
            "semantic_hash": self.semantic_hash,
            "kv_ref": self.kv_ref,
        }
        if vectors:
            out["vector"] = None if self.vector is None else [float(x) for x in self.vector]
        return out


class _UnitBuilder:
    """Builds a :class:`Unit` without its frozen ``__init__`` (14 ``object.__setattr__`` calls).

    NOTE: loading every unit of a large collection builds one Unit per row, and the dataclass
    ``__init__`` was about a quarter of that time. This class has the same slots in the same order,
    fills them with plain stores and then becomes a Unit (``__class__`` assignment, allowed between
    classes of the same layout): the result is a Unit like any other, frozen from then on.
    """

    __slots__ = Unit.__slots__

    def __init__(
        self,
        id: str,
        collection: str,
        text: str | None,
        metadata: dict[str, Any],
        kind: str,
        state: State,
        created_at: float,
        accessed_at: float,
        access_count: int,
        conversation_id: str | None,
        parent_id: str | None,
        semantic_hash: int,
        kv_ref: str | None,
        vector: Vector | None = None,
    ) -> None:
        self.id = id
        self.collection = collection
        self.text = text
        self.metadata = metadata
        self.kind = kind
        self.state = state
        self.created_at = created_at
        self.accessed_at = accessed_at
        self.access_count = access_count
        self.conversation_id = conversation_id
        self.parent_id = parent_id
        self.semantic_hash = semantic_hash
        self.kv_ref = kv_ref
        self.vector = vector
        self.__class__ = Unit  # type: ignore[assignment]


# NOTE: a field added to Unit must be added to the builder too (tests/test_units.py compares them).
build_unit: Callable[..., Unit] = _UnitBuilder  # type: ignore[assignment]
"""``build_unit(id, collection, text, metadata, kind, state, created_at, accessed_at, access_count,
conversation_id, parent_id, semantic_hash, kv_ref, vector=None)``: a Unit, built faster than ``Unit(...)``."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result. Higher ``score`` is always better; see README "Scores" for each mode."""

    id: str
    score: float
    text: str | None
    metadata: dict[str, Any]
    # only with search(..., include=("vector",)): the stored (normalised) vector; not compared
    vector: Vector | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields (``vector`` as a list of floats, present only when carried)."""
        out = {"id": self.id, "score": float(self.score), "text": self.text, "metadata": self.metadata}
        if self.vector is not None:
            out["vector"] = [float(x) for x in self.vector]
        return out


@dataclass(frozen=True, slots=True)
class Edge:
    """A typed, weighted edge as seen from the unit it was asked about."""

    source: str
    target: str
    kind: str
    weight: float
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {
            "source": self.source,
            "target": self.target,
            "kind": self.kind,
            "weight": self.weight,
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class CheckReport:
    """Result of ``Vault.check()``: ``ok`` is true when ``problems`` is empty."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": list(self.problems), "notes": list(self.notes)}
