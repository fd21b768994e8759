"""The core CLI verbs, run through ``sigmavault.cli.main`` and once as a real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sigmavault as sv
from sigmavault.cli import main


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_init_add_search_get_link_stats_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vault = str(tmp_path / "v")
    code, data = run_json(capsys, "init", vault)
    assert code == 0 and data == {"path": vault, "created": True}

    code, data = run_json(
        capsys, "add", vault, "Water boils at 100 degrees Celsius at sea level.", "--meta", '{"topic": "physics"}'
    )
    assert code == 0
    (first,) = data["ids"]  # type: ignore[index]
    code, data = run_json(capsys, "add", vault, "Bread rises because yeast makes carbon dioxide.", "--id", "bread")
    assert data == {"ids": ["bread"]}

    code, hits = run_json(capsys, "search", vault, "boiling water temperature", "-k", "1")
    assert code == 0 and hits[0]["id"] == first  # type: ignore[index]
    code, hits = run_json(capsys, "search", vault, "yeast", "--mode", "text")
    assert [h["id"] for h in hits] == ["bread"]  # type: ignore[union-attr]
    code, hits = run_json(capsys, "search", vault, "anything", "--where", '{"topic": "physics"}')
    assert [h["id"] for h in hits] == [first]  # type: ignore[union-attr]

    code, unit = run_json(capsys, "get", vault, "bread")
    assert unit["text"].startswith("Bread rises") and unit["state"] == "active"  # type: ignore[index]

    code, _ = run_json(capsys, "link", vault, "bread", first, "--kind", "contrasts", "--weight", "0.5")
    assert code == 0
    with sv.open(vault) as v:
        (edge,) = v.neighbors("bread")
        assert (edge.target, edge.kind, edge.weight) == (first, "contrasts", 0.5)

    code, stats = run_json(capsys, "stats", vault)
    assert stats["units"] == 2 and stats["edges"] == 1  # type: ignore[index]
    code, report = run_json(capsys, "check", vault)
    assert code == 0 and report["ok"] is True and report["problems"] == []  # type: ignore[index]


def test_ingest_folder_and_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("The Moon orbits the Earth about once every 27 days.")
    (folder / "b.md").write_text("Sourdough starter is a culture of wild yeast and bacteria.")
    (folder / "skip.bin").write_bytes(b"\x00\x01")
    vault = str(tmp_path / "v")
    code, data = run_json(capsys, "ingest", vault, str(folder))
    assert code == 0 and data == {"added": 2, "replaced": 0, "unchanged": 0, "collection": "docs"}

    lines = tmp_path / "notes.jsonl"
    lines.write_text(
        json.dumps({"id": "n1", "text": "Paris is the capital of France.", "topic": "geo"})
        + "\n\n"
        + json.dumps({"id": "n2", "text": "Follow-up about Paris museums.", "parent_id": "n1"})
        + "\n"
    )
    code, data = run_json(capsys, "ingest", vault, str(lines), "-c", "notes")
    assert data == {"added": 2, "replaced": 0, "unchanged": 0, "collection": "notes"}
    with sv.open(vault) as v:
        assert v.collection("notes").get("n1").metadata == {"topic": "geo"}
        assert v.chain("n2") == ["n2", "n1"]
        sources = sorted(u.metadata["source"] for u in v.collection("docs"))
        assert sources == ["a.txt", "b.md"]


def test_ingest_reruns_add_only_what_is_new(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("The Moon orbits the Earth about once every 27 days.")
    (folder / "b.md").write_text("Sourdough starter is a culture of wild yeast and bacteria.")
    vault = str(tmp_path / "v")
    run_json(capsys, "ingest", vault, str(folder))
    code, data = run_json(capsys, "ingest", vault, str(folder))
    assert code == 0 and data == {"added": 0, "replaced": 0, "unchanged": 2, "collection": "docs"}
    (folder / "a.txt").write_text("The Moon orbits the Earth in about 27.3 days.")
    (folder / "c.txt").write_text("Granite is an igneous rock.")
    code, data = run_json(capsys, "ingest", vault, str(folder))
    assert data == {"added": 1, "replaced": 1, "unchanged": 1, "collection": "docs"}
    code, data = run_json(capsys, "ingest", vault, str(folder / "c.txt"))  # one text file, not JSONL
    assert code == 0 and data == {"added": 0, "replaced": 0, "unchanged": 1, "collection": "docs"}
    with sv.open(vault) as v:
        texts = sorted(u.text or "" for u in v.collection("docs"))
        assert len(texts) == 3 and "The Moon orbits the Earth in about 27.3 days." in texts

    # a JSONL file where only some lines carry an id keeps those ids; a re-run adds nothing
    lines = tmp_path / "mixed.jsonl"
    lines.write_text(
        "\n".join(
            json.dumps(d)
            for d in [
                {"id": "m1", "text": "Copper conducts electricity well."},
                {"text": "Glass is an amorphous solid."},
                {"text": "Helium is lighter than air."},
            ]
        )
        + "\n"
    )
    code, data = run_json(capsys, "ingest", vault, str(lines), "-c", "mixed")
    assert data == {"added": 3, "replaced": 0, "unchanged": 0, "collection": "mixed"}
    code, data = run_json(capsys, "ingest", vault, str(lines), "-c", "mixed")
    assert data == {"added": 0, "replaced": 0, "unchanged": 3, "collection": "mixed"}
    with sv.open(vault) as v:
        assert v.collection("mixed").get("m1").text == "Copper conducts electricity well."
        assert len(v.collection("mixed")) == 3


def test_bad_input_exits_2_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vault = str(tmp_path / "v")
    main(["add", vault, "some text", "--id", "x"])
    capsys.readouterr()
    assert main(["search", vault, "q", "--where", '{"n": {"$regex": "a"}}']) == 2
    assert "unknown operator" in capsys.readouterr().err
    assert main(["get", vault, "missing"]) == 2
    assert "no unit with id 'missing'" in capsys.readouterr().err
    assert main(["get", str(tmp_path / "nowhere"), "x"]) == 2
    assert "no vault" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json}\n')
    assert main(["ingest", vault, str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    with sv.open(vault) as v:
        assert len(v.collection("docs")) == 1  # the failed ingest wrote nothing


def test_check_exits_1_on_damage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vault = tmp_path / "v"
    with sv.open(vault) as v:
        v.collection("docs", embedder=None).add(vectors=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], ids=["a", "b"])
    vec_file = next((vault / "vectors").iterdir())
    data = bytearray(vec_file.read_bytes())
    data[-5] ^= 0x80  # the sign bit of the last row's 1.0: the stored direction flips
    vec_file.write_bytes(bytes(data))
    code, report = run_json(capsys, "check", str(vault))
    assert code == 1
    assert report["ok"] is False and "semantic hash" in report["problems"][0]  # type: ignore[index]


def test_console_script_runs_in_a_fresh_process(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("sigmavault")
    assert script.exists(), "the console script is installed with the package"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [str(script), "init", str(tmp_path / "v"), "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["created"] is True
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert done.stdout.startswith("sigmavault ")


def test_update_delete_drop_verbs_and_plain_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vault = str(tmp_path / "v")
    long_id = "an-id-much-longer-than-an-eighty-column-table-would-show-" + "x" * 40
    main(["add", vault, "first text", "second [bold]text[/bold]", "--id", long_id, "--id", "b", "--json"])
    capsys.readouterr()
    assert main(["link", vault, long_id, "b", "--kind", "similar", "--weight", "0.7"]) == 0
    assert "[similar 0.7]" in capsys.readouterr().out  # not swallowed as rich markup
    assert main(["search", vault, "first", "--mode", "text"]) == 0
    assert long_id in capsys.readouterr().out  # piped: full ids, never cut to 80 columns
    assert main(["get", vault, "b"]) == 0
    shown = capsys.readouterr().out
    assert "second [bold]text[/bold]" in shown and "Unit(" not in shown

    code, unit = run_json(capsys, "update", vault, "b", "--meta", '{"n": 2}', "--state", "archived")
    assert code == 0 and unit["metadata"] == {"n": 2} and unit["state"] == "archived"  # type: ignore[index]
    code, data = run_json(capsys, "delete", vault, "b", "nope", "--ignore-missing")
    assert data == {"deleted": 1, "collection": "docs"}
    assert main(["delete", vault, "nope"]) == 2
    assert main(["drop", vault, "docs"]) == 2  # needs --yes
    assert "--yes" in capsys.readouterr().err
    code, data = run_json(capsys, "drop", vault, "docs", "--yes")
    assert data == {"dropped": "docs", "units": 1}
    with sv.open(vault) as v:
        assert v.collections() == []


def test_the_cli_says_when_the_embedding_model_loads(tmp_path: Path) -> None:
    from conftest import python_env

    vault = str(tmp_path / "v")
    runs = [
        subprocess.run(
            [sys.executable, "-m", "sigmavault", *argv],
            capture_output=True,
            text=True,
            env=python_env(),
            timeout=300,
            check=False,
        )
        for argv in (["add", vault, "Water boils at 100 degrees."], ["search", vault, "boil", "--json"])
    ]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    # NOTE: on a machine without the onnx export cached yet, the line adds "(first use: converting it ...)"
    assert runs[0].stderr.startswith("loading the embedding model…") and runs[0].stderr.count("\n") == 1
    assert runs[1].stderr == "" and json.loads(runs[1].stdout)[0]["text"] == "Water boils at 100 degrees."
