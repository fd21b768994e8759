"""Prompt building: the token ids of a turn, laid out so the previous turn's KV stays a valid prefix.

Layout (see docs/architecture.md, "Runtime prompt order"): the system prompt, then the conversation so far
exactly as the model saw it (each earlier turn with the context it was given), then this turn's retrieved
context and the new message last. A turn's prompt is therefore the previous turn's whole sequence (prompt
and generated ids) followed by new tokens only, and the KV saved after the previous turn covers all of it.

The history is kept as token ids, not re-rendered from text: decoding generated ids and encoding the text
again does not always give the same ids back (byte-level BPE has many spellings of one string), and any
difference would end the reusable prefix inside the previous reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sigmavault.types import Hit

__all__ = ["PromptBuilder", "render_context"]

_MARK = "\u0000sigmavault-reply\u0000"


def render_context(hits: Sequence[Hit], message: str) -> str:
    """The user content of a turn: numbered retrieved passages, then the message (the message alone without hits)."""
    passages = [h.text for h in hits if h.text]
    if not passages:
        return message
    lines = "\n".join(f"[{i}] {text}" for i, text in enumerate(passages, 1))
    return f"Context:\n{lines}\n\nQuestion: {message}"


class PromptBuilder:
    """Renders messages with the tokenizer's chat template, or a plain one when it has none.

    The plain template: the system prompt, then ``User: <text>`` and ``Assistant: <text>`` blocks, each followed
    by a blank line, and ``Assistant:`` as the generation prompt.
    """

    def __init__(self, tokenizer: Any, system_prompt: str | None) -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.templated = bool(getattr(tokenizer, "chat_template", None))
        eos = getattr(tokenizer, "eos_token_id", None)
        self.eos_id: int | None = eos if isinstance(eos, int) else None
        self.eos_text: str = getattr(tokenizer, "eos_token", None) or ""

    def render(self, messages: Sequence[dict[str, str]], *, generation_prompt: bool) -> str:
        """The text of ``messages`` (roles system/user/assistant), optionally ending with the generation prompt."""
        if self.templated:
            text = self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=generation_prompt
            )
            return str(text)
        parts = []
        for m in messages:
            if m["role"] == "system":
                parts.append(f"{m['content']}\n\n")
            elif m["role"] == "user":
                parts.append(f"User: {m['content']}\n\n")
            else:
                parts.append(f"Assistant: {m['content']}\n\n")
        if generation_prompt:
            parts.append("Assistant:")
        return "".join(parts)

    def encode(self, text: str) -> list[int]:
        # NOTE: rendered templates carry their own special tokens (as apply_chat_template(tokenize=True) does).
        return [int(t) for t in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def _head(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    def first(self, content: str) -> list[int]:
        """The prompt of a conversation's first turn."""
        return self.encode(self.render([*self._head(), {"role": "user", "content": content}], generation_prompt=True))

    def next_turn(self, previous: Sequence[int], content: str) -> list[int]:
        """The prompt of a later turn: ``previous`` (the last turn's prompt and reply ids) + the new tokens.

        The new tokens are what the template puts after an assistant reply: its end, the user message, the
        generation prompt. When the reply already ended with the end-of-sequence token, its text is not
        repeated.
        """
        probe = [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": _MARK},
            {"role": "user", "content": content},
        ]
        full = self.render([*self._head(), *probe], generation_prompt=True)
        tail = full[full.index(_MARK) + len(_MARK) :]
        if previous and previous[-1] == self.eos_id and self.eos_text and tail.startswith(self.eos_text):
            tail = tail[len(self.eos_text) :]
        return [*previous, *self.encode(tail)]

    def from_messages(self, turns: Sequence[tuple[str, str]], content: str) -> list[int]:
        """A prompt rebuilt from stored ``(role, text)`` messages, for a session whose token history is gone."""
        messages = [*self._head(), *({"role": r, "content": t} for r, t in turns), {"role": "user", "content": content}]
        return self.encode(self.render(messages, generation_prompt=True))
