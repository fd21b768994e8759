"""The LlamaIndex vector store, through a round-trip suite modelled on llama-index-core's own
tests of its SimpleVectorStore (which live in its repository, not in the wheel): add and query,
filters (every supported operator, and/or, nested), doc_ids, delete by ref_doc_id, delete_nodes,
get_nodes, clear, upsert of an existing node, persistence across a reopen, and the async twins."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core", reason="needs the [llamaindex] extra")

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)

import sigmavault as sv
from sigmavault.integrations.llamaindex import SigmaVaultVectorStore


def _nodes() -> list[TextNode]:
    rows = [
        ("n1", "doc-a", [1.0, 0.0, 0.0], {"author": "ada", "year": 1843, "tags": "math"}),
        ("n2", "doc-a", [0.0, 1.0, 0.0], {"author": "alan", "year": 1936, "tags": "cs"}),
        ("n3", "doc-b", [0.0, 0.0, 1.0], {"author": "grace", "year": 1952, "tags": "cs"}),
        ("n4", "doc-c", [1.0, 1.0, 0.0], {"author": "ada", "year": 1842, "tags": "math"}),
    ]
    return [
        TextNode(
            id_=nid,
            text=f"text of {nid} by {meta['author']}",
            embedding=emb,
            metadata=meta,
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)},
        )
        for nid, doc, emb, meta in rows
    ]


def _q(emb: list[float], k: int = 4, filters: MetadataFilters | None = None, **kw: object) -> VectorStoreQuery:
    return VectorStoreQuery(query_embedding=emb, similarity_top_k=k, filters=filters, **kw)  # type: ignore[arg-type]


def test_add_query_and_round_trip(tmp_path: Path) -> None:
    store = SigmaVaultVectorStore.open(tmp_path / "v")
    assert store.add(_nodes()) == ["n1", "n2", "n3", "n4"]
    result = store.query(_q([1.0, 0.0, 0.0], k=2))
    assert result.ids == ["n1", "n4"]
    assert result.similarities is not None and result.similarities[0] == pytest.approx(1.0)
    assert min(result.similarities) >= -1.0 and max(result.similarities) <= 1.0
    node = result.nodes[0]
    assert isinstance(node, TextNode) and node.text == "text of n1 by ada" and node.ref_doc_id == "doc-a"
    assert node.metadata == {"author": "ada", "year": 1843, "tags": "math"}
    # an existing node id is replaced, not duplicated
    store.add([TextNode(id_="n1", text="rewritten", embedding=[0.0, 1.0, 0.0], metadata={"author": "ada"})])
    assert store.query(_q([0.0, 1.0, 0.0], k=5)).ids[:2] in (["n1", "n2"], ["n2", "n1"])
    assert len(store.get_nodes()) == 4
    store.close()
    reopened = SigmaVaultVectorStore.open(tmp_path / "v")
    assert [n.get_content() for n in reopened.get_nodes(["n1", "missing"])] == ["rewritten"]
    reopened.close()


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (MetadataFilters(filters=[MetadataFilter(key="author", value="ada")]), {"n1", "n4"}),
        (
            MetadataFilters(filters=[MetadataFilter(key="author", value="ada", operator=FilterOperator.NE)]),
            {"n2", "n3"},
        ),
        (MetadataFilters(filters=[MetadataFilter(key="year", value=1900, operator=FilterOperator.GT)]), {"n2", "n3"}),
        (MetadataFilters(filters=[MetadataFilter(key="year", value=1936, operator=FilterOperator.GTE)]), {"n2", "n3"}),
        (MetadataFilters(filters=[MetadataFilter(key="year", value=1843, operator=FilterOperator.LT)]), {"n4"}),
        (MetadataFilters(filters=[MetadataFilter(key="year", value=1843, operator=FilterOperator.LTE)]), {"n1", "n4"}),
        (
            MetadataFilters(
                filters=[MetadataFilter(key="author", value=["alan", "grace"], operator=FilterOperator.IN)]
            ),
            {"n2", "n3"},
        ),
        (
            MetadataFilters(filters=[MetadataFilter(key="author", value=["ada"], operator=FilterOperator.NIN)]),
            {"n2", "n3"},
        ),
        (
            MetadataFilters(
                filters=[MetadataFilter(key="author", value="ada"), MetadataFilter(key="year", value=1843)]
            ),
            {"n1"},
        ),
        (
            MetadataFilters(
                filters=[MetadataFilter(key="author", value="grace"), MetadataFilter(key="year", value=1843)],
                condition=FilterCondition.OR,
            ),
            {"n1", "n3"},
        ),
        (
            MetadataFilters(
                filters=[
                    MetadataFilter(key="tags", value="cs"),
                    MetadataFilters(
                        filters=[MetadataFilter(key="author", value="alan"), MetadataFilter(key="year", value=1952)],
                        condition=FilterCondition.OR,
                    ),
                ]
            ),
            {"n2", "n3"},
        ),
    ],
)
def test_filters(tmp_path: Path, filters: MetadataFilters, expected: set[str]) -> None:
    store = SigmaVaultVectorStore.open(tmp_path / "v")
    store.add(_nodes())
    assert set(store.query(_q([1.0, 1.0, 1.0], k=10, filters=filters)).ids) == expected
    assert {n.node_id for n in store.get_nodes(filters=filters)} == expected
    store.close()


def test_deletes_doc_ids_and_unsupported(tmp_path: Path) -> None:
    store = SigmaVaultVectorStore.open(tmp_path / "v")
    store.add(_nodes())
    assert set(store.query(_q([1.0, 0.0, 0.0], doc_ids=["doc-a"])).ids) == {"n1", "n2"}
    store.delete("doc-a")
    assert {n.node_id for n in store.get_nodes()} == {"n3", "n4"}
    store.delete_nodes(["n3", "missing"])
    assert [n.node_id for n in store.get_nodes()] == ["n4"]
    store.add(_nodes())
    store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="tags", value="math")]))
    assert {n.node_id for n in store.get_nodes()} == {"n2", "n3"}
    with pytest.raises(sv.InvalidFilter):
        store.query(
            _q(
                [1.0, 0.0, 0.0],
                filters=MetadataFilters(
                    filters=[MetadataFilter(key="tags", value="c", operator=FilterOperator.TEXT_MATCH)]
                ),
            )
        )
    store.clear()
    assert store.get_nodes() == [] and store.query(_q([1.0, 0.0, 0.0])).ids == []
    store.close()


def test_async_twins(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SigmaVaultVectorStore.open(tmp_path / "v")
        assert await store.async_add(_nodes()) == ["n1", "n2", "n3", "n4"]
        results = await asyncio.gather(*(store.aquery(_q([0.0, 0.0, 1.0], k=1)) for _ in range(10)))
        assert {tuple(r.ids or []) for r in results} == {("n3",)}
        await store.adelete("doc-b")
        assert len(await store.aget_nodes()) == 3
        await store.aclear()
        assert await store.aget_nodes() == []
        store.close()

    asyncio.run(scenario())
