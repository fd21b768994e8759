"""What a lossy cache (pruned, quantized or both) costs in quality, measured with the model's own forward.

Both caches, the lossless one and the lossy one, are fed the same tokens (teacher forcing) at the same positions,
and their next-token distributions are compared: **top-1 agreement** (the argmax is the same) and the mean
**KL divergence** ``KL(full || lossy)`` in nats. :func:`evaluate` does this on ``new_tokens`` tokens the lossless
model generates greedily after the context, and reports the perplexity of a held-out continuation under both.
:func:`probe` is the cheap form the store's gate runs at save time: the prefix's own last tokens are the probe.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sigmavault.errors import InvalidInput
from sigmavault.kv.codecs import Codec, codec_from_spec
from sigmavault.kv.prune import Pruning, prune_cache, tensor_cache

__all__ = ["GATE_TOKENS", "Quality", "evaluate", "gate", "probe"]

GATE_TOKENS = 32  # the prefix's last tokens the save-time gate compares on


@dataclass(frozen=True, slots=True)
class Quality:
    """Quality of a lossy cache against the lossless one on the same context and continuation."""

    prune: str | None
    codec: str
    context_tokens: int
    kept: int
    compared: int
    top1: float
    mean_kl: float
    max_kl: float
    ppl_full: float | None = None
    ppl_lossy: float | None = None
    heldout_tokens: int = 0

    @property
    def ppl_change(self) -> float | None:
        """Relative perplexity change on the held-out continuation (0.02 = 2% worse)."""
        if self.ppl_full is None or self.ppl_lossy is None:
            return None
        return self.ppl_lossy / self.ppl_full - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ppl_change": self.ppl_change}


def evaluate(
    model: Any,
    input_ids: Any,
    *,
    pruning: Pruning | None,
    codec: str | Codec = "native",
    new_tokens: int = 32,
    heldout: int = 64,
) -> Quality:
    """Compare a pruned (and/or ``codec``-coded) cache with the lossless one.

    The last ``heldout`` tokens of ``input_ids`` are the held-out continuation; the rest is the context whose
    cache is compressed. ``new_tokens`` are generated greedily from the lossless cache, then fed to both.
    """
    import torch

    from sigmavault.kv.prune import ids_tensor

    ids = ids_tensor(input_ids).to(model.device)
    context = ids.shape[1] - heldout
    if heldout < 2 or new_tokens < 1 or context < 2:
        raise InvalidInput(
            f"evaluate needs heldout >= 2, new_tokens >= 1 and a context of >= 2 tokens; got {ids.shape[1]} "
            f"tokens, heldout={heldout}, new_tokens={new_tokens}"
        )
    with torch.no_grad():
        full = _prefill(model, ids[:, : context - 1])
        generated = model.generate(
            ids[:, :context],
            cache=tensor_cache(model, full),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=model.config.eos_token_id,
        )[:, context:]
    lossy, kept = _lossy(model, ids, full, context - 1, pruning, codec_from_spec(codec))
    last = ids[:, context - 1 : context]
    gen = _compare(model, full, lossy, context - 1, torch.cat([last, generated[:, :-1]], dim=1), generated)
    held = _compare(model, full, lossy, context - 1, ids[:, context - 1 : -1], ids[:, context:])
    return Quality(
        prune=None if pruning is None else pruning.spec,
        codec=codec_from_spec(codec).spec,
        context_tokens=context - 1,
        kept=kept,
        compared=int(generated.shape[1]),
        top1=gen["top1"],
        mean_kl=gen["mean_kl"],
        max_kl=gen["max_kl"],
        ppl_full=math.exp(held["nll_full"]),
        ppl_lossy=math.exp(held["nll_lossy"]),
        heldout_tokens=heldout,
    )


def probe(model: Any, input_ids: Any, cache: Any, tokens: int, pruning: Pruning, *, length: int = 32) -> Quality:
    """The save-time gate: prune the cache of the first ``tokens - length`` tokens, then feed the last ``length``
    tokens of the prefix to the lossless and the pruned cache and compare the distributions they give."""
    import torch

    from sigmavault.kv.hf import cache_tensors
    from sigmavault.kv.prune import ids_tensor

    ids = ids_tensor(input_ids)[:, :tokens]
    start = tokens - length
    if start < 1:
        raise InvalidInput(f"the pruning gate needs more than {length} tokens, got {tokens}")
    device = cache_tensors(cache)[0][0].device
    ids = ids.to(device)
    full = [(k[:, :, :start], v[:, :, :start]) for k, v in cache_tensors(cache)]
    lossy, kept = _lossy(model, ids, full, start, pruning, None)
    with torch.no_grad():
        got = _compare(model, full, lossy, start, ids[:, start:tokens], None)
    return Quality(
        prune=pruning.spec,
        codec="native",
        context_tokens=start,
        kept=kept,
        compared=length,
        top1=got["top1"],
        mean_kl=got["mean_kl"],
        max_kl=got["max_kl"],
    )


def gate(
    model: Any, input_ids: Any, cache: Any, tokens: int, pruning: Pruning, max_kl: float | None
) -> tuple[float | None, str | None]:
    """The save-time quality gate: ``(measured mean KL or None, why the pruning is refused or None)``.

    No gate (``max_kl`` None) or a prefix under two tokens measures nothing and refuses nothing.
    """
    if max_kl is None or tokens < 2:
        return None, None
    if not callable(model):
        raise InvalidInput("the max_kl gate runs the model: pass the transformers model, not a Fingerprint")
    kl = probe(model, input_ids, cache, tokens, pruning, length=min(GATE_TOKENS, tokens // 2)).mean_kl
    if kl <= max_kl:
        return kl, None
    return kl, f"{pruning.spec}: mean KL {kl:.4g} > max_kl {max_kl:g} over the prefix's last tokens"


def _prefill(model: Any, ids: Any) -> list[tuple[Any, Any]]:
    from sigmavault.kv.hf import cache_tensors

    out = model(input_ids=ids, use_cache=True)
    return cache_tensors(out.cache)


def _lossy(
    model: Any, ids: Any, full: list[tuple[Any, Any]], n: int, pruning: Pruning | None, codec: Codec | None
) -> tuple[list[tuple[Any, Any]], int]:
    """The pruned and/or codec round-tripped pairs of ``full`` (which covers ``ids[:, :n]``), and slots kept."""
    from sigmavault.kv.hf import build_cache, cache_source, cache_tensors, fingerprint_of

    pairs = full if pruning is None else prune_cache(model, ids[:, :n], full, pruning).pairs
    kept = int(pairs[0][0].shape[-2])
    if codec is not None and codec.spec != "native":
        fp = fingerprint_of(model)
        length, span = cache_source(pairs, fp)
        kv = span(0, length)
        coded = codec.decode(tuple(kv.keys.shape), kv.dtype, codec.encode(kv))
        pairs = cache_tensors(build_cache(model, fp, [coded], length))
    return pairs, kept


def _compare(
    model: Any, full: list[tuple[Any, Any]], lossy: list[tuple[Any, Any]], start: int, fed: Any, targets: Any
) -> dict[str, float]:
    """Feed ``fed`` at positions ``start...`` to both caches; agreement, KL and the NLL of ``targets``."""
    import torch

    positions = torch.arange(start, start + fed.shape[1], device=fed.device)[None]
    with torch.no_grad():
        ref = model(input_ids=fed, cache=tensor_cache(model, full), position_ids=positions).logits[0].float()
        got = model(input_ids=fed, cache=tensor_cache(model, lossy), position_ids=positions).logits[0].float()
    log_ref = torch.log_softmax(ref, dim=-1)
    log_got = torch.log_softmax(got, dim=-1)
    kl = (log_ref.exp() * (log_ref - log_got)).sum(dim=-1).clamp(min=0.0)
    out = {
        "top1": float((ref.argmax(-1) == got.argmax(-1)).float().mean()),
        "mean_kl": float(kl.mean()),
        "max_kl": float(kl.max()),
    }
    if targets is not None:
        t = targets[0].long()
        out["nll_full"] = float(-log_ref.gather(1, t[:, None]).mean())
        out["nll_lossy"] = float(-log_got.gather(1, t[:, None]).mean())
    return out
