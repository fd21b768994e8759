"""The graph part: typed, weighted edges between units."""

from sigmavault.graph.store import MIGRATIONS, PART, Direction, GraphStore, count_edges, keep_nodes

__all__ = ["MIGRATIONS", "PART", "Direction", "GraphStore", "count_edges", "keep_nodes"]
