"""Bundle export / verify / import throughput (MB/s) and migration speed (units/s).

    .venv/bin/python benchmarks/bundle.py            # 100k units, 384-d
    .venv/bin/python benchmarks/bundle.py --quick    # 10k units

Peers measured in the same run on the same bytes: ``shutil.copytree`` of the vault (page
cache only) and the same with an fsync per file (export and import copy, hash and fsync),
SHA-256 of the files alone (verify), and, for migration, ``json.load`` of the legacy files
(what the legacy store did at every start). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import sigmavault as sv

WORDS = ["memory", "vault", "unit", "vector", "graph", "cache", "session", "policy", "witness", "harbour", "river"]


def build_vault(root: Path, n: int, dim: int, rng: np.random.Generator) -> None:
    texts = [" ".join(rng.choice(WORDS, 14)) + f" #{i}" for i in range(n)]
    with sv.open(root) as vault:
        docs = vault.collection("docs", embedder=None)
        ids = docs.add(
            texts,
            vectors=rng.standard_normal((n, dim)).astype(np.float32),
            metadata=[{"i": i, "topic": WORDS[i % len(WORDS)]} for i in range(n)],
        )
        with vault.transaction():
            for i in range(0, n - 1, 10):
                vault.link(ids[i], ids[i + 1], kind="next", weight=0.5)


def copy_fsync(src: str, dst: str) -> None:
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def sha256_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with p.open("rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def write_knowledge(root: Path, n: int, dim: int, rng: np.random.Generator) -> None:
    root.mkdir()
    vecs = np.round(rng.standard_normal((n, dim)), 5)
    concepts = {
        f"c{i}": {
            "id": f"c{i}",
            "content": " ".join(rng.choice(WORDS, 10)) + f" #{i}",
            "created": 1718000000.0 + i,
            "access_count": int(i % 7),
            "strength": 1.0,
            "last_accessed": 1718000500.0 + i,
            "source": "bench",
            "category": WORDS[i % len(WORDS)],
            "confidence": 0.9,
        }
        for i in range(n)
    }
    assoc = {
        f"c{i}:c{i + 1}": {
            "source_id": f"c{i}",
            "target_id": f"c{i + 1}",
            "assoc_type": "temporal",
            "weight": 0.5,
            "confidence": 0.8,
            "created": 1718000001.0,
            "last_used": 1718000600.0,
        }
        for i in range(0, n - 1, 2)
    }
    (root / "concepts.json").write_text(json.dumps(concepts))
    (root / "associations.json").write_text(json.dumps(assoc))
    emb = {f"c{i}": vecs[i].tolist() for i in range(n)}
    (root / "embeddings.json").write_text(json.dumps({"provider": "bench", "embeddings": emb}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10k units instead of 100k")
    ap.add_argument("--units", type=int, default=None)
    ap.add_argument("--dim", type=int, default=384)
    args = ap.parse_args()
    n = args.units or (10_000 if args.quick else 100_000)
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"units": n, "dim": args.dim, "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        base = Path(tmp)
        vault = base / "vault"
        build_vault(vault, n, args.dim, rng)
        size = tree_bytes(vault)
        out["vault_mb"] = round(size / 1e6, 1)
        mb = size / 1e6

        t_copy, _ = timed(lambda: shutil.copytree(vault, base / "peer-copy"))
        t_sync, _ = timed(lambda: shutil.copytree(vault, base / "peer-sync", copy_function=copy_fsync))
        t_hash, _ = timed(lambda: sha256_tree(vault))
        t_exp_dir, rep = timed(lambda: sv.bundle.export(vault, base / "b-dir"))
        t_exp_tar, _ = timed(lambda: sv.bundle.export(vault, base / "b.tar"))
        t_ver_dir, _ = timed(lambda: sv.bundle.verify(base / "b-dir"))
        t_ver_tar, _ = timed(lambda: sv.bundle.verify(base / "b.tar"))
        t_imp_tar, _ = timed(lambda: sv.bundle.import_bundle(base / "b.tar", base / "imported"))
        t_imp_dir, _ = timed(lambda: sv.bundle.import_bundle(base / "b-dir", base / "imported2"))
        bundle_mb = rep.bytes / 1e6
        out["bundle_mb"] = round(bundle_mb, 1)
        out["peer"] = {
            "copytree_mb_s": round(mb / t_copy, 1),
            "copytree_fsync_mb_s": round(mb / t_sync, 1),
            "sha256_mb_s": round(mb / t_hash, 1),
        }
        out["export"] = {
            "dir_mb_s": round(bundle_mb / t_exp_dir, 1),
            "tar_mb_s": round(bundle_mb / t_exp_tar, 1),
            "dir_vs_copytree_fsync": round((bundle_mb / t_exp_dir) / (mb / t_sync), 2),
        }
        out["verify"] = {
            "dir_mb_s": round(bundle_mb / t_ver_dir, 1),
            "tar_mb_s": round(bundle_mb / t_ver_tar, 1),
            "dir_vs_sha256": round((bundle_mb / t_ver_dir) / (mb / t_hash), 2),
        }
        out["import"] = {
            "tar_mb_s": round(bundle_mb / t_imp_tar, 1),
            "dir_mb_s": round(bundle_mb / t_imp_dir, 1),
            "dir_vs_copytree_fsync": round((bundle_mb / t_imp_dir) / (mb / t_sync), 2),
        }
        (base / "b.tar").unlink()
        for p in ("peer-copy", "peer-sync", "b-dir", "imported", "imported2", "vault"):
            shutil.rmtree(base / p)

        legacy = base / "legacy"
        write_knowledge(legacy, n, args.dim, rng)

        def load_legacy() -> None:
            for name in ("concepts.json", "associations.json", "embeddings.json"):
                json.loads((legacy / name).read_bytes())

        t_load, _ = timed(load_legacy)
        t_mig, report = timed(lambda: sv.migrate.migrate(legacy, base / "migrated"))
        assert report.ok, report.problems
        t_dry, _ = timed(lambda: sv.migrate.migrate(legacy, base / "dry", dry_run=True))
        out["migration"] = {
            "legacy_mb": round(tree_bytes(legacy) / 1e6, 1),
            "units_per_s": round(n / t_mig, 1),
            "seconds": round(t_mig, 2),
            "dry_run_seconds": round(t_dry, 2),
            "edges": report.counts["edges_in_vault"],
            "legacy_json_load_seconds": round(t_load, 2),
            "vs_legacy_load": round(t_mig / t_load, 2),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
