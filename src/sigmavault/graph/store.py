"""Typed, weighted edges between units, indexed both ways; shortest paths by hops.

Edges name units by their public id, so this part needs nothing from the units tables; the
facade checks that both ends exist before it links, and drops a unit's edges when it deletes it.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections.abc import Sequence
from typing import Literal

from sigmavault.errors import InvalidInput
from sigmavault.store import Database, Migration
from sigmavault.types import CheckReport, Edge

__all__ = ["MIGRATIONS", "PART", "Direction", "GraphStore", "count_edges", "keep_nodes"]

PART = "graph"
Direction = Literal["out", "in", "both"]
_KIND = re.compile(r"^[A-Za-z0-9_\-.:]{1,64}$")

MIGRATIONS: list[Migration] = [
    [
        """CREATE TABLE edges (
            src TEXT NOT NULL,
            dst TEXT NOT NULL,
            kind TEXT NOT NULL,
            weight REAL NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (src, kind, dst)
        ) WITHOUT ROWID""",
        "CREATE INDEX edges_in ON edges(dst, kind, src)",
    ],
]


def check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise InvalidInput(f"edge kind {kind!r}: use 1-64 letters, digits, '_', '-', '.' or ':'")
    return kind


class GraphStore:
    """Edge records and the traversals over them."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def link(self, pairs: Sequence[tuple[str, str]], *, kind: str, weight: float) -> int:
        """Create or re-weight edges; returns how many were written."""
        check_kind(kind)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise InvalidInput(f"edge weight must be a finite number, got {weight!r}")
        now = time.time()
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO edges (src, dst, kind, weight, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(src, kind, dst) DO UPDATE SET weight = excluded.weight",
                [(a, b, kind, float(weight), now) for a, b in pairs],
            )
        return len(pairs)

    def unlink(self, a: str, b: str, *, kind: str | None = None) -> int:
        """Remove the edge(s) from ``a`` to ``b`` (of one kind, or all kinds); returns the count."""
        with self.db.write() as conn:
            if kind is None:
                cur = conn.execute("DELETE FROM edges WHERE src = ? AND dst = ?", (a, b))
            else:
                cur = conn.execute("DELETE FROM edges WHERE src = ? AND dst = ? AND kind = ?", (a, b, kind))
            return cur.rowcount

    def drop_nodes(self, uids: Sequence[str]) -> None:
        """Remove every edge touching these units (call inside the transaction that deletes them)."""
        with self.db.write() as conn:
            conn.executemany("DELETE FROM edges WHERE src = ?", [(u,) for u in uids])
            conn.executemany("DELETE FROM edges WHERE dst = ?", [(u,) for u in uids])

    def neighbors(self, uid: str, *, kind: str | None = None, direction: Direction = "out") -> list[Edge]:
        """Edges leaving (``out``), entering (``in``) or touching (``both``) ``uid``, heaviest first."""
        if direction not in ("out", "in", "both"):
            raise InvalidInput(f"direction must be 'out', 'in' or 'both', got {direction!r}")
        edges: list[Edge] = []
        kind_sql, kind_params = ("", ()) if kind is None else (" AND kind = ?", (kind,))
        if direction in ("out", "both"):
            rows = self.db.all(
                f"SELECT src, dst, kind, weight, created_at FROM edges WHERE src = ?{kind_sql}", (uid, *kind_params)
            )
            edges += [Edge(*r) for r in rows]
        if direction in ("in", "both"):
            rows = self.db.all(
                f"SELECT src, dst, kind, weight, created_at FROM edges WHERE dst = ?{kind_sql}", (uid, *kind_params)
            )
            edges += [Edge(*r) for r in rows]
        edges.sort(key=lambda e: -e.weight)
        return edges

    def _adjacent(self, frontier: list[str], *, kind: str | None, reverse: bool) -> list[tuple[str, str]]:
        near, far = ("dst", "src") if reverse else ("src", "dst")
        out: list[tuple[str, str]] = []
        for i in range(0, len(frontier), 500):
            chunk = frontier[i : i + 500]
            marks = ",".join("?" * len(chunk))
            kind_sql = "" if kind is None else " AND kind = ?"
            params = (*chunk, kind) if kind is not None else tuple(chunk)
            out += self.db.all(f"SELECT {near}, {far} FROM edges WHERE {near} IN ({marks}){kind_sql}", params)
        return out

    def path(
        self, a: str, b: str, *, max_depth: int = 4, kind: str | None = None, directed: bool = True
    ) -> list[str] | None:
        """Shortest path by hops from ``a`` to ``b`` (bidirectional BFS), or ``None`` beyond ``max_depth``."""
        if max_depth < 0:
            raise InvalidInput("max_depth must be >= 0")
        if a == b:
            return [a]
        fwd: dict[str, str | None] = {a: None}
        bwd: dict[str, str | None] = {b: None}
        f_front, b_front = [a], [b]
        depth = 0
        while f_front and b_front and depth < max_depth:
            depth += 1
            grow_forward = len(f_front) <= len(b_front)
            front, seen, other = (f_front, fwd, bwd) if grow_forward else (b_front, bwd, fwd)
            reverse = not grow_forward
            pairs = self._adjacent(front, kind=kind, reverse=reverse)
            if not directed:
                pairs += self._adjacent(front, kind=kind, reverse=not reverse)
            nxt: list[str] = []
            for here, there in sorted(pairs):
                if there in seen:
                    continue
                seen[there] = here
                nxt.append(there)
                if there in other:
                    return _join(there, fwd, bwd)
            if grow_forward:
                f_front = nxt
            else:
                b_front = nxt
        return None

    def count(self) -> int:
        return int(self.db.one("SELECT COUNT(*) FROM edges")[0])

    def dangling(self, live: set[str]) -> list[tuple[str, str, str]]:
        """Edges whose ends are not in ``live`` (for check)."""
        rows = self.db.all("SELECT src, dst, kind FROM edges")
        return [(s, d, k) for s, d, k in rows if s not in live or d not in live]

    def check(self, report: CheckReport, *, live: set[str]) -> None:
        """Report edges that point at units not in ``live`` (the unit ids, given by the facade)."""
        for src, dst, kind in self.dangling(live)[:20]:
            report.problems.append(f"graph: edge {src} -[{kind}]-> {dst} points at a unit that does not exist")


def keep_nodes(conn: sqlite3.Connection, live: set[str]) -> None:
    """In a snapshot copy (inside the caller's transaction): drop the edges with an end not in ``live``."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS sv_live_nodes (uid TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM sv_live_nodes")
    conn.executemany("INSERT INTO sv_live_nodes VALUES (?)", ((uid,) for uid in live))
    conn.execute(
        "DELETE FROM edges WHERE src NOT IN (SELECT uid FROM sv_live_nodes) "
        "OR dst NOT IN (SELECT uid FROM sv_live_nodes)"
    )
    conn.execute("DROP TABLE sv_live_nodes")


def count_edges(conn: sqlite3.Connection) -> int:
    """How many edges a snapshot copy holds."""
    return int(conn.execute("SELECT COUNT(*) FROM edges").fetchone()[0])


def _join(meet: str, fwd: dict[str, str | None], bwd: dict[str, str | None]) -> list[str]:
    left: list[str] = []
    node: str | None = meet
    while node is not None:
        left.append(node)
        node = fwd[node]
    left.reverse()
    node = bwd[meet]
    while node is not None:
        left.append(node)
        node = bwd[node]
    return left
