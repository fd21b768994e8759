"""Approximate search: recall against brute force, restart-stable results, deletes, filters, batches.

Every kind is forced on a seeded 20k x 64 clustered set (above the 1k rows where ANN starts).
Brute force is numpy over the same unit-normalised rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_py

import sigmavault as sv

N, DIM, NQ, K = 20_000, 64, 100, 10
KINDS = ("hnsw", "ivf-rabitq")
# Search settings under which both kinds look at (nearly) everything: their answers must then equal
# the exact ones, which makes "filtered ANN = exact filtered" checkable without a tolerance.
EXHAUSTIVE = {"ef": 2048, "nprobe": 4096, "rerank": 50}


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Gaussian clusters in a 16-d latent space mapped to ``dim`` dims, plus noise; unit rows."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((200, 16)).astype(np.float32)
    basis = np.linalg.qr(rng.standard_normal((dim, 16)))[0].T.astype(np.float32)
    z = centers[rng.integers(0, 200, n)] + rng.standard_normal((n, 16)).astype(np.float32)
    x = z @ basis + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


DATA = clustered(N, DIM, seed=7)
QUERIES = clustered(NQ, DIM, seed=8)
IDS = [f"u{i}" for i in range(N)]
META = [{"g": i % 4, "half": i % 2 == 0} for i in range(N)]


def brute(queries: np.ndarray, allowed: np.ndarray | None = None, k: int = K) -> list[list[str]]:
    scores = queries @ DATA.T
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[IDS[j] for j in row if np.isfinite(scores[i, j])] for i, row in enumerate(top)]


def recall(found: list[list[sv.Hit]], truth: list[list[str]]) -> float:
    return float(np.mean([len({h.id for h in f} & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module", params=KINDS)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One vault per kind with the 20k set added and its index built (tests copy it)."""
    kind = request.param
    path = tmp_path_factory.mktemp(kind) / "vault"
    with sv.open(path) as vault:
        col = vault.collection("vecs", embedder=None, index=kind)
        col.add(vectors=DATA, ids=IDS, metadata=META)
        col.build_index()
    return kind, path


@pytest.fixture
def copy(built: tuple[str, Path], tmp_path: Path) -> tuple[str, Path]:
    kind, path = built
    shutil.copytree(path, tmp_path / "vault")
    return kind, tmp_path / "vault"


def test_recall_at_10_against_brute_force(built: tuple[str, Path]) -> None:
    kind, path = built
    with sv.open(path, frozen=True) as vault:
        col = vault.collection("vecs", embedder=None)
        assert col.index_info()["active"] == kind
        found = col.search_batch(QUERIES, K)
    assert recall(found, brute(QUERIES)) >= 0.95


def test_scores_are_exact_for_returned_ids(built: tuple[str, Path]) -> None:
    _, path = built
    with sv.open(path, frozen=True) as vault:
        hits = vault.collection("vecs", embedder=None).search(QUERIES[0], K)
    rows = [int(h.id[1:]) for h in hits]
    np.testing.assert_allclose([h.score for h in hits], DATA[rows] @ QUERIES[0], rtol=1e-5, atol=1e-6)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_results_identical_after_reopen_in_a_new_process(copy: tuple[str, Path]) -> None:
    _, path = copy
    with sv.open(path) as vault:
        col = vault.collection("vecs", embedder=None)
        col.add(vectors=clustered(300, DIM, seed=9), ids=[f"late{i}" for i in range(300)])  # an exact tail
        before = [[(h.id, h.score) for h in hits] for hits in col.search_batch(QUERIES[:20], K)]
    after = run_py(
        """
        import json, sys, numpy as np, sigmavault as sv
        q = np.array(json.loads(sys.argv[2]), dtype=np.float32)
        with sv.open(sys.argv[1]) as vault:
            col = vault.collection("vecs", embedder=None)
            res = col.search_batch(q, 10)
            info = col.index_info()
        print(json.dumps({"hits": [[[h.id, h.score] for h in hits] for hits in res], "info": info}))
        """,
        str(path),
        json.dumps(QUERIES[:20].tolist()),
    )
    assert [[tuple(h) for h in hits] for hits in after["hits"]] == before
    assert after["info"]["file"]["covers"] == N and after["info"]["loaded"]["covers"] == N


def test_deleted_and_replaced_vectors_are_never_returned(copy: tuple[str, Path]) -> None:
    _, path = copy
    with sv.open(path) as vault:
        col = vault.collection("vecs", embedder=None)
        first = col.search_batch(QUERIES, K)
        gone = sorted({h.id for hits in first for h in hits[:5]})
        col.delete(gone)
        moved = first[0][5].id
        col.update(moved, vector=-QUERIES[0])  # now the farthest point from query 0
        again = col.search_batch(QUERIES, K)
        returned = [h.id for hits in again for h in hits]
        assert not set(gone) & set(returned)
        assert moved not in [h.id for h in again[0]]
        assert all(len(hits) == K and len({h.id for h in hits}) == K for hits in again)
        allowed = np.ones(N, dtype=bool)
        allowed[[int(g[1:]) for g in gone]] = False
        allowed[int(moved[1:])] = False
        assert recall(again, brute(QUERIES, allowed)) >= 0.95


def test_state_filter_returns_only_that_state(copy: tuple[str, Path]) -> None:
    _, path = copy
    with sv.open(path) as vault:
        col = vault.collection("vecs", embedder=None)
        archived = [f"u{i}" for i in range(0, N, 3)]
        with vault.transaction():
            for uid in archived:
                col.update(uid, state="archived")
        hits = col.search_batch(QUERIES[:10], K, states="archived")
        active = col.search_batch(QUERIES[:10], K)
    assert all(h.id in set(archived) for hs in hits for h in hs)
    assert not {h.id for hs in active for h in hs} & set(archived)


@pytest.mark.parametrize(
    ("where", "share"),
    [({"half": True}, 0.5), ({"g": {"$in": [1, 2, 3]}}, 0.75), ({"g": 2}, 0.25), ({"g": 1, "half": True}, 0.0)],
)
def test_filtered_search_equals_exact_filtered_search(
    built: tuple[str, Path], where: dict[str, object], share: float
) -> None:
    """Broad filters go through a FAISS ID selector, selective ones (share 0: none match) exactly."""
    _, path = built
    with sv.open(path, frozen=True) as vault:
        col = vault.collection("vecs", embedder=None)
        ann = col.search_batch(QUERIES[:30], K, where=where, **EXHAUSTIVE)
        default = col.search_batch(QUERIES[:30], K, where=where)
    allowed = np.array(
        [all(m.get(k) == v or (isinstance(v, dict) and m[k] in v["$in"]) for k, v in where.items()) for m in META]
    )
    truth = brute(QUERIES[:30], allowed)
    assert [[h.id for h in hits] for hits in ann] == truth
    if share:
        assert recall(default, truth) >= 0.95
    assert all(allowed[int(h.id[1:])] for hits in default for h in hits)


def test_search_batch_matches_single_searches(built: tuple[str, Path]) -> None:
    _, path = built
    with sv.open(path, frozen=True) as vault:
        col = vault.collection("vecs", embedder=None)
        batch = col.search_batch(QUERIES[:10], K, where={"half": True})
        single = [col.search(q, K, where={"half": True}) for q in QUERIES[:10]]
    assert [[h.id for h in hs] for hs in batch] == [[h.id for h in hs] for hs in single]
    # NOTE: a batch may score with one matrix product, a single query with a dot-product loop:
    # the same sums in another order, so equal to float32 rounding, not bit for bit.
    np.testing.assert_allclose(
        [[h.score for h in hs] for hs in batch], [[h.score for h in hs] for hs in single], rtol=1e-5, atol=1e-6
    )


def test_per_query_knobs_trade_recall(built: tuple[str, Path]) -> None:
    kind, path = built
    knob = {"ef": 1} if kind == "hnsw" else {"nprobe": 1}
    with sv.open(path, frozen=True) as vault:
        col = vault.collection("vecs", embedder=None)
        narrow = recall(col.search_batch(QUERIES, K, rerank=1, **knob), brute(QUERIES))
        wide = recall(col.search_batch(QUERIES, K, **EXHAUSTIVE), brute(QUERIES))
    assert wide == 1.0
    assert narrow < wide


def test_bad_knobs_and_kinds_are_invalid_input(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        with pytest.raises(sv.InvalidInput, match="index"):
            vault.collection("a", embedder=None, index="annoy")  # type: ignore[arg-type]
        with pytest.raises(sv.InvalidInput, match="unknown collection option"):
            vault.collection("a", embedder=None, efsearch=10)
        col = vault.collection("a", embedder=None)
        col.add(vectors=DATA[:10])
        with pytest.raises(sv.InvalidInput, match="ef must be"):
            col.search(QUERIES[0], 3, ef=0)
        with pytest.raises(sv.InvalidInput, match="search_batch takes"):
            col.search_batch("one text", 3)
        with pytest.raises(sv.DimensionMismatch):
            col.search_batch(np.ones((2, DIM + 1), dtype=np.float32), 3)
    with pytest.raises(sv.InvalidInput, match="threads"):
        sv.set_threads(0)


def test_threads_setting_round_trips() -> None:
    before = sv.get_threads()
    try:
        sv.set_threads(1)
        assert sv.get_threads() == 1
    finally:
        sv.set_threads(before)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_other_metrics_rank_like_brute_force(tmp_path: Path, metric: str) -> None:
    rng = np.random.default_rng(3)
    data = clustered(4000, 32, seed=11) * rng.uniform(0.5, 2.0, (4000, 1)).astype(np.float32)
    queries = clustered(20, 32, seed=12)
    if metric == "l2":
        truth = np.argsort(((queries[:, None, :] - data[None]) ** 2).sum(-1), axis=1)[:, :5]
    else:
        truth = np.argsort(-(queries @ data.T), axis=1)[:, :5]
    with sv.open(tmp_path / "v") as vault:
        for kind in KINDS:
            col = vault.collection(f"{metric}-{kind}", embedder=None, metric=metric, index=kind)
            col.add(vectors=data, ids=[f"{kind}-{i}" for i in range(len(data))])
            found = col.search_batch(queries, 5, **EXHAUSTIVE)
            assert [[int(h.id.rsplit("-", 1)[1]) for h in hs] for hs in found] == truth.tolist(), kind


def test_search_batch_counts_accesses_unless_touch_is_false(copy: tuple[str, Path]) -> None:
    _, path = copy
    with sv.open(path) as vault:
        col = vault.collection("vecs", embedder=None)
        quiet = col.search_batch(QUERIES[:5], K, touch=False)
        first = quiet[0][0].id
        assert col.get(first, touch=False).access_count == 0
        col.search_batch(QUERIES[:1], K)
        assert col.get(first, touch=False).access_count == 1
