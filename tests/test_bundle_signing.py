"""Signed bundles and hostile bundle layouts (issue 10, defect 8): Ed25519 signatures over the manifest
witness, trusted keys on verify/import/refresh and in the CLI, unlisted files and limits refused early."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

import sigmavault as sv
from sigmavault.bundle.manifest import dump_manifest, load_manifest
from sigmavault.bundle.signing import generate
from sigmavault.cli import main as cli
from sigmavault.errors import BundleInvalid, InvalidInput

pytest.importorskip("cryptography")


@pytest.fixture
def vault_dir(tmp_path: Path) -> Path:
    path = tmp_path / "v"
    with sv.open(path) as vault:
        vault.collection("c", embedder=None).add(vectors=np.eye(4, 8) + 0.1, texts=["a", "b", "c", "d"])
    return path


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, str, Path, str]:
    mine, mine_pub = generate(tmp_path / "mine.key")
    other, other_pub = generate(tmp_path / "other.key")
    return mine, mine_pub, other, other_pub


@pytest.mark.parametrize("form", ["dir", "tar"])
def test_signed_bundle_verifies_only_against_its_signer(
    vault_dir: Path, tmp_path: Path, keys: tuple[Path, str, Path, str], form: str
) -> None:
    mine, mine_pub, _, other_pub = keys
    dest = tmp_path / ("b.tar" if form == "tar" else "b")
    report = sv.bundle.export(vault_dir, dest, signing_key=mine)
    assert report.signed_by == mine_pub
    assert sv.bundle.verify(dest).signed_by == mine_pub and not sv.bundle.verify(dest).trusted
    assert sv.bundle.verify(dest, trusted_keys=[mine_pub]).trusted
    assert sv.bundle.verify(dest, trusted_keys=[Path(f"{mine}.pub")]).trusted
    with pytest.raises(BundleInvalid, match="not among the trusted keys"):
        sv.bundle.verify(dest, trusted_keys=[other_pub])
    with pytest.raises(BundleInvalid, match="not among the trusted keys"):
        sv.bundle.import_bundle(dest, tmp_path / "imp", trusted_keys=other_pub)
    assert not (tmp_path / "imp").exists()
    imported = sv.bundle.import_bundle(dest, tmp_path / "imp", trusted_keys=[mine_pub])
    assert imported.trusted
    unsigned = tmp_path / ("u.tar" if form == "tar" else "u")
    sv.bundle.export(vault_dir, unsigned)
    assert sv.bundle.verify(unsigned).signed_by is None
    with pytest.raises(BundleInvalid, match="not signed"):
        sv.bundle.verify(unsigned, trusted_keys=[mine_pub])


def test_a_re_sealed_bundle_loses_its_trust(vault_dir: Path, tmp_path: Path, keys: tuple[Path, str, Path, str]) -> None:
    """Someone edits a signed bundle and re-seals it (recomputes hashes and witness): the signature fails,
    and re-signing with their own key is refused by a recipient who trusts only the exporter."""
    mine, mine_pub, other, _ = keys
    dest = tmp_path / "b"
    sv.bundle.export(vault_dir, dest, signing_key=mine)
    manifest, entries = load_manifest((dest / "manifest.json").read_bytes())
    fields = {k: v for k, v in manifest.items() if k not in ("files", "witness", "signature")}
    fields["pii_policy"] = "none"  # the edit
    _, resealed = dump_manifest(fields, entries)
    forged = json.loads(resealed)
    forged["signature"] = manifest["signature"]  # the old signature, over the old witness
    (dest / "manifest.json").write_text(json.dumps(forged, sort_keys=True, indent=2, ensure_ascii=True) + "\n")
    with pytest.raises(BundleInvalid, match="signature does not match"):
        sv.bundle.verify(dest)
    _, resigned = dump_manifest(fields, entries, signing_key=other)
    (dest / "manifest.json").write_bytes(resigned)
    assert sv.bundle.verify(dest).signed_by != mine_pub
    with pytest.raises(BundleInvalid):
        sv.bundle.verify(dest, trusted_keys=[mine_pub])


def test_unlisted_files_are_refused_at_the_first_one(vault_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "b"
    sv.bundle.export(vault_dir, dest)
    junk = dest / "files" / "junk"
    junk.mkdir()
    for i in range(2000):
        (junk / f"{i}.bin").write_bytes(b"x")
    with pytest.raises(BundleInvalid, match="not in its manifest"):
        sv.bundle.verify(dest)
    with pytest.raises(BundleInvalid, match="not in its manifest"):
        sv.bundle.import_bundle(dest, tmp_path / "imp")
    assert not (tmp_path / "imp").exists()


def test_limits_on_file_count_and_size(vault_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sigmavault.bundle import container, manifest

    tar = tmp_path / "b.tar"
    sv.bundle.export(vault_dir, tar)
    files = sv.bundle.verify(tar).files
    monkeypatch.setattr(manifest, "MAX_FILES", files - 1)
    monkeypatch.setattr(container, "MAX_FILES", files - 1)
    with pytest.raises(BundleInvalid, match="limit"):
        sv.bundle.verify(tar)
    monkeypatch.setattr(manifest, "MAX_FILES", 10**6)
    monkeypatch.setattr(container, "MAX_FILES", 10**6)
    monkeypatch.setattr(manifest, "MAX_BYTES", 100)
    with pytest.raises(BundleInvalid, match="limit"):
        sv.bundle.verify(tar)
    with tarfile.open(tar) as t:
        assert len(t.getmembers()) == files + 1


def test_cli_keygen_sign_export_verify_trust(
    vault_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "signing.key"
    assert cli(["keygen", "--sign", str(key)]) == 0
    public = (tmp_path / "signing.key.pub").read_text().strip()
    assert len(public) == 64 and oct(key.stat().st_mode & 0o777) == "0o600"
    assert cli(["keygen", "--sign", str(key)]) != 0  # never overwritten
    capsys.readouterr()
    dest = tmp_path / "b.tar"
    assert cli(["export", str(vault_dir), str(dest), "--sign", str(key)]) == 0
    capsys.readouterr()
    assert cli(["verify", str(dest), "--trust", public, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trusted"] and out["signed_by"] == public
    _, other = generate(tmp_path / "o.key")
    assert cli(["verify", str(dest), "--trust", other]) == 1
    assert cli(["import", str(dest), str(tmp_path / "imp"), "--trust", str(tmp_path / "signing.key.pub")]) == 0
    with pytest.raises(InvalidInput):
        sv.bundle.export(vault_dir, tmp_path / "x", signing_key=tmp_path / "missing.key")
