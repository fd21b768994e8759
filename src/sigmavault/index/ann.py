"""Approximate nearest-neighbour indexes over float32 rows: FAISS HNSW and IVF-RaBitQ, refined exactly.

Knows vectors and int64 row ids only. Both kinds store compressed codes (HNSW: 8-bit scalar
quantised vectors on a graph; IVF-RaBitQ: one bit per dimension in inverted lists) and return a
*candidate* list of ``k * rerank`` rows; :func:`refine` then scores the candidates exactly against
the caller's float32 matrix (the memory-mapped vector file), so the index never holds a second
float32 copy and every returned score is exact. Scores follow ``index.exact``: higher is better
(inner product for ``cosine``/``ip``, negated squared L2 for ``l2``).

FAISS is imported on first use, so ``import sigmavault`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sigmavault.errors import Corrupted, InvalidInput
from sigmavault.index.exact import exact_search, top_k

__all__ = [
    "FEW_QUERIES",
    "KINDS",
    "ONE_THREAD_ROWS",
    "AnnIndex",
    "BuildParams",
    "Eligible",
    "MaskEligible",
    "QueryParams",
    "bitmap",
    "default_bits",
    "default_ef",
    "default_nlist",
    "default_nprobe",
    "exact_rows",
    "get_threads",
    "merge",
    "refine",
    "search",
    "set_threads",
    "threads_for",
]

KINDS = ("hnsw", "ivf-rabitq")
Rows = npt.NDArray[np.int64]
Matrix = npt.NDArray[np.float32]
Progress = Callable[[int, int], None]

_ADD_CHUNK = 50_000
_TRAIN_PER_LIST = 64  # training points per IVF list: above FAISS's 39 minimum, far below its 256 cap
_TRAIN_HNSW = 65_536  # rows that fix the 8-bit quantiser's per-dimension ranges
_SEED = 1234


def _faiss() -> Any:
    import faiss

    return faiss


def set_threads(n: int) -> None:
    """Threads FAISS may use for building and batch search (OpenMP); ``n >= 1``."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidInput(f"threads must be a positive integer, got {n!r}")
    _faiss().omp_set_num_threads(n)


def get_threads() -> int:
    return int(_faiss().omp_get_max_threads())


FEW_QUERIES = 8  # searches of fewer queries run on one thread (see threads_for)
# NOTE: an exact search of fewer than FEW_QUERIES queries over at most this many rows is scored in
# FAISS's one-thread loop over the rows: a BLAS product for one query fans out over every core and
# stalls on a busy machine. Above it the scan is memory-bound and two threads pay (100k x 384,
# load 1: 17 ms on one thread, 5.4 ms as a BLAS product). Also the size below which
# index="auto" searches exactly (units.indexes.AUTO_MIN_ROWS).
ONE_THREAD_ROWS = 20_000


@contextmanager
def threads_for(queries: int) -> Iterator[None]:
    """One OpenMP thread while this thread searches fewer than :data:`FEW_QUERIES` queries.

    NOTE: FAISS opens OpenMP regions even for one query (IndexIDMap's label mapping, IndexFlat's
    scan); on a busy machine the query then waits milliseconds for a second thread to be scheduled
    (issue 14: 72 ms p50 for a 10k flat scan at load 10, 3.6 ms on one thread). libgomp keeps the
    thread count per OS thread, so this touches no other thread's searches or builds.
    """
    if queries >= FEW_QUERIES:
        yield
        return
    faiss = _faiss()
    before = int(faiss.omp_get_max_threads())
    if before == 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def default_bits(dim: int) -> int:
    """RaBitQ bits per dimension: about 256 bits per vector in all, at least one per dimension.

    NOTE: one bit per dimension estimates distances well at 384 dimensions (recall@10 0.99 after
    refine at 1M) but poorly at 64, where the estimates are too noisy for the refine to repair.
    """
    return int(min(8, max(1, math.ceil(256 / max(1, dim)))))


SCAN_BUDGET = 16_384  # codes an IVF search scans by default (about 0.4 ms at 384-d, one thread)


def default_nprobe(nlist: int, entries: int) -> int:
    """Lists probed by default: those holding about :data:`SCAN_BUDGET` vectors, at least 16.

    NOTE: a fixed scan keeps latency flat as a collection grows. Small collections are then
    probed (nearly) whole, which real text needs: MiniLM embeddings of short texts reached
    recall@10 0.96 only with a quarter of 256 lists probed (benchmarks/ann.py, Debian set).
    """
    per_list = max(1.0, entries / max(1, nlist))
    return int(min(nlist, max(16, math.ceil(SCAN_BUDGET / per_list))))


EF_MIN, EF_MAX = 128, 512


def default_ef(entries: int) -> int:
    """HNSW beam width by default: ``128 * (entries / 100k) ** 0.3`` within 128..512 (168 at 250k, 256 at 1M).

    NOTE: a graph of more vectors needs a wider beam for the same recall, and the beam costs
    little on a small graph. 128 kept recall@10 >= 0.95 on every set tested (a 4k x 32-d noisy
    set needs more than 32: 0.855 there); raw FAISS HNSWFlat M=32 reaches only 0.877 at ef 64 on
    the 1M clustered set, hence the growth (docs/architecture.md, "Index choice").
    """
    return int(min(EF_MAX, max(EF_MIN, math.ceil(128 * (max(1, entries) / 100_000) ** 0.3))))


def default_nlist(rows: int) -> int:
    """About ``2 * sqrt(rows)`` inverted lists (a power of two), with >= 39 training rows per list."""
    if rows <= 0:
        return 1
    target = 2 ** round(math.log2(max(1.0, 2 * math.sqrt(rows))))
    return int(max(1, min(target, rows // 39, 65536)))


@dataclass(frozen=True, slots=True)
class BuildParams:
    """What an index is built with; changing any of these needs a rebuild."""

    kind: str
    metric: str
    m: int = 32  # HNSW: graph degree
    ef_construction: int = 40  # HNSW: beam width while inserting
    nlist: int = 0  # IVF: inverted lists; 0 = default_nlist(rows) at build time
    bits: int = 0  # IVF: RaBitQ bits per dimension; 0 = default_bits(dim) at build time

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInput(f"index kind {self.kind!r}: use one of {', '.join(KINDS)}")
        for name in ("m", "ef_construction"):
            if getattr(self, name) < 2:
                raise InvalidInput(f"index parameter {name} must be >= 2, got {getattr(self, name)}")
        if self.nlist < 0:
            raise InvalidInput(f"nlist must be >= 0 (0 = automatic), got {self.nlist}")
        if not 0 <= self.bits <= 8:
            raise InvalidInput(f"bits must be in 0..8 (0 = automatic), got {self.bits}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildParams:
        return cls(**{k: data[k] for k in ("kind", "metric", "m", "ef_construction", "nlist", "bits") if k in data})


@dataclass(frozen=True, slots=True)
class QueryParams:
    """Per-search knobs: HNSW beam ``ef``, IVF lists probed ``nprobe``, refine depth ``rerank``.

    ``rerank`` is how many candidates per wanted result go to the exact float32 refine
    (``k * rerank`` in all). ``0`` for ``nprobe`` means "from nlist" (see :meth:`AnnIndex.nprobe_for`),
    ``0`` for ``ef`` "from the index's size" (see :func:`default_ef`).
    """

    ef: int = 0  # 0 = default_ef(entries)
    nprobe: int = 0
    rerank: int = 0  # 0 = the kind's default
    qb: int = 8  # RaBitQ: bits per query coordinate

    def __post_init__(self) -> None:
        for name in ("ef", "nprobe", "rerank"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidInput(f"{name} must be a non-negative integer, got {value!r}")
        if not 1 <= self.qb <= 8:
            raise InvalidInput(f"qb must be in 1..8, got {self.qb}")

    def with_defaults(self, kind: str) -> QueryParams:
        if self.rerank:
            return self
        return replace(self, rerank=2 if kind == "hnsw" else 10)


class Eligible(Protocol):
    """Which rows a search may return, asked per candidate so that a search costs O(candidates)."""

    def of(self, rows: Rows) -> npt.NDArray[np.bool_]:
        """Eligibility of each of ``rows``."""
        ...

    def mask(self, start: int, stop: int) -> npt.NDArray[np.bool_]:
        """Eligibility of rows ``start .. stop - 1``, as one mask."""
        ...


class MaskEligible:
    """Eligibility given as a boolean mask over all rows."""

    def __init__(self, mask: npt.NDArray[np.bool_]) -> None:
        self._mask = mask

    def of(self, rows: Rows) -> npt.NDArray[np.bool_]:
        return self._mask[rows]

    def mask(self, start: int, stop: int) -> npt.NDArray[np.bool_]:
        return self._mask[start:stop]


def bitmap(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """Pack an eligibility mask (index = row id) into the little-endian bitmap IDSelectorBitmap reads."""
    return np.packbits(mask, bitorder="little")


class AnnIndex:
    """One FAISS index whose ids are row numbers of the caller's matrix."""

    def __init__(self, index: Any, params: BuildParams, dim: int) -> None:
        self.index = index
        self.params = params
        self.dim = dim
        self.nlist = int(index.nlist) if params.kind == "ivf-rabitq" else 0
        self._param_cache: dict[tuple[int, int, int, int], Any] = {}
        self._graph: tuple[Any, Rows] | None = None
        self._ntotal = -1

    @property
    def ntotal(self) -> int:
        if self._ntotal < 0:  # NOTE: a SWIG attribute read costs microseconds; asked twice per search
            self._ntotal = int(self.index.ntotal)
        return self._ntotal

    def nprobe_for(self, q: QueryParams) -> int:
        return min(q.nprobe, self.nlist) if q.nprobe else default_nprobe(self.nlist, self.ntotal)

    def ef_for(self, q: QueryParams) -> int:
        return q.ef or default_ef(self.ntotal)

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def build(cls, matrix: Matrix, rows: Rows, params: BuildParams, *, progress: Progress | None = None) -> AnnIndex:
        """Train on a seeded sample of ``rows`` and add them all, in chunks (bounded memory)."""
        faiss = _faiss()
        n, dim = len(rows), matrix.shape[1]
        if n == 0:
            raise InvalidInput("cannot build an index over zero rows")
        metric = faiss.METRIC_L2 if params.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        rng = np.random.default_rng(_SEED)
        if params.kind == "ivf-rabitq":
            nlist = params.nlist or default_nlist(n)
            params = replace(params, nlist=nlist, bits=params.bits or default_bits(dim))
            quantizer = faiss.IndexFlatL2(dim) if params.metric == "l2" else faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFRaBitQ(quantizer, dim, nlist, metric, True, params.bits)
            index.own_fields = True
            quantizer.this.disown()
            index.cp.seed = _SEED
            index.cp.min_points_per_centroid = 1
            sample = _sample(rows, _TRAIN_PER_LIST * nlist, rng)
        else:
            inner = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, params.m, metric)
            inner.hnsw.efConstruction = params.ef_construction
            index = faiss.IndexIDMap2(inner)
            index.own_fields = True
            inner.this.disown()
            sample = _sample(rows, _TRAIN_HNSW, rng)
        if progress is not None:
            progress(0, n)
        index.train(np.ascontiguousarray(matrix[sample]))
        built = cls(index, params, dim)
        built.add(matrix, rows, progress=progress)
        return built

    def add(self, matrix: Matrix, rows: Rows, *, progress: Progress | None = None) -> None:
        """Add ``rows`` of ``matrix`` under their row numbers (not thread-safe with search)."""
        done = 0
        for start in range(0, len(rows), _ADD_CHUNK):
            chunk = np.ascontiguousarray(rows[start : start + _ADD_CHUNK], dtype=np.int64)
            self.index.add_with_ids(np.ascontiguousarray(matrix[chunk]), chunk)
            self._graph = None
            self._ntotal = -1
            done += len(chunk)
            if progress is not None:
                progress(done, len(rows))

    # -- searching --------------------------------------------------------------------------

    def candidates(
        self, queries: Matrix, depth: int, q: QueryParams, *, allowed: npt.NDArray[np.bool_] | None = None
    ) -> Rows:
        """Up to ``depth`` candidate rows per query (-1 pads); ``allowed`` marks the eligible rows."""
        graph = self._graph_of() if self.params.kind == "hnsw" else None
        if allowed is None:
            sp = self._params(q, depth)
            bits = None
        else:
            sp = self._new_params(q, depth)
            if graph is not None:  # NOTE: the graph numbers its vectors by position, not by row
                ids = graph[1]
                inside = ids < len(allowed)
                by_pos = np.zeros(len(ids), dtype=bool)
                by_pos[inside] = allowed[ids[inside]]
                allowed = by_pos
            bits = bitmap(allowed)
            sel = _faiss().IDSelectorBitmap(bits)
            sp.sel = sel  # NOTE: ``sel`` (and through it ``bits``) stays referenced until return
        depth = max(1, min(depth, self.ntotal))
        x = np.ascontiguousarray(queries, dtype=np.float32)
        if graph is None:
            _, found = self.index.search(x, depth, params=sp)
            return np.asarray(found, dtype=np.int64)
        # NOTE: the graph inside the IndexIDMap2, searched directly and its positions mapped to rows
        # here: IndexIDMap's own mapping opens an OpenMP region even for one query, and on a busy
        # machine one query then waits milliseconds for a second thread (issue 14).
        _, pos = graph[0].search(x, depth, params=sp)
        return np.where(pos >= 0, graph[1][pos], -1)

    def _graph_of(self) -> tuple[Any, Rows]:
        """The HNSW index inside the IndexIDMap2 and its position -> row map (cached until an add)."""
        if self._graph is None:
            faiss = _faiss()
            self._graph = (faiss.downcast_index(self.index.index), faiss.vector_to_array(self.index.id_map))
        return self._graph

    def _params(self, q: QueryParams, depth: int) -> Any:
        """FAISS search parameters without a selector, reused (FAISS only reads them)."""
        key = (q.nprobe, q.qb, q.ef, depth)
        sp = self._param_cache.get(key)
        if sp is None:
            if len(self._param_cache) > 64:
                self._param_cache.clear()
            sp = self._param_cache[key] = self._new_params(q, depth)
        return sp

    def _new_params(self, q: QueryParams, depth: int) -> Any:
        faiss = _faiss()
        if self.params.kind == "ivf-rabitq":
            sp = faiss.IVFRaBitQSearchParameters()
            sp.nprobe = self.nprobe_for(q)
            sp.qb = q.qb
        else:
            sp = faiss.SearchParametersHNSW()
            sp.efSearch = max(self.ef_for(q), depth)
        return sp

    def check_structure(self) -> None:
        """Raise Corrupted unless a loaded HNSW index is consistent enough for FAISS to search safely.

        NOTE: FAISS trusts its input: a damaged offset, level or neighbour id makes a search read
        out of bounds. This checks every one of them (and the quantiser's shape) in a few
        vectorised passes, about 0.04 s at 1M (a SHA-256 of the 0.66 GB file takes 0.45 s), so an
        index can serve before its checksum is confirmed. What it cannot see (a changed code or
        neighbour that is still in range) only changes which candidates are refined: every
        returned score is still computed exactly from the vector file.
        """
        if self.params.kind != "hnsw":
            return
        faiss = _faiss()
        n, dim = self.ntotal, self.dim
        inner = faiss.downcast_index(self.index.index)
        storage = faiss.downcast_index(inner.storage) if isinstance(inner, faiss.IndexHNSW) else None
        if not isinstance(inner, faiss.IndexHNSWSQ) or not isinstance(storage, faiss.IndexScalarQuantizer):
            raise Corrupted(f"index holds a {type(inner).__name__}, expected an HNSW graph over 8-bit codes")
        problem = None
        trained = faiss.vector_to_array(storage.sq.trained)
        if (
            storage.sq.qtype != faiss.ScalarQuantizer.QT_8bit
            or storage.d != dim
            or storage.code_size != dim
            or inner.ntotal != n
            or storage.ntotal != n
            or storage.codes.size() != n * dim
            or self.index.id_map.size() != n
            or len(trained) != 2 * dim
            or not np.isfinite(trained).all()
        ):
            problem = "its codes or quantiser do not match its header"
        else:
            problem = _graph_problem(faiss, inner.hnsw, n)
        if problem is not None:
            raise Corrupted(f"index graph is damaged: {problem}")

    # -- files ------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        _faiss().write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, params: BuildParams, dim: int, *, mmap: bool = False) -> AnnIndex:
        """Read an index written by :meth:`save`; ``mmap`` maps HNSW codes instead of copying them.

        A memory-mapped index cannot grow (FAISS aborts on add); load it again without ``mmap``
        before :meth:`add`. The caller verifies the file's checksum first: FAISS trusts its input.
        """
        faiss = _faiss()
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap and params.kind == "hnsw" else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise Corrupted(f"{path}: FAISS cannot read this index ({str(exc).splitlines()[0]})") from None
        want = "IndexIVFRaBitQ" if params.kind == "ivf-rabitq" else "IndexIDMap2"
        metric = faiss.METRIC_L2 if params.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if type(index).__name__ != want or index.d != dim or index.metric_type != metric:
            raise Corrupted(
                f"{path}: holds a {type(index).__name__} of {index.d}-d vectors, expected a {params.kind} "
                f"index of {dim}-d vectors ({params.metric})"
            )
        if params.kind == "ivf-rabitq" and params.nlist and index.nlist != params.nlist:
            raise Corrupted(f"{path}: has {index.nlist} lists, expected {params.nlist}")
        return cls(index, params, dim)


def _view(faiss: Any, vec: Any, dtype: type) -> npt.NDArray[Any]:
    """A zero-copy numpy view of a FAISS vector (valid while the index lives)."""
    size = int(vec.size())
    if size == 0:
        return np.zeros(0, dtype=dtype)
    return np.asarray(faiss.rev_swig_ptr(vec.data(), size))


def _graph_problem(faiss: Any, hnsw: Any, n: int) -> str | None:
    """What is out of range in an HNSW graph of ``n`` nodes, or None."""
    cum = faiss.vector_to_array(hnsw.cum_nneighbor_per_level).astype(np.int64)
    levels = _view(faiss, hnsw.levels, np.int32)
    offsets = _view(faiss, hnsw.offsets, np.uint64)
    neighbors = _view(faiss, hnsw.neighbors, np.int32)
    if len(levels) != n or len(offsets) != n + 1 or len(cum) < 2 or cum[0] != 0 or (np.diff(cum) < 0).any():
        return "its level tables do not match its node count"
    if n == 0:
        return None
    top = int(hnsw.max_level)
    if int(levels.min()) < 1 or int(levels.max()) != top + 1 or top + 1 >= len(cum):
        return "a node level is out of range"
    if not 0 <= int(hnsw.entry_point) < n or int(levels[hnsw.entry_point]) != top + 1:
        return "its entry point is out of range"
    steps = offsets.view(np.int64)
    if steps[0] != 0 or steps[-1] != len(neighbors) or not np.array_equal(np.diff(steps), cum[levels]):
        return "a neighbour list is out of place"
    if len(neighbors) and (int(neighbors.min()) < -1 or int(neighbors.max()) >= n):
        return "a neighbour id is out of range"
    return None


@lru_cache(maxsize=256)
def _with_defaults(q: QueryParams, kind: str) -> QueryParams:
    return q.with_defaults(kind)


def _sample(rows: Rows, size: int, rng: np.random.Generator) -> Rows:
    if len(rows) <= size:
        return rows
    return np.sort(rng.choice(rows, size=size, replace=False))


def refine(
    matrix: Matrix, queries: Matrix, candidates: Rows, k: int, *, metric: str
) -> tuple[npt.NDArray[np.float32], Rows]:
    """Exact top-``k`` among each query's candidate rows (-1 = none), scored in FAISS's C++ loop.

    Reads candidate rows straight from ``matrix`` (the memory map): no gather, no copy.
    """
    faiss = _faiss()
    m, depth = candidates.shape
    scores = np.full((m, k), -np.inf, dtype=np.float32)
    found = np.full((m, k), -1, dtype=np.int64)
    if m == 0 or depth == 0 or matrix.shape[0] == 0:
        return scores, found
    # NOTE: FAISS stops a query's scan at its first -1, so valid candidates must come first.
    valid = candidates >= 0
    if not valid.all():
        order = np.argsort(~valid, axis=1, kind="stable")
        candidates = np.take_along_axis(candidates, order, axis=1)
    cands = np.ascontiguousarray(candidates, dtype=np.int64)
    x = np.ascontiguousarray(queries, dtype=np.float32)
    y = matrix if matrix.flags.c_contiguous else np.ascontiguousarray(matrix)
    args = (
        faiss.swig_ptr(x),
        faiss.swig_ptr(y),
        faiss.swig_ptr(cands),
        matrix.shape[1],
        m,
        y.shape[0],
        depth,
        k,
        faiss.swig_ptr(scores),
        faiss.swig_ptr(found),
        depth,
    )
    return _knn_by_idx(faiss, args, scores, found, metric=metric)


def _knn_by_idx(
    faiss: Any, args: tuple[Any, ...], scores: npt.NDArray[np.float32], found: Rows, *, metric: str
) -> tuple[npt.NDArray[np.float32], Rows]:
    """Run FAISS's exact scoring of listed rows in place; scores become "higher is better"."""
    if metric == "l2":
        faiss.knn_L2sqr_by_idx(*args)
        np.negative(scores, out=scores)
    else:
        faiss.knn_inner_products_by_idx(*args)
    scores[found < 0] = -np.inf
    return scores, found


def merge(
    a: tuple[npt.NDArray[np.float32], Rows], b: tuple[npt.NDArray[np.float32], Rows], k: int
) -> tuple[npt.NDArray[np.float32], Rows]:
    """The best ``k`` of two (scores, rows) result sets over disjoint rows."""
    scores = np.concatenate([a[0], b[0]], axis=1)
    rows = np.concatenate([a[1], b[1]], axis=1)
    idx = top_k(scores, k)
    best = np.take_along_axis(scores, idx, axis=1)
    out = np.take_along_axis(rows, idx, axis=1)
    out[~np.isfinite(best)] = -1
    return best, out


def exact_rows(
    matrix: Matrix, queries: Matrix, rows: Rows, k: int, *, metric: str
) -> tuple[npt.NDArray[np.float32], Rows]:
    """Exact top-``k`` over ``rows`` (shared by every query): the "selective filter" path.

    One or a few queries read just those rows in FAISS's loop (no copy); a batch gathers them
    once and scores with one matrix product, which is faster when the rows are reused.
    """
    m = queries.shape[0]
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if m >= 8 or len(rows) == 0:
        return exact_search(matrix, queries, k, metric=metric, rows=rows)
    faiss = _faiss()
    scores = np.full((m, k), -np.inf, dtype=np.float32)
    found = np.full((m, k), -1, dtype=np.int64)
    x = np.ascontiguousarray(queries, dtype=np.float32)
    args = (
        faiss.swig_ptr(x),
        faiss.swig_ptr(matrix),
        faiss.swig_ptr(rows),
        matrix.shape[1],
        m,
        matrix.shape[0],
        len(rows),
        k,
        faiss.swig_ptr(scores),
        faiss.swig_ptr(found),
        0,
    )
    return _knn_by_idx(faiss, args, scores, found, metric=metric)


def search(
    ann: AnnIndex,
    matrix: Matrix,
    queries: Matrix,
    k: int,
    *,
    metric: str,
    q: QueryParams,
    covers: int,
    eligible: Eligible,
    selector: bool = False,
) -> tuple[npt.NDArray[np.float32], Rows]:
    """Top-``k`` eligible rows of ``matrix`` for each query, exact scores, -1/-inf padded.

    Rows below ``covers`` come from the index: ``k * rerank`` candidates, ineligible ones
    dropped, the rest refined exactly. Rows from ``covers`` on (added since the index was
    written) are scanned exactly and merged. ``selector=True`` passes the eligible rows to FAISS
    as an ID selector (broad filters); otherwise ineligible candidates are dropped after the
    search (cost: the candidates, not the collection) and only queries left with fewer than ``k``
    are searched again with the selector.
    """
    q = _with_defaults(q, ann.params.kind)
    depth = max(k, k * q.rerank)
    rows_total = matrix.shape[0]
    if selector:
        cands = ann.candidates(queries, depth, q, allowed=eligible.mask(0, covers))
    else:
        cands = ann.candidates(queries, depth, q)
        ok = (cands >= 0) & (cands < covers)
        ok[ok] = eligible.of(cands[ok])
        # NOTE: the usual case (every candidate eligible) skips the bookkeeping below: small numpy
        # calls cost microseconds each on a cold cache, next to a 0.3 ms graph search.
        starving = np.zeros(0, dtype=np.int64)
        if not ok.all():
            cands[~ok] = -1
            starving = np.flatnonzero(ok.sum(axis=1) < min(k, ann.ntotal))
        if len(starving):
            again = ann.candidates(queries[starving], depth, q, allowed=eligible.mask(0, covers))
            width = min(cands.shape[1], again.shape[1])
            cands[starving] = -1
            cands[starving, :width] = again[:, :width]
    best = refine(matrix, queries, cands, k, metric=metric)
    if covers < rows_total:
        tail_mask = eligible.mask(covers, rows_total)
        if queries.shape[0] < 8:
            # NOTE: FAISS's one-thread loop over the listed rows: no BLAS fan-out for one query.
            return merge(best, exact_rows(matrix, queries, np.flatnonzero(tail_mask) + covers, k, metric=metric), k)
        tail = exact_search(matrix[covers:rows_total], queries, k, metric=metric, mask=tail_mask)
        shifted = np.where(tail[1] >= 0, tail[1] + covers, -1)
        best = merge(best, (tail[0], shifted), k)
    return best
