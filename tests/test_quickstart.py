"""The main job: the quickstart builds the demo vault with the real default embedder and tours it."""

from __future__ import annotations

from pathlib import Path

from sigmavault.cli.quickstart import load_corpus, run


def test_quickstart_builds_searches_and_reuses(tmp_path: Path) -> None:
    docs = load_corpus()
    assert 300 <= len(docs) <= 400 and len({d["id"] for d in docs}) == len(docs)

    first = run(str(tmp_path / "qs"), show_progress=False)
    assert first["check"]["ok"] is True and first["check"]["problems"] == []
    assert first["stats"]["units"] == len(docs)
    assert first["stats"]["edges"] == sum(len(d["links"]) for d in docs)

    by_query = {s["query"]: [h["id"] for h in s["hits"]] for s in first["searches"]}
    assert by_query["Why is the sky blue?"][0] in {"astro-001", "astro-002"}
    assert by_query["write-ahead log checkpoint"][0] in {"db-003", "db-004"}
    filtered = next(s for s in first["searches"] if "where" in s)
    topics = {d["id"]: (d["topic"], d["year"]) for d in docs}
    assert filtered["hits"] and all(
        topics[h["id"]][0] == "physics" and topics[h["id"]][1] < 1920 for h in filtered["hits"]
    )

    path = first["path_phys-001_to_comp-005"]
    assert path[0] == "phys-001" and path[-1] == "comp-005"
    assert first["chain_of_conv-segfault-06"] == [f"conv-segfault-0{i}" for i in range(6, 0, -1)]
    assert first["conversation_debug-segfault"][0].startswith("User:")
    assert "astro-002" in [d["id"] for d in first["near_duplicates_of_astro-001"]]  # its paraphrase

    again = run(str(tmp_path / "qs"), show_progress=False)
    assert again["build_seconds"] == 0.0
    assert again["searches"] == first["searches"]
