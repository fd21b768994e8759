"""The witness log in one process: recording, validation, filters, aggregates, similarity, overflow."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import HashingEmbedder

import sigmavault as sv
from sigmavault.witness.entry import now_ms

HOUR = 3_600_000


def test_record_mapping_and_dataclass_round_trip(vault: sv.Vault, rng: np.random.Generator) -> None:
    w = vault.witness
    q = rng.standard_normal(32).astype(np.float32)
    r = rng.standard_normal(32).astype(np.float32)
    rid = w.record({
        "request_id": "req-1", "session_id": "s1", "timestamp": 1_700_000_000_123, "model": "m-a", "quality": 0.75,
        "embedding_ms": 1.5, "retrieval_ms": 2, "routing_ms": 0.25, "generation_ms": 40.0, "total_ms": 44.0,
        "prompt_tokens": 120, "completion_tokens": 30, "context_ids": ["u1", "u2"], "query_embedding": q,
        "response_embedding": r, "error_type": None,
        "routing": {"model": "m-a", "context_bucket": "4k", "temperature": 0.7, "top_p": np.float32(0.9),
                    "confidence": 0.8},
    })  # fmt: skip
    q_sent = q.copy()
    q[:] = 0.0  # the caller may reuse its buffer at once
    generated = w.record(sv.WitnessEntry(model="m-b", total_ms=3.0, error_type="Timeout", error_message="slow"))
    assert rid == "req-1"
    assert isinstance(generated, str) and len(generated) == 32
    w.flush()
    e = w.get("req-1")
    assert (e.session_id, e.timestamp, e.model, e.quality, e.retrieval_ms, e.total_ms) == (
        "s1",
        1_700_000_000_123,
        "m-a",
        0.75,
        2.0,
        44.0,
    )
    assert (e.prompt_tokens, e.completion_tokens, e.context_ids) == (120, 30, ("u1", "u2"))
    assert e.routing is not None and e.routing["context_bucket"] == "4k" and e.routing["top_p"] == pytest.approx(0.9)
    assert e.query_embedding is not None and np.array_equal(e.query_embedding, q_sent)
    assert e.response_embedding is not None and np.array_equal(e.response_embedding, r)
    assert not e.failed
    g = w.get(generated)
    assert g.failed and (g.error_type, g.error_message, g.model) == ("Timeout", "slow", "m-b")
    assert abs(g.timestamp - now_ms()) < 60_000  # type: ignore[operator]
    with pytest.raises(sv.NotFound):
        w.get("no-such-request")


@pytest.mark.parametrize(
    "entry",
    [
        {"total_ms": float("nan")},
        {"total_ms": -1.0},
        {"quality": "good"},
        {"prompt_tokens": 1.5},
        {"unknown_field": 1},
        {"context_ids": "u1"},
        {"context_ids": [1, 2]},
        {"query_embedding": [[1.0, 2.0], [3.0, 4.0]]},
        {"query_embedding": [1.0, float("inf")]},
        {"routing": {"model": object()}},
        {"routing": ["not", "a", "mapping"]},
        {"request_id": ""},
        {"timestamp": "yesterday"},
        {"timestamp": 10**18},
    ],
)
def test_bad_entries_are_refused_and_nothing_is_stored(vault: sv.Vault, entry: dict[str, Any]) -> None:
    with pytest.raises(sv.InvalidInput):
        vault.witness.record(entry)
    with pytest.raises(sv.InvalidInput):
        vault.witness.record(42)  # type: ignore[arg-type]
    assert vault.witness.count() == 0


def _plant(w: Any, rng: np.random.Generator, n: int = 600) -> list[dict[str, Any]]:
    base = now_ms() - 48 * HOUR
    entries = []
    for i in range(n):
        e: dict[str, Any] = {
            "request_id": f"r{i:05d}", "session_id": f"s{i % 7}", "timestamp": base + int(rng.integers(0, 48 * HOUR)),
            "model": ["alpha", "beta", "gamma"][i % 3], "quality": float(rng.random()),
            "total_ms": float(rng.lognormal(3, 1)), "generation_ms": float(rng.lognormal(2, 1)),
            "prompt_tokens": int(rng.integers(1, 500)),
        }  # fmt: skip
        if i % 11 == 0:
            del e["total_ms"]  # entries without the field are left out of its aggregates
        if i % 13 == 0:
            e["error_type"] = "Timeout" if i % 2 else "OOM"
        entries.append(e)
        w.record(e)
    return entries


def test_filters_select_exactly_the_matching_entries(vault: sv.Vault, rng: np.random.Generator) -> None:
    entries = _plant(vault.witness, rng)
    w = vault.witness
    mid = now_ms() - 24 * HOUR

    def ids(found: list[sv.WitnessEntry]) -> set[str]:
        return {e.request_id for e in found if e.request_id}

    def expect(pred: Any) -> set[str]:
        return {e["request_id"] for e in entries if pred(e)}

    assert ids(w.query(since=mid, limit=None)) == expect(lambda e: e["timestamp"] >= mid)
    assert ids(w.query(until=mid, limit=None)) == expect(lambda e: e["timestamp"] < mid)
    assert ids(w.query(quality_below=0.2, limit=None)) == expect(lambda e: e["quality"] < 0.2)
    assert ids(w.query(quality_above=0.9, model="beta", limit=None)) == expect(
        lambda e: e["quality"] > 0.9 and e["model"] == "beta"
    )
    assert ids(w.query(session_id="s3", limit=None)) == expect(lambda e: e["session_id"] == "s3")
    assert ids(w.query(errors_only=True, limit=None)) == expect(lambda e: "error_type" in e)
    assert ids(w.query(error_type="OOM", limit=None)) == expect(lambda e: e.get("error_type") == "OOM")
    gamma_errors = expect(lambda e: e["model"] == "gamma" and "error_type" in e)
    assert w.count(model="gamma", errors_only=True) == len(gamma_errors)
    newest = w.query(limit=5)
    assert [e.timestamp for e in newest] == sorted((e["timestamp"] for e in entries), reverse=True)[:5]
    oldest = w.query(limit=3, order="oldest", embeddings=False)
    assert [e.timestamp for e in oldest] == sorted(e["timestamp"] for e in entries)[:3]
    assert [e.request_id for e in w.tail(4)] == [e.request_id for e in reversed(newest[:4])]
    with pytest.raises(sv.InvalidInput):
        w.count(colour="red")
    with pytest.raises(sv.InvalidInput):
        w.query(since="tomorrow")


def test_percentiles_equal_numpys_on_the_same_data(vault: sv.Vault, rng: np.random.Generator) -> None:
    entries = _plant(vault.witness, rng, n=900)
    w = vault.witness
    ps = (50, 90, 95, 99, 99.9)
    rows = w.stats("total_ms", by="model", percentiles=ps)
    assert [r["model"] for r in rows] == ["alpha", "beta", "gamma"]
    for row in rows:
        data = np.array([e["total_ms"] for e in entries if e["model"] == row["model"] and "total_ms" in e])
        assert row["count"] == data.size
        assert row["mean"] == pytest.approx(float(np.mean(data)), rel=1e-12)
        assert (row["min"], row["max"]) == (float(data.min()), float(data.max()))
        for p, expected in zip(ps, np.percentile(data, ps), strict=True):
            assert row[f"p{p:g}"] == float(expected)  # exactly numpy's linear method
    everything = w.stats("generation_ms", by=None, percentiles=(50, 99))
    data = np.array([e["generation_ms"] for e in entries])
    assert len(everything) == 1 and everything[0]["count"] == len(entries)
    assert everything[0]["p99"] == float(np.percentile(data, 99))
    # grouped by model and 6-hour buckets, restricted to one session
    bucket = 6 * HOUR
    grouped = w.stats("prompt_tokens", by=["model", "time"], bucket="6h", percentiles=(95,), session_id="s2")
    expected: dict[tuple[str, int], list[float]] = {}
    for e in entries:
        if e["session_id"] == "s2":
            expected.setdefault((e["model"], e["timestamp"] // bucket * bucket), []).append(e["prompt_tokens"])
    assert {(r["model"], r["time"]) for r in grouped} == set(expected)
    for r in grouped:
        values = np.array(expected[(r["model"], r["time"])], dtype=np.float64)
        assert r["count"] == values.size and r["p95"] == float(np.percentile(values, 95))
    trend = w.quality_trend(bucket="1d")
    assert sum(r["count"] for r in trend) == len(entries)
    assert [r["time"] for r in trend] == sorted(r["time"] for r in trend)
    usage = {u["model"]: u for u in w.model_usage()}
    assert usage["alpha"]["requests"] == sum(e["model"] == "alpha" for e in entries)
    assert usage["beta"]["errors"] == sum(e["model"] == "beta" and "error_type" in e for e in entries)
    assert sum(u["share"] for u in usage.values()) == pytest.approx(1.0)
    for bad in ({"field": "error_type"}, {"by": "colour"}, {"percentiles": (101,)}, {"by": "time", "bucket": "soon"}):
        with pytest.raises(sv.InvalidInput):
            w.stats(**bad)


def test_similarity_finds_the_planted_neighbours(vault: sv.Vault, rng: np.random.Generator) -> None:
    w = vault.witness
    dim = 48
    probe = rng.standard_normal(dim).astype(np.float32)
    for i in range(400):  # background: random directions
        w.record(
            {
                "request_id": f"bg{i}",
                "query_embedding": rng.standard_normal(dim),
                "response_embedding": rng.standard_normal(dim),
                "error_type": "E" if i % 4 == 0 else None,
            }
        )
    planted = {}
    for i in range(5):  # near the probe, at growing distance
        vec = probe + (0.05 * (i + 1)) * rng.standard_normal(dim).astype(np.float32)
        planted[f"near{i}"] = vec
        w.record(
            {
                "request_id": f"near{i}",
                "query_embedding": vec,
                "response_embedding": -vec,
                "error_type": "Timeout" if i in (1, 3) else None,
            }
        )
    w.record({"request_id": "other-dim", "query_embedding": probe[:16]})  # different dimension: not a candidate
    hits = w.similar(vector=probe, k=5)
    assert [h.entry.request_id for h in hits] == [f"near{i}" for i in range(5)]
    for h in hits:
        v = planted[h.entry.request_id]  # type: ignore[index]
        assert h.score == pytest.approx(float(v @ probe / np.linalg.norm(v) / np.linalg.norm(probe)), abs=1e-5)
    assert [h.entry.request_id for h in w.similar(vector=-probe, on="response", k=2)] == ["near0", "near1"]
    errs = w.similar_errors(vector=probe, k=2)
    assert [h.entry.request_id for h in errs] == ["near1", "near3"]
    own = w.similar(request_id="near2", k=3)
    assert "near2" not in {h.entry.request_id for h in own}
    assert {h.entry.request_id for h in own} <= set(planted)
    with pytest.raises(sv.InvalidInput):
        w.similar(vector=probe, text="both")
    with pytest.raises(sv.InvalidInput):
        w.similar(vector=np.zeros(dim))


def test_similar_to_a_text_uses_the_given_embedder(vault: sv.Vault) -> None:
    emb = HashingEmbedder(dim=64)
    w = vault.witness
    texts = {
        "a": "reset my password please", "b": "the weather in paris tomorrow", "c": "how do I reset a password",
        "d": "gpu out of memory during generation", "e": "stock price of acme corp",
    }  # fmt: skip
    for rid, text in texts.items():
        w.record({"request_id": rid, "query_embedding": emb.embed([text])[0]})
    hits = w.similar(text="password reset", embedder=emb, k=2)
    assert {h.entry.request_id for h in hits} == {"a", "c"}
    hits = w.similar(text="password reset", embedder=lambda ts: emb.embed(ts), k=1)
    assert hits[0].entry.request_id in {"a", "c"}
    with pytest.raises(sv.EmbedderUnavailable):
        w.similar(text="password reset")


def test_drop_policy_counts_every_drop(vault_path: Path) -> None:
    with sv.open(vault_path) as vault:
        w = vault.witness
        # NOTE: the writer wakes only on a full batch (never, with a 10-entry queue) or after an
        # hour, so exactly the first 10 entries fit and the next 40 are dropped.
        w.configure(queue_size=10, overflow="drop", batch_size=1000, flush_interval=3600)
        results = [w.record({"request_id": f"r{i}", "total_ms": 1.0}) for i in range(50)]
        assert results[:10] == [f"r{i}" for i in range(10)]
        assert results[10:] == [None] * 40
        assert w.status()["dropped"] == 40  # status() flushes: the count is persisted with the batch
        assert w.count() == 10
        assert w.status()["dropped_total"] == 40
        assert w.record({"request_id": "after-flush"}) == "after-flush"
        report = vault.check()
        assert report.ok, report.problems
        assert any("40 entries were dropped" in n for n in report.notes)
    with sv.open(vault_path) as vault:
        assert vault.witness.status()["dropped_total"] == 40
        assert vault.witness.count() == 11


def test_block_policy_loses_nothing(vault: sv.Vault) -> None:
    w = vault.witness
    w.configure(queue_size=8, overflow="block", batch_size=4, flush_interval=0.01)
    for i in range(300):
        assert w.record({"request_id": f"r{i}", "total_ms": float(i)}) == f"r{i}"
    w.flush()
    assert w.count() == 300 and w.status()["dropped"] == 0
    assert [e.total_ms for e in w.query(order="oldest", limit=None)] == [float(i) for i in range(300)]


def test_configure_rejects_bad_settings(vault: sv.Vault) -> None:
    for bad in ({"overflow": "spill"}, {"batch_size": 0}, {"queue_size": -1}, {"flush_interval": 0}):
        with pytest.raises(sv.InvalidInput):
            vault.witness.configure(**bad)


def test_closed_and_frozen_vaults(vault_path: Path) -> None:
    vault = sv.open(vault_path)
    w = vault.witness
    w.record({"request_id": "one"})
    vault.close()
    with pytest.raises(sv.VaultClosed):
        w.record({"request_id": "two"})
    with sv.open(vault_path, frozen=True) as frozen:
        assert frozen.witness.get("one").request_id == "one"
        with pytest.raises(sv.ReadOnly):
            frozen.witness.record({"request_id": "three"})
        assert frozen.check().ok


def test_frozen_vault_without_witness_tables_reads_as_empty(vault_path: Path) -> None:
    sv.open(vault_path).close()
    con = sqlite3.connect(vault_path / "vault.db")
    with con:
        con.execute("DELETE FROM sv_schema WHERE part = 'witness'")
        for table in ("witness_entries", "witness_blobs", "witness_batches", "witness_models",
                      "witness_archives", "witness_state"):  # fmt: skip
            con.execute(f"DROP TABLE IF EXISTS {table}")
    con.close()
    with sv.open(vault_path, frozen=True) as frozen:
        assert frozen.witness.query() == [] and frozen.witness.count() == 0 and frozen.witness.stats() == []
        assert frozen.check().ok


class XorCipher:
    """A trivial reversible cipher (not secure): enough to prove payloads are sealed at rest."""

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        key = (aad * (len(plaintext) // max(1, len(aad)) + 1))[: len(plaintext)]
        return b"X" + bytes(a ^ b for a, b in zip(plaintext, key, strict=True))

    def open(self, aad: bytes, sealed: bytes) -> bytes:
        assert sealed[:1] == b"X"
        body = sealed[1:]
        key = (aad * (len(body) // max(1, len(aad)) + 1))[: len(body)]
        return bytes(a ^ b for a, b in zip(body, key, strict=True))


def test_payload_is_sealed_when_the_vault_has_a_cipher(vault_path: Path) -> None:
    with sv.open(vault_path) as vault:
        vault.witness.record({"request_id": "plain", "error_message": "written before the key"})
        vault.witness.flush()
        vault._db.cipher = XorCipher()
        vault.witness.record({"request_id": "secret", "error_message": "card number 4111", "context_ids": ["u9"]})
        assert vault.witness.get("secret").error_message == "card number 4111"
        assert vault.witness.get("plain").error_message == "written before the key"
        assert vault.check().ok
    raw = b"".join(p.read_bytes() for p in vault_path.iterdir() if p.is_file())
    assert b"card number 4111" not in raw
    with sv.open(vault_path) as vault, pytest.raises(sv.VaultError, match="encrypted"):
        vault.witness.get("secret")
