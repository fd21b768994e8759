"""ANN index files are derived data: verified before use, rebuilt when missing or damaged, caught
up with rows added since they were written, compacted, kept in memory on read-only vaults, and
shared safely between processes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_py

import sigmavault as sv
from sigmavault.cli import ann as ann_cli
from sigmavault.units.indexes import AUTO_MIN_ROWS, TAIL_MAX

DIM = 32


def vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((50, DIM)).astype(np.float32)
    x = centers[rng.integers(0, 50, n)] + 0.7 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


DATA = vectors(4000, seed=1)
QUERIES = vectors(40, seed=2)


def make(path: Path, kind: str = "ivf-rabitq", n: int = len(DATA)) -> None:
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None, index=kind)
        col.add(vectors=DATA[:n], ids=[f"u{i}" for i in range(n)])
        col.build_index()


def index_files(path: Path) -> list[Path]:
    return sorted((path / "index").glob("*.faiss"))


def top_ids(col: sv.Collection, queries: np.ndarray = QUERIES, k: int = 10) -> list[list[str]]:
    return [[h.id for h in hits] for hits in col.search_batch(queries, k)]


def truth(data: np.ndarray, ids: list[str], k: int = 10) -> list[list[str]]:
    order = np.argsort(-(QUERIES @ data.T), axis=1)[:, :k]
    return [[ids[j] for j in row] for row in order]


def recall(found: list[list[str]], expected: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, expected, strict=True)]))


@pytest.mark.parametrize("kind", ["hnsw", "ivf-rabitq"])
@pytest.mark.parametrize("damage", ["delete", "flip", "truncate", "garbage"])
def test_missing_or_damaged_index_file_is_rebuilt_on_open(tmp_path: Path, kind: str, damage: str) -> None:
    path = tmp_path / "v"
    make(path, kind)
    (old,) = index_files(path)
    if damage == "delete":
        old.unlink()
    elif damage == "flip":
        raw = bytearray(old.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        old.write_bytes(bytes(raw))
    elif damage == "truncate":
        old.write_bytes(old.read_bytes()[: old.stat().st_size // 3])
    else:
        old.write_bytes(b"\x00" * old.stat().st_size)  # same size, checksum differs
    with sv.open(path) as vault:
        report = vault.check()
        assert report.ok and any("rebuilt on next search" in n for n in report.notes)
        col = vault.collection("c", embedder=None)
        found = top_ids(col)  # answered exactly while the index is rebuilt in the background
        info = col.wait_index()
        assert vault.check().notes == [n for n in vault.check().notes if "index:" not in n]
    (new,) = index_files(path)
    assert new.name != old.name and info["file"]["name"] == new.name
    assert recall(found, truth(DATA, [f"u{i}" for i in range(len(DATA))])) >= 0.95


def test_rows_added_after_the_index_are_found_and_later_folded_in(tmp_path: Path) -> None:
    path = tmp_path / "v"
    make(path)
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        col.add(vectors=QUERIES[:3], ids=["q0", "q1", "q2"])  # each is the exact match of its query
        hits = col.search_batch(QUERIES[:3], 1)
        assert [h[0].id for h in hits] == ["q0", "q1", "q2"]
        assert col.index_info()["file"]["covers"] == len(DATA)  # a small tail is scanned exactly
        extra = vectors(TAIL_MAX + 10, seed=3)
        col.add(vectors=extra, ids=[f"x{i}" for i in range(len(extra))])
        col.search(QUERIES[0], 5)
        info = col.wait_index()
    rows = len(DATA) + 3 + len(extra)
    assert info["file"]["covers"] == rows and info["file"]["pending_rows"] == 0
    with sv.open(path, frozen=True) as vault:
        col = vault.collection("c", embedder=None)
        assert [h[0].id for h in col.search_batch(QUERIES[:3], 1)] == ["q0", "q1", "q2"]
        assert col.index_info()["loaded"]["covers"] == rows


def test_ivf_index_is_rebuilt_when_the_collection_outgrows_its_lists(tmp_path: Path) -> None:
    path = tmp_path / "v"
    make(path, n=1500)
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        small = col.index_info()["file"]["params"]["nlist"]
        more = vectors(TAIL_MAX + 500, seed=4)
        col.add(vectors=more, ids=[f"m{i}" for i in range(len(more))])
        col.search(QUERIES[0], 5)
        grown = col.wait_index()["file"]
    assert grown["params"]["nlist"] > small and grown["entries"] == 1500 + len(more)


def test_deletes_past_a_quarter_trigger_compaction_and_compact_runs_on_demand(tmp_path: Path) -> None:
    path = tmp_path / "v"
    make(path)
    ids = [f"u{i}" for i in range(len(DATA))]
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        col.delete(ids[:100])
        assert col.compact()["entries"] == len(DATA) - 100
        col.delete(ids[100:1200])
        col.search(QUERIES[0], 5)  # stale entries are filtered at search time, the file is kept
        assert col.index_info()["file"]["dead_entries"] == 1100
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        found = top_ids(col)  # 1100 / 3900 dead: the load schedules a rebuild
        info = col.wait_index()["file"]
    assert info["entries"] == len(DATA) - 1200 and info["dead_entries"] == 0
    assert not {i for row in found for i in row} & set(ids[:1200])
    assert recall(found, truth(DATA[1200:], ids[1200:])) >= 0.95


def test_read_only_vault_builds_in_memory_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "v"
    make(path, "hnsw")
    (old,) = index_files(path)
    old.unlink()
    with sv.open(path, frozen=True) as vault:
        col = vault.collection("c", embedder=None)
        found = top_ids(col)
        assert col.wait_index()["loaded"]["entries"] == len(DATA)
        assert col.index_info()["file"]["name"] == old.name  # the record of the missing file stays
    assert index_files(path) == []
    assert recall(found, truth(DATA, [f"u{i}" for i in range(len(DATA))])) >= 0.95


def test_index_choice_is_stored_and_can_change(tmp_path: Path) -> None:
    path = tmp_path / "v"
    make(path, "hnsw")
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None, index="exact")
        assert col.index_info()["active"] == "exact"
        col.compact()
        assert index_files(path) == []
        exact = top_ids(col)
    assert exact == truth(DATA, [f"u{i}" for i in range(len(DATA))])
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None, index="ivf-rabitq", nprobe=8)
        assert vault.collection("c", embedder=None).info.config["index"]["nprobe"] == 8
        assert top_ids(col) == exact  # answered exactly while the new kind is built
        assert col.wait_index()["file"]["kind"] == "ivf-rabitq"


def test_auto_searches_exactly_below_the_threshold(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        col = vault.collection("c", embedder=None)
        col.add(vectors=DATA)
        assert len(DATA) < AUTO_MIN_ROWS
        assert col.index_info() == {"configured": "auto", "active": "exact", "vector_rows": len(DATA)}
        col.search(QUERIES[0], 3)
    assert index_files(tmp_path / "v") == []


def test_another_process_extending_the_index_does_not_disturb_this_one(tmp_path: Path) -> None:
    path = tmp_path / "v"
    make(path)
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        first = top_ids(col)
        other = run_py(
            """
            import json, sys, numpy as np, sigmavault as sv
            rng = np.random.default_rng(5)
            extra = rng.standard_normal((int(sys.argv[2]), 32)).astype(np.float32)
            with sv.open(sys.argv[1]) as vault:
                col = vault.collection("c", embedder=None)
                col.add(vectors=extra, ids=[f"o{i}" for i in range(len(extra))])
                col.search(extra[0], 3)
                print(json.dumps(col.wait_index()["file"]))
            """,
            str(path),
            str(TAIL_MAX + 100),
        )
        assert other["covers"] == len(DATA) + TAIL_MAX + 100
        again = top_ids(col)  # the old index plus an exact scan of the other process's rows
        assert col.wait_index()["loaded"]["covers"] == other["covers"]  # adopted the other process's file
    extra = np.random.default_rng(5).standard_normal((TAIL_MAX + 100, DIM)).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    ids = [f"u{i}" for i in range(len(DATA))] + [f"o{i}" for i in range(len(extra))]
    assert recall(first, truth(DATA, ids[: len(DATA)])) >= 0.95
    assert recall(again, truth(np.concatenate([DATA, extra]), ids)) >= 0.95


def _cli(*argv: str) -> tuple[int, object]:
    parser = argparse.ArgumentParser()
    ann_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args), args


def test_cli_index_and_compact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v"
    make(path)
    code, _ = _cli("index", str(path), "--json")
    shown = json.loads(capsys.readouterr().out)
    assert code == 0 and shown["c"]["active"] == "ivf-rabitq" and shown["c"]["file"]["covers"] == len(DATA)
    code, _ = _cli("index", str(path), "--kind", "hnsw", "--rebuild", "--json")
    rebuilt = json.loads(capsys.readouterr().out)
    assert code == 0 and rebuilt["c"]["file"]["kind"] == "hnsw"
    with sv.open(path) as vault:
        vault.collection("c", embedder=None).delete([f"u{i}" for i in range(10)])
    code, _ = _cli("compact", str(path), "--json")
    compacted = json.loads(capsys.readouterr().out)
    assert code == 0 and compacted["collections"][0]["entries"] == len(DATA) - 10
    code, _ = _cli("index", str(path))
    assert code == 0 and "hnsw" in capsys.readouterr().out


def test_emptied_collection_falls_back_to_exact_search(tmp_path: Path) -> None:
    path = tmp_path / "v"
    make(path, "hnsw")
    keep = [f"u{i}" for i in range(5)]
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        col.delete([f"u{i}" for i in range(5, len(DATA))])
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        assert col.index_info()["active"] == "exact"
        assert {h.id for h in col.search(QUERIES[0], 10)} == set(keep)


def test_large_add_streams_from_a_memory_map_with_progress(tmp_path: Path) -> None:
    source = np.lib.format.open_memmap(tmp_path / "vecs.npy", mode="w+", dtype=np.float32, shape=(5000, DIM))
    source[:] = vectors(5000, seed=6)
    source.flush()
    mapped = np.load(tmp_path / "vecs.npy", mmap_mode="r")
    calls: list[tuple[int, int]] = []
    with sv.open(tmp_path / "v") as vault:
        col = vault.collection("c", embedder=None)
        col.add(vectors=mapped, batch_size=2000, progress=lambda done, total: calls.append((done, total)))
        assert calls == [(2000, 5000), (4000, 5000), (5000, 5000)]
        assert len(col) == 5000
        bad = np.array(mapped)
        bad[4321, 7] = np.nan
        with pytest.raises(sv.InvalidInput, match="row 4321"):
            col.add(vectors=bad, batch_size=1000)
        bad[4321] = 0.0
        with pytest.raises(sv.InvalidInput, match="vector 4321 is all zeros"):
            col.add(vectors=bad, batch_size=1000)
        assert len(col) == 5000  # validated before the first batch was written


def test_search_inside_a_transaction_answers_and_the_index_is_recorded_outside_it(tmp_path: Path) -> None:
    path = tmp_path / "v"
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None, index="ivf-rabitq")
        col.add(vectors=DATA, ids=[f"u{i}" for i in range(len(DATA))])  # schedules the build
        with pytest.raises(RuntimeError, match="undo"), vault.transaction():
            col.add(vectors=QUERIES[:1], ids=["q0"])
            assert col.search(QUERIES[0], 1)[0].id == "q0"  # the uncommitted row is found
            raise RuntimeError("undo")
        info = col.wait_index()
        assert info["file"]["covers"] == len(DATA)  # the rolled-back row is in no index
        found = top_ids(col)
    assert len(index_files(path)) == 1
    assert recall(found, truth(DATA, [f"u{i}" for i in range(len(DATA))])) >= 0.95


def test_an_index_built_after_an_add_reports_progress_to_the_vault_reporter(tmp_path: Path) -> None:
    # NOTE: the parts only report; the CLI draws. The background build an add starts tells the
    # reporter given to open() what it does, ending at its total.
    heard: list[tuple[str, int, int]] = []
    with sv.open(tmp_path / "v", progress=lambda label, done, total: heard.append((label, done, total))) as vault:
        col = vault.collection("c", embedder=None, index="hnsw")
        col.add(vectors=DATA[:1500], ids=[f"u{i}" for i in range(1500)])
        col.wait_index()
    assert heard, "the background build reported nothing"
    labels = {label for label, _, _ in heard}
    assert len(labels) == 1 and "indexing c (hnsw, 1,500 vectors)" in labels.pop()
    assert heard[-1][1] == heard[-1][2] == 1500
    assert all(0 <= done <= total for _, done, total in heard)


def test_a_reopened_hnsw_index_serves_the_first_search_and_its_checksum_is_confirmed_behind_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v"
    make(path, "hnsw")
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        # NOTE: asking for the collection began reading its index file on a side thread
        assert col.index_info().get("reading") is True
        found = top_ids(col)
        # NOTE: taken by the first search (memory-mapped, structure checked), not built
        assert "reading" not in col.index_info()
        assert col.index_info()["loaded"]["covers"] == len(DATA)
        info = col.wait_index()
        assert info["loaded"]["verified"] is True and info["file"]["name"] == index_files(path)[0].name
    assert recall(found, truth(DATA, [f"u{i}" for i in range(len(DATA))])) >= 0.95


def test_a_loaded_index_is_not_read_again_and_a_rebuilt_one_is_what_the_next_reopen_reads(tmp_path: Path) -> None:
    path = tmp_path / "v"
    make(path, "hnsw")
    expected = truth(DATA, [f"u{i}" for i in range(len(DATA))])
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        top_ids(col)
        vault.collection("c", embedder=None)  # loaded already: nothing more is read
        assert "reading" not in col.index_info()
        col.build_index()  # replaces the loaded index and its file
        rebuilt = col.index_info()["file"]["name"]
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        assert recall(top_ids(col), expected) >= 0.95
        info = col.index_info()
        assert info["loaded"]["covers"] == len(DATA) and info["file"]["name"] == rebuilt


def test_a_collection_dropped_while_its_index_file_is_read_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "v"
    make(path, "hnsw")
    with sv.open(path) as vault:
        vault.collection("c", embedder=None)
        assert vault.drop_collection("c") == len(DATA)
        assert index_files(path) == []
        fresh = vault.collection("c", embedder=None)
        assert fresh.index_info() == {"configured": "auto", "active": "exact", "vector_rows": 0}


def _exact_scores(col: sv.Collection, hits: list[list[sv.Hit]]) -> None:
    """Every hit's score is the exact cosine of its query and its stored vector."""
    for q, row in zip(QUERIES, hits, strict=True):
        for h in row:
            vec = DATA[int(h.id[1:])]
            assert abs(h.score - float(q @ vec / np.linalg.norm(q))) < 1e-4


def test_an_hnsw_file_damaged_where_its_structure_looks_sound_is_rejected_by_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "v"
    make(path, "hnsw")
    (old,) = index_files(path)
    raw = bytearray(old.read_bytes())
    # NOTE: inside the 8-bit codes (written after the graph, before the id map of 8 bytes per row):
    # FAISS reads any byte there, so only the checksum can tell.
    raw[len(raw) - 8 * len(DATA) - 5_000] ^= 0xFF
    old.write_bytes(bytes(raw))
    # NOTE: the warning comes from the background thread, whenever its check ends
    with pytest.warns(UserWarning, match="fails its checksum"), sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        hits = col.search_batch(QUERIES, 10)
        _exact_scores(col, hits)  # served before the checksum is known: candidates may differ, scores cannot
        info = col.wait_index()
        assert info["loaded"]["verified"] is True
        found = top_ids(col)
    (new,) = index_files(path)
    assert new.name != old.name and info["file"]["name"] == new.name
    assert recall(found, truth(DATA, [f"u{i}" for i in range(len(DATA))])) >= 0.95


def test_an_hnsw_graph_pointing_out_of_range_is_never_searched(tmp_path: Path) -> None:
    import faiss

    from sigmavault.index.ann import AnnIndex, BuildParams

    path = tmp_path / "v"
    make(path, "hnsw")
    (old,) = index_files(path)
    ann = AnnIndex.load(old, BuildParams("hnsw", "cosine"), DIM)
    ann.check_structure()
    hnsw = faiss.downcast_index(ann.index.index).hnsw
    neighbors = faiss.rev_swig_ptr(hnsw.neighbors.data(), hnsw.neighbors.size())
    neighbors[123] = len(DATA) + 7  # NOTE: FAISS would read past its codes here
    with pytest.raises(sv.Corrupted, match="neighbour id is out of range"):
        ann.check_structure()
    size = old.stat().st_size
    ann.save(old)
    assert old.stat().st_size == size  # same size: only the checksum or the structure check can tell
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        found = top_ids(col)  # the graph is refused on the search's thread: answered exactly
        assert found == truth(DATA, [f"u{i}" for i in range(len(DATA))])
        info = col.wait_index()
    assert info["file"]["name"] != old.name and info["loaded"]["verified"] is True


def test_check_structure_names_each_kind_of_graph_damage(tmp_path: Path) -> None:
    import faiss

    from sigmavault.index.ann import AnnIndex, BuildParams

    path = tmp_path / "v"
    make(path, "hnsw")
    (file,) = index_files(path)
    for name, damage in (
        ("level", lambda h: faiss.rev_swig_ptr(h.levels.data(), h.levels.size()).__setitem__(9, 99)),
        ("neighbour list", lambda h: faiss.rev_swig_ptr(h.offsets.data(), h.offsets.size()).__setitem__(9, 3)),
        ("entry point", lambda h: setattr(h, "entry_point", len(DATA) + 1)),
        ("neighbour id", lambda h: faiss.rev_swig_ptr(h.neighbors.data(), h.neighbors.size()).__setitem__(0, -5)),
    ):
        ann = AnnIndex.load(file, BuildParams("hnsw", "cosine"), DIM)
        damage(faiss.downcast_index(ann.index.index).hnsw)
        with pytest.raises(sv.Corrupted, match=name):
            ann.check_structure()
