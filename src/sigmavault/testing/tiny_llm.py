"""A tiny Llama-style model and BPE tokenizer built on this machine, for tests, benchmarks and demos.

No small pretrained LLM can be fetched offline, so the runtime, the KV store and KV compression are exercised on a
model made here: a byte-level BPE tokenizer trained with ``tokenizers`` on the packaged corpus, and a
``LlamaForCausalLM`` (RoPE, grouped-query attention: the same cache layout as real Llama models) whose weights are
random or trained for a fixed number of steps on that corpus. Random weights are enough to prove that a restored
cache gives output identical to recomputing; quality figures (KL divergence, top-1 agreement) need the trained
weights, because a random model's next-token distributions are nearly flat.

    python -m sigmavault.testing.tiny_llm ./tiny-model --steps 600

writes a model directory that ``transformers`` (and ``sigmavault chat --model``) load with ``from_pretrained``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["CHAT_TEMPLATE", "build_model", "build_tokenizer", "corpus_texts", "ensure", "load", "save", "train"]

# NOTE: a deliberately small Jinja chat template in the shape real models use (role markers, an end token per
# message, a generation prompt), so the runtime's chat-template path runs on this tokenizer too.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# NOTE: 600 steps of eight 128-token windows (about 13 passes over the corpus) bring the training loss from 6.95 to
# 3.68; that took 13 minutes on 2 cores shared with other jobs (load average ~7), a few minutes on idle cores.
DEFAULT_STEPS = 600
DEFAULT_SEQ_LEN = 128
DEFAULT_BATCH = 8
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>")


def corpus_texts() -> list[str]:
    """Every text of the packaged quickstart corpus (320 documents and their conversation threads)."""
    raw = resources.files("sigmavault").joinpath("data/corpus.jsonl").read_text(encoding="utf-8")
    return [json.loads(line)["text"] for line in raw.splitlines() if line.strip()]


def build_tokenizer(*, vocab_size: int = 1024, chat_template: bool = True) -> Any:
    """A byte-level BPE tokenizer trained on the corpus, wrapped as a ``PreTrainedTokenizerFast``.

    Byte-level BPE encodes any string (no unknown characters), as GPT-2 and Llama 3 tokenizers do.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus_texts(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(
    tokenizer: Any,
    *,
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    max_positions: int = 4096,
    seed: int = 0,
) -> Any:
    """A Llama-style causal LM sized for 2 CPU cores, with seeded random weights, in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()  # type: ignore[no-untyped-call]


def train(
    model: Any,
    tokenizer: Any,
    *,
    steps: int = DEFAULT_STEPS,
    seq_len: int = DEFAULT_SEQ_LEN,
    batch_size: int = DEFAULT_BATCH,
    lr: float = 3e-3,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train on the corpus (documents joined with ``</s>``) for ``steps`` steps; returns the loss per step.

    A fixed step count (not a time budget) so every machine builds the same model. AdamW with a short warm-up and
    cosine decay; windows are drawn with a seeded generator.
    """
    import torch

    ids = tokenizer("</s>".join(corpus_texts()))["input_ids"]
    data = torch.tensor(ids, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    losses: list[float] = []
    model.train()
    for step in range(steps):
        frac = step / steps
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * frac))
        starts = torch.randint(0, len(data) - seq_len - 1, (batch_size,), generator=gen)
        batch = torch.stack([data[s : s + seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, losses[-1])
    model.eval()
    return losses


def save(model: Any, tokenizer: Any, path: str | Path, *, info: dict[str, Any] | None = None) -> Path:
    """Write a ``from_pretrained`` directory (config, safetensors weights, tokenizer) plus ``tiny_llm.json``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "tiny_llm.json").write_text(json.dumps(info or {}, indent=2) + "\n", encoding="utf-8")
    return out


def load(path: str | Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a directory written by :func:`save`, in eval mode, strictly offline."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(str(path), local_files_only=True).eval()  # type: ignore[no-untyped-call]
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return model, tokenizer


def ensure(
    path: str | Path,
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    seq_len: int = DEFAULT_SEQ_LEN,
    batch_size: int = DEFAULT_BATCH,
) -> tuple[Any, Any]:
    """Load the model at ``path``, building and training it first when the directory holds none."""
    out = Path(path)
    if (out / "tiny_llm.json").exists():
        return load(out)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=seed)
    start = time.perf_counter()
    losses = (
        train(model, tokenizer, steps=steps, seed=seed, seq_len=seq_len, batch_size=batch_size) if steps > 0 else []
    )
    info = {
        "train_seconds": round(time.perf_counter() - start, 1),
        "steps": len(losses),
        "seq_len": seq_len,
        "batch_size": batch_size,
        "first_loss": losses[0] if losses else None,
        "final_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seed": seed,
    }
    save(model, tokenizer, out, info=info)
    return model, tokenizer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build (and train) the tiny Llama-style test model.")
    parser.add_argument("out", help="model directory to write")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps (0: random weights)")
    parser.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN, help="tokens per training window")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="windows per step")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (Path(args.out) / "tiny_llm.json").exists():
        print(f"{args.out} already holds a model; remove it to rebuild", file=sys.stderr)
        return 0
    ensure(args.out, steps=args.steps, seed=args.seed, seq_len=args.seq_len, batch_size=args.batch_size)
    print((Path(args.out) / "tiny_llm.json").read_text(encoding="utf-8"), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
