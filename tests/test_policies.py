"""vault.policies: typed learned parameters, searched by kind and similarity, consolidated with k-means++."""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sigmavault as sv
from sigmavault.cli.policies import register as register_cli
from sigmavault.policies.cluster import greedy_dedupe, kmeans

DIM = 16


def run_py(code: str, *args: str) -> str:
    """Run ``code`` in a fresh Python process (a real restart); returns its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def clusters(rng: np.random.Generator, n_clusters: int, size: int, spread: float = 0.05) -> list[np.ndarray]:
    """``n_clusters`` groups of ``size`` vectors tightly around mutually distant centers."""
    centers = unit(rng.normal(size=(n_clusters, DIM)))
    return [centers[c] + spread * rng.normal(size=(size, DIM)) for c in range(n_clusters)]


def test_put_get_roundtrip_and_upsert(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        p = vault.policies
        fisher = np.array([0.5, 0.0, 2.0], dtype=np.float32)
        a = p.put(
            "quantization",
            {"bits": 4, "threshold": 0.25},
            embedding=np.ones(DIM),
            confidence=0.8,
            source="deep",
            fisher=fisher,
        )
        got = p.get(a.id, touch=False)
        assert got == a and got.params == {"bits": 4, "threshold": 0.25} and got.source == "deep"
        assert np.array_equal(got.fisher, fisher) and np.array_equal(got.embedding, np.ones(DIM, dtype=np.float32))
        assert got.state == "active" and got.provenance == () and got.replaced_by is None

        again = p.put("quantization", [1, 2, 3], policy_id=a.id, confidence=0.3)
        assert again.created_at == a.created_at and again.params == [1, 2, 3] and again.embedding is None
        assert p.get(a.id).params == [1, 2, 3] and len(p) == 1
        assert p.kinds() == {"quantization": 1}
        assert p.count("quantization") == 1 and p.count("router") == 0
        assert vault.check().ok


def test_search_by_kind_and_similarity(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    query = unit(rng.normal(size=DIM))
    with sv.open(tmp_path / "v") as vault:
        p = vault.policies
        for i in range(40):
            p.put("router", {"noise": i}, embedding=rng.normal(size=DIM), confidence=0.5)
        planted = {}
        for i, noise in enumerate((0.01, 0.04, 0.08)):
            vec = query + noise * rng.normal(size=DIM)
            planted[p.put("router", {"near": i}, embedding=vec, confidence=0.9 - i * 0.2, source="background").id] = vec
        twin = p.put("quantization", {"bits": 8}, embedding=query)  # same vector, other kind

        hits = p.search("router", query, k=3)
        assert [h.params for h in hits] == [{"near": 0}, {"near": 1}, {"near": 2}]
        assert twin.id not in {h.id for h in hits}
        for h in hits:
            assert h.score == pytest.approx(float(unit(planted[h.id]) @ query), abs=1e-5)
        assert [h.id for h in p.search("quantization", query, k=5)] == [twin.id]
        assert {h.id for h in p.search("router", query, k=10, min_score=0.9)} == set(planted)
        assert [h.params for h in p.search("router", query, k=2, min_confidence=0.6)] == [{"near": 0}, {"near": 1}]
        assert all(h.source == "background" for h in p.search("router", query, k=10, source="background"))
        by_confidence = p.search("router", k=2)
        assert [h.params for h in by_confidence] == [{"near": 0}, {"near": 1}] and by_confidence[0].score is None
        assert p.search("unknown-kind", query) == []
        with pytest.raises(sv.DimensionMismatch):
            p.search("router", np.ones(DIM + 1))


def test_consolidate_reduces_to_k_with_provenance(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    groups = clusters(rng, 4, 10)
    with sv.open(tmp_path / "v") as vault:
        p = vault.policies
        members: list[set[str]] = []
        for g, vecs in enumerate(groups):
            ids = set()
            for i, vec in enumerate(vecs):
                ids.add(
                    p.put(
                        "pattern",
                        {"group": g, "i": i},
                        embedding=vec,
                        confidence=0.5 + 0.04 * i,
                        fisher=np.full(3, float(g)),
                    ).id
                )
            members.append(ids)
        loner = p.put("pattern", {"no": "embedding"})
        other = p.put("router", {"w": 1}, embedding=groups[0][0])

        reps = p.consolidate("pattern", 4, seed=1)
        assert len(reps) == 4
        covered = [set(r.provenance) for r in reps]
        assert sorted(map(sorted, covered)) == sorted(map(sorted, members))  # each rep is one planted group
        for r in reps:
            g = r.params["group"]
            assert set(r.provenance) == members[g] and r.source == "background" and r.state == "active"
            assert r.confidence == pytest.approx(0.5 + 0.04 * 4.5)
            assert np.allclose(r.fisher, g) and np.linalg.norm(r.embedding) == pytest.approx(1.0, abs=1e-5)
            assert float(r.embedding @ unit(groups[g].mean(axis=0))) > 0.99
        active = {x.id for x in p.list("pattern")}
        assert active == {r.id for r in reps} | {loner.id}
        archived = p.list("pattern", states="archived")
        assert len(archived) == 40
        rep_of = {m: r.id for r in reps for m in r.provenance}
        assert all(a.replaced_by == rep_of[a.id] for a in archived)
        assert p.get(other.id).state == "active"
        assert p.search("pattern", groups[2][0], k=1)[0].params["group"] == 2
        assert vault.check().ok

        # Consolidating again folds representatives; provenance stays complete (transitive).
        top = p.consolidate("pattern", 1, seed=1, remove=True)
        assert len(top) == 1 and set(top[0].provenance) == set().union(*members, {r.id for r in reps})
        assert {x.id for x in p.list("pattern")} == {top[0].id, loner.id}
        assert len(p.list("pattern", states="archived")) == 40  # the first round's members stay archived
        assert all(p.get(a.id).replaced_by in {r.id for r in reps} for a in archived)
        assert p.consolidate("pattern", 3) == [p.get(top[0].id, touch=False)]  # nothing left to reduce
        assert vault.check().ok  # archived members point at a deleted representative: a note, not a problem


def test_consolidate_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(30, DIM))
    outcomes = []
    for name in ("a", "b"):
        with sv.open(tmp_path / name) as vault:
            ids = [vault.policies.put("pattern", {"i": i}, embedding=v).id for i, v in enumerate(vecs)]
            index = {pid: i for i, pid in enumerate(ids)}  # ids differ between the vaults; order does not
            reps = vault.policies.consolidate("pattern", 5, seed=42)
            outcomes.append(sorted(tuple(sorted(index[m] for m in r.provenance)) for r in reps))
    assert outcomes[0] == outcomes[1] and sum(len(g) for g in outcomes[0]) == 30


def test_prune_near_duplicates(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    base = unit(rng.normal(size=(6, DIM)))
    with sv.open(tmp_path / "v") as vault:
        p = vault.policies
        keepers, dupes = [], []
        for i, vec in enumerate(base):
            keepers.append(p.put("router", {"i": i}, embedding=vec, confidence=0.9).id)
            if i < 3:  # a near copy (cosine > 0.99) with lower confidence
                near = vec + 0.01 * rng.normal(size=DIM)
                dupes.append(p.put("router", {"dup": i}, embedding=near, confidence=0.4).id)
        elsewhere = p.put("pattern", {}, embedding=base[0])

        pruned = p.prune_duplicates("router", threshold=0.98)
        assert set(pruned) == set(dupes)
        assert {x.id for x in p.list("router")} == set(keepers)
        for i, dup in enumerate(dupes):
            got = p.get(dup, touch=False)
            assert got.replaced_by == keepers[i] and got.state == "archived"
            assert p.get(keepers[i], touch=False).provenance == (dup,)
        assert p.get(elsewhere.id, touch=False).state == "active"  # other kinds are not compared
        assert p.prune_duplicates(threshold=0.98) == []
        p.get(keepers[4])  # equal confidence: the most recently used one is kept
        assert p.prune_duplicates("router", threshold=-1.0, remove=True) == sorted(set(keepers) - {keepers[4]})
        assert {x.id for x in p.list("router", states="all")} == {keepers[4], *dupes}
        assert set(p.get(keepers[4], touch=False).provenance) == set(keepers + dupes) - {keepers[4]}


def test_bad_input_raises_and_leaves_data_intact(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        p = vault.policies
        kept = p.put("router", {"w": 1}, embedding=np.ones(DIM), policy_id="keep")
        before = p.get("keep", touch=False).to_dict(vectors=True)
        bad_calls: list[Any] = [
            lambda: p.put("bad kind!", {}),
            lambda: p.put("router", {"x": float("nan")}),
            lambda: p.put("router", {"x": object()}),
            lambda: p.put("router", {}, confidence=1.5),
            lambda: p.put("router", {}, source="guess"),
            lambda: p.put("router", {}, embedding=np.zeros(DIM)),
            lambda: p.put("router", {}, embedding=[1.0, float("nan")]),
            lambda: p.put("router", {}, fisher=[1.0, -0.5]),
            lambda: p.put("router", {}, embedding=np.ones(DIM + 2)),  # DimensionMismatch: another dim in the kind
            lambda: p.put("pattern", {}, policy_id="keep"),  # kind change
            lambda: p.search("router", np.ones(DIM), k=0),
            lambda: p.search("router", np.ones(DIM), states="gone"),
            lambda: p.consolidate("router", 0),
            lambda: p.prune_duplicates("router", threshold=2.0),
            lambda: p.get(""),
        ]
        for call in bad_calls:
            with pytest.raises(sv.InvalidInput):
                call()
        for call in (lambda: p.get("missing"), lambda: p.delete(["keep", "missing"])):
            with pytest.raises(sv.NotFound):
                call()
        assert len(p) == 1 and p.get("keep", touch=False).to_dict(vectors=True) == before
        assert p.search("router", np.ones(DIM))[0].id == kept.id
    with sv.open(tmp_path / "v") as vault:
        assert vault.policies.get("keep", touch=False).params == {"w": 1} and vault.check().ok


def test_policies_survive_restart_and_other_process_writes_are_searched(tmp_path: Path) -> None:
    path = tmp_path / "v"
    rng = np.random.default_rng(1)
    query = unit(rng.normal(size=DIM))
    with sv.open(path) as vault:
        p = vault.policies
        for i in range(10):
            p.put("router", {"i": i}, embedding=rng.normal(size=DIM))
        first = p.search("router", query, k=1)[0]  # the bank is now cached in memory
        assert len(p._banks) == 1

        out = run_py(
            """
            import json, sys, numpy as np, sigmavault as sv
            with sv.open(sys.argv[1]) as vault:
                p = vault.policies
                seen = sorted(x.params["i"] for x in p.list("router"))
                q = np.array(json.loads(sys.argv[2]), dtype=np.float32)
                made = p.put("router", {"i": "planted"}, embedding=q, confidence=0.7, source="imported")
                print(json.dumps({"seen": seen, "id": made.id}))
            """,
            str(path),
            json.dumps(query.tolist()),
        )
        child = json.loads(out)
        assert child["seen"] == list(range(10))
        best = p.search("router", query, k=2)
        assert best[0].id == child["id"] and best[0].source == "imported" and best[1].id == first.id
        got = p.get(child["id"])
        assert got.params == {"i": "planted"} and got.confidence == pytest.approx(0.7)


def test_access_times_are_persisted(tmp_path: Path) -> None:
    path = tmp_path / "v"
    with sv.open(path) as vault:
        made = vault.policies.put("router", {}, embedding=np.ones(DIM))
        later = vault.policies.get(made.id)
        assert later.last_accessed >= made.last_accessed
    with sv.open(path) as vault:
        stored = vault.policies.get(made.id, touch=False).last_accessed
        assert stored >= later.last_accessed > 0


def test_read_only_vault_without_policy_tables_reads_empty(tmp_path: Path) -> None:
    path = tmp_path / "v"
    sv.open(path).close()
    with sv.open(path, frozen=True) as vault:
        assert vault.policies.list(states="all") == [] and vault.policies.kinds() == {}
        assert vault.policies.search("router", np.ones(DIM)) == []
        with pytest.raises(sv.NotFound):
            vault.policies.get("x")
        with pytest.raises(sv.ReadOnly):
            vault.policies.put("router", {})


class XorCipher:
    """A trivial reversible test cipher; binds the aad so a value moved elsewhere fails to open."""

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        return aad + b"|" + bytes(b ^ 0x5A for b in plaintext)

    def open(self, aad: bytes, sealed: bytes) -> bytes:
        head, _, body = sealed.partition(b"|")
        if head != aad:
            raise sv.Corrupted("sealed value does not belong here")
        return bytes(b ^ 0x5A for b in body)


def test_params_are_sealed_when_the_vault_has_a_cipher(tmp_path: Path) -> None:
    path = tmp_path / "v"
    with sv.open(path) as vault:
        vault._db.cipher = XorCipher()
        made = vault.policies.put("router", {"secret": "weights-v7"}, embedding=np.ones(DIM))
        assert vault.policies.search("router", np.ones(DIM))[0].params == {"secret": "weights-v7"}
    raw = sqlite3.connect(path / "vault.db").execute("SELECT params FROM policies").fetchone()[0]
    assert isinstance(raw, bytes) and b"weights-v7" not in raw
    with sv.open(path) as vault, pytest.raises(sv.VaultError, match="encrypted"):
        vault.policies.get(made.id)


def test_check_reports_damaged_entries(tmp_path: Path) -> None:
    path = tmp_path / "v"
    with sv.open(path) as vault:
        vault.policies.put("router", {}, embedding=np.ones(DIM), policy_id="short")
        vault.policies.put("router", {}, policy_id="json")
    with sqlite3.connect(path / "vault.db") as conn:
        conn.execute("UPDATE policies SET embedding = zeroblob(8) WHERE pid = 'short'")
        conn.execute("UPDATE policies SET params = '{not json' WHERE pid = 'json'")
    with sv.open(path) as vault:
        problems = vault.check().problems
        assert any("short" in x and "dimension" in x for x in problems)
        assert any("json" in x and "JSON" in x for x in problems)


def test_kmeans_gives_k_nonempty_clusters_even_with_duplicates() -> None:
    x = np.ones((7, 4), dtype=np.float32)
    x[5:] = -1.0
    labels, centers = kmeans(x, 4, seed=0)
    assert sorted(set(labels.tolist())) == [0, 1, 2, 3] and centers.shape == (4, 4)
    rng = np.random.default_rng(0)
    pts = np.concatenate([c + 0.01 * rng.normal(size=(20, 4)) for c in np.eye(4) * 10]).astype(np.float32)
    labels, _ = kmeans(pts, 4, seed=3)
    assert all(len(set(labels[i * 20 : (i + 1) * 20].tolist())) == 1 for i in range(4))
    assert len(set(labels.tolist())) == 4


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40), st.floats(0.0, 0.99))
def test_greedy_dedupe_matches_a_plain_reference(seed: int, n: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    x = unit(rng.normal(size=(n, 3))).astype(np.float32)
    order = rng.permutation(n).astype(np.int64)
    owner = greedy_dedupe(x, order, threshold)
    kept: list[int] = []
    expected = np.arange(n)
    for i in order:
        match = next((k for k in kept if float(x[k] @ x[i]) >= threshold), None)
        if match is None:
            kept.append(int(i))
        else:
            expected[i] = match
    assert owner.tolist() == expected.tolist()


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(args)
    assert ns.handler(ns) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_list_show_consolidate_prune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "v")
    rng = np.random.default_rng(2)
    with sv.open(path) as vault:
        for g, vecs in enumerate(clusters(rng, 2, 5)):
            for vec in vecs:
                vault.policies.put("pattern", {"g": g}, embedding=vec)
        vault.policies.put("router", {"w": 1}, embedding=np.ones(DIM), policy_id="r1")
        vault.policies.put("router", {"w": 1}, embedding=np.ones(DIM) * 2, policy_id="r2", confidence=0.5)
    listed = cli(["policies", "list", path, "--json"], capsys)
    assert listed["kinds"] == {"pattern": 10, "router": 2} and len(listed["policies"]) == 12
    shown = cli(["policies", "show", path, "r1", "--json", "--vectors"], capsys)
    assert shown["params"] == {"w": 1} and shown["embedding"] == [1.0] * DIM
    done = cli(["policies", "consolidate", path, "--kind", "pattern", "-k", "2", "--json"], capsys)
    assert done["before"] == 10 and len(done["representatives"]) == 2
    assert sorted(len(r["provenance"]) for r in done["representatives"]) == [5, 5]
    assert cli(["policies", "prune", path, "--kind", "router", "--json"], capsys)["archived"] == ["r2"]
    assert cli(["policies", "list", path, "--kind", "router", "--state", "archived", "--json"], capsys)["kinds"] == {
        "pattern": 10,
        "router": 1,
    }


def test_access_time_survives_a_rolled_back_transaction(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        a = vault.policies.put("router", {"w": 1}, confidence=0.5)
        stored = vault.policies.get(a.id, touch=False).last_accessed
        read = vault.policies.get(a.id)  # counts as an access, buffered in memory
        with pytest.raises(RuntimeError), vault.transaction():  # the buffered time is taken into this one
            vault.policies.put("router", {"w": 2}, confidence=0.1)
            raise RuntimeError("abort")
        assert len(vault.policies) == 1
    with sv.open(tmp_path / "v") as vault:
        after = vault.policies.get(a.id, touch=False).last_accessed
        assert after > stored and after >= read.last_accessed
