"""Loading a collection's row states (lifecycle code and signature per vector row) from SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import sigmavault as sv
from sigmavault.errors import Corrupted


def _vault(path: Path, n: int = 50) -> np.ndarray:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    with sv.open(path) as vault:
        docs = vault.collection("docs", embedder=None)
        docs.add(vectors=vectors, ids=[f"u{i}" for i in range(n)], texts=[f"text {i}" for i in range(n)])
        docs.delete(["u3"])
        vault.collection("other", embedder=None).add(vectors=vectors[:5], ids=[f"o{i}" for i in range(5)])
    return vectors


def test_states_and_signatures_load_as_written(tmp_path: Path) -> None:
    vectors = _vault(tmp_path / "v")
    with sv.open(tmp_path / "v") as vault:
        docs = vault.collection("docs", embedder=None)
        hits = docs.search(vectors[3], k=3)
        assert "u3" not in {h.id for h in hits}  # deleted: code 0 after the reload
        assert docs.search(vectors[7], k=1)[0].id == "u7"
        assert {h.id for h in docs.search(vectors[0], k=50)} == {f"u{i}" for i in range(50)} - {"u3"}
        state = vault.context.catalog.state(docs.info.id)
        conn = sqlite3.connect(tmp_path / "v" / "vault.db")
        stored = dict(conn.execute("SELECT vec_row, semantic_hash FROM units WHERE uid LIKE 'u%'").fetchall())
        conn.close()
        assert {r: int(state.hashes[r].astype(np.int64)) for r in stored} == stored
        assert vault.collection("other", embedder=None).search(vectors[2], k=1)[0].id == "o2"


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE units SET state = 'melted' WHERE uid = 'u5'",
        "UPDATE units SET semantic_hash = 'abc' WHERE uid = 'u5'",
        "UPDATE units SET vec_row = 100000 WHERE uid = 'u5'",
    ],
)
def test_a_damaged_row_state_is_reported_not_loaded(tmp_path: Path, damage: str) -> None:
    vectors = _vault(tmp_path / "v")
    conn = sqlite3.connect(tmp_path / "v" / "vault.db")
    conn.execute("PRAGMA ignore_check_constraints = 1")
    triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'units'").fetchall()
    for (trigger,) in triggers:
        conn.execute(f"DROP TRIGGER {trigger}")  # NOTE: damage written behind the vault's back
    conn.execute(damage)
    conn.commit()
    conn.close()
    with (
        sv.open(tmp_path / "v") as vault,
        pytest.raises(
            Corrupted, match=r"collection .docs.: a unit (record is damaged|points past the vector watermark)"
        ),
    ):
        vault.collection("docs", embedder=None).search(vectors[0], k=3)
