"""Migration from the legacy JSON layouts: validation, same answers as the source, dry run, rollback."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import sigmavault as sv
from sigmavault.errors import InvalidInput, NotFound
from sigmavault.migrate import hash_vector

FIXTURES = Path(__file__).parent / "fixtures"
KNOWLEDGE = FIXTURES / "knowledge"
RSU = FIXTURES / "rsu_manifest.json"


def _tree_digest(root: Path) -> dict[str, str]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_knowledge_dir_migrates_and_answers_like_the_source(tmp_path: Path) -> None:
    before = _tree_digest(KNOWLEDGE)
    dest = tmp_path / "memory"
    report = sv.migrate.migrate(KNOWLEDGE, dest)
    assert report.ok and report.switched, report.problems
    assert report.counts["source_records"] == report.counts["migrated"] == report.counts["units_in_vault"] == 30
    assert report.counts["source_edges"] == report.counts["edges_in_vault"] == 45
    assert report.checksums["matched"] == 30 and report.checksums["source_digest"] == report.checksums["vault_digest"]
    assert report.vectors["max_abs_error"] <= 1e-6
    searches = report.searches
    assert searches["neighbours_equal"] == searches["vector_equal"] == searches["vector_queries"] == 30
    assert report.dropped_fields == ["associations.confidence", "associations.created", "associations.last_used"]
    assert report.source_unchanged and _tree_digest(KNOWLEDGE) == before
    assert _siblings(dest) == [".memory.migrate.json", "memory"]

    concepts = json.loads((KNOWLEDGE / "concepts.json").read_text())
    assocs = json.loads((KNOWLEDGE / "associations.json").read_text())
    emb = json.loads((KNOWLEDGE / "embeddings.json").read_text())
    ids = list(emb["embeddings"])
    mat = np.array([emb["embeddings"][i] for i in ids], dtype=np.float32)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    with sv.open(dest, frozen=True) as vault:
        coll = vault.collection("concepts", embedder=None)
        assert coll.info.embedder == "fixture-16d"
        for cid, rec in concepts.items():
            unit = coll.get(cid, touch=False)
            assert unit.text == rec["content"] and unit.metadata["category"] == rec["category"]
            assert unit.created_at == rec["created"] and unit.access_count == rec["access_count"]
            want = {(a["target_id"], a["assoc_type"], a["weight"]) for a in assocs.values() if a["source_id"] == cid}
            assert {(e.target, e.kind, e.weight) for e in vault.neighbors(cid)} == want
        for i in range(0, 30, 3):
            brute = [ids[j] for j in np.argsort(-(mat @ mat[i]))[:5]]
            assert [h.id for h in coll.search(mat[i], k=5)] == brute
        assert vault.check().ok


def test_rsu_manifest_keeps_chains_conversations_and_hash_neighbours(tmp_path: Path) -> None:
    dest = tmp_path / "memory"
    report = sv.migrate.migrate(RSU, dest)
    assert report.ok and report.layout == "rsu-manifest", report.problems
    assert report.counts["migrated"] == 24 and report.counts["edges_in_vault"] == 20
    entries = json.loads(RSU.read_text())["entries"]
    with sv.open(dest, frozen=True) as vault:
        coll = vault.collection("rsu", embedder=None)
        for rid, entry in entries.items():
            unit = coll.get(rid, touch=False)
            assert unit.text is None and unit.metadata["has_content"] is False and unit.kind == "rsu"
            assert unit.state.value == entry["status"] and unit.conversation_id == entry["conversation_id"]
            assert unit.parent_id == entry["parent_rsu_id"]
            assert {k: v for k, v in unit.metadata.items() if k != "has_content"} == entry
            assert sorted(vault.children(rid)) == sorted(entry["child_rsu_ids"])
        last = [rid for rid, e in entries.items() if e["conversation_id"] == "conv-2"]
        assert vault.chain(last[-1]) == list(reversed(last))
        assert [u.id for u in vault.conversation("conv-2")] == last
        hashes = {rid: e["semantic_hash"] for rid, e in entries.items()}
        probe = hashes["rsu-010"] ^ 0b1011  # three bits away from rsu-010
        hamming = {rid: bin(h ^ probe).count("1") for rid, h in hashes.items()}
        hits = coll.search(hash_vector(probe), k=5, states="all")
        assert hits[0].id == "rsu-010"
        assert [round((1 - h.score) * 32) for h in hits] == sorted(hamming.values())[:5]


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "memory"
    report = sv.migrate.migrate(KNOWLEDGE, dest, dry_run=True)
    assert report.ok and report.dry_run and not report.switched
    assert not dest.exists() and _siblings(dest) == []
    sv.migrate.migrate(RSU, dest)
    before = _tree_digest(dest)
    assert sv.migrate.migrate(KNOWLEDGE, dest, dry_run=True).ok
    assert _tree_digest(dest) == before
    assert sorted(_siblings(dest)) == [".memory.migrate.json", "memory"]


def test_merge_then_rollback_restores_the_previous_destination(tmp_path: Path) -> None:
    dest = tmp_path / "memory"
    sv.migrate.migrate(KNOWLEDGE, dest)
    with sv.open(dest) as vault:
        vault.collection("notes", embedder=None).add(["mine"], vectors=np.ones((1, 3)), ids=["n1"])
    before = _tree_digest(dest)
    report = sv.migrate.migrate(RSU, dest)
    assert report.ok and report.previous is not None
    with sv.open(dest) as vault:
        assert vault.collections() == ["concepts", "notes", "rsu"]
        assert vault.get("n1").text == "mine"
    assert sv.migrate.rollback(dest) == {"dest": str(dest), "restored_previous": True}
    assert {Path(p).name for p in _tree_digest(dest)} == {Path(p).name for p in before}
    with sv.open(dest) as vault:
        assert vault.collections() == ["concepts", "notes"] and vault.check().ok
    with pytest.raises(NotFound):
        sv.migrate.rollback(dest)
    fresh = tmp_path / "fresh"
    sv.migrate.migrate(RSU, fresh)
    assert sv.migrate.rollback(fresh)["restored_previous"] is False
    assert not fresh.exists()


def test_replace_builds_the_destination_from_scratch(tmp_path: Path) -> None:
    dest = tmp_path / "memory"
    sv.migrate.migrate(KNOWLEDGE, dest)
    assert sv.migrate.migrate(RSU, dest, replace=True, collection="turns").ok
    with sv.open(dest) as vault:
        assert vault.collections() == ["turns"]
    sv.migrate.rollback(dest)
    with sv.open(dest) as vault:
        assert vault.collections() == ["concepts"]


def test_bad_input_is_refused_and_leaves_the_destination_alone(tmp_path: Path) -> None:
    src = tmp_path / "legacy"
    shutil.copytree(KNOWLEDGE, src)
    dest = tmp_path / "memory"
    sv.migrate.migrate(src, dest)
    before = _tree_digest(dest)
    assocs = json.loads((src / "associations.json").read_text())
    first = next(iter(assocs))
    assocs[first]["assoc_type"] = "not a valid kind!"
    (src / "associations.json").write_text(json.dumps(assocs))
    with pytest.raises(InvalidInput, match="edge kind"):
        sv.migrate.migrate(src, dest, replace=True)
    assert _tree_digest(dest) == before
    assert sorted(_siblings(dest)) == [".memory.migrate.json", "legacy", "memory"]
    (src / "concepts.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        sv.migrate.migrate(src, dest)
    with pytest.raises(InvalidInput):
        sv.migrate.migrate(tmp_path / "missing", dest)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(InvalidInput, match="not a vault"):
        sv.migrate.migrate(KNOWLEDGE, tmp_path / "docs")


def test_records_that_cannot_migrate_are_reported(tmp_path: Path) -> None:
    src = tmp_path / "legacy"
    shutil.copytree(KNOWLEDGE, src)
    emb = json.loads((src / "embeddings.json").read_text())
    del emb["embeddings"]["c3"]
    (src / "embeddings.json").write_text(json.dumps(emb))
    report = sv.migrate.migrate(src, tmp_path / "memory")
    assert report.ok and report.counts["migrated"] == 29 and report.counts["source_records"] == 30
    assert {"id": "c3", "reason": "no usable embedding in embeddings.json"} in report.skipped
    assert any(s["id"].startswith("association ") for s in report.skipped)  # edges of c3 could not follow


def test_cli_migrate_dry_run_and_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sigmavault.cli import bundle

    parser = argparse.ArgumentParser()
    bundle.register(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> int:
        args = parser.parse_args(list(argv))
        return int(args.handler(args))

    dest = tmp_path / "memory"
    assert run("migrate", str(KNOWLEDGE), str(dest), "--dry-run", "--json") == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True and not dest.exists()
    assert run("migrate", str(RSU), str(dest), "--json") == 0
    assert json.loads(capsys.readouterr().out)["counts"]["migrated"] == 24
    assert run("migrate", "--rollback", str(dest), "--json") == 0
    assert json.loads(capsys.readouterr().out)["restored_previous"] is False and not dest.exists()
    with pytest.raises(InvalidInput):
        run("migrate", str(dest))
