"""`Collection`: a named set of units sharing one vector space — the half of the facade users
search and write through (split from vault.py along the Vault/Collection seam)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypedDict

import numpy as np

from sigmavault import units, validate
from sigmavault.context import VaultContext
from sigmavault.embed import DEFAULT_NAME, Embedder, check_matrix, embedder_name
from sigmavault.errors import (
    EmbedderUnavailable,
    EmptyText,
    InvalidFilter,
    InvalidInput,
    NotFound,
    VaultError,
)
from sigmavault.index import signatures
from sigmavault.types import Hit, State, Unit, Vector
from sigmavault.units import CollectionInfo, NewUnits, ingest, new_ids
from sigmavault.units.encode import flat_dicts
from sigmavault.units.indexes import IndexConfig
from sigmavault.units.search import fuse

__all__ = ["DEFAULT", "Collection", "Include", "IndexChoice", "Mode", "Progress", "index_config"]

# Exact types the add path checks in bulk (subclasses and nested values take the full checks).
_STR = frozenset({str})
_TEXT_TYPES = frozenset({str, type(None)})
_FLAT = frozenset({str, int, float, bool, type(None)})
DEFAULT: Any = object()  # sentinel: "the default embedder", distinct from None ("no embedder")
Mode = Literal["vector", "text", "hybrid"]
Include = Literal["vector"]
IndexChoice = Literal["auto", "exact", "hnsw", "ivf-rabitq"]
Progress = Callable[[int, int], None]


class Collection:
    """A named set of units sharing one vector space (dimension, metric, embedder)."""

    def __init__(self, ctx: VaultContext, info: CollectionInfo, embedder: Embedder | None) -> None:
        self._ctx = ctx
        self.name = info.name
        self._id = info.id
        self.embedder = embedder

    def __repr__(self) -> str:
        return f"<Collection {self.name!r} of {self._ctx.root}>"

    @property
    def info(self) -> CollectionInfo:
        return self._ctx.catalog.state(self._id).info

    @property
    def dim(self) -> int | None:
        return self.info.dim

    def __len__(self) -> int:
        return sum(self._ctx.units.count(self._id).values())

    # -- writes -----------------------------------------------------------------------------

    def add(
        self,
        texts: str | Sequence[str] | None = None,
        *,
        vectors: Any = None,
        ids: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        kind: str | Sequence[str] = "unit",
        conversation_id: str | Sequence[str | None] | None = None,
        parent_id: str | Sequence[str | None] | None = None,
        kv_ref: str | Sequence[str | None] | None = None,
        batch_size: int = 50_000,
        progress: Progress | None = None,
    ) -> list[str]:
        """Store units; returns their ids. Texts are embedded unless ``vectors`` are given.

        Everything is validated before anything is written. An add larger than ``batch_size``
        commits batch by batch (bounded memory); each batch is atomic and durable on return.
        """
        return self._write(
            texts,
            vectors=vectors,
            ids=ids,
            metadata=metadata,
            kind=kind,
            conversation_id=conversation_id,
            parent_id=parent_id,
            kv_ref=kv_ref,
            batch_size=batch_size,
            progress=progress,
            replace=False,
        )

    def upsert(
        self,
        texts: str | Sequence[str] | None = None,
        *,
        vectors: Any = None,
        ids: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        kind: str | Sequence[str] = "unit",
        conversation_id: str | Sequence[str | None] | None = None,
        parent_id: str | Sequence[str | None] | None = None,
        kv_ref: str | Sequence[str | None] | None = None,
        batch_size: int = 50_000,
        progress: Progress | None = None,
    ) -> list[str]:
        """Like :meth:`add`, but an id already in this collection is replaced (text, vector, metadata
        and the other fields) in the same transaction that adds the new ones.

        A replaced unit starts afresh (state ``active``, new ``created_at``, no access count); its
        edges and children stay, since they name the id. Ids are unique across the vault: an id held
        by another collection raises :class:`InvalidInput` and nothing is written. Each batch of
        ``batch_size`` units is one transaction.
        """
        return self._write(
            texts,
            vectors=vectors,
            ids=ids,
            metadata=metadata,
            kind=kind,
            conversation_id=conversation_id,
            parent_id=parent_id,
            kv_ref=kv_ref,
            batch_size=batch_size,
            progress=progress,
            replace=True,
        )

    def _write(
        self,
        texts: str | Sequence[str] | None,
        *,
        vectors: Any,
        ids: Sequence[str] | None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
        kind: str | Sequence[str],
        conversation_id: str | Sequence[str | None] | None,
        parent_id: str | Sequence[str | None] | None,
        kv_ref: str | Sequence[str | None] | None,
        batch_size: int,
        progress: Progress | None,
        replace: bool,
    ) -> list[str]:
        validate.integer(batch_size, "batch_size", lo=1, hi=1 << 40)
        if isinstance(texts, str):
            texts = [texts]
        if texts is None and vectors is None:
            raise InvalidInput("add() needs texts, vectors, or both")
        try:
            n = len(texts) if texts is not None else len(vectors)
        except TypeError:
            raise InvalidInput(f"vectors must be an (n, dim) array, got {type(vectors).__name__}") from None
        if n == 0:
            return []
        text_list: list[str | None] = [None] * n
        if texts is not None:
            text_list = list(texts)
            if len(text_list) != n:
                raise InvalidInput(f"got {len(text_list)} texts but {n} vectors")
            plain = vectors is not None and _TEXT_TYPES.issuperset(map(type, text_list))
            for i, t in enumerate([] if plain else text_list):
                if vectors is not None and (t is None or isinstance(t, str)):
                    continue  # NOTE: with a vector given, text is optional payload (may be empty or None)
                if not isinstance(t, str) or not t.strip():
                    raise EmptyText(f"text {i} is empty or not a string; texts to embed must be non-empty")
        mat = None
        if vectors is not None:
            mat = self._checked_rows(vectors, rows=n)
        elif self.embedder is None:
            raise self._no_embedder()
        id_list = new_ids(n) if ids is None else _ids(ids, n)
        meta = _per_unit(metadata, n, "metadata", default={})
        for i, m in enumerate([] if flat_dicts(meta) else meta):  # NOTE: all flat: checked in C, not per unit
            if type(m) is dict and _STR.issuperset(map(type, m)) and _FLAT.issuperset(map(type, m.values())):
                continue  # NOTE: flat JSON, the common case; NaN and infinity are refused when it is encoded
            if not isinstance(m, Mapping):
                raise InvalidInput(f"metadata {i} must be a mapping, got {type(m).__name__}")
            validate.json_doc(m, f"metadata {i}", extended=True)
        kinds = _labels(_per_unit(kind, n, "kind", default="unit"), "kind", optional=False)
        convs = _labels(_per_unit(conversation_id, n, "conversation_id", default=None), "conversation_id")
        parents = _labels(_per_unit(parent_id, n, "parent_id", default=None), "parent_id")
        refs = _labels(_per_unit(kv_ref, n, "kv_ref", default=None), "kv_ref")
        done = 0
        # NOTE: checked rows of a cosine collection are scaled to unit length as they are written
        # (records._write_vectors), without a normalised copy of the batch.
        normalise = mat is not None and self.info.metric == "cosine"
        for start in range(0, n, max(1, batch_size)):
            end = min(n, start + batch_size)
            if normalise and mat is not None:
                chunk = mat[start:end]
            elif mat is not None:
                chunk = self._vectors(mat[start:end], rows=end - start, checked=True)
            else:
                chunk = self._embed([t for t in text_list[start:end] if t is not None])
            batch = NewUnits(
                ids=id_list[start:end],
                vectors=chunk,
                texts=text_list[start:end],
                metadata=[m if type(m) is dict else dict(m) for m in meta[start:end]],
                kinds=kinds[start:end],
                conversation_ids=convs[start:end],
                parent_ids=parents[start:end],
                kv_refs=refs[start:end],
                normalise=normalise,
            )
            if replace:
                self._replace(batch)
            else:
                self._ctx.units.add(self._id, batch)
            done = end
            if progress is not None:
                progress(done, n)
        # NOTE: an add that crosses the ANN threshold (or outgrows the index) starts the index work
        # on the background thread now, so no later search pays for it.
        self._ctx.indexes.prepare(self._ctx.catalog.state(self._id))
        return id_list

    def ingest(
        self, docs: Iterable[Mapping[str, Any]], *, batch_size: int = 256, progress: Progress | None = None
    ) -> dict[str, int]:
        """Store documents idempotently: a re-run adds only what is new, and an interrupted run resumes.

        Each doc is a mapping with ``text`` and optionally ``id``, ``key``, ``metadata``, ``kind``,
        ``conversation_id``, ``parent_id``. Its id is ``id`` when given; otherwise it is derived
        from this collection's name and ``key`` (e.g. a file's path: a changed file replaces its
        unit) or, without a key, from the doc's whole content (a changed line is a new unit).
        A doc whose id is stored with the same text, metadata and fields is skipped without
        embedding; one whose content changed is replaced (:meth:`upsert`). Docs with the same id
        in one call: the last wins. Returns ``{"added", "replaced", "unchanged"}`` counts.
        """
        prepared: dict[str, dict[str, Any]] = {}
        for i, doc in enumerate(docs):
            prepared.update([ingest.prepare(self.name, i, doc)])
        ids = list(prepared)
        counts = {"added": 0, "replaced": 0, "unchanged": 0}
        total = len(ids)
        for start in range(0, total, max(1, batch_size)):
            chunk = ids[start : start + max(1, batch_size)]
            stored = {u.id: u for u in self._ctx.units.get_many(chunk, cid=self._id, vector=False)}
            todo = [u for u in chunk if u not in stored or not ingest.same(stored[u], prepared[u])]
            counts["unchanged"] += len(chunk) - len(todo)
            counts["replaced"] += sum(1 for u in todo if u in stored)
            counts["added"] += sum(1 for u in todo if u not in stored)
            if todo:
                rows = [prepared[u] for u in todo]
                self.upsert(
                    [r["text"] for r in rows],
                    ids=todo,
                    metadata=[r["metadata"] for r in rows],
                    kind=[r["kind"] for r in rows],
                    conversation_id=[r["conversation_id"] for r in rows],
                    parent_id=[r["parent_id"] for r in rows],
                )
            if progress is not None:
                progress(min(total, start + len(chunk)), total)
        return counts

    def _replace(self, batch: NewUnits) -> None:
        """Remove the units of ``batch`` that exist here, then add the batch: one transaction."""
        if len(set(batch.ids)) != len(batch.ids):
            raise InvalidInput("ids must be unique within one upsert() call")
        with self._ctx.catalog.guard(self._id), self._ctx.db.write():
            owners = self._ctx.units.owners(batch.ids)
            elsewhere = sorted(u for u, c in owners.items() if c != self._id)
            if elsewhere:
                raise InvalidInput(
                    f"id {elsewhere[0]!r} belongs to another collection; ids are unique across the vault"
                )
            if owners:
                self._ctx.units.delete(list(owners), reparent=False)
            self._ctx.units.add(self._id, batch)

    def _checked_rows(self, values: Any, *, rows: int) -> Any:
        """Validate every row of an (n, dim) array block by block, without a full-size copy.

        NOTE: a 1M x 384 add would otherwise hold the input, a float32 copy and a normalised copy
        at once (~4.5 GB); here the input (an array or a np.memmap) is only read, and each batch is
        converted and normalised as it is written.
        """
        if not isinstance(values, np.ndarray) or values.ndim != 2:
            return self._vectors(values, rows=rows)
        check_matrix(values[:1], rows=1, dim=self.dim)
        if values.shape[0] != rows:
            raise InvalidInput(f"vectors: expected {rows} rows, got {values.shape[0]}")
        for start in range(0, rows, 65_536):
            block = np.asarray(values[start : start + 65_536], dtype=np.float32)
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                raise InvalidInput(f"vectors: row {start + int(np.flatnonzero(~finite)[0])} contains NaN or infinity")
            if self.info.metric == "cosine":
                zero = np.flatnonzero(~block.any(axis=1))
                if len(zero):
                    raise InvalidInput(
                        f"vector {start + int(zero[0])} is all zeros; cosine similarity is undefined for it"
                    )
        return values

    def _vectors(self, values: Any, *, rows: int, checked: bool = False) -> Vector:
        """``values`` as float32 rows, unit-normalised for cosine; ``checked``: rows from :meth:`_checked_rows`."""
        # NOTE: rows _checked_rows has seen are finite and of the right shape: not scanned twice.
        if checked:
            mat = np.ascontiguousarray(values, dtype=np.float32)
        else:
            mat = check_matrix(values, rows=rows, dim=self.dim)
        if self.info.metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", mat, mat))[:, None]  # NOTE: no (n, dim) temporary
            zero = np.flatnonzero(norms[:, 0] == 0)
            if len(zero):
                raise InvalidInput(f"vector {int(zero[0])} is all zeros; cosine similarity is undefined for it")
            mat = np.divide(mat, norms, dtype=np.float32)
        return mat

    def _embed(self, texts: Sequence[str], *, record: bool = True) -> Vector:
        """Embed ``texts``; ``record`` notes the embedder's name on the collection (on writes only)."""
        if self.embedder is None:
            raise self._no_embedder()
        try:
            raw = self.embedder.embed(list(texts))
        except VaultError:
            raise
        except Exception as exc:
            raise EmbedderUnavailable(f"the embedder of {self.name!r} failed: {type(exc).__name__}: {exc}") from exc
        mat = self._vectors(check_matrix(raw, rows=len(texts), what="embedder output"), rows=len(texts))
        if record and self.info.embedder is None:
            with self._ctx.db.write():
                self._ctx.catalog.set_embedder(self.info, embedder_name(self.embedder))
        return mat

    def _no_embedder(self) -> EmbedderUnavailable:
        built = self.info.embedder
        if built not in (None, DEFAULT_NAME):
            return EmbedderUnavailable(
                f"collection {self.name!r} was built with embedder {built!r}; pass it again: "
                f"vault.collection({self.name!r}, embedder=...)"
            )
        return EmbedderUnavailable(
            "text needs an embedder: install the default with pip install 'sigmavault[embed]', "
            "pass embedder=... to vault.collection(), or give vectors=..."
        )

    def update(
        self,
        unit_id: str,
        *,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        state: str | State | None = None,
        vector: Any = None,
        kv_ref: str | None = None,
    ) -> Unit:
        """Change a unit. New text is re-embedded (unless ``vector`` is given); ``metadata`` replaces the old."""
        validate.ident(unit_id, "unit_id"), validate.ident(kv_ref, "kv_ref", optional=True)
        validate.json_doc(metadata, "metadata", extended=True)
        self._own(unit_id)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise EmptyText("text must be a non-empty string")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInput(f"metadata must be a mapping, got {type(metadata).__name__}")
        vec = None
        if vector is not None:
            vec = self._vectors(vector, rows=1)
        elif text is not None:
            vec = self._embed([text])
        self._ctx.units.update(
            unit_id,
            text=text,
            metadata=metadata,
            state=None if state is None else State.parse(state),
            vector=vec,
            kv_ref=kv_ref,
        )
        return self.get(unit_id, touch=False)

    def delete(
        self,
        unit_ids: str | Sequence[str] | None = None,
        *,
        where: Mapping[str, Any] | None = None,
        missing: Literal["raise", "ignore"] = "raise",
    ) -> int:
        """Remove units (by id, or every unit matching ``where``) and their edges; returns how many.

        ``missing="raise"`` (the default) refuses the whole call when an id is not in this
        collection; ``missing="ignore"`` removes those that are. One transaction either way.
        """
        if missing not in ("raise", "ignore"):
            raise InvalidInput(f"missing must be 'raise' or 'ignore', got {missing!r}")
        if (unit_ids is None) == (where is None):
            raise InvalidInput("delete() takes ids or where=..., one of the two")
        if where is not None:
            sql, params = units.compile_where(where, column="u.metadata")
        else:
            unit_ids = validate.ids(unit_ids, "unit_ids")
        # NOTE: guard: the row-state cache is edited before the outer commit; a failure must drop it.
        with self._ctx.catalog.guard(self._id), self._ctx.db.write():
            if where is not None:
                id_list = self._ctx.units.ids_matching(self._id, sql, params)
            else:
                assert unit_ids is not None
                id_list = list(dict.fromkeys(_ids(unit_ids, None)))
                owners = self._ctx.units.owners(id_list)
                absent = [u for u in id_list if owners.get(u) != self._id]
                if absent and missing == "raise":
                    raise NotFound(f"unit {absent[0]!r} is not in collection {self.name!r}")
                id_list = [u for u in id_list if owners.get(u) == self._id]
            if id_list:
                self._ctx.units.delete(id_list)
                self._ctx.graph.drop_nodes(id_list)
        return len(id_list)

    def _own(self, unit_id: str) -> None:
        if self._ctx.units.cid_of(unit_id) != self._id:
            raise NotFound(f"unit {unit_id!r} is not in collection {self.name!r}")

    # -- reads ------------------------------------------------------------------------------

    def get(self, unit_id: str, *, touch: bool = True) -> Unit:
        """The unit with its stored vector; counts as an access unless ``touch=False``."""
        validate.ident(unit_id, "unit_id"), validate.flag(touch, "touch")
        return self._ctx.units.get(unit_id, touch=touch, cid=self._id)

    def get_many(self, unit_ids: Sequence[str], *, vectors: bool = True) -> list[Unit]:
        """The units of this collection among ``unit_ids``, in the order asked; ids not here are skipped.

        Duplicates are returned once. No access is counted (a batch read is bookkeeping, not use).
        """
        return self._ctx.units.get_many(_ids(unit_ids, None), cid=self._id, vector=vectors)

    def __iter__(self) -> Iterator[Unit]:
        return self._ctx.units.iter_units(cid=self._id)

    def all(self, *, where: Mapping[str, Any] | None = None) -> Iterator[Unit]:
        """Every unit (optionally matching ``where``), in insertion order, without vectors."""
        validate.json_doc(where, "where", error=InvalidFilter, extended=True)
        sql, params = units.compile_where(where, column="u.metadata")
        return self._ctx.units.iter_units(cid=self._id, where_sql=sql, params=params)

    def search(
        self,
        query: str | Any = None,
        k: int = 10,
        *,
        mode: Mode = "vector",
        vector: Any = None,
        text: str | None = None,
        where: Mapping[str, Any] | None = None,
        states: str | State | Sequence[str | State] = "active",
        include: Sequence[Include] = (),
        ef: int | None = None,
        nprobe: int | None = None,
        rerank: int | None = None,
    ) -> list[Hit]:
        """The ``k`` best units for a text, a vector, or both. See README "Scores" for what scores mean.

        ``query`` is a text or a vector; ``text=`` and ``vector=`` name them explicitly, and a
        search may carry both: ``mode="hybrid"`` then fuses the ranking by ``vector`` with the
        keyword ranking by ``text`` (on a bring-your-own-vectors collection too), and
        ``mode="vector"`` uses ``vector`` rather than embedding the text. ``include=("vector",)``
        returns each hit's stored vector in ``Hit.vector``. ``ef`` (HNSW beam), ``nprobe`` (IVF
        lists probed) and ``rerank`` (candidates per result refined exactly) override the
        collection's ANN defaults for this search.
        """
        validate.integer(k, "k", lo=1), validate.json_doc(where, "where", error=InvalidFilter, extended=True)
        knobs = _knobs(ef, nprobe, rerank)
        state_set = _states(states)
        if mode not in ("vector", "text", "hybrid"):
            raise InvalidInput(f"mode must be 'vector', 'text' or 'hybrid', got {mode!r}")
        if isinstance(include, str) or not set(include) <= {"vector"}:
            raise InvalidInput(f"include takes a tuple of 'vector', got {include!r}")
        if query is not None:
            if (text if isinstance(query, str) else vector) is not None:
                raise InvalidInput("give the query once: positionally, or as text=/vector=")
            text, vector = (query, vector) if isinstance(query, str) else (text, query)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise EmptyText("the query text is empty")
        if text is None and vector is None:
            raise InvalidInput("search() needs a query: a text, a vector, or both")
        if mode != "vector" and text is None:
            raise InvalidInput(f"mode={mode!r} needs a text query (text=...)")
        hits = self._search(text, vector, k, mode, where, state_set, knobs)
        return self._with_vectors(hits) if include else hits

    def _search(
        self,
        text: str | None,
        vector: Any,
        k: int,
        mode: Mode,
        where: Mapping[str, Any] | None,
        states: tuple[State, ...],
        knobs: _Knobs,
    ) -> list[Hit]:
        if mode == "text":
            assert text is not None
            return self._ctx.search.text(self._id, text, k, where=where, states=states)
        dim = self.dim  # NOTE: read once: each read asks SQLite whether another process committed
        if dim is None:
            return []
        if vector is not None:
            qvec = check_matrix(vector, rows=1, dim=dim)
        else:
            assert text is not None
            qvec = self._embed([text], record=False)  # NOTE: a search never writes (frozen vaults search too)
        if mode == "vector":
            return self._ctx.search.vector(self._id, qvec, k, where=where, states=states, **knobs)[0]
        assert text is not None
        depth = max(2 * k, 20)
        by_vector = self._ctx.search.vector(self._id, qvec, depth, where=where, states=states, **knobs)[0]
        by_text = self._ctx.search.text(self._id, text, depth, where=where, states=states)
        return fuse([by_vector, by_text], k)

    def _with_vectors(self, hits: list[Hit]) -> list[Hit]:
        return self._with_vectors_batch([hits])[0]

    def search_batch(
        self,
        queries: Sequence[str] | Any,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        states: str | State | Sequence[str | State] = "active",
        ef: int | None = None,
        nprobe: int | None = None,
        rerank: int | None = None,
        touch: bool = True,
        include: Sequence[Include] = (),
    ) -> list[list[Hit]]:
        """Vector search for many queries at once (texts, or an (m, dim) matrix): one list of hits each.

        Much faster per query than calling :meth:`search` in a loop: FAISS spreads the batch over
        its threads (see ``sigmavault.set_threads``) and hits are looked up in one pass.
        ``touch=False`` does not count the hits as accesses (as ``get(touch=False)``): at
        thousands of queries per call, recording ~10 accesses each is a large share of the time.
        ``include=("vector",)`` returns each hit's stored vector in ``Hit.vector`` (as :meth:`search`).
        """
        validate.integer(k, "k", lo=1), validate.flag(touch, "touch")
        validate.json_doc(where, "where", error=InvalidFilter, extended=True)
        if isinstance(include, str) or not set(include) <= {"vector"}:
            raise InvalidInput(f"include takes a tuple of 'vector', got {include!r}")
        knobs = _knobs(ef, nprobe, rerank)
        state_set = _states(states)
        if isinstance(queries, str):
            raise InvalidInput("search_batch takes a list of texts or a matrix; use search() for one query")
        texts = isinstance(queries, Sequence) and len(queries) > 0 and all(isinstance(q, str) for q in queries)
        if isinstance(queries, Sequence) and len(queries) == 0:
            return []
        if self.dim is None:
            return [[] for _ in range(len(queries))]
        if texts:
            for i, q in enumerate(queries):
                if not q.strip():
                    raise EmptyText(f"query text {i} is empty")
            qmat = self._embed(list(queries), record=False)
        else:
            qmat = check_matrix(queries, dim=self.dim, what="queries")
        found = self._ctx.search.vector(self._id, qmat, k, where=where, states=state_set, touch=touch, **knobs)
        if include:
            return self._with_vectors_batch(found)
        return found

    def _with_vectors_batch(self, lists: list[list[Hit]]) -> list[list[Hit]]:
        """Every list's hits with their stored vectors (one lookup for all the lists)."""
        ids = list(dict.fromkeys(h.id for hits in lists for h in hits))
        found = {u.id: u.vector for u in self._ctx.units.get_many(ids, cid=self._id)}
        return [[dataclasses.replace(h, vector=found.get(h.id)) for h in hits] for hits in lists]

    # -- index ------------------------------------------------------------------------------

    def index_info(self) -> dict[str, Any]:
        """How vector search runs here: configured and active kind, and the index file's coverage."""
        return self._ctx.indexes.info(self._ctx.catalog.state(self._id))

    def wait_index(self) -> dict[str, Any]:
        """Block until this collection's index is loaded and up to date; returns :meth:`index_info`.

        Index work (a first build after an add crosses the ANN threshold, an extension, loading
        the file after open) runs on a background thread; searches meanwhile answer exactly, or
        from the previous index plus an exact scan of the newer rows. Re-raises a failed build.
        """
        self._ctx.indexes.wait(self._ctx.catalog.state(self._id))
        return self.index_info()

    def build_index(self, *, progress: Progress | None = None) -> dict[str, Any]:
        """Build (or rebuild) the ANN index now instead of at the first search; returns :meth:`index_info`."""
        return self.compact(progress=progress)

    def compact(self, *, progress: Progress | None = None) -> dict[str, Any]:
        """Rebuild the ANN index without deleted and replaced vectors (exact collections: nothing to do)."""
        return self._ctx.indexes.compact(self._ctx.catalog.state(self._id), progress=progress)

    def find_similar(self, id_or_vector: str | Any, threshold: float = 0.85, *, k: int | None = None) -> list[Hit]:
        """Near duplicates by SimHash: units whose signature agrees on at least ``threshold`` of its bits."""
        validate.number(threshold, "threshold", lo=0.0, hi=1.0), validate.integer(k, "k", lo=0, optional=True)
        st = self._ctx.catalog.state(self._id)
        exclude = None
        if isinstance(id_or_vector, str):
            unit = self.get(id_or_vector, touch=False)
            probe = unit.semantic_hash
            exclude = self._ctx.units.vec_row_of(unit.id)
        else:
            if st.planes is None:
                return []
            probe = int(signatures(check_matrix(id_or_vector, rows=1, dim=self.dim), st.planes)[0])
        found = self._ctx.search.similar(self._id, probe, threshold, exclude_row=exclude)
        if k is not None:
            found = found[:k]
        info = self._ctx.units.by_rows(self._id, [r for r, _ in found])
        return [Hit(id=info[r][0], score=s, text=info[r][1], metadata=info[r][2]) for r, s in found if r in info]


def _ids(ids: Sequence[str], n: int | None) -> list[str]:
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise InvalidInput(f"ids must be a list of strings, got {validate.show(ids)}")
    out = list(ids)
    if n is not None and len(out) != n:
        raise InvalidInput(f"got {len(out)} ids for {n} units")
    plain = out and _STR.issuperset(map(type, out)) and min(map(len, out)) > 0 and max(map(len, out)) <= 256
    if plain and "\0" not in "".join(out):
        return out  # NOTE: the checks below, without a Python step per id
    for i in out:
        if not isinstance(i, str) or not i or len(i) > 256 or "\0" in i:
            raise InvalidInput(f"id {validate.show(i)}: ids are non-empty strings of at most 256 characters")
    return out


def _labels(values: list[Any], what: str, *, optional: bool = True) -> list[Any]:
    """Check per-unit string fields (kind, conversation_id, parent_id, kv_ref) before any write."""
    if _TEXT_TYPES.issuperset(map(type, values)):
        # NOTE: plain str or None only, so equal values are the same label: each distinct one is
        # checked once (a batch usually has one kind), and a bad one by the loop below, with its index.
        try:
            for v in set(values):
                validate.ident(v, what, optional=optional)
            return values
        except InvalidInput:
            pass
    for i, v in enumerate(values):
        validate.ident(v, f"{what} {i}", optional=optional)
    return values


class _Knobs(TypedDict):
    ef: int | None
    nprobe: int | None
    rerank: int | None


def _knobs(ef: int | None, nprobe: int | None, rerank: int | None) -> _Knobs:
    """Validate per-search ANN knobs (None = the collection's default)."""
    for name, value in (("ef", ef), ("nprobe", nprobe), ("rerank", rerank)):
        validate.integer(value, name, lo=1, hi=1 << 30, optional=True)
    return {"ef": ef, "nprobe": nprobe, "rerank": rerank}


def index_config(stored: Mapping[str, Any], index: str | None, params: Mapping[str, int]) -> dict[str, Any] | None:
    """The collection's new ``index`` config, or None when the call changes nothing."""
    if index is None and not params:
        return None
    unknown = set(params) - {"ef", "nprobe", "rerank", "m", "ef_construction", "nlist", "bits"}
    if unknown:
        raise InvalidInput(
            f"unknown collection option(s) {', '.join(sorted(unknown))}; index options are "
            "ef, nprobe, rerank, m, ef_construction, nlist, bits"
        )
    merged = {**(stored.get("index") or {}), **params}
    if index is not None:
        merged["kind"] = index
    try:
        return IndexConfig(**merged).to_json()
    except TypeError as exc:
        raise InvalidInput(f"bad index option: {exc}") from None


def _per_unit(value: Any, n: int, what: str, *, default: Any) -> list[Any]:
    """One value for all units, or a list with one per unit."""
    if value is None:
        return [default] * n
    if isinstance(value, str | Mapping):
        return [value] * n
    if not isinstance(value, Sequence):
        raise InvalidInput(f"{what}: give one value or a list with one per unit, got {validate.show(value)}")
    out = list(value)
    if len(out) != n:
        raise InvalidInput(f"{what}: got {len(out)} values for {n} units (give one value, or one per unit)")
    return out


def _states(states: str | State | Sequence[str | State]) -> tuple[State, ...]:
    if not isinstance(states, str | State):
        validate.choices(list(states) if isinstance(states, Sequence) else states, "states", [s.value for s in State])
    if states == "all":
        return tuple(State)
    if isinstance(states, str | State):
        return (State.parse(states),)
    return tuple(State.parse(s) for s in states)
