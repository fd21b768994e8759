"""BM25 text search over FTS5, planned so that common words do not make a query slow.

FTS5 computes BM25 for every row that matches the query, a few microseconds each; a query that
ORs every word of a sentence matches most rows through words like "the" or "for" (41 ms at 10k
descriptions, 220 ms for 14 words). The plan here keeps the ranking BM25 over the query's words
and bounds the rows it scores:

1. Words are the query's runs of letters and digits, lower-cased, each quoted as its own FTS5
   phrase (so no input can be read as FTS5 syntax). English stop words are dropped, unless the
   query has nothing else (then they are searched as they are).
2. The rarest words, up to a budget of matching rows, choose the candidates: only units holding
   one of them are scored. Each word's count of matching rows is read with a capped count, so
   a common word costs no more than the budget.
3. Candidates are scored by BM25 over *all* the kept words, exactly as one FTS5 query of all of
   them would score them: the rare words' query scores every candidate, and a second query in
   the same statement, ``(common words) AND (rare words)``, rescores the candidates that also hold
   common words. Both are FTS5's own ``bm25()``, whose per-word terms depend only on that word,
   so the second query's phrases are exactly the full query's.

What is given up: a unit holding only common words of the query is not considered once the
rare words' matches fill ``k`` (it would score at most ``2.2 * sum(idf)`` of those common words,
low by definition). With fewer than ``k`` candidates the next rarest word joins the rare ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sigmavault.store import Database
from sigmavault.types import State

__all__ = ["BUDGET", "STOP_WORDS", "search", "words"]

# NOTE: rows the rare words may match before a word counts as common. BM25 costs a few us a row
# in FTS5; benchmarks/text.py (10k Debian descriptions, 1000 10-word queries) measured nDCG@10
# 0.715 / 0.733 / 0.734 / 0.737 at budgets 100 / 150 / 200 / 300 against 0.726 for main's
# all-words query, and p50 1.8 / 3.2 / 5.0 / 9.5 ms on a machine at load 11: 200 keeps relevance
# with a margin at a few ms.
BUDGET = 200

# NOTE: the English stop words of NLTK's list (apostrophe forms split at the apostrophe, as the
# query is): function words that carry no topic and match a large share of any English corpus.
_STOP_TEXT = """
    a about above after again against ain all am an and any are aren as at be because been before
    being below between both but by can couldn d did didn do does doesn doing don down during each
    few for from further had hadn has hasn have haven having he her here hers herself him himself
    his how i if in into is isn it its itself just ll m ma me mightn more most mustn my myself
    needn no nor not now o of off on once only or other our ours ourselves out over own re s same
    shan she should shouldn so some such t than that the their theirs them themselves then there
    these they this those through to too under until up ve very was wasn we were weren what when
    where which while who whom why will with won wouldn y you your yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The words a query searches for, in order, each once: stop words dropped unless all are."""
    found = list(dict.fromkeys(_WORD.findall(text.lower())))
    kept = [w for w in found if w not in STOP_WORDS]
    return kept or found


def _any(terms: Sequence[str]) -> str:
    # NOTE: a word is letters and digits only, so quoting it needs no escaping.
    return " OR ".join(f'"{t}"' for t in terms)


def search(
    db: Database,
    cid: int,
    query: str,
    k: int,
    states: tuple[State, ...],
    where_sql: str,
    params: Sequence[Any],
) -> list[tuple[str, float, str | None, dict[str, Any]]]:
    """The ``k`` best units for ``query`` by BM25: ``(id, score, text, metadata)``, score = -bm25."""
    terms = words(query)
    if not terms:
        return []
    marks = ",".join("?" * len(states))
    # NOTE: CROSS JOIN keeps FTS5 the outer loop: without an ORDER BY, SQLite's planner would
    # otherwise walk the collection's units and run the MATCH once per unit (seconds at 10k).
    scored = (
        "SELECT u.rid AS rid, -bm25(units_fts) AS score FROM units_fts CROSS JOIN units u "
        f"ON u.rid = units_fts.rowid WHERE units_fts MATCH ? AND u.collection_id = ? AND u.state IN ({marks}) "
        f"AND {where_sql}"
    )
    filters = (cid, *[s.value for s in states], *params)
    # NOTE: a unit in both lists takes the second score: it adds the common words' (positive) terms.
    pruned = (
        f"SELECT rid, max(score) AS score FROM ({scored} UNION ALL {scored}) GROUP BY rid "
        "ORDER BY score DESC, rid LIMIT ?"
    )
    with db.read() as conn:
        budget = max(BUDGET, 4 * k)
        counts = _counts(conn, terms, budget)
        order = sorted(terms, key=lambda t: counts[t])
        rare = 1
        while rare < len(order) and sum(counts[t] for t in order[: rare + 1]) <= budget:
            rare += 1
        while True:
            chosen, common = order[:rare], order[rare:]
            if not common:
                best = conn.execute(f"{scored} ORDER BY score DESC, rid LIMIT ?", (_any(chosen), *filters, k))
                return _hydrate(conn, best.fetchall())
            both = f"({_any(common)}) AND ({_any(chosen)})"
            top = conn.execute(pruned, (_any(chosen), *filters, both, *filters, k)).fetchall()
            if len(top) == k:
                return _hydrate(conn, top)
            rare += 1  # fewer than k units hold a rare word: the next rarest word joins them


def _counts(conn: Any, terms: Sequence[str], cap: int) -> dict[str, int]:
    """Rows matching each term, counted up to ``cap + 1`` (a common word costs no more than that)."""
    if len(terms) == 1:
        return {terms[0]: 0}
    one = "(SELECT count(*) FROM (SELECT 1 FROM units_fts WHERE units_fts MATCH ? LIMIT ?))"
    row = conn.execute(f"SELECT {', '.join([one] * len(terms))}", [v for t in terms for v in (f'"{t}"', cap + 1)])
    return dict(zip(terms, row.fetchone(), strict=True))


def _hydrate(conn: Any, ranked: Sequence[tuple[int, float]]) -> list[tuple[str, float, str | None, dict[str, Any]]]:
    """Ids, texts and metadata of ``(rid, score)`` rows, in the given order."""
    if not ranked:
        return []
    marks = ",".join("?" * len(ranked))
    rows = conn.execute(f"SELECT rid, uid, text, metadata FROM units WHERE rid IN ({marks})", [r for r, _ in ranked])
    found = {r[0]: r[1:] for r in rows}
    return [(found[r][0], float(s), found[r][1], json.loads(found[r][2])) for r, s in ranked if r in found]
