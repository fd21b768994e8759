"""``Runtime.learn``: good past turns become ``"routing"`` policies (the background learning loop).

The witness log holds, per turn, the query embedding, the quality score and the generation settings that
served it (``routing["settings.<name>"]``). ``learn`` takes the recent turns of one model with quality at
least ``min_quality``, clusters their query embeddings (k-means++, the clustering policy consolidation
uses), and writes one policy per cluster: its embedding is the cluster's direction, its params the
settings whose turns scored best on average in that cluster (more turns break a tie), its confidence that
mean quality, and its provenance the request ids of the cluster's turns.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from sigmavault.errors import InvalidInput
from sigmavault.index import normalize
from sigmavault.policies.cluster import kmeans
from sigmavault.witness.entry import WitnessEntry

if TYPE_CHECKING:
    from sigmavault.policies import Policy
    from sigmavault.vault import Vault

__all__ = ["learn", "settings_of"]

PREFIX = "settings."


def settings_of(entry: WitnessEntry) -> dict[str, Any]:
    """The generation settings a turn ran with, from its routing record."""
    routing = entry.routing or {}
    return {key[len(PREFIX) :]: value for key, value in routing.items() if key.startswith(PREFIX)}


def learn(
    vault: Vault, model: str, *, min_quality: float = 0.7, k: int = 16, limit: int = 10_000, seed: int = 0
) -> list[Policy]:
    """Write routing policies from the ``limit`` newest good turns of ``model``; returns them (none without turns)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(f"k must be a positive integer, got {k!r}")
    if isinstance(min_quality, bool) or not isinstance(min_quality, int | float):
        raise InvalidInput(f"min_quality must be a number, got {min_quality!r}")
    turns = vault.witness.query(model=model, limit=limit, embeddings=True)
    entries = [
        e
        for e in turns
        if e.quality is not None
        and e.quality >= min_quality
        and not e.failed
        and e.query_embedding is not None
        and settings_of(e)
    ]
    if not entries:
        return []
    dims = {int(e.query_embedding.shape[0]) for e in entries if e.query_embedding is not None}
    if len(dims) != 1:
        raise InvalidInput(f"the good turns of {model!r} have query embeddings of several sizes {sorted(dims)}")
    x = normalize(np.stack([np.asarray(e.query_embedding, dtype=np.float32) for e in entries]))
    distinct = len(np.unique(x.round(6), axis=0))  # NOTE: k-means gives every cluster a row, even a duplicate
    labels, centers = kmeans(x, min(k, distinct), seed=seed)
    seen = {e.request_id for e in turns if e.request_id}
    # NOTE: a rerun replaces what an earlier run learned from this model's turns instead of piling up copies
    stale = [
        p.id for p in vault.policies.list("routing") if p.source == "background" and seen.intersection(p.provenance)
    ]
    made = []
    with vault.transaction():
        if stale:
            vault.policies.delete(stale)
        for j in range(len(centers)):
            made.append(_policy(vault, entries, labels, centers, j))
    return made


def _policy(vault: Vault, entries: list[WitnessEntry], labels: np.ndarray, centers: np.ndarray, j: int) -> Policy:
    """The policy of cluster ``j``: the settings whose turns there scored best (more turns break a tie)."""
    members = [entries[i] for i in np.flatnonzero(labels == j)]
    groups: dict[str, list[WitnessEntry]] = defaultdict(list)
    for e in members:
        groups[json.dumps(settings_of(e), sort_keys=True)].append(e)
    best, served = max(groups.items(), key=lambda kv: (float(np.mean([e.quality for e in kv[1]])), len(kv[1])))
    return vault.policies.put(
        "routing",
        json.loads(best),
        embedding=normalize(centers[j : j + 1])[0],
        confidence=float(np.clip(np.mean([e.quality for e in served]), 0.0, 1.0)),
        source="background",
        provenance=sorted(e.request_id for e in members if e.request_id),
    )
