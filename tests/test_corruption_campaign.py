"""Corruption campaign (issue 10): random bit flips and truncations in every kind of file a vault writes
(SQLite store, vector rows, KV chunks, witness archives, ANN index). Each trial is either detected — a
``VaultError`` (``Corrupted`` …) on open or read, or a problem reported by ``check()`` — or provably
harmless: every answer the vault gives (units, vectors, edges, sessions, policies, witness entries and
archives, KV prefixes, search results) is identical to the pristine vault's. Anything else is a silent
wrong answer. Prints the figures; ``SIGMAVAULT_CORRUPTION_TRIALS`` raises the count.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from conftest import id_vector, snapshot

import sigmavault as sv
from sigmavault.errors import VaultError
from sigmavault.kv import Fingerprint, KVArrays
from sigmavault.witness.entry import now_ms

TRIALS = int(os.environ.get("SIGMAVAULT_CORRUPTION_TRIALS", "160"))
FP = Fingerprint(model="corrupt", dtype="float32", layers=1, kv_heads=1, head_dim=4)
DAY_MS = 86_400_000
# NOTE: SQLite checks its pages' structure, not cell values; unit records carry their own checksum
# (units.rec_crc), so a flip inside a unit's kind or metadata is found too.
SQLITE = "vault.db"


def _build(path: Path) -> tuple[list[str], list[tuple[list[int], str]]]:
    rng = np.random.default_rng(3)
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None, metric="ip", index="hnsw")
        ids = [f"u{i}" for i in range(60)]
        col.add(
            vectors=np.stack([id_vector(u) for u in ids]),
            ids=ids,
            texts=[f"text of {u}" for u in ids],
            metadata=[{"i": i, "tag": "even" if i % 2 == 0 else "odd"} for i in range(60)],
        )
        ann = vault.collection("ann", embedder=None, index="hnsw")
        ann.add(vectors=rng.standard_normal((1000, 8)), texts=["row"] * 1000)
        ann.build_index()
        assert ann.index_info()["active"] == "hnsw"
        for i in range(0, 58, 3):
            vault.link(ids[i], ids[i + 1], kind="next", weight=0.5)
        for i in range(5):
            vault.sessions.open(f"s{i}", user_id="u", metadata={"i": i}, context=np.ones(8) + i)
            vault.policies.put("rule", {"i": i}, embedding=np.ones(8) + i, policy_id=f"p{i}")
        w = vault.witness
        now = now_ms()
        for i in range(40):
            w.record(
                {
                    "request_id": f"r{i}",
                    "timestamp": now - (10 if i < 25 else 0) * DAY_MS + i,
                    "total_ms": float(i),
                    "model": "m",
                    "query_embedding": rng.random(8),
                }
            )
        w.flush()
        assert w.archive(older_than_days=3).entries == 25
        refs = []
        for _ in range(3):
            toks = rng.integers(0, 99, 24)
            keys, values = rng.standard_normal((2, 1, 1, 24, 4), dtype=np.float32)
            refs.append((toks.tolist(), vault.kv.save_arrays(FP, toks, KVArrays(keys, values, "float32")).ref))
    return ids, refs


def _answers(vault: sv.Vault, refs: list[tuple[list[int], str]]) -> Any:
    col = vault.collection("c", embedder=None)
    searches = []
    for q in range(4):
        for where in (None, {"tag": "odd"}):
            hits = col.search(id_vector(f"u{q * 7}"), k=5, where=where)
            searches.append([(h.id, round(h.score, 4), h.text, h.metadata) for h in hits])
    ann = vault.collection("ann", embedder=None)
    for q in np.random.default_rng(9).standard_normal((4, 8)):
        searches.append([(h.id, round(h.score, 4)) for h in ann.search(q, k=5)])
    w = vault.witness
    witness = [e.to_dict(embeddings=True) for e in w.query(limit=None)]
    archived = [e.to_dict(embeddings=True) for a in w.archives() for e in w.read_archive(a["file"], embeddings=True)]
    kv = [vault.kv.load_ref_arrays(FP, ref)[1] == toks for toks, ref in refs]
    return json.dumps(
        {
            "snapshot": snapshot(vault),
            "searches": searches,
            "sessions": [s.to_dict(vectors=True) for s in vault.sessions.find(states="all")],
            "policies": [p.to_dict(vectors=True) for p in vault.policies.list(states="all")],
            "witness": witness,
            "archived": archived,
            "kv": kv,
        },
        sort_keys=True,
        default=str,
    )


def _files(root: Path) -> dict[str, list[Path]]:
    kinds: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            kind = SQLITE if p.name == SQLITE else p.suffix or p.name
            if p.parent.name == "kv" or "kv" in p.relative_to(root).parts:
                kind = "kv chunk"
            kinds.setdefault(kind, []).append(p)
    return kinds


def _damage(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    if rng.random() < 0.25 and len(data) > 1:
        cut = rng.randrange(0, len(data))
        path.write_bytes(bytes(data[:cut]))
        return f"truncate@{cut}"
    pos = rng.randrange(0, len(data))
    data[pos] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return f"flip@{pos}"


def test_flips_and_truncations_are_detected_or_harmless(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    _, refs = _build(pristine)
    with sv.open(pristine, frozen=True) as vault:
        assert vault.check().ok
        reference = _answers(vault, refs)
    kinds = _files(pristine)
    assert {SQLITE, ".f32", "kv chunk", ".gz"} <= set(kinds) and len(kinds) >= 5, kinds
    rng = random.Random(20261202)
    outcome: Counter[str] = Counter()
    silent: list[str] = []
    names = sorted(kinds)
    for trial in range(TRIALS):
        kind = names[trial % len(names)]
        work = tmp_path / f"t{trial}"
        shutil.copytree(pristine, work)
        target = work / rng.choice(kinds[kind]).relative_to(pristine)
        how = _damage(target, rng)
        try:
            with sv.open(work, frozen=True) as vault:
                report = vault.check()
                if not report.ok:
                    outcome[f"{kind}: check"] += 1
                    continue
                got = _answers(vault, refs)
        except VaultError:
            outcome[f"{kind}: error"] += 1
            continue
        finally:
            shutil.rmtree(work)
        if got == reference:
            outcome[f"{kind}: harmless"] += 1
        else:
            outcome[f"{kind}: silent"] += 1
            silent.append(f"{kind} {target.name} {how}")
    detected = sum(v for k, v in outcome.items() if k.endswith(("check", "error")))
    print(
        f"\ncorruption campaign: {TRIALS} trials, {detected} detected, "
        f"{sum(v for k, v in outcome.items() if k.endswith('harmless'))} harmless, {len(silent)} silent; "
        f"{json.dumps(dict(sorted(outcome.items())))}",
        file=sys.stderr,
    )
    assert not silent, silent
