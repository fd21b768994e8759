"""What per-row vector checksums (CRC32 in ``units.vec_crc``) cost, against their peers in the same run.

Measured on one collection of N random 384-d unit vectors (exact index):

- ``add``: CRC32 of every vector row, and of every unit record, vs the whole ``add``.
- ``get``: one ``get()`` (which verifies its row), vs the CRC32 of one row alone.
- ``search``: one ``search(k=10)`` (which verifies its 10 hit rows), vs CRC32 of 10 rows.
- ``check``: the full verification of every row inside ``check()``, vs the whole ``check()``.

Ratios say whether verifying on every single-row read is affordable (it is when the CRC is a small
share of the read it guards). Prints one JSON object.

    .venv/bin/python benchmarks/checksums.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import sigmavault as sv
from sigmavault.store.vectors import row_crcs
from sigmavault.units.integrity import unit_crc, verify_vectors

DIM = 384


def _per_call(fn: object, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.rows, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp, sv.open(Path(tmp) / "v") as vault:
        col = vault.collection("bench", embedder=None, index="exact")
        start = time.perf_counter()
        ids = col.add(vectors=vectors, batch_size=10_000)
        add_s = time.perf_counter() - start
        start = time.perf_counter()
        row_crcs(vectors)
        crc_all_s = time.perf_counter() - start
        start = time.perf_counter()
        for uid in ids:
            unit_crc(uid, 1, None, "{}", "unit", "active", 1.8e9, None, None, None)
        rec_all_s = time.perf_counter() - start
        sample = [ids[i] for i in rng.integers(0, args.rows, 2000)]
        it = iter(sample * 2)
        get_s = _per_call(lambda: col.get(next(it), touch=False), 2000)
        one = vectors[:1]
        crc_one_s = _per_call(lambda: row_crcs(one), 20_000)
        queries = iter(vectors[rng.integers(0, args.rows, 200)])
        search_s = _per_call(lambda: col.search(next(queries), k=10), 200)
        ten = vectors[:10]
        crc_ten_s = _per_call(lambda: row_crcs(ten), 20_000)
        start = time.perf_counter()
        report = vault.check()
        check_s = time.perf_counter() - start
        ctx = vault.context
        matrix = ctx.catalog.state(col.info.id).matrix()
        start = time.perf_counter()
        verify_vectors(ctx.db, col.info.id, matrix)
        verify_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "rows": args.rows,
                "dim": DIM,
                "loadavg": os.getloadavg(),
                "check_ok": report.ok,
                "add": {
                    "total_s": round(add_s, 3),
                    "crc_s": round(crc_all_s, 3),
                    "crc_share": round(crc_all_s / add_s, 4),
                    "record_crc_s": round(rec_all_s, 3),
                    "record_crc_share": round(rec_all_s / add_s, 4),
                },
                "get": {
                    "per_call_us": round(get_s * 1e6, 1),
                    "crc_us": round(crc_one_s * 1e6, 2),
                    "crc_share": round(crc_one_s / get_s, 4),
                },
                "search_k10": {
                    "per_call_us": round(search_s * 1e6, 1),
                    "crc_us": round(crc_ten_s * 1e6, 2),
                    "crc_share": round(crc_ten_s / search_s, 4),
                },
                "check": {
                    "total_s": round(check_s, 3),
                    "verify_rows_s": round(verify_s, 3),
                    "verify_share": round(verify_s / check_s, 4),
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
