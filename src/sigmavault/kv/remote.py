"""The remote KV tier: chunk payloads in a shared Redis, behind the RAM and disk tiers.

``vault.kv.configure(remote="redis://host:6379/0", remote_ttl="7d")`` turns it on. Serving
processes on different machines that point at one Redis warm-start each other: a save writes its
new chunks through to Redis, and a load that runs out of local chunks asks Redis for the next ones
and promotes what it finds to the local disk and RAM tiers.

Layout (every key has the TTL; ``<ns>`` is ``<prefix>:kv:<first 32 hex of the fingerprint digest>``,
so tenants and models never share a key, and the chunk key already chains the token prefix)::

    <ns>:<chunk key hex>        meta: magic, version, flags, part count, payload length, SHA-256
    <ns>:<chunk key hex>:<i>    part i of the payload (at most PART_BYTES)

Every value is checked before use: all parts present, total length and SHA-256 equal to the
meta record, and then (by the store) the decoded chunk's position, parent and tokens equal to
what the request expects. A damaged or partial value is dropped (deleted from Redis) and counted.

Redis down or slow never fails a request: every call has a socket timeout, any error is counted,
warned about, and puts the tier to rest for ``COOLDOWN`` seconds, during which loads and saves
use only the local tiers.
"""

from __future__ import annotations

import hashlib
import re
import struct
import threading
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from sigmavault.errors import InvalidInput, VaultError
from sigmavault.kv.chunkfile import decode_chunk, open_payload
from sigmavault.kv.keys import TokenIds, chain
from sigmavault.store import Cipher

__all__ = ["COOLDOWN", "PART_BYTES", "RemoteTier", "fetch_chain", "parse_ttl", "redact", "remote_settings"]

# NOTE: 512 KiB parts. Redis executes one command at a time, so a single multi-megabyte value
# holds every other client for the time of its copy; 512 KiB copies in ~0.1 ms at memory speed and
# stays far below Redis's client query-buffer and bulk-length limits. A 256-token chunk of a 7B
# model in fp16 (32 layers x 8 KV heads x 128 x 2 x 2 bytes x 256 = 32 MiB) becomes 64 parts, all
# fetched by one MGET, so the split costs no extra round trip.
PART_BYTES = 512 * 2**10
COOLDOWN = 5.0  # seconds the tier rests after an error (no request waits on a dead server)
_MAGIC = b"SVKVRMT1"
_META = struct.Struct("<8sBIQ32s")  # magic, flags, parts, payload length, SHA-256 of the payload
_SEALED = 1
_TTL = re.compile(r"\s*([0-9]+)\s*([smhdw]?)\s*")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_ttl(value: Any) -> int:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"`` or a number of seconds, as seconds (at least 1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _TTL.fullmatch(str(value)) if isinstance(value, str) else None
        if match is None:
            raise InvalidInput(f"remote_ttl must be seconds or e.g. '7d', '12h', '30m'; got {value!r}")
        seconds = int(match.group(1)) * _TTL_UNITS[match.group(2)]
    if seconds < 1:
        raise InvalidInput(f"remote_ttl must be at least 1 second, got {value!r}")
    return seconds


def redact(url: str) -> str:
    """The URL without its password (safe to print in stats)."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


class RemoteTier:
    """Pipelined reads and writes of chunk payloads in one Redis database; never raises on I/O.

    ``counters`` collects ``remote_*`` counts for the store to fold into its own. Thread-safe.
    """

    def __init__(self, url: str, *, ttl: int, prefix: str, timeout: float) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise InvalidInput("the Redis KV tier needs redis-py: pip install 'sigmavault[redis]'") from exc
        try:
            self._client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
            )
        except ValueError as exc:
            raise InvalidInput(f"remote must be a redis:// URL, got {redact(url)!r}: {exc}") from exc
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.url = url
        self.ttl = ttl
        self.prefix = prefix
        self.timeout = timeout
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._resting_until = 0.0

    # -- keys -------------------------------------------------------------------------------

    def _key(self, fpd: bytes, key: bytes) -> str:
        return f"{self.prefix}:kv:{fpd.hex()[:32]}:{key.hex()}"

    # -- writes -----------------------------------------------------------------------------

    def put(self, fpd: bytes, chunks: Sequence[tuple[bytes, bytes]], *, sealed: bool) -> None:
        """Write ``(chunk key, payload)`` pairs through, parts first and each meta last, in one pipeline."""
        if not chunks or not self._awake():
            return
        pipe = self._client.pipeline(transaction=False)
        written = 0
        for key, payload in chunks:
            name = self._key(fpd, key)
            parts = [payload[i : i + PART_BYTES] for i in range(0, len(payload), PART_BYTES)] or [b""]
            for i, part in enumerate(parts):
                pipe.set(f"{name}:{i}", part, ex=self.ttl)
            flags = _SEALED if sealed else 0
            meta = _META.pack(_MAGIC, flags, len(parts), len(payload), hashlib.sha256(payload).digest())
            pipe.set(name, meta, ex=self.ttl)
            written += len(payload)
        if self._run(pipe) is not None:
            self._count(remote_chunks_written=len(chunks), remote_bytes_written=written)

    # -- reads ------------------------------------------------------------------------------

    def get(self, fpd: bytes, keys: Sequence[bytes]) -> list[tuple[bytes, bool]]:
        """Checked ``(payload, sealed)`` for the leading run of ``keys`` that Redis holds (two round trips).

        Stops at the first chunk that is missing or fails its check (that one is deleted and counted).
        """
        if not keys or not self._awake():
            return []
        names = [self._key(fpd, k) for k in keys]
        metas = self._call(lambda: self._client.mget(names))
        if metas is None:
            return []
        wanted: list[tuple[str, int, int, int, bytes]] = []
        for name, raw in zip(names, metas, strict=True):
            if raw is None:
                break
            meta = _parse_meta(raw)
            if meta is None:
                self._discard(name, 0, "remote_corrupted")
                break
            wanted.append((name, *meta))
        if not wanted:
            self._count(remote_misses=1)
            return []
        part_names = [f"{name}:{i}" for name, _, parts, _, _ in wanted for i in range(parts)]
        values = self._call(lambda: self._client.mget(part_names))
        if values is None:
            return []
        out: list[tuple[bytes, bool]] = []
        pos = 0
        for name, flags, parts, length, digest in wanted:
            pieces = values[pos : pos + parts]
            pos += parts
            payload = b"".join(p for p in pieces if p is not None)
            if any(p is None for p in pieces) or len(payload) != length or hashlib.sha256(payload).digest() != digest:
                self._discard(name, parts, "remote_corrupted")
                break
            out.append((payload, bool(flags & _SEALED)))
        self._count(remote_hits=len(out), remote_bytes_read=sum(len(p) for p, _ in out), remote_misses=0 if out else 1)
        return out

    def drop(self, fpd: bytes, key: bytes) -> None:
        """Delete a chunk whose payload decoded badly (counted as corrupted)."""
        meta = self._call(lambda: self._client.get(self._key(fpd, key)))
        parsed = _parse_meta(meta) if isinstance(meta, bytes) else None
        self._discard(self._key(fpd, key), parsed[1] if parsed else 0, "remote_corrupted")

    def take_counters(self) -> Counter[str]:
        """The counts since the last call (the store adds them to its persisted counters)."""
        with self._lock:
            out, self.counters = self.counters, Counter()
        return out

    def close(self) -> None:
        self._client.close()

    # -- internals ----------------------------------------------------------------------------

    def _discard(self, name: str, parts: int, counter: str) -> None:
        self._count(**{counter: 1})
        self._call(lambda: self._client.delete(name, *(f"{name}:{i}" for i in range(parts))))

    def _awake(self) -> bool:
        if time.monotonic() < self._resting_until:
            self._count(remote_skipped=1)
            return False
        return True

    def _run(self, pipe: Any) -> Any:
        return self._call(pipe.execute)

    def _call(self, fn: Any) -> Any:
        """``fn()``, or ``None`` after counting and warning about a Redis or socket error."""
        try:
            return fn()
        except self._errors as exc:
            self._resting_until = time.monotonic() + COOLDOWN
            self._count(remote_errors=1)
            warnings.warn(
                f"Redis KV tier {redact(self.url)} failed ({type(exc).__name__}: {exc}); using the local tiers "
                f"only for the next {COOLDOWN:.0f} s",
                RuntimeWarning,
                stacklevel=3,
            )
            return None

    def _count(self, **values: int) -> None:
        with self._lock:
            self.counters.update(values)


def _parse_meta(raw: Any) -> tuple[int, int, int, bytes] | None:
    """``(flags, parts, length, sha256)`` of a meta record, or ``None`` when it is not one."""
    if not isinstance(raw, bytes) or len(raw) != _META.size:
        return None
    magic, flags, parts, length, digest = _META.unpack(raw)
    if magic != _MAGIC or parts < 1 or parts > length // PART_BYTES + 1:
        return None
    return flags, parts, length, digest


def fetch_chain(
    remote: RemoteTier,
    cipher: Cipher | None,
    fpd: bytes,
    tokens: TokenIds,
    spans: list[tuple[int, int]],
    parent: bytes,
) -> list[tuple[tuple[int, int], bytes, bytes, bytes]]:
    """``(span, key, parent, payload)`` of the leading chunks of ``spans`` (chained from ``parent``) in Redis.

    Each payload passed its checksum in :meth:`RemoteTier.get` and here decodes to exactly the chunk
    the request expects (position, parent, fingerprint, token ids); the first that does not is
    dropped from Redis, counted, and ends the run.
    """
    keys = chain(fpd, tokens, spans, parent=parent)
    out: list[tuple[tuple[int, int], bytes, bytes, bytes]] = []
    got = remote.get(fpd, keys)
    for (lo, hi), key, up, (data, sealed) in zip(spans, keys, [parent, *keys], got, strict=False):
        try:
            payload = open_payload(key, data, sealed, cipher)
            chunk = decode_chunk(payload)
        except VaultError:
            remote.drop(fpd, key)
            break
        if (chunk.start, chunk.parent, chunk.fingerprint) != (lo, up, fpd) or not np.array_equal(
            chunk.tokens, tokens[lo:hi]
        ):
            remote.drop(fpd, key)
            break
        out.append(((lo, hi), key, up, payload))
    return out


def remote_settings(ttl: Any, prefix: Any, timeout: Any, **url: Any) -> dict[str, Any]:
    """The checked ``remote*`` settings ``KVStore.configure`` was given (``remote`` in ``url`` when it changes)."""
    changes: dict[str, Any] = {}
    if "remote" in url:
        remote = url["remote"]
        if remote is not None and (not isinstance(remote, str) or not remote.startswith(("redis://", "rediss://"))):
            raise InvalidInput(f"remote must be a redis:// or rediss:// URL or None, got {remote!r}")
        changes["remote"] = remote or None
    if ttl is not None:
        changes["remote_ttl"] = parse_ttl(ttl)
    if prefix is not None:
        if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", prefix):
            raise InvalidInput(f"remote_prefix must be 1-64 letters, digits, '_', '.', '-'; got {prefix!r}")
        changes["remote_prefix"] = prefix
    if timeout is not None:
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 60:
            raise InvalidInput(f"remote_timeout must be seconds in (0, 60], got {timeout!r}")
        changes["remote_timeout"] = float(timeout)
    return changes
