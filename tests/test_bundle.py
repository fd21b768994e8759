"""Bundles: export -> verify -> import round trips, byte flips, unsafe paths, subsets, refresh."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import HashingEmbedder, snapshot

import sigmavault as sv
from sigmavault.bundle.manifest import dump_manifest, load_manifest
from sigmavault.errors import BundleInvalid, InvalidInput, NotFound, ReadOnly


def _fill(path: Path) -> dict[str, list[str]]:
    """Two collections with texts, metadata, lifecycle changes, parents, conversations and edges."""
    emb = HashingEmbedder(32)
    with sv.open(path) as vault:
        docs = vault.collection("docs", embedder=emb)
        ids = docs.add(
            [f"note {i} about {'cats' if i % 2 else 'boats'} and harbour number {i}" for i in range(40)],
            metadata=[{"i": i, "topic": "cats" if i % 2 else "boats"} for i in range(40)],
            conversation_id=[f"conv-{i % 3}" for i in range(40)],
        )
        kids = docs.add(["a reply to note 0", "a reply to the reply"], parent_id=[ids[0], None], kind="reply")
        docs.update(kids[1], metadata={"edited": True}, state="archived")
        docs.update(ids[5], text="note five rewritten about harbours")  # appends a vector row
        docs.delete(ids[7])
        raw = vault.collection("raw", embedder=None, metric="ip")
        rids = raw.add(vectors=np.random.default_rng(3).standard_normal((25, 8)), ids=[f"r{i}" for i in range(25)])
        vault.link(ids[0], [ids[1], ids[2]], kind="causal", weight=0.7)
        vault.link(ids[3], rids[0], kind="cross", weight=0.2)
        vault.link(rids[1], rids[2], kind="next")
    return {"docs": ids, "raw": rids}


def _searches(path: Path) -> list[list[tuple[str, float]]]:
    emb = HashingEmbedder(32)
    out = []
    with sv.open(path, frozen=True) as vault:
        docs = vault.collection("docs", embedder=emb)
        for q in ("cats in the harbour", "boats", "reply"):
            out.append([(h.id, round(h.score, 5)) for h in docs.search(q, k=5)])
            out.append([(h.id, round(h.score, 5)) for h in docs.search(q, k=5, mode="hybrid")])
        out.append([(h.id, round(h.score, 5)) for h in docs.search("cats", k=5, where={"topic": "cats"})])
        raw = vault.collection("raw", embedder=None)
        out.append([(h.id, round(h.score, 5)) for h in raw.search(np.ones(8), k=4)])
    return out


def _state(path: Path) -> dict[str, object]:
    with sv.open(path, frozen=True) as vault:
        return snapshot(vault)


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "vault"
    _fill(path)
    return path


@pytest.mark.parametrize("form", ["dir", "tar"])
def test_round_trip_is_identical(filled: Path, tmp_path: Path, form: str) -> None:
    dest = tmp_path / ("bundle.tar" if form == "tar" else "bundle")
    made = sv.bundle.export(filled, dest, pii_policy="none")
    assert dest.is_file() == (form == "tar")
    checked = sv.bundle.verify(dest)
    assert checked.witness == made.witness and checked.files == made.files and checked.bytes == made.bytes
    assert checked.collections == ["docs", "raw"] and checked.dimensions == {"docs": 32, "raw": 8}
    assert checked.embedders["docs"] == "hashing-test-embedder" and checked.pii_policy == "none"
    imported = tmp_path / "copy"
    sv.bundle.import_bundle(dest, imported)
    assert _state(imported) == _state(filled)
    assert _searches(imported) == _searches(filled)
    with sv.open(imported) as vault:
        assert vault.check().ok
        root = vault.conversation("conv-0")[0].id
        assert vault.chain(vault.children(root)[0]) == [vault.children(root)[0], root]


def test_manifest_records_lineage_generation_and_file_hashes(filled: Path, tmp_path: Path) -> None:
    first = sv.bundle.export(filled, tmp_path / "b1")
    second = sv.bundle.export(filled, tmp_path / "b2.tar")
    assert first.lineage_id == second.lineage_id and len(first.lineage_id) == 32
    assert second.generation == first.generation + 1
    manifest = json.loads((tmp_path / "b1" / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["witness"]["alg"] == "shake256"
    assert set(manifest["files"]) == {"vault.db", "vectors/1.f32", "vectors/2.f32"}
    for rel, info in manifest["files"].items():
        assert (tmp_path / "b1" / "files" / rel).stat().st_size == info["bytes"]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipping_any_byte_of_any_bundle_file_fails_verification(filled: Path, tmp_path: Path) -> None:
    dest = tmp_path / "bundle"
    sv.bundle.export(filled, dest)
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    assert len(files) == 4
    rng = np.random.default_rng(0)
    for file in files:
        size = file.stat().st_size
        offsets = {0, 1, size // 2, size - 2, size - 1, *rng.integers(0, size, 6).tolist()}
        for offset in sorted(offsets):
            _flip(file, offset)
            with pytest.raises(BundleInvalid):
                sv.bundle.verify(dest)
            _flip(file, offset)
        sv.bundle.verify(dest)


def test_flipping_any_byte_of_a_tar_bundle_fails_verification(filled: Path, tmp_path: Path) -> None:
    dest = tmp_path / "bundle.tar"
    sv.bundle.export(filled, dest)
    size = dest.stat().st_size
    rng = np.random.default_rng(1)
    # one byte in every 512-byte block (headers, data, padding, end-of-archive zeros), plus the edges
    offsets = {0, 1, 100, 148, 156, 257, size - 1, *(b * 512 + int(rng.integers(0, 512)) for b in range(size // 512))}
    for offset in sorted(offsets):
        _flip(dest, offset)
        with pytest.raises(BundleInvalid):
            sv.bundle.verify(dest)
        _flip(dest, offset)
    sv.bundle.verify(dest)


def test_verify_names_the_first_mismatching_file(filled: Path, tmp_path: Path) -> None:
    dest = tmp_path / "bundle"
    sv.bundle.export(filled, dest)
    _flip(dest / "files" / "vectors" / "2.f32", 70)
    with pytest.raises(BundleInvalid, match=r"files/vectors/2\.f32: SHA-256 mismatch"):
        sv.bundle.verify(dest)
    (dest / "files" / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleInvalid, match=r"extra\.bin"):
        sv.bundle.verify(dest)


def test_failed_import_leaves_the_target_as_it_was(filled: Path, tmp_path: Path) -> None:
    dest = tmp_path / "bundle.tar"
    sv.bundle.export(filled, dest)
    target = tmp_path / "replica"
    sv.bundle.import_bundle(dest, target)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    _flip(dest, dest.stat().st_size // 2)
    with pytest.raises(BundleInvalid):
        sv.bundle.import_bundle(dest, target, overwrite=True)
    with pytest.raises(BundleInvalid):
        sv.bundle.import_bundle(dest, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.tar", "replica", "vault"]  # no leftovers


def test_import_refuses_a_non_empty_target_unless_overwriting_a_vault(filled: Path, tmp_path: Path) -> None:
    dest = tmp_path / "b"
    sv.bundle.export(filled, dest)
    other = tmp_path / "docs"
    other.mkdir()
    (other / "thesis.txt").write_text("precious")
    with pytest.raises(InvalidInput, match="not empty"):
        sv.bundle.import_bundle(dest, other)
    with pytest.raises(InvalidInput, match="not a vault"):
        sv.bundle.import_bundle(dest, other, overwrite=True)
    assert (other / "thesis.txt").read_text() == "precious"
    sv.bundle.import_bundle(dest, filled, overwrite=True)  # replacing a vault is allowed
    with pytest.raises(InvalidInput, match="exists"):
        sv.bundle.export(filled, dest)
    with pytest.raises(InvalidInput, match="inside the vault"):
        sv.bundle.export(filled, filled / "backup.tar")


def _forge_tar(path: Path, members: dict[str, bytes], *, extra: list[tarfile.TarInfo] | None = None) -> None:
    """A tar whose manifest is valid (canonical, correct witness) for ``members`` (names under files/)."""
    import hashlib

    from sigmavault.bundle.manifest import FileEntry

    entries = [FileEntry(n, len(d), hashlib.sha256(d).hexdigest()) for n, d in members.items()]
    fields = {"format": "sigmavault-bundle", "format_version": 1, "generation": 1, "lineage_id": "x" * 32,
              "created_at": 1.0, "pii_policy": "none", "dimensions": {}, "embedders": {}}  # fmt: skip
    _, manifest = dump_manifest(fields, entries)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"files/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))


@pytest.mark.parametrize("name", ["../evil.txt", "vectors/../../evil.txt", "/etc/evil.txt", "a/./b", "a//b", "C:x"])
def test_paths_escaping_the_target_are_refused(tmp_path: Path, name: str) -> None:
    bundle = tmp_path / "evil.tar"
    _forge_tar(bundle, {"vault.db": b"x", name: b"pwned"})
    with pytest.raises(BundleInvalid):
        sv.bundle.verify(bundle)
    with pytest.raises(BundleInvalid):
        sv.bundle.import_bundle(bundle, tmp_path / "work" / "dest")
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (tmp_path / "work" / "dest").exists()


def test_a_directory_bundle_with_dotdot_in_its_manifest_is_refused(filled: Path, tmp_path: Path) -> None:
    dest = tmp_path / "b"
    sv.bundle.export(filled, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    files = dict(manifest["files"])
    files["../outside.bin"] = files.pop("vectors/2.f32")
    body = {k: v for k, v in manifest.items() if k not in ("files", "witness")}
    from sigmavault.bundle.manifest import FileEntry

    _, data = dump_manifest(body, [FileEntry(p, i["bytes"], i["sha256"]) for p, i in files.items()])
    (dest / "manifest.json").write_bytes(data)
    with pytest.raises(BundleInvalid, match="escape"):
        sv.bundle.import_bundle(dest, tmp_path / "x")
    assert not (tmp_path / "outside.bin").exists() and not (tmp_path / "x").exists()


def test_links_and_special_members_in_a_tar_are_refused(tmp_path: Path) -> None:
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE):
        link = tarfile.TarInfo("files/vectors")
        link.type = kind
        link.linkname = "/etc"
        bundle = tmp_path / f"link{kind!r}.tar"
        _forge_tar(bundle, {"vault.db": b"x"}, extra=[link])
        with pytest.raises(BundleInvalid, match="regular files only"):
            sv.bundle.import_bundle(bundle, tmp_path / "dest")
    (tmp_path / "dirbundle" / "files").mkdir(parents=True)
    _forge_tar(tmp_path / "ok.tar", {"vault.db": b"x"})
    with tarfile.open(tmp_path / "ok.tar") as tar:
        tar.extractall(tmp_path / "dirbundle", filter="data")
    sv.bundle.verify(tmp_path / "dirbundle")
    (tmp_path / "dirbundle" / "files" / "kv").symlink_to("/etc")
    with pytest.raises(BundleInvalid, match="symbolic link"):
        sv.bundle.verify(tmp_path / "dirbundle")


def test_a_newer_format_version_is_refused(tmp_path: Path) -> None:
    import hashlib

    from sigmavault.bundle.manifest import FileEntry

    data = b"db"
    fields = {"format": "sigmavault-bundle", "format_version": 2, "generation": 1, "lineage_id": "l",
              "created_at": 1.0, "pii_policy": "none", "dimensions": {}, "embedders": {}}  # fmt: skip
    _, manifest = dump_manifest(fields, [FileEntry("vault.db", 2, hashlib.sha256(data).hexdigest())])
    bundle = tmp_path / "future"
    (bundle / "files").mkdir(parents=True)
    (bundle / "files" / "vault.db").write_bytes(data)
    (bundle / "manifest.json").write_bytes(manifest)
    with pytest.raises(BundleInvalid, match="newer"):
        sv.bundle.import_bundle(bundle, tmp_path / "dest")
    current = manifest.replace(b'"format_version": 2', b'"format_version": 1')
    with pytest.raises(BundleInvalid, match="witness"):
        load_manifest(current)
    with pytest.raises(BundleInvalid, match="canonical"):  # same meaning, other bytes
        load_manifest(current.replace(b'"format_version": 1', b'"format_version":  1'))


def test_a_collection_subset_carries_only_those_units(filled: Path, tmp_path: Path) -> None:
    dest = tmp_path / "raw.tar"
    report = sv.bundle.export(filled, dest, collections=["raw"])
    assert report.collections == ["raw"] and report.dimensions == {"raw": 8}
    assert b"harbour" not in dest.read_bytes()  # no page of a dropped unit survives
    sv.bundle.import_bundle(dest, tmp_path / "raw")
    with sv.open(tmp_path / "raw") as vault:
        assert vault.collections() == ["raw"]
        assert len(vault.collection("raw", embedder=None)) == 25
        assert [(e.source, e.target) for e in vault.neighbors("r1")] == [("r1", "r2")]
        assert vault.neighbors("r0", direction="in") == []  # its edge came from a unit of "docs"
        assert vault.check().ok
    with pytest.raises(NotFound):
        sv.bundle.export(filled, tmp_path / "nope", collections=["missing"])


def test_refresh_reports_up_to_date_invalidated_and_missing(filled: Path, tmp_path: Path) -> None:
    sv.bundle.export(filled, tmp_path / "g1")
    replica = tmp_path / "replica"
    sv.bundle.import_bundle(tmp_path / "g1", replica)
    same = sv.bundle.refresh(replica, tmp_path / "g1")
    assert not same.stale and not same.applied and len(same.up_to_date) == 3
    with sv.open(filled) as vault:
        vault.collection("docs", embedder=HashingEmbedder(32)).add(["a brand new note"], ids=["new-1"])
        vault.collection("third", embedder=None).add(vectors=np.ones((2, 4)), ids=["t1", "t2"])
    sv.bundle.export(filled, tmp_path / "g2.tar")
    plan = sv.bundle.refresh(replica, tmp_path / "g2.tar", apply=False)
    assert plan.up_to_date == ["vectors/2.f32"]
    assert plan.invalidated == ["vault.db", "vectors/1.f32"]
    assert plan.missing == ["vectors/3.f32"] and not plan.applied
    with sv.open(replica) as vault:
        assert "third" not in vault.collections()
    done = sv.bundle.refresh(replica, tmp_path / "g2.tar")
    assert done.applied and (done.generation_before, done.generation) == (1, 2)
    with sv.open(replica) as vault:
        assert vault.get("new-1").text == "a brand new note" and "third" in vault.collections()
    with pytest.raises(InvalidInput, match="older"):
        sv.bundle.refresh(replica, tmp_path / "g1")
    with pytest.raises(InvalidInput, match="origin"):
        sv.bundle.refresh(filled, tmp_path / "g2.tar")
    other = tmp_path / "other"
    with sv.open(other) as vault:
        vault.collection("x", embedder=None).add(vectors=np.ones((1, 2)))
    sv.bundle.export(other, tmp_path / "foreign")
    with pytest.raises(InvalidInput, match="lineage"):
        sv.bundle.refresh(replica, tmp_path / "foreign")


def test_frozen_vaults_are_read_only_and_can_be_exported(filled: Path, tmp_path: Path) -> None:
    with sv.open(filled, frozen=True) as vault:
        with pytest.raises(ReadOnly):
            vault.collection("raw", embedder=None).add(vectors=np.ones((1, 8)))
        report = sv.bundle.export(vault, tmp_path / "frozen.tar")
    assert sv.bundle.verify(tmp_path / "frozen.tar").witness == report.witness


def test_whole_vault_bundles_carry_the_other_parts(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    with sv.open(path) as vault:
        vault.sessions.open("s-1", user_id="u", metadata={"lang": "fr"})
        vault.policies.put("router", {"threshold": 0.25}, policy_id="p-1")
        vault.witness.record({"request_id": "req-1", "model": "m", "total_ms": 12.5})
        vault.witness.flush()
    sv.bundle.export(path, tmp_path / "all.tar")
    sv.bundle.import_bundle(tmp_path / "all.tar", tmp_path / "copy")
    with sv.open(tmp_path / "copy") as vault:
        assert vault.sessions.get("s-1").metadata == {"lang": "fr"}
        assert vault.policies.get("p-1").params == {"threshold": 0.25}
        assert vault.witness.get("req-1").total_ms == 12.5
        assert vault.check().ok
