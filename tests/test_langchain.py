"""LangChain's own standard vector-store suite (langchain-tests, sync and async) against the
adapter, plus the chat message history over a vault conversation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langchain_tests", reason="needs the [langchain-tests] extra")

from conftest import HashingEmbedder
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

import sigmavault as sv
from sigmavault.integrations.langchain import SigmaVaultChatMessageHistory, SigmaVaultVectorStore


class TestSigmaVaultStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path: Path) -> Iterator[VectorStore]:  # type: ignore[override]
        store = SigmaVaultVectorStore.open(tmp_path / "v", self.get_embeddings())
        try:
            yield store
        finally:
            store.close()


def test_filters_scores_mmr_and_persistence(tmp_path: Path) -> None:
    emb = VectorStoreIntegrationTests.get_embeddings()
    store = SigmaVaultVectorStore.from_texts(
        ["alpha", "beta", "gamma"], emb, [{"n": 1}, {"n": 2}, {"n": 3}], ids=["a", "b", "c"], path=tmp_path / "v"
    )
    top = store.similarity_search_with_relevance_scores("beta", k=3)
    assert top[0][0].id == "b" and all(0.0 <= s <= 1.0 for _, s in top) and top[0][1] == pytest.approx(1.0)
    assert {d.id for d in store.similarity_search("beta", k=3, filter={"n": {"$gte": 2}})} == {"b", "c"}
    mmr = store.max_marginal_relevance_search("beta", k=2, fetch_k=3)
    assert mmr[0].id == "b" and len(mmr) == 2
    retriever = store.as_retriever(search_kwargs={"k": 1})
    assert [d.id for d in retriever.invoke("gamma")] == ["c"]
    store.close()
    with sv.open(tmp_path / "v") as vault:  # reopened: what the store wrote is there
        assert vault.collection("langchain").get("a").metadata == {"n": 1}


def test_chat_history_over_a_conversation(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        history = SigmaVaultChatMessageHistory(vault, "s1", embedder=HashingEmbedder())
        history.add_messages([SystemMessage("be brief"), HumanMessage("where is Paris?")])
        history.add_ai_message(AIMessage("In France.", additional_kwargs={"x": 1}))
        other = SigmaVaultChatMessageHistory(vault, "s2", embedder=HashingEmbedder())
        other.add_user_message("unrelated")
        assert [type(m) for m in history.messages] == [SystemMessage, HumanMessage, AIMessage]
        assert history.messages[2].content == "In France." and history.messages[2].additional_kwargs == {"x": 1}
        assert vault.sessions.get("s1").turn_count == 3
        hits = vault.collection("chat").search("Paris", mode="text")
        assert [h.id for h in hits] == [vault.conversation("s1")[1].id]
        history.clear()
        assert history.messages == [] and len(other.messages) == 1
    with sv.open(tmp_path / "v") as vault:
        assert [m.content for m in SigmaVaultChatMessageHistory(vault, "s2").messages] == ["unrelated"]
