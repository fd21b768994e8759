"""The surface faces build on: every error has a stable code, every result type a JSON-safe ``to_dict``."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np

import sigmavault as sv
from sigmavault import errors


def test_every_error_class_has_its_own_stable_code() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.VaultError)]
    codes = [c.code for c in classes]
    assert len(classes) >= 13
    assert len(set(codes)) == len(codes), "two error classes share a code"
    assert errors.NotFound.code == "not_found" and errors.InvalidInput.code == "invalid_input"
    assert errors.VaultLocked.code == "vault_locked"


def test_an_error_reports_its_code_and_message(vault_path: Path) -> None:
    with sv.open(vault_path) as vault:
        docs = vault.collection("docs", embedder=None)
        try:
            docs.get("missing")
        except sv.VaultError as exc:
            assert exc.to_dict()["code"] == "not_found"
            assert "missing" in exc.to_dict()["message"]
        else:
            raise AssertionError("get of a missing id did not raise")


def test_results_round_trip_through_json(vault_path: Path) -> None:
    with sv.open(vault_path) as vault:
        docs = vault.collection("docs", embedder=None)
        ids = docs.add(vectors=np.eye(4, dtype=np.float32)[:2], texts=["a", "b"], metadata={"n": 1})
        vault.link(ids[0], ids[1], kind="causal", weight=0.5)
        unit = docs.get(ids[0])
        data = json.loads(json.dumps(unit.to_dict(vectors=True)))
        assert data["id"] == ids[0] and data["state"] == "active" and data["vector"] == [1.0, 0.0, 0.0, 0.0]
        assert "vector" not in unit.to_dict()
        hit = docs.search(np.eye(4, dtype=np.float32)[0], k=1)[0]
        assert json.loads(json.dumps(hit.to_dict()))["id"] == ids[0]
        edge = vault.neighbors(ids[0])[0]
        assert json.loads(json.dumps(edge.to_dict())) == {
            "source": ids[0],
            "target": ids[1],
            "kind": "causal",
            "weight": 0.5,
            "created_at": edge.created_at,
        }
        json.dumps(vault.check().to_dict())
