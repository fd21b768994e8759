"""The README documents every CLI command (and every subcommand of a command group)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sigmavault.cli import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _commands(parser: argparse.ArgumentParser, prefix: str = "sigmavault") -> list[str]:
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix} {name}")
                found += _commands(sub, f"{prefix} {name}")
    return found


def test_every_cli_command_is_in_the_readme() -> None:
    commands = _commands(build_parser())
    assert "sigmavault search" in commands and "sigmavault quickstart" in commands
    missing = [c for c in commands if f"`{c}" not in README]
    assert not missing, f"README misses: {missing}"


def test_readme_names_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    assert "bash scripts/quickstart.sh" in README and "bash scripts/test.sh" in README
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert "set -euo pipefail" in ci and "bash scripts/test.sh" in ci


_RERUN_SECTIONS = (
    "## RAG in five lines",
    "## The API",
    "### Batches: upsert, get_many, delete, drop, ingest",
    "### Async API",
    "### LangChain",
)


def _examples() -> str:
    """The README's API examples (the sections above), joined into one script."""
    blocks = []
    for heading in _RERUN_SECTIONS:
        start = README.index(heading)
        body = README[start : README.index("\n#", start + len(heading))]
        code = body.split("```python\n", 1)[1].split("```", 1)[0]
        blocks.append(code)
    return "\n".join(blocks)


def test_the_readme_examples_run_twice_in_a_row(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import python_env

    script = tmp_path / "examples.py"
    script.write_text(_examples() + "\nprint('done')\n", encoding="utf-8")
    for run in (1, 2):
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=python_env(),
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0 and proc.stdout.endswith("done\n"), (run, proc.stderr[-3000:])
