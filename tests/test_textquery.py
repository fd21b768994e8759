"""Text search planning (units/textquery.py): stop words, pruning to the rarest words, relevance
order, and queries that must never reach FTS5 as syntax. Real vaults, real SQLite FTS5."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HashingEmbedder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sigmavault as sv
from sigmavault.errors import EmptyText
from sigmavault.units import textquery

KITCHEN = [
    "Bread rises when yeast ferments the sugar in the dough",
    "Boiling pasta in salted water",
    "A sharp knife for slicing tomatoes and onions",
    "Sourdough starter keeps wild yeast alive between bakes",
    "Cast iron pans need seasoning with oil",
    "Freezing soup in portions for the winter",
    "The oven temperature for roasting vegetables",
    "Whisking egg whites into stiff peaks for meringue",
    "To be or not to be",
    "Café crème brûlée with caramelised sugar",
    "日本語のテキスト 検索",
]


@pytest.fixture(scope="module")
def kitchen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sv.Collection, list[str]]]:
    vault = sv.open(tmp_path_factory.mktemp("kitchen") / "vault")
    col = vault.collection("kitchen", embedder=HashingEmbedder())
    ids = col.add(KITCHEN)
    yield col, ids
    vault.close()


def ranking(hits: list[sv.Hit]) -> list[tuple[str, float]]:
    return [(h.id, round(h.score, 9)) for h in hits]


def test_words_drop_stop_words_unless_nothing_else_is_left() -> None:
    assert textquery.words("How do I make THE bread rise?") == ["make", "bread", "rise"]
    assert textquery.words("the the bread, bread") == ["bread"]
    assert textquery.words("to be or not to be") == ["to", "be", "or", "not"]
    assert textquery.words("snake_case-word*: (x)") == ["snake", "case", "word", "x"]
    assert textquery.words("!!! ???") == []


def test_stop_words_do_not_change_the_result(kitchen: tuple[sv.Collection, list[str]]) -> None:
    col, _ = kitchen
    plain = col.search("yeast bread dough", mode="text", k=5)
    assert plain
    for wordy in ("the yeast for the bread dough", "Which yeast is in THE bread and the dough?"):
        assert ranking(col.search(wordy, mode="text", k=5)) == ranking(plain)


def test_a_query_of_only_stop_words_searches_for_them(kitchen: tuple[sv.Collection, list[str]]) -> None:
    col, ids = kitchen
    hits = col.search("to be or not to be", mode="text", k=3)
    assert hits[0].id == ids[8]  # the one text that holds them all
    the = {h.id for h in col.search("the", mode="text", k=20)}
    assert the == {ids[i] for i, text in enumerate(KITCHEN) if "the " in text.lower()}


def test_relevance_order_on_a_hand_made_corpus(kitchen: tuple[sv.Collection, list[str]]) -> None:
    col, ids = kitchen
    expect = {
        "how do I keep the wild yeast of my sourdough alive": 3,
        "what is the right oven temperature for roasting the vegetables": 6,
        "which knife should I use for slicing the tomatoes": 2,
        "I want to freeze soup for the winter": 5,
        "creme brulee": 9,  # diacritics fold as FTS5's unicode61 folds them
        "検索": 10,
    }
    for query, best in expect.items():
        hits = col.search(query, mode="text", k=3)
        assert hits[0].id == ids[best], query
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


NASTY = [
    '"',
    '""',
    '"unbalanced quote',
    "bread -yeast",
    "-",
    "yeast*",
    "*",
    "text: bread",
    "col:bread",
    "(bread OR yeast) AND NOT (dough)",
    "( ( (",
    "NEAR(bread yeast, 2)",
    "^bread",
    "bread + yeast",
    "a AND",
    "OR",
    "NOT",
    "{text}: bread",
    "bread\x00yeast",
    "🍞 bread 🥖",
    "ｂｒｅａｄ",  # full-width letters
    "e\u0301clair",  # a combining accent
    "\u200b",
    "_",
    "snake_case",
    "%",
    "'; DROP TABLE units; --",
]


@pytest.mark.parametrize("query", NASTY)
def test_special_characters_never_reach_fts5_as_syntax(kitchen: tuple[sv.Collection, list[str]], query: str) -> None:
    col, _ = kitchen
    for mode in ("text", "hybrid"):
        hits = col.search(query, mode=mode, k=3)
        assert isinstance(hits, list)
    assert len(col.search("bread", mode="text", k=20)) == 1  # nothing was changed either


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40))
def test_any_text_is_a_valid_query(kitchen: tuple[sv.Collection, list[str]], query: str) -> None:
    col, _ = kitchen
    if not query.strip():
        with pytest.raises(EmptyText):
            col.search(query, mode="text")
        return
    assert isinstance(col.search(query, mode="text", k=3), list)


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[sv.Collection, list[str]]]:
    """120 units, all with the common words "library" and "files"; a few with rarer words.

    The budget is cut to 12 rows (k=3), so "library" and "files" are common words here.
    """
    monkeypatch.setattr(textquery, "BUDGET", 12)
    texts = [f"library files number {i} of a long series of library files" for i in range(100)]
    texts += [
        "yaml parser library for python",
        "yaml emitter library",
        "python bindings for the yaml library files",
        "toml parser library",
        "python library files",
        "library of python files for yaml",
    ]
    texts += [f"unrelated text {i}" for i in range(14)]
    vault = sv.open(tmp_path / "vault")
    col = vault.collection("lib", embedder=HashingEmbedder())
    ids = col.add(texts, metadata=[{"n": i} for i in range(len(texts))])
    yield col, ids
    vault.close()


def test_pruned_ranking_equals_full_bm25_when_rare_words_fill_k(
    library: tuple[sv.Collection, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    col, ids = library
    pruned = col.search("yaml python library files", mode="text", k=3)
    monkeypatch.setattr(textquery, "BUDGET", 10**9)  # every word rare: one FTS5 query of all words
    full = col.search("yaml python library files", mode="text", k=3)
    assert ranking(pruned) == ranking(full)
    assert {h.id for h in pruned} == {ids[100], ids[102], ids[105]}  # yaml, python and library


def test_too_few_rare_matches_widen_to_the_common_words(library: tuple[sv.Collection, list[str]]) -> None:
    col, ids = library
    hits = col.search("toml library", mode="text", k=3)
    assert hits[0].id == ids[103]
    assert len(hits) == 3  # filled with units holding only the common word
    only = col.search("toml library", mode="text", k=3, where={"n": {"$in": [103, 5, 6, 7]}})
    assert only[0].id == ids[103] and len(only) == 3


def test_filters_and_states_apply_on_the_pruned_path(library: tuple[sv.Collection, list[str]]) -> None:
    col, ids = library
    col.delete(ids[102])
    hits = col.search("yaml python library files", mode="text", k=3, where={"n": {"$gte": 100}})
    assert ids[102] not in {h.id for h in hits}
    assert all(h.metadata["n"] >= 100 for h in hits)
    assert hits[0].id in {ids[100], ids[105]}
