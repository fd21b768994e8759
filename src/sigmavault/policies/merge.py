"""How a group of policy entries becomes one representative (consolidation) or one keeper (pruning)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sigmavault.index import normalize
from sigmavault.types import Vector

__all__ = ["Member", "Merged", "merge_group", "provenance_of"]


@dataclass(frozen=True, slots=True)
class Member:
    """What merging needs of one stored entry (params already opened and parsed)."""

    id: str
    params: Any
    unit: Vector  # the embedding, unit-normalised
    confidence: float
    fisher: Vector | None
    provenance: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Merged:
    """A representative built from a group: see :func:`merge_group` for each field's rule."""

    params: Any
    embedding: Vector
    confidence: float
    fisher: Vector | None
    provenance: tuple[str, ...]
    medoid: str


def provenance_of(members: Sequence[Member]) -> tuple[str, ...]:
    """Every id the members stand for: their own ids and, transitively, what they replaced."""
    ids: set[str] = set()
    for m in members:
        ids.add(m.id)
        ids.update(m.provenance)
    return tuple(sorted(ids))


def merge_group(members: Sequence[Member]) -> Merged:
    """One representative for a cluster.

    - embedding: the normalised mean of the members' unit embeddings (the cluster's direction);
    - params: those of the medoid, the member closest to that mean (params are free-form JSON,
      so they are chosen, never averaged);
    - confidence: the members' mean;
    - fisher: the mean of the members' Fisher diagonals of the most common length (the longest
      on a tie), ``None`` when no member has one;
    - provenance: :func:`provenance_of` the members.
    """
    units = np.stack([m.unit for m in members])
    center = normalize(units.mean(axis=0, keepdims=True))[0]
    medoid = members[int(np.argmax(units @ center))]
    fishers = [m.fisher for m in members if m.fisher is not None]
    fisher = None
    if fishers:
        counts = Counter(len(f) for f in fishers)
        length = max(counts, key=lambda n: (counts[n], n))
        fisher = np.mean([f for f in fishers if len(f) == length], axis=0).astype(np.float32)
    return Merged(
        params=medoid.params,
        embedding=center.astype(np.float32),
        confidence=float(np.mean([m.confidence for m in members])),
        fisher=fisher,
        provenance=provenance_of(members),
        medoid=medoid.id,
    )
