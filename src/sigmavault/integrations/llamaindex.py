"""LlamaIndex: a vector store over one sigmavault collection (``pip install 'sigmavault[llamaindex]'``).

Nodes keep LlamaIndex's embeddings (the collection holds vectors only). Each node is one unit:
its id is the node id, its text the node's content, its metadata the node's metadata plus what
LlamaIndex needs to rebuild the node (``_node_content``, ``_node_type``, ``ref_doc_id``, ...).

==========================================  ====================================================
LlamaIndex                                  sigmavault
==========================================  ====================================================
``add`` / ``async_add``                     ``Collection.upsert`` (a node id that exists is replaced)
``query`` (default and hybrid modes)        ``Collection.search(vector=..., text=..., where=...)``
``get_nodes``                               ``Collection.get_many`` / ``Collection.all(where=...)``
``delete(ref_doc_id)`` / ``delete_nodes``   ``Collection.delete(where=...)`` / ``delete(ids, missing="ignore")``
``clear``                                   ``Collection.delete(where={})``
``MetadataFilters``                         ``where``: ``== != > >= < <= in nin``, ``and`` / ``or``
==========================================  ====================================================

Similarities are cosine similarities in [-1, 1] (hybrid: reciprocal rank fusion scores).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
from pydantic import PrivateAttr

from sigmavault.collection import Collection
from sigmavault.errors import InvalidFilter
from sigmavault.types import Hit, Unit
from sigmavault.vault import Vault
from sigmavault.vault import open as open_vault

__all__ = ["SigmaVaultVectorStore", "to_where"]

_OPS = {
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}


def to_where(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` as a sigmavault ``where`` (unsupported operators raise InvalidFilter)."""
    if filters is None or not filters.filters:
        return None
    parts: list[dict[str, Any]] = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            sub = to_where(f)
            if sub is not None:
                parts.append(sub)
            continue
        assert isinstance(f, MetadataFilter)
        if f.operator == FilterOperator.EQ:
            parts.append({f.key: f.value})
        elif f.operator in _OPS:
            value = list(f.value) if isinstance(f.value, list | tuple) else f.value
            parts.append({f.key: {_OPS[f.operator]: value}})
        else:
            raise InvalidFilter(f"LlamaIndex filter operator {f.operator.value!r} is not supported by sigmavault")
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.OR:
        return {"$or": parts}
    if condition != FilterCondition.AND:
        raise InvalidFilter(f"LlamaIndex filter condition {condition.value!r} is not supported by sigmavault")
    return {"$and": parts}


class SigmaVaultVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store over one sigmavault collection."""

    stores_text: bool = True
    flat_metadata: bool = False
    _collection: Collection = PrivateAttr()
    _vault: Vault | None = PrivateAttr(default=None)

    def __init__(self, collection: Collection, *, vault: Vault | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._collection = collection
        self._vault = vault

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, collection: str = "llamaindex", **options: Any
    ) -> SigmaVaultVectorStore:
        """Open (or create) the vault at ``path`` and use its collection ``collection`` (vectors only)."""
        vault = open_vault(path, **options)
        return cls(vault.collection(collection, embedder=None), vault=vault)

    def close(self) -> None:
        """Close the vault if this store opened it."""
        if self._vault is not None:
            self._vault.close()

    @property
    def client(self) -> Collection:
        return self._collection

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        if not nodes:
            return []
        vectors = np.asarray([n.get_embedding() for n in nodes], dtype=np.float32)
        texts = [n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        metadata = [node_to_metadata_dict(n, remove_text=True, flat_metadata=self.flat_metadata) for n in nodes]
        return self._collection.upsert(texts, vectors=vectors, ids=[n.node_id for n in nodes], metadata=metadata)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        self._collection.delete(where={"ref_doc_id": ref_doc_id})

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        where = to_where(filters)
        if node_ids is None:
            self._collection.delete(where=where or {})
            return
        if where is not None:
            node_ids = [u.id for u in self._collection.all(where=where) if u.id in set(node_ids)]
        self._collection.delete(node_ids, missing="ignore")

    def clear(self) -> None:
        self._collection.delete(where={})

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        where = to_where(filters)
        if node_ids is not None:
            units: list[Unit] = self._collection.get_many(node_ids, vectors=False)
            if where is not None:
                keep = {u.id for u in self._collection.all(where=where)}
                units = [u for u in units if u.id in keep]
        else:
            units = list(self._collection.all(where=where))
        return [_node(u) for u in units]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if query.node_ids:
            raise InvalidFilter("query(node_ids=...) is not supported; use filters on metadata")
        where = to_where(query.filters)
        if query.doc_ids:
            doc_filter = {"ref_doc_id": {"$in": list(query.doc_ids)}}
            where = doc_filter if where is None else {"$and": [where, doc_filter]}
        k = max(1, query.similarity_top_k)
        hybrid = query.mode == VectorStoreQueryMode.HYBRID and bool(query.query_str)
        vector = None if query.query_embedding is None else np.asarray(query.query_embedding, dtype=np.float32)
        if vector is None and not hybrid:
            raise InvalidFilter("query needs query_embedding (or mode=hybrid with query_str)")
        hits = self._collection.search(
            vector=vector,
            text=query.query_str if hybrid else None,
            mode="hybrid" if hybrid else "vector",
            k=k,
            where=where,
        )
        return VectorStoreQueryResult(
            nodes=[_node(h) for h in hits], similarities=[float(h.score) for h in hits], ids=[h.id for h in hits]
        )


def _node(unit: Unit | Hit) -> BaseNode:
    return metadata_dict_to_node(dict(unit.metadata), text=unit.text or "")
