"""``ShardedCollection``: one logical collection spread over N vaults, each served by a Ray actor.

>>> ray.init(num_cpus=2)
>>> docs = ShardedCollection.create("./cluster", "docs", shards=4)
>>> docs.add(vectors=X, ids=ids, metadata=meta)          # routed by SHA-256 of the id
>>> hits = docs.search(q, k=10, where={"topic": "a"})    # scatter to every shard, merge the top k

Layout: ``<root>/<name>/sharded.json`` (the manifest: shard count and collection settings) and
``<root>/<name>/shard-000/`` ... — each a normal vault holding the collection ``name``, so
``sigmavault check`` works on any shard. Routing is ``SHA-256(id) mod shards``: the same in every
process and on every machine (Python's ``hash()`` is salted per process, so it is never used).

Failure: a shard that raises a Ray error or does not answer within ``timeout`` seconds fails the
call with :class:`~sigmavault.errors.ShardUnavailable` naming it; with ``partial=True`` reads
return the others' merged hits and name the missing shards in ``.missing``. Actors are started with
``max_restarts``, so a crashed shard process is restarted by Ray and reopens its directory;
``open()`` also starts any shard whose actor is gone for good. Adding shards later (rebalancing)
is not supported: the shard count is fixed at creation.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sigmavault.distributed.shard import Shard
from sigmavault.errors import InvalidInput, NotFound, ShardUnavailable, VaultError
from sigmavault.store.files import atomic_write
from sigmavault.types import CheckReport, Hit, Unit
from sigmavault.units.records import new_ids

__all__ = ["MANIFEST", "ShardedBatch", "ShardedCollection", "ShardedHits", "shard_of"]

MANIFEST = "sharded.json"
_FORMAT = "sigmavault-sharded"
_NAMESPACE = "sigmavault"


def shard_of(unit_id: str, shards: int) -> int:
    """The shard that owns ``unit_id``: the first 8 bytes of its SHA-256, big-endian, modulo ``shards``."""
    return int.from_bytes(hashlib.sha256(unit_id.encode("utf-8")).digest()[:8], "big") % shards


class ShardedHits(list[Hit]):
    """Merged hits; ``missing`` names the shards that did not answer (only ever non-empty with ``partial=True``)."""

    missing: list[str]

    def __init__(self, hits: Sequence[Hit] = (), missing: Sequence[str] = ()) -> None:
        super().__init__(hits)
        self.missing = list(missing)


class ShardedBatch(list[list[Hit]]):
    """``search_batch``'s merged hits per query, with ``missing`` as in :class:`ShardedHits`."""

    missing: list[str]

    def __init__(self, rows: Sequence[list[Hit]] = (), missing: Sequence[str] = ()) -> None:
        super().__init__(rows)
        self.missing = list(missing)


class ShardedCollection:
    """A collection whose units live in ``shards`` vaults, each owned by one Ray actor."""

    def __init__(self, directory: Path, manifest: dict[str, Any], *, timeout: float, max_restarts: int) -> None:
        import ray

        if not ray.is_initialized():
            raise VaultError("ShardedCollection needs a Ray cluster: call ray.init() (or ray.init(address=...)) first")
        self.directory = directory
        self.name: str = manifest["name"]
        self.shards: int = int(manifest["shards"])
        self.timeout = timeout
        self._manifest = manifest
        actor = ray.remote(Shard)
        key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
        self._actors: list[Any] = [
            actor.options(
                name=f"{key}:{i}",
                namespace=_NAMESPACE,
                get_if_exists=True,
                max_restarts=max_restarts,
                max_task_retries=0,
                num_cpus=0,
            ).remote(
                str(directory / _shard_dir(i)), self.name, manifest["metric"], manifest["index"], manifest["params"]
            )
            for i in range(self.shards)
        ]

    # -- create / open ----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | Path,
        name: str,
        *,
        shards: int,
        embedder: None = None,
        metric: str = "cosine",
        index: str | None = "auto",
        timeout: float = 60.0,
        max_restarts: int = 3,
        **index_params: int,
    ) -> ShardedCollection:
        """A new sharded collection under ``root/name`` (raises :class:`InvalidInput` if there is one).

        Shards hold vectors (``embedder=None``): embed on the driver, where the model lives once.
        ``index`` and ``index_params`` are those of :meth:`Vault.collection`, applied in every shard.
        """
        if embedder is not None:
            raise InvalidInput("sharded collections store vectors: embed on the driver and pass vectors=")
        if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= 4096:
            raise InvalidInput(f"shards must be an integer from 1 to 4096, got {shards!r}")
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise InvalidInput(f"a sharded collection name is a non-empty file name, got {name!r}")
        directory = Path(root) / name
        if (directory / MANIFEST).exists():
            raise InvalidInput(f"{directory} already holds a sharded collection; use ShardedCollection.open()")
        manifest = {
            "format": _FORMAT,
            "version": 1,
            "name": name,
            "shards": shards,
            "metric": metric,
            "index": index,
            "params": dict(index_params),
            "created_at": time.time(),
        }
        directory.mkdir(parents=True, exist_ok=True)
        made = cls(directory, manifest, timeout=timeout, max_restarts=max_restarts)
        made.count()  # every shard has opened (created) its vault before the manifest names it
        with atomic_write(directory / MANIFEST) as fh:
            fh.write(json.dumps(manifest, indent=2).encode())
        return made

    @classmethod
    def open(cls, root: str | Path, name: str, *, timeout: float = 60.0, max_restarts: int = 3) -> ShardedCollection:
        """The sharded collection under ``root/name``, from any driver process attached to the cluster."""
        directory = Path(root) / name
        try:
            manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"no sharded collection at {directory} (no {MANIFEST}); create it first") from None
        except (OSError, ValueError) as exc:
            raise VaultError(f"{directory / MANIFEST} is unreadable: {exc}") from exc
        if manifest.get("format") != _FORMAT or manifest.get("version") != 1:
            raise VaultError(f"{directory / MANIFEST} is not a sigmavault sharded-collection manifest (version 1)")
        return cls(directory, manifest, timeout=timeout, max_restarts=max_restarts)

    def shard_path(self, shard: int) -> Path:
        """The vault directory of ``shard`` (open it with ``sigmavault.open`` or ``sigmavault check``)."""
        return self.directory / _shard_dir(shard)

    def actor(self, shard: int) -> Any:
        """The Ray actor handle of ``shard`` (for operators and tests: ``ray.kill`` it to see a restart)."""
        return self._actors[shard]

    # -- writes -----------------------------------------------------------------------------

    def add(
        self,
        texts: Sequence[str] | None = None,
        *,
        vectors: Any,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Store units, each in the shard its id hashes to; returns the ids (in the order given).

        Each shard's part is atomic and durable when this returns; if a shard fails, the others'
        parts are stored and :class:`ShardUnavailable` names the failed one (retry with the same ids).
        """
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            raise InvalidInput(f"vectors must be a non-empty (n, dim) matrix, got shape {matrix.shape}")
        n = matrix.shape[0]
        id_list = list(ids) if ids is not None else new_ids(n)
        for what, seq in (("ids", id_list), ("texts", texts), ("metadata", metadata)):
            if seq is not None and len(seq) != n:
                raise InvalidInput(f"{what} has {len(seq)} entries for {n} vectors")
        if any(not isinstance(u, str) or not u for u in id_list) or len(set(id_list)) != n:
            raise InvalidInput("ids must be distinct non-empty strings")
        owners = np.array([shard_of(u, self.shards) for u in id_list])
        calls = {}
        for shard in range(self.shards):
            rows = [int(i) for i in np.flatnonzero(owners == shard)]
            if len(rows) == 0:
                continue
            calls[shard] = self._actors[shard].add.remote(
                matrix[rows],
                [id_list[i] for i in rows],
                None if texts is None else [texts[i] for i in rows],
                None if metadata is None else [dict(metadata[i]) for i in rows],
            )
        self._gather(calls, partial=False)
        return id_list

    def update(self, unit_id: str, **changes: Any) -> Unit:
        """``Collection.update`` on the owning shard (``text``, ``metadata``, ``state``, ``vector``, ``kv_ref``)."""
        shard = self._owner(unit_id)
        result: Unit = self._gather({shard: self._actors[shard].update.remote(unit_id, changes)}, partial=False)[0][
            shard
        ]
        return result

    def delete(self, unit_ids: str | Sequence[str]) -> int:
        """Remove units from their shards; returns how many were removed."""
        id_list = [unit_ids] if isinstance(unit_ids, str) else list(dict.fromkeys(unit_ids))
        groups: dict[int, list[str]] = {}
        for uid in id_list:
            groups.setdefault(self._owner(uid), []).append(uid)
        calls = {shard: self._actors[shard].delete.remote(group) for shard, group in groups.items()}
        return sum(self._gather(calls, partial=False)[0].values())

    # -- reads ------------------------------------------------------------------------------

    def get(self, unit_id: str) -> Unit:
        """The unit, from the shard that owns its id."""
        shard = self._owner(unit_id)
        result: Unit = self._gather({shard: self._actors[shard].get.remote(unit_id)}, partial=False)[0][shard]
        return result

    def search(
        self,
        query: Any,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        partial: bool = False,
        **options: Any,
    ) -> ShardedHits:
        """The global top ``k``: every shard returns its top ``k`` with exact (refined) scores, the driver merges.

        ``where``, ``states``, ``ef``, ``nprobe`` and ``rerank`` are passed to every shard's search.
        """
        _check_k(k)
        opts = {**options, "where": where}
        calls = {i: actor.search.remote(query, k, opts) for i, actor in enumerate(self._actors)}
        answers, missing = self._gather(calls, partial=partial)
        return ShardedHits(_merge(list(answers.values()), k), missing)

    def search_batch(
        self,
        queries: Any,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        partial: bool = False,
        **options: Any,
    ) -> ShardedBatch:
        """``search`` for an (m, dim) matrix of queries: one call per shard for the whole batch."""
        _check_k(k)
        opts = {**options, "where": where}
        calls = {i: actor.search_batch.remote(queries, k, opts) for i, actor in enumerate(self._actors)}
        answers, missing = self._gather(calls, partial=partial)
        per_shard = list(answers.values())
        rows = len(per_shard[0]) if per_shard else 0
        return ShardedBatch([_merge([answer[i] for answer in per_shard], k) for i in range(rows)], missing)

    def count(self) -> int:
        """Live units over all shards."""
        calls = {i: actor.count.remote() for i, actor in enumerate(self._actors)}
        return sum(self._gather(calls, partial=False)[0].values())

    __len__ = count

    def stats(self) -> dict[str, Any]:
        """Totals and each shard's collection stats (path, process, units, vector rows)."""
        calls = {i: actor.stats.remote() for i, actor in enumerate(self._actors)}
        answers, _ = self._gather(calls, partial=False)
        shards = [answers[i] for i in range(self.shards)]
        return {
            "name": self.name,
            "directory": str(self.directory),
            "shards": self.shards,
            "units": sum(s["units"] for s in shards),
            "per_shard": shards,
        }

    def check(self) -> CheckReport:
        """Every shard's ``vault.check()`` in one report (problems prefixed with the shard's name)."""
        calls = {i: actor.check.remote() for i, actor in enumerate(self._actors)}
        answers, missing = self._gather(calls, partial=True)
        report = CheckReport()
        for shard in range(self.shards):
            label = _shard_dir(shard)
            if label in missing:
                report.problems.append(f"{label}: did not answer (failed or timed out)")
                continue
            sub: CheckReport = answers[shard]
            report.problems += [f"{label}: {p}" for p in sub.problems]
            report.notes += [f"{label}: {n}" for n in sub.notes]
        return report

    def close(self) -> None:
        """Close every shard's vault and stop its actor (the directories stay; ``open`` brings them back)."""
        import ray

        calls = {i: actor.close.remote() for i, actor in enumerate(self._actors)}
        self._gather(calls, partial=True)
        for actor in self._actors:
            ray.kill(actor, no_restart=True)

    def __enter__(self) -> ShardedCollection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _owner(self, unit_id: str) -> int:
        if not isinstance(unit_id, str) or not unit_id:
            raise InvalidInput(f"a unit id is a non-empty string, got {unit_id!r}")
        return shard_of(unit_id, self.shards)

    def _gather(self, calls: Mapping[int, Any], *, partial: bool) -> tuple[dict[int, Any], list[str]]:
        """Results of the calls that answered within the timeout, and the names of the shards that did not.

        A :class:`VaultError` raised inside a shard (``NotFound``, ``InvalidInput`` ...) is raised
        as is; a Ray failure or a timeout raises :class:`ShardUnavailable` unless ``partial``.
        """
        import ray
        from ray.exceptions import RayError, RayTaskError

        refs = list(calls.values())
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.timeout) if refs else ([], [])
        done = set(ready)
        answers: dict[int, Any] = {}
        failures: dict[str, str] = {}
        for shard, ref in calls.items():
            label = _shard_dir(shard)
            if ref not in done:
                failures[label] = f"no answer within {self.timeout:g} s"
                continue
            try:
                answers[shard] = ray.get(ref)
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, VaultError):
                    raise cause from None
                failures[label] = f"{type(cause or exc).__name__}: {cause or exc}"
            except RayError as exc:
                failures[label] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if failures and not partial:
            detail = "; ".join(f"{label} ({why})" for label, why in sorted(failures.items()))
            raise ShardUnavailable(
                f"{self.name}: shard(s) {', '.join(sorted(failures))} unavailable: {detail}. "
                "Pass partial=True to get the other shards' results.",
                sorted(failures),
            )
        return answers, sorted(failures)


def _shard_dir(shard: int) -> str:
    return f"shard-{shard:03d}"


def _merge(lists: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """The ``k`` best hits of all shards: highest score first, ties by id (the same order every run)."""
    return sorted((h for hits in lists for h in hits), key=lambda h: (-h.score, h.id))[:k]


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidInput(f"k must be a positive integer, got {k!r}")
