"""Token pruning of transformer KV caches, for caches stored for reuse by questions not known yet.

A pruning keeps ``kept`` of a prefix's ``n`` cached tokens (``ratio`` is the fraction kept, or ``budget`` a token
count), chosen without any future query:

``sink_window``  the first ``sink`` tokens (attention sinks) and the most recent ones (StreamingLLM); the same
                 tokens in every layer and head.
``key_norm``     per layer and KV head, the tokens whose keys have the smallest L2 norm (kvpress's KnormPress).
``h2o``          per layer and KV head, half the budget to the most recent tokens and half to the heavy hitters:
                 the tokens with the most attention accumulated over the prefill, read from the model's own
                 attention weights (``output_attentions``; the model must run eager attention), as in H2O.

Kept tokens keep their original positions: their keys were rotated by RoPE before they were cached, and the next
token is at position ``n``, not at the cache length. Continue from a pruned cache with :func:`generate` (or pass
``position_ids`` starting at ``n`` to the model's forward); ``ratio=1.0`` keeps everything and gives output
identical to the lossless cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sigmavault.errors import InvalidInput

__all__ = [
    "PRUNE_POLICIES",
    "Loaded",
    "Pruned",
    "Pruning",
    "generate",
    "ids_tensor",
    "prune_cache",
    "pruning_from",
    "tensor_cache",
]

PRUNE_POLICIES = ("sink_window", "key_norm", "h2o")
_DEFAULT_SINK = 4


@dataclass(frozen=True, slots=True)
class Pruning:
    """A pruning policy with its target: ``ratio`` (fraction of tokens kept, in (0, 1]) or ``budget`` (tokens)."""

    policy: str
    ratio: float | None = None
    budget: int | None = None
    sink: int = _DEFAULT_SINK

    def __post_init__(self) -> None:
        if self.policy not in PRUNE_POLICIES:
            raise InvalidInput(f"unknown pruning policy {self.policy!r}; use one of {', '.join(PRUNE_POLICIES)}")
        if (self.ratio is None) == (self.budget is None):
            raise InvalidInput(f"pruning {self.policy!r} needs exactly one of ratio= (fraction kept) or budget=")
        if self.ratio is not None and not (isinstance(self.ratio, int | float) and 0.0 < self.ratio <= 1.0):
            raise InvalidInput(f"pruning ratio is the fraction of tokens kept, in (0, 1]; got {self.ratio!r}")
        if self.budget is not None and (not isinstance(self.budget, int) or self.budget < 1):
            raise InvalidInput(f"pruning budget is a number of tokens >= 1, got {self.budget!r}")
        if not isinstance(self.sink, int) or self.sink < 0:
            raise InvalidInput(f"sink is a number of tokens >= 0, got {self.sink!r}")

    @property
    def spec(self) -> str:
        """Canonical text (part of the stored prefix's key): e.g. ``sink_window,ratio=0.5,sink=4``."""
        target = f"ratio={self.ratio:g}" if self.ratio is not None else f"budget={self.budget}"
        return f"{self.policy},{target}" + (f",sink={self.sink}" if self.policy == "sink_window" else "")

    def kept(self, n: int) -> int:
        """How many of ``n`` tokens this pruning keeps (at least one)."""
        if self.budget is not None:
            return max(1, min(n, self.budget))
        return max(1, min(n, round(float(self.ratio or 1.0) * n)))

    def __str__(self) -> str:
        return self.spec


def pruning_from(
    prune: str | Pruning | None, *, ratio: float | None = None, budget: int | None = None, sink: int | None = None
) -> Pruning | None:
    """A :class:`Pruning` from a policy name plus ``ratio``/``budget``, or from a spec such as
    ``"h2o,ratio=0.5"``; ``None`` or ``"none"`` means no pruning (``ratio`` alone is an error)."""
    if isinstance(prune, Pruning):
        return prune
    if prune is None or (isinstance(prune, str) and prune.strip().lower() in ("", "none")):
        if ratio is not None or budget is not None:
            raise InvalidInput("ratio= and budget= need a pruning policy: prune='sink_window', 'key_norm' or 'h2o'")
        return None
    if not isinstance(prune, str):
        raise InvalidInput(f"prune must be a policy name or spec, got {type(prune).__name__}")
    name, *options = [part.strip() for part in prune.strip().lower().split(",")]
    fields: dict[str, Any] = {}
    for option in options:
        key, _, value = option.partition("=")
        try:
            fields[key] = float(value) if key == "ratio" else int(value)
        except ValueError:
            raise InvalidInput(f"bad pruning option {option!r} in {prune!r}") from None
        if key not in ("ratio", "budget", "sink"):
            raise InvalidInput(f"bad pruning option {option!r} in {prune!r}; use ratio=, budget= or sink=")
    given: dict[str, float | int | None] = {"ratio": ratio, "budget": budget, "sink": sink}
    fields.update({key: value for key, value in given.items() if value is not None})
    if "ratio" in fields and "budget" in fields and budget is not None:
        del fields["ratio"]  # an explicit budget= overrides a ratio from the spec
    elif "ratio" in fields and "budget" in fields and ratio is not None:
        del fields["budget"]
    return Pruning(policy=name, **fields)


class Loaded(tuple[Any, int]):
    """What ``load`` returned; unpacks as ``(cache, n)``.

    ``kept`` is how many cache slots stand for the ``n`` tokens: fewer when ``prune`` names the pruning the stored
    prefix was saved with. Continue from a pruned cache with ``generate`` (positions go on from
    ``n``, not from the cache length).
    """

    cache: Any
    tokens: int
    kept: int
    prune: str | None
    codec: str

    def __new__(cls, cache: Any, tokens: int, *, kept: int, prune: str | None, codec: str) -> Loaded:
        self = super().__new__(cls, (cache, tokens))
        self.cache, self.tokens, self.kept, self.prune, self.codec = cache, tokens, kept, prune, codec
        return self

    @property
    def ratio(self) -> float:
        """Fraction of the served tokens kept in the cache (1.0 when lossless or a miss)."""
        return self.kept / self.tokens if self.tokens else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "kept": self.kept, "prune": self.prune, "ratio": self.ratio, "codec": self.codec}


@dataclass(frozen=True, slots=True)
class Pruned:
    """A pruned cache: per layer ``(keys, values)`` of ``kept`` slots, and which original token each slot holds.

    ``positions[layer][head]`` lists the original positions (ascending) of the tokens kept by that KV head; the
    prefix had ``tokens`` tokens, so the next token goes at position ``tokens``.
    """

    pairs: list[tuple[Any, Any]]
    positions: Any  # LongTensor [layers, kv_heads, kept]
    tokens: int
    kept: int
    pruning: Pruning


def prune_cache(model: Any, input_ids: Any, cache: Any, pruning: Pruning, *, tokens: int | None = None) -> Pruned:
    """Prune the first ``tokens`` (default: all) cached tokens of ``cache`` for ``input_ids``.

    ``h2o`` runs one prefill of ``input_ids[:tokens]`` with eager attention to read the attention weights;
    the other policies read only the cache.
    """
    import torch

    from sigmavault.kv.hf import cache_tensors

    pairs = cache_tensors(cache)
    n = int(pairs[0][0].shape[-2]) if tokens is None else tokens
    if n < 1 or n > int(pairs[0][0].shape[-2]):
        raise InvalidInput(f"cannot prune {n} tokens of a cache holding {int(pairs[0][0].shape[-2])}")
    pairs = [(k[:, :, :n], v[:, :, :n]) for k, v in pairs]
    kept = pruning.kept(n)
    heads = int(pairs[0][0].shape[1])
    with torch.no_grad():
        if pruning.policy == "sink_window":
            sink = min(pruning.sink, kept)
            one = torch.cat([torch.arange(sink), torch.arange(n - (kept - sink), n)])
            positions = one.expand(len(pairs), heads, kept)
        elif pruning.policy == "key_norm":
            positions = torch.stack([_top(-k[0].float().norm(dim=-1), kept) for k, _ in pairs])
        else:
            scores = attention_scores(model, input_ids, n, heads)
            recent = kept // 2
            heavy = kept - recent
            tail = torch.arange(n - recent, n).expand(heads, recent)
            positions = torch.stack([torch.cat([_top(s[:, : n - recent], heavy), tail], dim=1) for s in scores])
        out = []
        for (keys, values), pos in zip(pairs, positions, strict=True):
            index = pos.to(keys.device)[None, :, :, None].expand(1, heads, kept, keys.shape[-1])
            out.append((keys.gather(2, index), values.gather(2, index)))
    return Pruned(pairs=out, positions=positions, tokens=n, kept=kept, pruning=pruning)


def _top(scores: Any, k: int) -> Any:
    """Indices (ascending) of the ``k`` highest scores in each row of ``scores`` [heads, n]."""
    return scores.topk(k, dim=-1).indices.sort(dim=-1).values


def attention_scores(model: Any, input_ids: Any, n: int, kv_heads: int) -> list[Any]:
    """Per layer, ``[kv_heads, n]``: attention each token received, summed over all queries and the query heads
    that share its KV head, from one prefill with the model's own attention weights (``output_attentions``).

    The model must compute attention weights: load it with ``attn_implementation="eager"`` (or call
    ``model.set_attn_implementation("eager")``), as kvpress's observed-attention press requires; sdpa and flash
    kernels never materialise them. NOTE: every layer's weights are held at once, ``layers x heads x n^2`` floats.
    """
    import torch

    if not callable(model) or not hasattr(model, "config"):
        raise InvalidInput("the h2o policy needs the transformers model itself (it reads attention weights)")
    ids = ids_tensor(input_ids)[:, :n].to(model.device)
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True, use_cache=False)
    if not out.attentions or any(a is None for a in out.attentions):
        raise InvalidInput(
            "the h2o policy reads the model's attention weights, which this attention implementation does not "
            "compute; load the model with attn_implementation='eager' (or call model.set_attn_implementation('eager'))"
        )
    scores = []
    for attn in out.attentions:
        received = attn[0].float().sum(dim=1)  # [query heads, n]
        scores.append(received.view(kv_heads, -1, n).sum(dim=1).cpu())
    return scores


def ids_tensor(input_ids: Any) -> Any:
    import torch

    from sigmavault.kv.keys import tokens_of

    if isinstance(input_ids, torch.Tensor):
        return input_ids.reshape(1, -1).long()
    return torch.from_numpy(tokens_of(input_ids).astype("int64")).reshape(1, -1)


def tensor_cache(model: Any, pairs: list[tuple[Any, Any]]) -> Any:
    """A fresh ``DynamicCache`` holding copies of ``pairs`` (one ``(keys, values)`` per layer)."""
    from transformers import DynamicCache

    cache: Any = DynamicCache(config=model.config)
    for layer, (keys, values) in enumerate(pairs):
        cache.update(keys.clone(), values.clone(), layer)
    return cache


def generate(model: Any, input_ids: Any, cache: Any, tokens: int, **kwargs: Any) -> Any:
    """``model.generate`` continuing ``input_ids`` from a cache of its first ``tokens`` tokens, pruned or not.

    A pruned cache holds fewer slots than ``tokens``, so transformers alone would re-feed tokens and place the new
    ones at the wrong RoPE positions. Here the cache's slots are matched by as many placeholder ids (never run
    through the model), the new tokens get ``position_ids`` from ``tokens`` on, and the result reads like a
    lossless ``generate``: ``input_ids`` followed by the generated ids.
    """
    import torch

    ids = ids_tensor(input_ids).to(model.device)
    slots = int(cache.get_seq_length())
    if not 0 <= tokens < ids.shape[1] or slots > tokens:
        raise InvalidInput(
            f"a cache of {tokens} tokens ({slots} slots) needs input_ids longer than {tokens}, got {ids.shape[1]}"
        )
    fed = torch.cat([ids[:, :slots], ids[:, tokens:]], dim=1)
    positions = torch.cat([torch.arange(slots), torch.arange(tokens, ids.shape[1])]).to(ids.device)[None]
    mask = torch.ones_like(fed)
    out = model.generate(fed, cache=cache, position_ids=positions, attention_mask=mask, **kwargs)
    return torch.cat([ids[:, :tokens], out[:, slots:]], dim=1)
