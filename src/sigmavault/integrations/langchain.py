"""LangChain: a ``VectorStore`` over a collection, and a chat message history over a conversation.

Install with ``pip install 'sigmavault[langchain]'``. The store keeps LangChain's embeddings
(the collection holds vectors only: ``embedder=None``), so it works with any ``Embeddings``.
Each call maps onto one sigmavault call:

==========================================  ====================================================
LangChain                                   sigmavault
==========================================  ====================================================
``add_texts`` / ``add_documents``           ``Collection.upsert`` (an existing id is replaced)
``delete(ids)`` / ``delete()``              ``Collection.delete(ids, missing="ignore")`` / all
``get_by_ids``                              ``Collection.get_many``
``similarity_search*`` (``filter=``)        ``Collection.search(vector=..., where=filter)``
``max_marginal_relevance_search*``          ``search(include=("vector",))`` + LangChain's MMR
``a*`` methods                              the same on the vault's thread pool (``sigmavault.aio``)
==========================================  ====================================================

Scores are cosine similarities in [-1, 1]; relevance scores map them to [0, 1] as ``(s + 1) / 2``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from sigmavault.collection import Collection
from sigmavault.types import Hit, Unit
from sigmavault.units import new_ids
from sigmavault.vault import Vault
from sigmavault.vault import open as open_vault

__all__ = ["SigmaVaultChatMessageHistory", "SigmaVaultVectorStore"]


def _doc(unit: Unit | Hit) -> Document:
    return Document(id=unit.id, page_content=unit.text or "", metadata=dict(unit.metadata))


class SigmaVaultVectorStore(VectorStore):
    """A LangChain vector store over one sigmavault collection (cosine, vectors from ``embedding``)."""

    def __init__(self, collection: Collection, embedding: Embeddings, *, vault: Vault | None = None) -> None:
        self.collection = collection
        self.embedding = embedding
        self.vault = vault  # set when this store opened the vault itself (see close())

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], embedding: Embeddings, *, collection: str = "langchain", **options: Any
    ) -> SigmaVaultVectorStore:
        """Open (or create) the vault at ``path`` and use its collection ``collection``."""
        vault = open_vault(path, **options)
        return cls(vault.collection(collection, embedder=None), embedding, vault=vault)

    def close(self) -> None:
        """Close the vault if this store opened it (:meth:`open`, :meth:`from_texts`)."""
        if self.vault is not None:
            self.vault.close()

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    # -- writes -----------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[Any, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and store texts; an id given (or a ``Document.id``) that exists is replaced."""
        text_list = list(texts)
        if not text_list:
            return []
        fresh = iter(new_ids(len(text_list)))
        given: list[str | None] = list(ids) if ids is not None else [None] * len(text_list)
        id_list = [i if i else next(fresh) for i in given]  # NOTE: documents without an id get a new one
        vectors = np.asarray(self.embedding.embed_documents(text_list), dtype=np.float32)
        return self.collection.upsert(text_list, vectors=vectors, ids=id_list, metadata=metadatas or {})

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if ids is None:
            self.collection.delete(where={})
        else:
            self.collection.delete(list(ids), missing="ignore")
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [_doc(u) for u in self.collection.get_many(list(ids), vectors=False)]

    # -- search -----------------------------------------------------------------------------

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents and cosine similarities (higher is closer) for a query vector."""
        hits = self.collection.search(vector=np.asarray(embedding, dtype=np.float32), k=k, where=filter)
        return [(_doc(h), float(h.score)) for h in hits]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return self.similarity_search_with_score_by_vector(self.embedding.embed_query(query), k, filter)

    def similarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score_by_vector(embedding, k, filter)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda score: (score + 1.0) / 2.0

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        query = np.asarray(embedding, dtype=np.float32)
        hits = self.collection.search(vector=query, k=max(k, fetch_k), where=filter, include=("vector",))
        if not hits:
            return []
        vectors = [h.vector.tolist() for h in hits if h.vector is not None]
        chosen = maximal_marginal_relevance(query, vectors, lambda_mult=lambda_mult, k=k)
        return [_doc(hits[i]) for i in chosen]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return self.max_marginal_relevance_search_by_vector(
            self.embedding.embed_query(query), k, fetch_k, lambda_mult, filter
        )

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[Any, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        path: str | os.PathLike[str] | None = None,
        collection: str = "langchain",
        **kwargs: Any,
    ) -> SigmaVaultVectorStore:
        """A store in the vault at ``path`` (required) holding ``texts``."""
        if path is None:
            raise TypeError("from_texts needs path=... (the vault directory)")
        store = cls.open(path, embedding, collection=collection)
        store.add_texts(texts, metadatas, ids=list(ids) if ids is not None else None)
        return store


class SigmaVaultChatMessageHistory(BaseChatMessageHistory):
    """LangChain chat history stored as the units of one conversation (and one session) of a vault.

    Each message is a unit of ``collection`` with ``conversation_id=session_id`` and kind
    ``message:<type>`` (its text is searchable like any other memory); the whole message is kept
    in its metadata under ``"message"``, so ``messages`` gives back the same LangChain objects.
    The session ``session_id`` is opened in ``vault.sessions`` and touched once per added message.
    """

    def __init__(self, vault: Vault, session_id: str, *, collection: str = "chat", embedder: Any = None) -> None:
        self.vault = vault
        self.session_id = session_id
        options = {} if embedder is None else {"embedder": embedder}
        self.collection = vault.collection(collection, **options)
        vault.sessions.open(session_id, exist_ok=True)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        units = [u for u in self.vault.conversation(self.session_id) if u.collection == self.collection.name]
        return messages_from_dict([u.metadata["message"] for u in units if "message" in u.metadata])

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        if not messages:
            return
        texts = [m.text for m in messages]
        with self.vault.transaction():
            self.collection.add(
                [t if t.strip() else f"({m.type})" for t, m in zip(texts, messages, strict=True)],
                metadata=[{"message": message_to_dict(m)} for m in messages],
                kind=[f"message:{m.type}" for m in messages],
                conversation_id=self.session_id,
            )
            self.vault.sessions.touch(self.session_id, turns=len(messages))

    def clear(self) -> None:
        units = self.vault.conversation(self.session_id)
        self.collection.delete([u.id for u in units if u.collection == self.collection.name], missing="ignore")

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)
