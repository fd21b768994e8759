"""`where` filters: every operator against a Python reference, by hand and as a hypothesis property,
for listing (`all`), vector search (selective and broad filters) and text search."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unit_vectors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sigmavault as sv
from sigmavault.units import compile_where

_MISSING = object()


def _lookup(meta: Mapping[str, Any], key: str) -> Any:
    node: Any = meta
    for seg in key.split("."):
        if not isinstance(node, Mapping) or seg not in node:
            return _MISSING
        node = node[seg]
    return node


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _same(stored: Any, value: Any) -> bool:
    """Equality within one JSON type (the documented rule): 1 == 1.0, 1 != True, 1 != "1"."""
    if value is None:
        return stored is _MISSING or stored is None
    if isinstance(value, bool):
        return isinstance(stored, bool) and stored == value
    if _number(value):
        return _number(stored) and stored == value
    return isinstance(stored, str) and stored == value


def _cond(stored: Any, op: str, value: Any) -> bool:
    if op == "$eq":
        return _same(stored, value)
    if op == "$ne":
        return not _same(stored, value)
    if op == "$in":
        return any(_same(stored, v) for v in value)
    if op == "$nin":
        return not any(_same(stored, v) for v in value)
    if not _number(stored):
        return False
    return {"$gt": stored > value, "$gte": stored >= value, "$lt": stored < value, "$lte": stored <= value}[op]


def reference(meta: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """A plain-Python reading of the filter grammar in sigmavault.units.filters."""
    for key, cond in where.items():
        if key == "$and":
            ok = all(reference(meta, c) for c in cond)
        elif key == "$or":
            ok = any(reference(meta, c) for c in cond)
        elif isinstance(cond, Mapping):
            ok = all(_cond(_lookup(meta, key), op, v) for op, v in cond.items())
        else:
            ok = _same(_lookup(meta, key), cond)
        if not ok:
            return False
    return True


# -- the data: metadata with every JSON type, missing keys and nesting -----------------------------

SCALARS = [0, 1, 2, 3, -1, 1.0, 2.5, -0.5, True, False, None, "a", "b", "1", "", "ä ü"]
KEYS = ["k", "n", "s", "nest.x", "nest.deep.y"]


def _metadata(rng: np.random.Generator, i: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"i": i}
    for key in ("k", "n", "s"):
        roll = rng.random()
        if roll < 0.8:
            meta[key] = SCALARS[int(rng.integers(len(SCALARS)))]
        elif roll < 0.9:
            meta[key] = {"x": 1}  # an object where a scalar usually is
    if rng.random() < 0.7:
        nest: dict[str, Any] = {"x": SCALARS[int(rng.integers(len(SCALARS)))]}
        if rng.random() < 0.5:
            nest["deep"] = {"y": SCALARS[int(rng.integers(len(SCALARS)))]}
        meta["nest"] = nest
    return meta


@pytest.fixture(scope="module")
def filtered(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[sv.Collection, list[dict[str, Any]], np.ndarray]]:
    rng = np.random.default_rng(99)
    metas = [_metadata(rng, i) for i in range(400)]
    vecs = unit_vectors(rng, 400, 16)
    path: Path = tmp_path_factory.mktemp("filters") / "vault"
    with sv.open(path) as vault:
        col = vault.collection("f", embedder=None)
        col.add(
            vectors=vecs,
            metadata=metas,
            texts=[f"doc {m['i']} common" for m in metas],
            ids=[str(i) for i in range(400)],
        )
        yield col, metas, vecs


def _listed(col: sv.Collection, where: Mapping[str, Any]) -> set[int]:
    return {u.metadata["i"] for u in col.all(where=where)}


def _expected(metas: list[dict[str, Any]], where: Mapping[str, Any]) -> set[int]:
    return {m["i"] for m in metas if reference(m, where)}


# -- by hand: each operator, its edge cases -------------------------------------------------------

HAND = [
    {"k": 1},
    {"k": 1.0},
    {"k": True},
    {"k": "1"},
    {"k": None},
    {"k": {"$ne": None}},
    {"k": {"$ne": 1}},
    {"k": {"$in": [1, "a", False]}},
    {"k": {"$nin": [1, "a"]}},
    {"k": {"$gt": 0}},
    {"k": {"$gte": 1, "$lt": 3}},
    {"k": {"$lte": -0.5}},
    {"nest.x": "b"},
    {"nest.deep.y": {"$gt": 0.5}},
    {"nest": None},
    {"k": 1, "s": "a"},
    {"$or": [{"k": 1}, {"s": {"$in": ["a", "b"]}}]},
    {"$and": [{"n": {"$gte": 0}}, {"$or": [{"s": ""}, {"nest.x": {"$ne": 2}}]}]},
    {},
]


@pytest.mark.parametrize("where", HAND, ids=[str(w) for w in HAND])
def test_listing_matches_reference(filtered: Any, where: dict[str, Any]) -> None:
    col, metas, _ = filtered
    assert _listed(col, where) == _expected(metas, where)


def test_type_rules_are_strict() -> None:
    metas = [{"k": 1}, {"k": True}, {"k": "1"}, {"k": {"a": 1}}, {"k": "abc"}, {}]
    assert [reference(m, {"k": 1}) for m in metas] == [True, False, False, False, False, False]
    assert [reference(m, {"k": {"$gt": 0}}) for m in metas] == [True, False, False, False, False, False]
    assert [reference(m, {"k": {"$ne": 1}}) for m in metas] == [False, True, True, True, True, True]


def test_text_search_honours_where(filtered: Any) -> None:
    col, metas, _ = filtered
    where = {"s": {"$in": ["a", "b"]}}
    hits = col.search("common", mode="text", k=400, where=where)
    assert {int(h.id) for h in hits} == _expected(metas, where)


# -- property: random clauses, three ways of applying them ---------------------------------------

scalar = st.sampled_from(SCALARS)
number = st.sampled_from([-1, 0, 0.5, 1, 2, 2.5, 3])
key = st.sampled_from(KEYS)
condition = st.one_of(
    scalar,
    st.dictionaries(st.sampled_from(["$eq", "$ne"]), scalar, min_size=1),
    st.dictionaries(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), number, min_size=1, max_size=2),
    st.dictionaries(
        st.sampled_from(["$in", "$nin"]),
        st.lists(scalar.filter(lambda v: v is not None), min_size=1, max_size=4),
        min_size=1,
    ),
)
leaf = st.dictionaries(key, condition, min_size=1, max_size=2)
where_clause = st.recursive(
    leaf,
    lambda inner: st.dictionaries(
        st.sampled_from(["$and", "$or"]), st.lists(inner, min_size=1, max_size=3), min_size=1, max_size=1
    ),
    max_leaves=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=where_clause)
def test_property_listing_equals_reference(filtered: Any, where: dict[str, Any]) -> None:
    col, metas, _ = filtered
    assert _listed(col, where) == _expected(metas, where)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=where_clause, seed=st.integers(0, 2**32 - 1))
def test_property_vector_search_with_where_equals_brute_force(filtered: Any, where: dict[str, Any], seed: int) -> None:
    col, metas, vecs = filtered
    q = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
    allowed = np.array([reference(m, where) for m in metas])
    scores = np.where(allowed, vecs @ (q / np.linalg.norm(q)), -np.inf)
    k = 7
    want = [str(i) for i in np.argsort(-scores, kind="stable")[: min(k, int(allowed.sum()))]]
    got = col.search(q, k=k, where=where)
    # NOTE: compare scores, not only ids: float ties could order equal scores either way
    assert len(got) == len(want)
    np.testing.assert_allclose([h.score for h in got], scores[[int(i) for i in want]], atol=1e-5)
    assert all(allowed[int(h.id)] for h in got)


def test_selective_and_broad_filters_agree_with_brute_force(filtered: Any) -> None:
    col, metas, vecs = filtered
    q = vecs[17]
    for where in ({"i": 17}, {"i": {"$lt": 30}}, {"i": {"$gte": 30}}, {"i": {"$gte": 0}}):
        allowed = np.array([reference(m, where) for m in metas])
        scores = np.where(allowed, vecs @ q, -np.inf)
        want = [str(i) for i in np.argsort(-scores, kind="stable")[:5] if allowed[i]]
        assert [h.id for h in col.search(q, k=5, where=where)] == want


@pytest.mark.parametrize(
    "where",
    [
        {"k": {"$regex": "a"}},
        {"k": {"$gt": [1]}},  # ranges take a number or a text (dates), never a list
        {"k": {"$gt": True}},
        {"k": {"$in": []}},
        {"k": {"$in": "abc"}},
        {"k": {"$in": [None]}},
        {"k": {"$in": [[1]]}},
        {"k": [1, 2]},
        {"k": {}},
        {"$not": {"k": 1}},
        {"$or": {"k": 1}},
        {"$and": []},
        {"bad key!": 1},
        {"k": 2**64},
        {"k": math.nan},
        {"k": {"$lt": math.inf}},
        {1: 1},
        "k = 1",
        ["k"],
    ],
    ids=repr,
)
def test_bad_clauses_raise_invalid_filter(filtered: Any, where: Any) -> None:
    col, _, vecs = filtered
    with pytest.raises(sv.InvalidFilter):
        compile_where(where)
    with pytest.raises(sv.InvalidFilter):
        col.search(vecs[0], where=where)
    with pytest.raises(sv.InvalidFilter):
        col.all(where=where)


def test_values_are_bound_never_pasted() -> None:
    sql, params = compile_where({"k": "x') OR 1=1 --", "n": {"$in": [1, "y"]}})
    assert "OR 1=1" not in sql and "x') OR 1=1 --" in params and params.count(1) == 1
