"""The CLI never shows a traceback: every verb, given a path it cannot use (under a regular file,
a damaged database, a read-only directory), exits 2 with one line on stderr. A read-only vault
still opens for the verbs that only read."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import python_env

import sigmavault as sv
from sigmavault.cli import build_parser, main

_PATHS = {"path", "dest", "source", "bundle", "file"}


def _verbs() -> list[tuple[str, ...]]:
    """Every leaf verb of the command, as the words that name it (``("witness", "tail")``)."""
    out: list[tuple[str, ...]] = []

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append(prefix)
            return
        for name, child in subs[0].choices.items():
            walk(child, (*prefix, name))

    walk(build_parser(), ())
    return out


def _argv(words: tuple[str, ...], bad: str) -> list[str]:
    """A command line for ``words`` with every path argument ``bad`` and dummy values elsewhere."""
    parser = build_parser()
    for w in words:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[w]
    argv = list(words)
    for group in parser._mutually_exclusive_groups:
        if group.required:
            first = group._group_actions[0]
            argv += [first.option_strings[0]] + (["1"] if first.nargs != 0 else [])
    for action in parser._actions:
        if action.option_strings:
            if action.required:
                argv += [action.option_strings[0], "1" if action.type in (int, float) else "x"]
            continue
        argv.append(bad if action.dest in _PATHS else "x")
    return argv


VERBS = [w for w in _verbs() if w[0] not in ("quickstart", "keygen")]  # they take no vault path to misuse


def _assert_one_line_error(capsys: pytest.CaptureFixture[str], code: int, argv: list[str]) -> None:
    err = capsys.readouterr().err
    assert code == 2, (argv, code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    assert "Traceback" not in err


@pytest.mark.parametrize("words", VERBS, ids=" ".join)
def test_every_verb_exits_2_on_unusable_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], words: tuple[str, ...]
) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a directory")
    damaged = tmp_path / "damaged"
    (damaged / "vectors").mkdir(parents=True)
    (damaged / "vault.db").write_bytes(b"this is not a SQLite database" * 100)
    for bad in (str(a_file / "vault"), str(damaged)):
        argv = _argv(words, bad)
        code = main(argv)
        if words == ("verify",):  # a verdict, like check: an unusable bundle is INVALID, exit 1
            out = capsys.readouterr()
            assert code == 1 and "INVALID" in out.out and "Traceback" not in out.err
            continue
        _assert_one_line_error(capsys, code, argv)


def test_python_dash_m_runs_the_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sigmavault", "get", str(tmp_path / "nowhere"), "x"],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: no vault") and "Traceback" not in proc.stderr
    assert "sigmavault init PATH" in proc.stderr  # CLI terms, not the Python API's


_READONLY_SCRIPT = """
import json, subprocess, sys
vault = sys.argv[1]
runs = {}
for argv in (["get", vault, "x"], ["search", vault, "a", "-c", "d", "--mode", "text"], ["stats", vault],
             ["check", vault], ["add", vault, "more text", "-c", "d"], ["delete", vault, "x", "-c", "d"]):
    p = subprocess.run([sys.executable, "-m", "sigmavault", *argv, "--json"], capture_output=True, text=True)
    runs[argv[0]] = [p.returncode, p.stderr]
print(json.dumps(runs))
"""


def test_a_read_only_vault_opens_for_reading(tmp_path: Path) -> None:
    vault = tmp_path / "v"
    with sv.open(vault) as v:
        v.collection("d", embedder=None).add(["alpha"], vectors=np.ones((1, 4)), ids=["x"])
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("root ignores permissions, and unshare (for a read-only mount) is missing")
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
        if probe.returncode != 0:
            pytest.skip("root ignores permissions, and this machine refuses a private mount namespace")
        cmd = [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount --bind -o ro "$1" "$1" && exec "$2" -c "$3" "$1"',
            "sh",
            str(vault),
            sys.executable,
            _READONLY_SCRIPT,
        ]
    else:
        for p in [vault, *vault.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        cmd = [sys.executable, "-c", _READONLY_SCRIPT, str(vault)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=python_env(), timeout=300, check=False)
    finally:
        for p in [vault, *vault.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert proc.returncode == 0, proc.stderr
    runs = __import__("json").loads(proc.stdout.splitlines()[-1])
    for verb in ("get", "search", "stats", "check"):
        assert runs[verb][0] == 0, (verb, runs[verb])
    for verb in ("add", "delete"):
        code, err = runs[verb]
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (verb, err)
