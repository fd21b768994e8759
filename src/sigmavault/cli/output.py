"""Shared helpers for CLI verbs: JSON or human output, progress bars, argument parsing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, Protocol

import numpy as np

from sigmavault.errors import InvalidInput

__all__ = [
    "Subcommands",
    "TerminalProgress",
    "add_common",
    "console",
    "emit",
    "parse_json_arg",
    "progress_bar",
    "set_wide",
    "terminal_progress",
    "to_jsonable",
]


class Subcommands(Protocol):
    """What a verb group's ``register`` needs of ``parser.add_subparsers()`` (argparse names no public type)."""

    def add_parser(self, name: str, *, help: str | None = ...) -> argparse.ArgumentParser: ...


def add_common(parser: argparse.ArgumentParser, *, collection: bool = False) -> None:
    """The vault path, ``--json`` and (optionally) ``--collection`` that most verbs take."""
    parser.add_argument("path", help="vault directory")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--wide", action="store_true", help="never cut ids or names to the terminal width")
    if collection:
        parser.add_argument("-c", "--collection", default="docs", help="collection name (default: docs)")


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums and numpy values as plain JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


_WIDE = [False]


def set_wide(wide: bool) -> None:
    """``--wide``: never cut ids or names to the terminal's width."""
    _WIDE[0] = wide


def console() -> Any:
    """A rich console on stdout. Piped (or with ``--wide``) it has no width limit, so tables never
    cut ids and file names that a script or a user will copy."""
    from rich.console import Console

    wide = _WIDE[0] or not sys.stdout.isatty()
    return Console(highlight=False, width=100_000 if wide else None, soft_wrap=wide)


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON with ``--json``, else through ``render`` (rich output)."""
    if getattr(args, "json", False):
        json.dump(to_jsonable(data), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        render(data)


def parse_json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None


class TerminalProgress:
    """Draws what a vault reports through ``sv.open(..., progress=...)`` as rich bars on stderr.

    A bar starts at the first report of a label and ends when it reaches its total; ``close()``
    ends any bar left open (work that failed half-way).
    """

    def __init__(self) -> None:
        self._bars: dict[str, tuple[Any, Any]] = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        if label not in self._bars:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            bar.start()
            self._bars[label] = (bar, bar.add_task(label, total=None))
        bar, task = self._bars[label]
        bar.update(task, completed=done, total=total)
        if done >= total:
            self._bars.pop(label)[0].stop()

    def close(self) -> None:
        while self._bars:
            self._bars.popitem()[1][0].stop()


def terminal_progress() -> TerminalProgress | None:
    """A progress drawer when stderr is a terminal, else None (nothing to draw on)."""
    return TerminalProgress() if sys.stderr.isatty() else None


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)`` for ``Collection.add(progress=...)``."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done, total: bar.update(task, completed=done, total=total)
