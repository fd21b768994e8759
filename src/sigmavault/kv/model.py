"""The KV part's plain records: its persisted settings (``KVConfig``) and what ``save`` / ``load_ref`` return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sigmavault.errors import Corrupted

__all__ = ["KVConfig", "Restored", "Saved", "config_from"]


@dataclass(frozen=True, slots=True)
class KVConfig:
    """Settings of a vault's KV store, persisted in the vault (``configure`` changes them).

    ``chunk_tokens`` and ``codec`` are part of every key: changing them starts a new keyspace
    (old chunks stay loadable with ``codec=`` the old one, and are evicted in time).
    """

    codec: str = "native"
    chunk_tokens: int = 256
    ram_bytes: int = 256 * 2**20
    disk_bytes: int | None = None
    policy: str = "lru"
    remote: str | None = None
    remote_ttl: int = 7 * 86400
    remote_prefix: str = "sv"
    remote_timeout: float = 0.5
    prune: str | None = None
    max_kl: float | None = None


@dataclass(frozen=True, slots=True)
class Saved:
    """What ``save`` did: the stored prefix's ``ref`` and length, and what it wrote or evicted.

    A pruned save names its pruning (``prune``) and ``kept`` slots; ``kl`` is the gate's measured mean KL, and
    ``refused`` says why the gate stored the lossless cache instead.
    """

    ref: str | None
    tokens: int
    new_chunks: int
    new_bytes: int
    evicted: int
    prune: str | None = None
    kept: int | None = None
    kl: float | None = None
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class Restored:
    """A stored prefix brought back by ``load_ref``: its token ids and a cache covering all of them."""

    cache: Any
    input_ids: list[int]
    tokens: int
    ref: str
    prune: str | None = None
    kept: int | None = None


def config_from(settings: dict[str, Any]) -> KVConfig:
    """Settings read back from the vault; unknown keys (from a newer release) are ignored."""
    known = {k: v for k, v in settings.items() if k in KVConfig.__dataclass_fields__}
    try:
        return KVConfig(**known)
    except TypeError as exc:
        raise Corrupted(
            f"kv settings in the vault are unreadable ({exc}); reset them with vault.kv.configure()"
        ) from exc
