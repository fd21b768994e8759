"""The facade users hold: :func:`open` gives a :class:`Vault`, ``vault.collection()`` a :class:`Collection`.

The facade validates arguments, embeds text, and hands each part its slice of the store; the
parts (units, graph, and later kv, sessions, policies, witness) keep their own rules.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from sigmavault import validate
from sigmavault.collection import DEFAULT, Collection, IndexChoice, Progress, index_config
from sigmavault.context import VAULT_MIGRATIONS, Part, VaultConfig, VaultContext
from sigmavault.embed import DEFAULT_NAME, Embedder, MiniLM, as_embedder, available
from sigmavault.errors import (
    DimensionMismatch,
    InvalidInput,
    NotFound,
    VaultError,
)
from sigmavault.graph import Direction
from sigmavault.health import run_checks
from sigmavault.index import METRICS
from sigmavault.parts import part
from sigmavault.store import Database
from sigmavault.store.ioerrors import io_errors
from sigmavault.types import CheckReport, Edge, Reporter, Unit
from sigmavault.units import CollectionInfo

if TYPE_CHECKING:
    from sigmavault.kv import KVStore
    from sigmavault.policies import Policies
    from sigmavault.sessions import Sessions
    from sigmavault.witness import Witness

__all__ = ["DEFAULT", "Collection", "Part", "Vault", "open"]

DB_NAME = "vault.db"
_default_embedder: MiniLM | None = None


def _shared_default() -> MiniLM:
    """One MiniLM per process, shared by every collection that uses the default."""
    global _default_embedder
    if _default_embedder is None:
        _default_embedder = MiniLM()
    return _default_embedder


def open(  # NOTE: shadows the builtin on purpose: the binding public name is sigmavault.open
    path: str | os.PathLike[str],
    *,
    create: bool = True,
    frozen: bool = False,
    busy_timeout: float = 30.0,
    key: Any = None,
    progress: Reporter | None = None,
) -> Vault:
    """Open the vault at ``path``, creating it unless ``create=False``; ``frozen=True`` is read-only.

    ``key`` encrypts a new vault / opens an encrypted one (see :mod:`sigmavault.crypto`); by default
    it comes from ``SIGMAVAULT_KEY``, ``SIGMAVAULT_KEY_FILE`` or ``SIGMAVAULT_PASSPHRASE`` if set.
    ``progress(label, done, total)`` hears of long work the vault starts by itself (an ANN index
    built at a search); the CLI draws it as a bar.
    """
    return Vault(path, create=create, frozen=frozen, busy_timeout=busy_timeout, key=key, progress=progress)


class Vault:
    """One directory of memory. Thread-safe; other processes may open the same path at once."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        frozen: bool = False,
        busy_timeout: float = 30.0,
        key: Any = None,
        progress: Reporter | None = None,
    ) -> None:
        self.root = Path(validate.path(path, "path"))
        validate.flag(create, "create"), validate.flag(frozen, "frozen")
        validate.number(busy_timeout, "busy_timeout", lo=0.0, hi=86_400.0)
        self.frozen = frozen
        db_path = self.root / DB_NAME
        with io_errors(self.root, "opening the vault directory"):
            if self.root.exists() and not self.root.is_dir():
                raise InvalidInput(f"{self.root} is a file; a vault is a directory")
            new = not db_path.exists()
            if new:
                if not create or frozen:
                    raise NotFound(f"no vault at {self.root} (no {DB_NAME}); create one with sigmavault.open(path)")
                self.root.mkdir(parents=True, exist_ok=True)
        db = Database(db_path, readonly=frozen, busy_timeout=busy_timeout)
        try:
            db.migrate("vault", VAULT_MIGRATIONS)
            from sigmavault.crypto import configure  # stdlib-only until a key is actually used

            db.cipher = configure(db, key, new=new)
            config = VaultConfig(frozen=frozen, busy_timeout=busy_timeout, progress=progress)
            self._ctx = VaultContext(self.root, db, config)
            if not frozen:
                self._ctx.catalog.truncate_tails()
        except BaseException:
            db.close()
            raise
        # NOTE: short names for this class's own use; the context owns them.
        self._db = db
        self._catalog = self._ctx.catalog
        self._units = self._ctx.units
        self._graph = self._ctx.graph

    @property
    def context(self) -> VaultContext:
        """The internal context the tools (bundle, migrate) work through; not a stable user API."""
        return self._ctx

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Drain parts (witness queue, access counts), release files; further use raises VaultClosed."""
        if self._db.closed:
            return
        self._ctx.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Vault {str(self.root)!r}{' closed' if self.closed else ''}>"

    @contextmanager
    def transaction(self) -> Iterator[Vault]:
        """Group writes (add, link, update, delete, ...) into one atomic commit: all or nothing.

        Many small writes go much faster this way: each commit waits for the disk once.
        """
        try:
            with self._db.write():
                yield self
        except BaseException:
            self._ctx.forget()  # NOTE: cached row state and index records may describe rolled-back writes
            raise

    # -- collections ------------------------------------------------------------------------

    def collection(
        self,
        name: str,
        *,
        embedder: Any = DEFAULT,
        metric: str = "cosine",
        create: bool = True,
        index: IndexChoice | None = None,
        **index_params: int,
    ) -> Collection:
        """The collection ``name`` (created on first use). ``embedder=None`` means vectors only.

        ``index`` picks vector search: ``"auto"`` (default: exact below 20k vectors, HNSW
        above), ``"exact"``, ``"hnsw"`` or ``"ivf-rabitq"``. ``index_params`` set the collection's
        defaults: ``ef``, ``nprobe``, ``rerank`` (per search too), ``m``, ``ef_construction``, ``nlist``,
        ``bits``.
        Both are stored with the collection; omit them to keep what it has.
        """
        self._db.conn  # noqa: B018 - raises VaultClosed on a closed vault
        validate.ident(name, "name"), validate.choice(metric, "metric", METRICS), validate.flag(create, "create")
        validate.choice(index, "index", ("auto", "exact", "hnsw", "ivf-rabitq"), optional=True)
        for key, value in index_params.items():
            validate.integer(value, key, lo=1, hi=1 << 30)
        info = self._catalog.find(name)
        config = index_config(info.config if info else {}, index, index_params)
        if info is None:
            if not create:
                raise NotFound(f"no collection {name!r}; have: {', '.join(self._catalog.names()) or 'none'}")
            info = self._catalog.create(name, dim=None, metric=metric, embedder=None)
        elif metric != info.metric and metric != "cosine":
            raise InvalidInput(f"collection {name!r} was created with metric {info.metric!r}, not {metric!r}")
        if config is not None and config != info.config.get("index"):
            self._catalog.set_config(info, {**info.config, "index": config})
        self._ctx.indexes.prefetch(info.id, info.dim, info.watermark)
        return Collection(self._ctx, info, self._resolve_embedder(info, embedder))

    def compact(self, collection: str | None = None, *, progress: Progress | None = None) -> list[dict[str, Any]]:
        """Rebuild ANN indexes without deleted and replaced vectors; returns what was done per collection."""
        names = [validate.ident(collection, "collection")] if collection is not None else self._catalog.names()
        out = []
        for name in names:
            out.append(self.collection(name, embedder=None, create=False).compact(progress=progress))
        return out

    def drop_collection(self, name: str, *, missing: Literal["raise", "ignore"] = "raise") -> int:
        """Remove a collection: its units, their edges, its ANN index and vector file; returns how many units.

        One transaction removes the records; the files go after the commit. The collection's
        internal id is never reused, so a file a crash left behind is never read again.
        ``missing="ignore"`` returns 0 for a collection that does not exist.
        """
        if missing not in ("raise", "ignore"):
            raise InvalidInput(f"missing must be 'raise' or 'ignore', got {missing!r}")
        info = self._catalog.find(name)
        if info is None:
            if missing == "ignore":
                return 0
            raise NotFound(f"no collection {name!r}; have: {', '.join(self._catalog.names()) or 'none'}")
        with self._catalog.guard(info.id), self._db.write():
            removed = self.collection(name, embedder=None, create=False).delete(where={})
            self._ctx.indexes.drop(info.id)
            self._catalog.drop(info.id)
        self._catalog.remove_files(info.id)
        return removed

    def collections(self) -> list[str]:
        return self._catalog.names()

    def _resolve_embedder(self, info: CollectionInfo, embedder: Any) -> Embedder | None:
        if embedder is None:
            return None
        if embedder is DEFAULT:
            if info.embedder not in (None, DEFAULT_NAME) or not available():
                return None
            return _shared_default()
        emb = as_embedder(embedder)
        if emb.dim is not None and info.dim is not None and emb.dim != info.dim:
            raise DimensionMismatch(
                f"collection {info.name!r} holds {info.dim}-d vectors but the embedder makes {emb.dim}-d ones; "
                "use the embedder the collection was built with"
            )
        return emb

    # -- units across collections -----------------------------------------------------------

    def get(self, unit_id: str) -> Unit:
        """A unit by id, whatever its collection."""
        validate.ident(unit_id, "unit_id")
        return self._units.get(unit_id)

    # -- graph ------------------------------------------------------------------------------

    def link(self, a: str, b: str | Sequence[str], *, kind: str = "related", weight: float = 1.0) -> None:
        """Add an edge ``a -> b`` (or one to each of several targets); re-linking updates the weight."""
        validate.ident(a, "a"), validate.ident(kind, "kind"), validate.number(weight, "weight")
        targets = validate.ids(b, "b")
        with self._db.write():
            missing = {a, *targets} - self._units.exists([a, *targets])
            if missing:
                raise NotFound(f"cannot link: no unit with id {sorted(missing)[0]!r}")
            self._graph.link([(a, t) for t in targets], kind=kind, weight=weight)

    def unlink(self, a: str, b: str, *, kind: str | None = None) -> int:
        """Remove edges ``a -> b``; returns how many there were."""
        validate.ident(a, "a"), validate.ident(b, "b"), validate.ident(kind, "kind", optional=True)
        return self._graph.unlink(a, b, kind=kind)

    def neighbors(self, unit_id: str, *, kind: str | None = None, direction: Direction = "out") -> list[Edge]:
        """Edges leaving (``out``), entering (``in``) or touching (``both``) a unit, heaviest first."""
        validate.ident(unit_id, "unit_id"), validate.ident(kind, "kind", optional=True)
        validate.choice(direction, "direction", ("out", "in", "both"))
        edges = self._graph.neighbors(unit_id, kind=kind, direction=direction)
        if not edges and not self._units.exists([unit_id]):
            raise NotFound(f"no unit with id {unit_id!r}")
        return edges

    def path(
        self, a: str, b: str, *, max_depth: int = 4, kind: str | None = None, directed: bool = True
    ) -> list[str] | None:
        """Shortest chain of ids from ``a`` to ``b`` following edges, or ``None`` if none within ``max_depth``."""
        validate.ident(a, "a"), validate.ident(b, "b"), validate.ident(kind, "kind", optional=True)
        validate.integer(max_depth, "max_depth", lo=0, hi=1 << 20), validate.flag(directed, "directed")
        missing = {a, b} - self._units.exists([a, b])
        if missing:
            raise NotFound(f"no unit with id {sorted(missing)[0]!r}")
        return self._graph.path(a, b, max_depth=max_depth, kind=kind, directed=directed)

    def chain(self, unit_id: str) -> list[str]:
        """``unit_id`` and its ancestors by ``parent_id``, ending at the root."""
        validate.ident(unit_id, "unit_id")
        out = [unit_id]
        parent = self._units.parent_of(unit_id)
        while parent is not None:
            if parent in out:
                raise VaultError(f"parent links of {unit_id!r} form a cycle at {parent!r}; run check")
            out.append(parent)
            parent = self._units.parent_of(parent)
        return out

    def children(self, unit_id: str) -> list[str]:
        validate.ident(unit_id, "unit_id")
        return self._units.children(unit_id)

    def conversation(self, conversation_id: str) -> list[Unit]:
        """The units of a conversation, in the order they were added."""
        validate.ident(conversation_id, "conversation_id")
        return self._units.conversation(conversation_id)

    # -- parts ------------------------------------------------------------------------------
    # NOTE: each part is built on first use (see sigmavault.parts), so a vault that never touches
    # the KV store never imports torch.

    @property
    def kv(self) -> KVStore:
        return part(self._ctx, "kv")  # type: ignore[return-value]

    @property
    def sessions(self) -> Sessions:
        return part(self._ctx, "sessions")  # type: ignore[return-value]

    @property
    def policies(self) -> Policies:
        return part(self._ctx, "policies")  # type: ignore[return-value]

    @property
    def witness(self) -> Witness:
        return part(self._ctx, "witness")  # type: ignore[return-value]

    # -- health -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        cols = {}
        for name in self._catalog.names():
            info = self._catalog.find(name)
            assert info is not None
            cols[name] = {
                "units": sum(self._units.count(info.id).values()),
                "by_state": self._units.count(info.id),
                "dim": info.dim,
                "metric": info.metric,
                "embedder": info.embedder,
                "vector_rows": info.watermark,
            }
        files = [p for p in self.root.rglob("*") if p.is_file()]
        return {
            "path": str(self.root),
            "collections": cols,
            "units": sum(c["units"] for c in cols.values()),
            "edges": self._graph.count(),
            "bytes_on_disk": sum(p.stat().st_size for p in files),
        }

    def check(self) -> CheckReport:
        """Verify the store: SQLite integrity, then every part (units, graph, indexes, kv, ...) checks itself."""
        return run_checks(self._ctx)
