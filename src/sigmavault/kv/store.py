"""``vault.kv``: save and restore transformer KV caches keyed by token prefix.

A prefix is split into chunks of ``chunk_tokens`` (the last may be short); each chunk is a file
under ``<vault>/kv/`` and a row in SQLite, keyed by a chained SHA-256 (see :mod:`.keys`), so a
new process finds what an old one stored. Reads go through a RAM tier under a byte budget.
Writes go to disk first (file, fsync, rename, then the row), so the RAM tier only ever caches
chunks that are durable, and a crash can leave at most an orphan file that ``gc`` removes.

Prefixes are served in whole stored chunks: a prompt that ends inside a stored chunk (or leaves
it) gets the chunks before that point, the same granularity as vLLM's and LMCache's blocks. The
short last chunk of a saved prefix is found too, through an indexed probe of its first tokens.

A ``kv_ref`` (``"<hex key of the last chunk>:<tokens>"``) names a stored prefix; put it on a
unit (``collection.add(..., kv_ref=saved.ref)``) and ``vault.kv.load_ref(model, unit)`` gives
back the context's token ids and a ready cache in one call.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from sigmavault import validate
from sigmavault.errors import Corrupted, InvalidInput, NotFound, ReadOnly, VaultError
from sigmavault.kv import maintenance
from sigmavault.kv.arrays import KVArrays, concat
from sigmavault.kv.chunkfile import (
    Chunk,
    decode_chunk,
    encode_chunk,
    read_chunk,
    seal_payload,
    write_chunk,
)
from sigmavault.kv.codecs import Codec, codec_from_spec
from sigmavault.kv.disk import DiskTier
from sigmavault.kv.index import ChunkRow, KVIndex
from sigmavault.kv.keys import (
    ROOT,
    Fingerprint,
    TokenIds,
    chain,
    chunk_key,
    chunk_spans,
    format_ref,
    leads,
    parse_ref,
    tokens_of,
)
from sigmavault.kv.model import KVConfig, Restored, Saved, config_from
from sigmavault.kv.policies import POLICIES
from sigmavault.kv.prune import Loaded, Pruning, prune_cache, pruning_from
from sigmavault.kv.quality import Quality, evaluate, gate
from sigmavault.kv.remote import RemoteTier, fetch_chain, redact, remote_settings
from sigmavault.kv.tiers import RamTier
from sigmavault.store import Database
from sigmavault.store.blobdir import remove_blob
from sigmavault.types import CheckReport

__all__ = ["KVConfig", "KVStore", "Loaded", "Restored", "Saved"]

_FLUSH_EVERY = 512  # pending access records before they are written to SQLite
_FLUSH_SECONDS = 30.0
_UNSET: Any = object()


class KVStore:
    """The KV cache part of a vault (``vault.kv``). Thread-safe; other processes may share it."""

    def __init__(self, db: Database, root: Path) -> None:
        self._db = db
        self._lock = threading.RLock()
        self._index = KVIndex(db)
        self._config = config_from(self._index.settings())
        self._ram = RamTier(self._config.ram_bytes, self._config.policy)
        self._disk = DiskTier(db, root, self._index, self._ram)
        self._touches: dict[bytes, tuple[float, int]] = {}
        self._pending: Counter[str] = Counter()
        self._damage_seen: dict[bytes, tuple[float, str]] = {}  # read-only vaults: damage noted in memory
        self._session: Counter[str] = Counter()
        self._flushed_at = time.monotonic()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._remote: RemoteTier | None = None
        self._connect_remote()

    # -- settings ---------------------------------------------------------------------------

    @property
    def config(self) -> KVConfig:
        return self._config

    def configure(
        self,
        *,
        codec: str | Codec | None = None,
        chunk_tokens: int | None = None,
        ram_bytes: int | None = None,
        disk_bytes: int | None = _UNSET,
        policy: str | None = None,
        remote: str | None = _UNSET,
        remote_ttl: int | str | None = None,
        remote_prefix: str | None = None,
        remote_timeout: float | None = None,
        prune: str | None = _UNSET,
        ratio: float | None = None,
        budget: int | None = None,
        max_kl: float | None = _UNSET,
    ) -> KVConfig:
        """Change settings and persist them in the vault (this process only when read-only).

        ``disk_bytes=None`` removes the disk budget; lowering it evicts at once. ``prune`` (with ``ratio`` or
        ``budget``) prunes what ``save`` stores and makes ``load`` look for pruned prefixes first; ``prune=None``
        stops it. ``max_kl`` gates pruned saves on their measured mean KL (``None``: no gate). ``remote`` (a
        ``redis://`` URL, ``None`` to turn it off) adds a shared tier behind disk (:mod:`.remote`):
        ``remote_ttl`` (``"7d"`` or seconds) is set on every key, ``remote_prefix`` names the tenant,
        ``remote_timeout`` bounds every Redis call in seconds.
        """
        url = {} if remote is _UNSET else {"remote": remote}
        changes: dict[str, Any] = remote_settings(remote_ttl, remote_prefix, remote_timeout, **url)
        if prune is not _UNSET or ratio is not None or budget is not None:
            base = self._config.prune if prune is _UNSET else prune
            pruning = pruning_from(base, ratio=ratio, budget=budget)
            changes["prune"] = None if pruning is None else pruning.spec
        if max_kl is not _UNSET:
            if max_kl is not None and not (isinstance(max_kl, int | float) and max_kl >= 0):
                raise InvalidInput(f"max_kl is a mean KL divergence in nats >= 0 (or None), got {max_kl!r}")
            changes["max_kl"] = None if max_kl is None else float(max_kl)
        if codec is not None:
            changes["codec"] = codec_from_spec(codec).spec
        if chunk_tokens is not None:
            changes["chunk_tokens"] = _positive(chunk_tokens, "chunk_tokens")
        if ram_bytes is not None:
            changes["ram_bytes"] = _non_negative(ram_bytes, "ram_bytes")
        if disk_bytes is not _UNSET:
            changes["disk_bytes"] = None if disk_bytes is None else _non_negative(disk_bytes, "disk_bytes")
        if policy is not None:
            changes["policy"] = validate.choice(policy, "policy (eviction policy)", POLICIES)
        with self._lock:
            self._config = replace(self._config, **changes)
            self._ram.reconfigure(budget=self._config.ram_bytes, policy=self._config.policy)
            if any(name.startswith("remote") for name in changes):
                self._connect_remote()
            if changes and not self._db.readonly and self._index.ready:
                self._index.save_settings(changes)
                if self._config.disk_bytes is not None:
                    self._commit([], self._config.disk_bytes, keep=frozenset())
        return self._config

    def _codec(self, codec: str | Codec | None) -> Codec:
        return codec_from_spec(self._config.codec if codec is None else codec)

    # -- save -------------------------------------------------------------------------------

    def save(
        self,
        model: Any,
        input_ids: Any,
        cache: Any,
        *,
        codec: str | Codec | None = None,
        prune: str | Pruning | None = _UNSET,
        ratio: float | None = None,
        budget: int | None = None,
        max_kl: float | None = _UNSET,
    ) -> Saved:
        """Store the chunks of ``input_ids`` that ``cache`` covers and that are not stored yet.

        ``model`` is a transformers model or a :class:`Fingerprint`; ``cache`` a ``DynamicCache``
        (or a list of ``(keys, values)`` per layer, each ``[1, kv_heads, tokens, head_dim]``).
        With ``prune`` (default: the configured one) the whole prefix is pruned and stored as one entry, keyed
        apart from lossless prefixes; with ``max_kl`` set, a pruning whose measured mean KL exceeds it is refused
        and the lossless cache (in ``codec``) is stored instead, ``Saved.refused`` saying why.
        """
        from sigmavault.kv.hf import cache_source, fingerprint_of

        fp = fingerprint_of(model)
        length, source = cache_source(cache, fp)
        tokens, chosen = tokens_of(input_ids), self._codec(codec)
        pruning = self._pruning(prune, ratio, budget)
        if pruning is None:
            return self._save(fp, tokens, length, source, chosen)
        n = min(len(tokens), length)
        kl, refused = gate(model, tokens, cache, n, pruning, self._config.max_kl if max_kl is _UNSET else max_kl)
        if refused is not None or n == 0:
            if refused is not None:
                self._bump("prune_refused")
            return replace(self._save(fp, tokens, length, source, chosen), kl=kl, refused=refused)
        kept, span = cache_source(prune_cache(model, tokens, cache, pruning, tokens=n).pairs, fp)
        return replace(self._save_whole(fp, tokens[:n], span(0, kept), chosen, pruning), kl=kl)

    def evaluate(
        self,
        model: Any,
        input_ids: Any,
        *,
        prune: str | Pruning | None = _UNSET,
        ratio: float | None = None,
        budget: int | None = None,
        codec: str | Codec | None = None,
        new_tokens: int = 32,
        heldout: int = 64,
    ) -> Quality:
        """What pruning (default: the configured one) and ``codec`` cost on ``input_ids``: top-1 agreement and
        mean KL over ``new_tokens`` greedy tokens, and the perplexity of the last ``heldout`` tokens, against the
        lossless cache (see :mod:`.quality`). Stores nothing."""
        pruning = self._pruning(prune, ratio, budget)
        return evaluate(
            model, input_ids, pruning=pruning, codec=self._codec(codec), new_tokens=new_tokens, heldout=heldout
        )

    def _pruning(self, prune: Any, ratio: float | None, budget: int | None) -> Pruning | None:
        """The pruning a call asks for: its own, else the configured one (with the call's ratio/budget)."""
        base = self._config.prune if prune is _UNSET else prune
        return pruning_from(base, ratio=ratio, budget=budget)

    def _save_whole(self, fp: Fingerprint, tokens: TokenIds, kv: KVArrays, codec: Codec, pruning: Pruning) -> Saved:
        """Store a pruned prefix as one entry: all its token ids and ``kv.tokens`` slots, in its own keyspace."""
        self._writable()
        spec = _pruned_spec(codec, pruning)
        fpd = fp.digest(spec)
        n = len(tokens)
        key = chunk_key(ROOT, fpd, tokens)
        done = Saved(ref=format_ref(key, n), tokens=n, new_chunks=0, new_bytes=0, evicted=0)
        done = replace(done, prune=pruning.spec, kept=kv.tokens)
        with self._lock:
            if self._index.rows([key]):
                return done
            payload = encode_chunk(codec, kv, tokens=tokens, start=0, parent=ROOT, fingerprint=fpd, pruned=True)
            size = write_chunk(self._path(key), key, payload, self._db.cipher)
            stamp = time.time()
            row = ChunkRow(key, ROOT, fpd, fp.model, spec, 0, n, leads(fpd, tokens)[-1], size, stamp, stamp, 0)
            self._pending.update(saves=1, chunks_saved=1, bytes_saved=size, pruned_saves=1)
            evicted = self._commit([row], self._config.disk_bytes, keep=frozenset([key]))
            if not evicted or evicted[-1].key != key:
                self._cache(key, payload, n)
        return replace(done, new_chunks=1, new_bytes=size, evicted=len(evicted))

    def save_arrays(
        self, fingerprint: Fingerprint, input_ids: Any, kv: KVArrays, *, codec: str | Codec | None = None
    ) -> Saved:
        """``save`` for runtimes without torch: ``kv`` holds ``[layers, heads, tokens, head_dim]`` arrays."""
        _need(fingerprint, Fingerprint, "fingerprint")
        _need(kv, KVArrays, "kv")
        want = (fingerprint.layers, fingerprint.kv_heads, fingerprint.head_dim)
        got = (kv.keys.shape[0], kv.keys.shape[1], kv.keys.shape[3])
        if got != want or kv.dtype != fingerprint.dtype:
            raise InvalidInput(
                f"KV arrays are {kv.dtype} layers x heads x head_dim {got}; the fingerprint says "
                f"{fingerprint.dtype} {want}"
            )
        return self._save(fingerprint, tokens_of(input_ids), kv.tokens, kv.span, self._codec(codec))

    def _save(
        self, fp: Fingerprint, tokens: TokenIds, length: int, source: Callable[[int, int], KVArrays], codec: Codec
    ) -> Saved:
        self._writable()
        n = min(len(tokens), length)
        if n == 0:
            return Saved(ref=None, tokens=0, new_chunks=0, new_bytes=0, evicted=0)
        fpd = fp.digest(codec.spec)
        spans = list(chunk_spans(n, self._config.chunk_tokens))
        keys = chain(fpd, tokens, spans)
        with self._lock:
            have = self._index.rows(keys)
            rows: list[ChunkRow] = []
            fresh: dict[bytes, bytes] = {}
            stamp = time.time()
            for (start, end), key, parent in zip(spans, keys, [ROOT, *keys[:-1]], strict=True):
                if key in have:
                    continue
                payload = encode_chunk(
                    codec, source(start, end), tokens=tokens[start:end], start=start, parent=parent, fingerprint=fpd
                )
                size = write_chunk(self._path(key), key, payload, self._db.cipher)
                lead = leads(fpd, tokens[start:end])[-1]
                rows.append(
                    ChunkRow(key, parent, fpd, fp.model, codec.spec, start, end - start, lead, size, stamp, stamp, 0)
                )
                fresh[key] = payload
            self._pending.update(saves=1, chunks_saved=len(rows), bytes_saved=sum(r.bytes for r in rows))
            evicted = self._commit(rows, self._config.disk_bytes, keep=frozenset(keys))
            gone = {row.key for row in evicted}
            for row in rows:
                if row.key not in gone:
                    self._cache(row.key, fresh[row.key], row.tokens)
            self._remote_put(fpd, [(row.key, fresh[row.key]) for row in rows])
        return Saved(
            ref=format_ref(keys[-1], n),
            tokens=n,
            new_chunks=len(rows),
            new_bytes=sum(r.bytes for r in rows),
            evicted=len(evicted),
        )

    def _commit(self, rows: list[ChunkRow], budget: int | None, *, keep: frozenset[bytes]) -> list[ChunkRow]:
        """Insert rows, flush access records, and evict down to the disk budget; one transaction."""
        with self._db.write():
            self._index.insert(rows)
            self._flush_locked()
            victims = [] if budget is None else self._index.victims(budget, keep=keep)
            self._index.delete(r.key for r in victims)
        self._forget(victims)
        if victims:
            self._bump("disk_evictions", len(victims))
        return victims

    def _forget(self, rows: list[ChunkRow]) -> None:
        """After their rows are gone: drop files and RAM copies (a crash here leaves orphans)."""
        self._disk.forget(rows)

    # -- load -------------------------------------------------------------------------------

    def load(
        self,
        model: Any,
        input_ids: Any,
        *,
        codec: str | Codec | None = None,
        prune: str | Pruning | None = _UNSET,
        ratio: float | None = None,
        budget: int | None = None,
    ) -> Loaded:
        """``(cache, n)``: a ``DynamicCache`` for the longest stored prefix of ``input_ids``.

        ``n`` tokens are covered, and always fewer than ``len(input_ids)``, so generation has at
        least one token to compute. Pass ``cache`` to ``model.generate(input_ids, cache=cache)``.
        On a miss the cache is empty and ``n`` is 0. With ``prune`` (default: the configured one) a
        pruned prefix longer than any lossless one is served; the result's ``prune``/``kept`` say so.
        """
        from sigmavault.kv.hf import build_cache, fingerprint_of

        fp = fingerprint_of(model)
        chosen = self._codec(codec)
        pruning = self._pruning(prune, ratio, budget)
        if pruning is not None:
            whole = self._load_whole(fp, tokens_of(input_ids), chosen, pruning)
            if whole is not None:
                kv, n = whole
                return Loaded(
                    build_cache(model, fp, [kv], kv.tokens), n, kept=kv.tokens, prune=pruning.spec, codec=chosen.spec
                )
        parts, n = self._load_parts(fp, input_ids, codec)
        return Loaded(build_cache(model, fp, parts, n), n, kept=n, prune=None, codec=chosen.spec)

    def _load_whole(
        self, fp: Fingerprint, tokens: TokenIds, codec: Codec, pruning: Pruning
    ) -> tuple[KVArrays, int] | None:
        """The longest pruned prefix of ``tokens`` stored with ``pruning``, if longer than any lossless one."""
        fpd = fp.digest(_pruned_spec(codec, pruning))
        with self._lock:
            lossless = self.lookup(fp, tokens, codec=codec)
            for row in self._index.children(ROOT, fpd, leads(fpd, tokens), most=len(tokens) - 1):
                if row.tokens <= lossless or row.key != chunk_key(ROOT, fpd, tokens[: row.tokens]):
                    continue
                chunks = self._read_rows([row])
                if not chunks or not np.array_equal(chunks[0].tokens, tokens[: row.tokens]):
                    return None
                self._pending.update(lookups=1, tokens_requested=len(tokens))
                self._bump("hits")
                self._bump("pruned_hits")
                self._bump("tokens_served", row.tokens)
                self._maybe_flush()
                return chunks[0].kv, row.tokens
        return None

    def load_arrays(
        self, fingerprint: Fingerprint, input_ids: Any, *, codec: str | Codec | None = None
    ) -> tuple[KVArrays | None, int]:
        """``load`` without torch: the KV arrays of the longest stored prefix (``None`` on a miss)."""
        _need(fingerprint, Fingerprint, "fingerprint")
        parts, n = self._load_parts(fingerprint, input_ids, codec)
        return (concat(parts).span(0, n), n) if n else (None, 0)

    def _load_parts(self, fp: Fingerprint, input_ids: Any, codec: str | Codec | None) -> tuple[list[KVArrays], int]:
        """The chunks' KV (the last may reach past ``n``) and ``n``, the tokens to serve."""
        tokens = tokens_of(input_ids)
        spec = self._codec(codec).spec
        with self._lock:
            rows = self._remote_extend(fp, spec, tokens, self._match(fp.digest(spec), tokens))
            parts = self._read_chain(fp, rows, tokens)
            n = min(sum(p.tokens for p in parts), len(tokens) - 1)
            self._pending.update(lookups=1, tokens_requested=len(tokens))
            if n <= 0:
                self._bump("misses")
                return [], 0
            self._bump("hits")
            self._bump("tokens_served", n)
            self._maybe_flush()
        return parts, n

    def lookup(self, model: Any, input_ids: Any, *, codec: str | Codec | None = None) -> int:
        """How many tokens ``load`` would serve (without reading a chunk or counting a lookup)."""
        fp = _fingerprint(model)
        tokens = tokens_of(input_ids)
        rows = self._match(fp.digest(self._codec(codec).spec), tokens)
        return max(0, min(rows[-1].end if rows else 0, len(tokens) - 1))

    def ref(self, model: Any, input_ids: Any, *, codec: str | Codec | None = None) -> str | None:
        """The ``kv_ref`` of the longest stored prefix of ``input_ids`` (all of it if stored), or None."""
        fp = _fingerprint(model)
        rows = self._match(fp.digest(self._codec(codec).spec), tokens_of(input_ids))
        return format_ref(rows[-1].key, rows[-1].end) if rows else None

    def load_ref(self, model: Any, ref: Any) -> Restored:
        """The prefix a ``kv_ref`` (or a unit carrying one) names: its token ids and a full cache.

        The cache covers every token of the prefix; append at least one new token before
        generating from it. Raises :class:`NotFound` when the prefix was evicted or dropped.
        """
        from sigmavault.kv.hf import build_cache, fingerprint_of

        fp = fingerprint_of(model)
        kv, tokens, text = self.load_ref_arrays(fp, ref)
        cache = build_cache(model, fp, [kv], kv.tokens)
        restored = Restored(cache=cache, input_ids=tokens, tokens=len(tokens), ref=text, kept=kv.tokens)
        return replace(restored, prune=self._index.chain(parse_ref(text)[0])[0].codec.partition(";prune=")[2] or None)

    def load_ref_arrays(self, fingerprint: Fingerprint, ref: Any) -> tuple[KVArrays, list[int], str]:
        """``load_ref`` without torch: ``(kv, token_ids, ref)``."""
        _need(fingerprint, Fingerprint, "fingerprint")
        if not isinstance(ref, str) and hasattr(ref, "kv_ref"):
            if ref.kv_ref is None:
                raise NotFound(f"unit {getattr(ref, 'id', '?')!r} has no kv_ref; save its KV and set kv_ref first")
            ref = ref.kv_ref
        last, n = parse_ref(ref)
        with self._lock:
            self._pending.update(lookups=1, tokens_requested=n)
            rows = self._index.chain(last)
            if not rows or rows[-1].key != last or rows[0].parent != ROOT:
                self._bump("misses")
                raise NotFound(f"kv_ref {ref} is not stored (evicted, cleared or never saved); save the prefix again")
            if rows[-1].end != n:
                raise InvalidInput(f"kv_ref {ref} says {n} tokens but the stored prefix has {rows[-1].end}")
            if fingerprint.digest(rows[0].codec) != rows[0].fp:
                raise InvalidInput(f"kv_ref {ref} was stored for another model ({rows[0].model}), not this one")
            chunks = self._read_rows(rows)
            if len(chunks) != len(rows):
                self._bump("misses")
                raise NotFound(
                    f"part of kv_ref {ref} was corrupted and dropped; recompute the prefix and save it again"
                )
            self._bump("hits")
            self._bump("tokens_served", n)
            self._maybe_flush()
        tokens = [int(t) for c in chunks for t in c.tokens]
        return concat([c.kv for c in chunks]), tokens, ref

    def _match(self, fpd: bytes, tokens: TokenIds) -> list[ChunkRow]:
        """Index rows of the longest stored prefix of ``tokens``: full chunks, then a short one."""
        size = self._config.chunk_tokens
        full = [s for s in chunk_spans(len(tokens), size) if s[1] - s[0] == size]
        keys = chain(fpd, tokens, full)
        found = self._index.rows(keys)
        matched: list[ChunkRow] = []
        for key in keys:
            row = found.get(key)
            if row is None:
                break
            matched.append(row)
        parent, pos = (matched[-1].key, matched[-1].end) if matched else (ROOT, 0)
        if pos < len(tokens):
            rest = tokens[pos:]
            for row in self._index.children(parent, fpd, leads(fpd, rest), most=len(rest)):
                if row.key == chunk_key(parent, fpd, rest[: row.tokens]):
                    matched.append(row)
                    break
        return matched

    def _read_chain(self, fp: Fingerprint, rows: list[ChunkRow], tokens: TokenIds) -> list[KVArrays]:
        out = []
        for chunk in self._read_rows(rows):
            count = len(chunk.tokens)
            same = np.array_equal(chunk.tokens, tokens[chunk.start : chunk.start + count])
            if not same or chunk.kv.keys.shape != (fp.layers, fp.kv_heads, count, fp.head_dim):
                break  # NOTE: cannot happen unless SHA-256 collides; never feed such a chunk
            out.append(chunk.kv)
        return out

    def _read_rows(self, rows: list[ChunkRow]) -> list[Chunk]:
        """Decoded chunks in order, stopping at the first one that is missing or damaged."""
        if len(rows) > 1:
            # NOTE: reading, checksumming and decoding release the GIL for large buffers, so the
            # chunks of one prefix are fetched side by side; the pool starts on first use.
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="sv-kv")
            futures = [self._pool.submit(self._fetch, row) for row in rows]
            results = [_outcome(f) for f in futures]
        else:
            results = [_outcome_of(self._fetch, row) for row in rows]
        out: list[Chunk] = []
        stamp = time.time()
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, Corrupted):
                self._drop(row, str(result))
                break
            tier, payload, chunk = result
            self._bump(tier)
            if tier == "disk_hits":
                self._cache(row.key, payload, row.tokens)
            out.append(chunk)
            _, hits = self._touches.get(row.key, (0.0, 0))
            self._touches[row.key] = (stamp, hits + 1)
        return out

    def _fetch(self, row: ChunkRow) -> tuple[str, bytes, Chunk]:
        """One chunk from RAM or its file, decoded and checked against its row (any thread)."""
        payload = self._ram.get(row.key)
        tier = "ram_hits"
        if payload is None:
            tier = "disk_hits"
            payload = read_chunk(self._path(row.key), row.key, self._db.cipher)
        chunk = decode_chunk(payload)
        where = (chunk.start, len(chunk.tokens), chunk.parent, chunk.fingerprint)
        if where != (row.start, row.tokens, row.parent, row.fp):
            raise Corrupted(f"KV chunk {row.key.hex()} does not match its index row")
        return tier, payload, chunk

    def _drop(self, row: ChunkRow, reason: str) -> None:
        """Forget a damaged chunk everywhere, and remember the damage for ``check()`` until ``gc``.

        The caller recomputes the chunk and may save it again; a read-only vault remembers the
        damage in this process only (it cannot write).
        """
        self._bump("corrupted")
        self._ram.discard(row.key)
        now = time.time()
        if self._db.readonly or not self._index.ready:
            self._damage_seen[row.key] = (now, reason)
            return
        with self._db.write():
            self._index.delete([row.key])
            self._index.note_damage(row.key, reason, now)
        remove_blob(self._path(row.key))

    def _cache(self, key: bytes, payload: bytes, tokens: int) -> None:
        before = self._ram.evictions
        self._ram.put(key, payload, cost=tokens)
        if self._ram.evictions != before:
            self._bump("ram_evictions", self._ram.evictions - before)

    # -- stats ------------------------------------------------------------------------------

    def _bump(self, name: str, by: int = 1) -> None:
        self._pending[name] += by
        self._session[name] += by

    def stats(self) -> dict[str, Any]:
        """Counters since the vault was created (this process's too), and bytes per tier."""
        with self._lock:
            self._take_remote_counters()
            totals: Counter[str] = Counter(self._index.counters())
            totals.update(self._pending)
            disk = self._index.totals()
            ram = {
                "bytes": self._ram.used,
                "budget": self._ram.budget,
                "chunks": len(self._ram),
                "policy": self._ram.policy_name,
            }
        lookups = totals["hits"] + totals["misses"]
        names = (
            "hits",
            "misses",
            "tokens_served",
            "tokens_requested",
            "ram_hits",
            "disk_hits",
            "saves",
            "chunks_saved",
            "bytes_saved",
            "corrupted",
            "ram_evictions",
            "disk_evictions",
            "pruned_saves",
            "pruned_hits",
            "prune_refused",
        )
        return {
            **{name: int(totals[name]) for name in names},
            "hit_rate": totals["hits"] / lookups if lookups else 0.0,
            "token_hit_rate": totals["tokens_served"] / max(1, totals["tokens_requested"]),
            "ram": ram,
            "disk": {**disk, "budget": self._config.disk_bytes},
            "remote": self._remote_stats(totals),
            "config": {**asdict(self._config), "remote": redact(self._config.remote or "") or None},
            "session": dict(self._session),
        }

    def _maybe_flush(self) -> None:
        if len(self._touches) >= _FLUSH_EVERY or time.monotonic() - self._flushed_at > _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write batched access times and counters to SQLite (done on save, close and periodically)."""
        with self._lock:
            if self._db.readonly or not self._index.ready or self._db.closed:
                return
            if self._touches or self._pending:
                with self._db.write():
                    self._flush_locked()

    def _flush_locked(self) -> None:
        self._index.record(self._touches, self._pending)
        self._touches.clear()
        self._pending.clear()
        self._flushed_at = time.monotonic()

    # -- housekeeping -----------------------------------------------------------------------

    def clear(self, *, model: Any = None) -> int:
        """Remove every stored chunk (or only those of ``model``); returns how many."""
        self._writable()
        with self._lock:
            return maintenance.clear(self._disk, model)

    def gc(
        self, *, verify: bool = False, grace: float = 60.0, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, int]:
        """Drop rows without a valid file (``verify``: or failing checksum/key), unreachable chunks
        and orphan files older than ``grace`` seconds; enforce the disk budget."""
        validate.flag(verify, "verify"), validate.number(grace, "grace", lo=0.0)
        self._writable()
        with self._lock:
            self.flush()
            budget = self._config.disk_bytes
            evict = None if budget is None else lambda: self._commit([], budget, keep=frozenset())
            out = maintenance.collect(self._disk, verify=verify, grace=grace, evict=evict, progress=progress)
            # NOTE: the chunks noted as damaged while serving were dropped then; this gc checked the
            # rest, so the noted damage is repaired (the prefixes are recomputed on their next save).
            out["damage_acknowledged"] = self._index.clear_damage() + len(self._damage_seen)
            self._damage_seen.clear()
            return out

    def check(self, report: CheckReport) -> None:
        """Verify every chunk file against its row (checksum, header, key), and report damage found
        while serving since the last ``gc``; see ``gc`` to repair."""
        with self._lock:
            noted = {**{k: (t, r) for k, t, r in self._index.damage()}, **self._damage_seen}
            for key, (found_at, reason) in sorted(noted.items(), key=lambda kv: kv[1][0])[:20]:
                when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(found_at))
                report.problems.append(
                    f"kv: chunk {key.hex()[:16]} was found damaged while serving at {when} ({reason}) and dropped; "
                    "`sigmavault kv gc --verify PATH` checks the rest and clears this report"
                )
            if len(noted) > 20:
                report.problems.append(f"kv: {len(noted) - 20} more chunks were found damaged while serving")
            maintenance.verify(self._disk, report)

    def close(self) -> None:
        """Flush access records and counters; idempotent."""
        if self._closed:
            return
        # NOTE: access times and counters are advisory; never fail a close over them.
        with contextlib.suppress(VaultError):
            self.flush()
        self._ram.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._remote is not None:
            self._remote.close()
        self._closed = True

    # -- remote tier ----------------------------------------------------------------------------

    def _connect_remote(self) -> None:
        if self._remote is not None:
            self._remote.close()
        cfg = self._config
        self._remote = None
        if cfg.remote:
            self._remote = RemoteTier(
                cfg.remote, ttl=cfg.remote_ttl, prefix=cfg.remote_prefix, timeout=cfg.remote_timeout
            )

    def _remote_put(self, fpd: bytes, chunks: list[tuple[bytes, bytes]]) -> None:
        if self._remote is None or not chunks:
            return
        cipher = self._db.cipher
        self._remote.put(fpd, [(k, seal_payload(k, p, cipher)) for k, p in chunks], sealed=cipher is not None)
        self._take_remote_counters()

    def _remote_extend(self, fp: Fingerprint, spec: str, tokens: TokenIds, rows: list[ChunkRow]) -> list[ChunkRow]:
        """``rows`` plus the full chunks after them that Redis holds, checked and promoted to disk and RAM.

        A frozen vault reads only its local tiers (it cannot promote, and RAM holds only durable chunks).
        """
        if self._remote is None or self._db.readonly or not self._index.ready:
            return rows
        fpd = fp.digest(spec)
        size = self._config.chunk_tokens
        if rows and rows[-1].tokens != size:
            return rows  # NOTE: the local match ended on a short chunk; nothing can follow it.
        start, parent = (rows[-1].end, rows[-1].key) if rows else (0, ROOT)
        spans = [s for s in chunk_spans(len(tokens), size) if s[0] >= start and s[1] - s[0] == size]
        promoted: list[ChunkRow] = []
        fresh: dict[bytes, bytes] = {}
        stamp = time.time()
        for (lo, hi), key, up, payload in fetch_chain(self._remote, self._db.cipher, fpd, tokens, spans, parent):
            size_on_disk = write_chunk(self._path(key), key, payload, self._db.cipher)
            lead = leads(fpd, tokens[lo:hi])[-1]
            promoted.append(ChunkRow(key, up, fpd, fp.model, spec, lo, hi - lo, lead, size_on_disk, stamp, stamp, 0))
            fresh[key] = payload
        self._take_remote_counters()
        if not promoted:
            return rows
        evicted = self._commit(promoted, self._config.disk_bytes, keep=frozenset(fresh))
        gone = {row.key for row in evicted}
        for row in promoted:
            if row.key not in gone:
                self._cache(row.key, fresh[row.key], row.tokens)
        return rows + [row for row in promoted if row.key not in gone]

    def _take_remote_counters(self) -> None:
        if self._remote is not None:
            for name, by in self._remote.take_counters().items():
                self._bump(name, by)

    def _remote_stats(self, totals: Counter[str]) -> dict[str, Any]:
        names = ("hits", "misses", "bytes_read", "bytes_written", "chunks_written", "errors", "corrupted", "skipped")
        counts = {name: int(totals[f"remote_{name}"]) for name in names}
        return {"enabled": self._remote is not None, "url": redact(self._config.remote or "") or None, **counts}

    # -- internals ----------------------------------------------------------------------------

    def _path(self, key: bytes) -> Path:
        return self._disk.path(key)

    def _writable(self) -> None:
        if self._db.readonly or not self._index.ready:
            raise ReadOnly("this vault was opened read-only (frozen=True); open it without frozen to store KV")


_Fetched = tuple[str, bytes, Chunk]


def _outcome(future: Future[_Fetched]) -> _Fetched | Corrupted:
    try:
        return future.result()
    except Corrupted as exc:
        return exc


def _outcome_of(fetch: Callable[[ChunkRow], _Fetched], row: ChunkRow) -> _Fetched | Corrupted:
    try:
        return fetch(row)
    except Corrupted as exc:
        return exc


def _pruned_spec(codec: Codec, pruning: Pruning) -> str:
    """The keyspace (and the index's codec column) of pruned prefixes: the codec and the pruning."""
    return f"{codec.spec};prune={pruning.spec}"


def _fingerprint(model: Any) -> Fingerprint:
    if isinstance(model, Fingerprint):
        return model
    from sigmavault.kv.hf import fingerprint_of

    return fingerprint_of(model)


def _positive(value: Any, name: str) -> int:
    return validate.integer(value, name, lo=1, hi=1 << 30)  # type: ignore[no-any-return]


def _non_negative(value: Any, name: str) -> int:
    return validate.integer(value, f"{name} (bytes)", lo=0, hi=1 << 62)  # type: ignore[no-any-return]


def _need(value: Any, kind: type, name: str) -> None:
    if not isinstance(value, kind):
        raise InvalidInput(f"{name} must be a {kind.__name__}, got {validate.show(value)}")
