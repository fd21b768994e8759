"""``sv.Runtime``: one call from a chat turn to a warm, grounded, audited reply.

A turn runs ten steps, each timed: recover the session, retrieve (embed + search), route (``"routing"``
policies), build the prompt (see :mod:`.prompt`), warm start (``vault.kv.load``), generate (transformers),
save the KV of the whole sequence, remember the two messages as units of the conversation, update the
session, and record a witness entry. Only public surfaces of the vault are used.

A failed turn records its witness entry (with the error) and re-raises the original exception; it stores
no message, saves no KV and leaves the session as it was, so the next turn starts from the last good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sigmavault.errors import DimensionMismatch, EmbedderUnavailable, InvalidInput, NotFound, VaultError
from sigmavault.runtime.locks import SessionLocks
from sigmavault.runtime.prompt import PromptBuilder, render_context
from sigmavault.runtime.reply import Reply
from sigmavault.runtime.timing import Clock, ms
from sigmavault.types import Hit
from sigmavault.witness.entry import WitnessEntry, new_request_id

if TYPE_CHECKING:
    from sigmavault.collection import Collection
    from sigmavault.policies import Policy
    from sigmavault.sessions import Session
    from sigmavault.vault import Vault

__all__ = ["QualityFn", "Runtime", "Stream"]

QualityFn = Callable[[str, str, list[Hit]], float | None]
_META = "sigmavault.runtime"  # the session metadata key holding the runtime's token history
_DEFAULTS: dict[str, Any] = {"max_new_tokens": 64, "do_sample": False}
_NON_GENERATE = ("codec",)  # routing settings that are not generate() keywords


@dataclass
class _Turn:
    """Everything one turn has learned so far (filled step by step, read by the witness entry on failure too)."""

    request_id: str
    session_id: str
    message: str
    user_id: str | None
    started: float
    started_ms: int
    quality: QualityFn | None
    latency: dict[str, float] = field(default_factory=dict)
    session: Session | None = None
    query: Any = None
    hits: list[Hit] = field(default_factory=list)
    routing: dict[str, Any] = field(default_factory=dict)
    generate: dict[str, Any] = field(default_factory=dict)
    codec: str | None = None
    prompt_ids: list[int] = field(default_factory=list)
    cache: Any = None
    cached: int = 0
    pruned: str | None = None
    first_token: float | None = None
    last_unit: str | None = None


class Runtime:
    """A chat runtime over one vault and one transformers model (see the module docstring for a turn's steps).

    ``collection`` (a name or a Collection) is searched for context; its embedder also embeds the messages,
    which are stored in ``memory`` (a collection, ``"conversations"`` by default). ``generation`` sets the
    default ``generate`` keywords (greedy, 64 new tokens unless changed); a ``"routing"`` policy whose
    embedding is within ``route_threshold`` (cosine) of the message overrides them, and keywords given to
    ``chat`` override both. ``kv=False`` turns the KV store off (every turn prefills its whole prompt: the
    baseline the benchmark compares with). ``quality(message, reply_text, hits)`` scores each reply for the
    witness log. Spans go to ``tracer_provider``, or to OpenTelemetry's global provider once one is set.
    """

    def __init__(
        self,
        vault: Vault,
        model: Any,
        tokenizer: Any,
        *,
        collection: str | Collection = "docs",
        system_prompt: str | None = None,
        memory: str | Collection = "conversations",
        embedder: Any = None,
        generation: Mapping[str, Any] | None = None,
        route_threshold: float = 0.8,
        kv: bool = True,
        quality: QualityFn | None = None,
        model_name: str | None = None,
        tracer_provider: Any = None,
    ) -> None:
        from sigmavault.kv.hf import fingerprint_of

        self.vault = vault
        self.model = model
        self.tokenizer = tokenizer
        self.docs = _collection(vault, collection, embedder)
        if self.docs.embedder is None:
            raise EmbedderUnavailable(
                f"the runtime embeds messages with the embedder of collection {self.docs.name!r}, which has none; "
                "pass embedder=... (or install sigmavault[embed] for the default)"
            )
        self.memory = _collection(vault, memory, self.docs.embedder)
        self.prompts = PromptBuilder(tokenizer, system_prompt)
        self.generation = {**_DEFAULTS, **(generation or {})}
        if not -1.0 <= route_threshold <= 1.0:
            raise InvalidInput(f"route_threshold must be a cosine similarity in [-1, 1], got {route_threshold!r}")
        self.route_threshold = float(route_threshold)
        self.kv_enabled = bool(kv)
        self.quality = quality
        config = getattr(model, "config", None)
        self.model_name = (
            model_name
            or str(getattr(config, "name_or_path", "") or getattr(config, "model_type", "") or "model")[-256:]
        )
        fingerprint = fingerprint_of(model)
        template = str(getattr(tokenizer, "chat_template", "") or "plain")
        # NOTE: token histories are only reused by the same model, tokenizer template and system prompt.
        self._history_key = hashlib.sha256(
            "\x00".join([fingerprint.model, template, system_prompt or "", str(len(tokenizer))]).encode()
        ).hexdigest()[:24]
        self._tracer_provider = tracer_provider
        self._locks = SessionLocks()
        self._pool_guard = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # -- public API -------------------------------------------------------------------------

    def chat(
        self,
        session_id: str,
        message: str,
        *,
        user_id: str | None = None,
        k: int = 4,
        where: Mapping[str, Any] | None = None,
        max_new_tokens: int | None = None,
        codec: str | None = None,
        quality: QualityFn | None = None,
        **generate_kwargs: Any,
    ) -> Reply:
        """One turn: the reply to ``message`` in session ``session_id`` (opened on first use, with ``user_id``).

        ``k`` units of the collection are retrieved (``where`` filters them); extra keywords pass to
        ``model.generate``. Raises what generation raised, after recording the failure in the witness log.
        """
        with self._locks.hold(session_id):
            turn = self._begin(session_id, message, user_id, quality)
            try:
                self._prepare(turn, k, where, max_new_tokens, codec, generate_kwargs)
                return self._finish(turn, self._generate(turn, None))
            except BaseException as exc:
                self._fail(turn, exc)
                raise

    def stream(
        self,
        session_id: str,
        message: str,
        *,
        user_id: str | None = None,
        k: int = 4,
        where: Mapping[str, Any] | None = None,
        max_new_tokens: int | None = None,
        codec: str | None = None,
        quality: QualityFn | None = None,
        **generate_kwargs: Any,
    ) -> Stream:
        """The same turn as :meth:`chat`, its text yielded piece by piece; ``.reply`` is set once it is done."""
        return Stream(
            lambda out: self._stream(
                out, session_id, message, user_id, k, where, max_new_tokens, codec, quality, generate_kwargs
            )
        )

    def learn(self, *, min_quality: float = 0.7, k: int = 16, limit: int = 10_000, seed: int = 0) -> list[Policy]:
        """Turn good past turns into ``"routing"`` policies (see :func:`sigmavault.runtime.learn.learn`)."""
        from sigmavault.runtime.learn import learn

        return learn(self.vault, self.model_name, min_quality=min_quality, k=k, limit=limit, seed=seed)

    def history(self, session_id: str) -> list[tuple[str, str]]:
        """The stored ``(role, text)`` messages of a session, oldest first."""
        return [(str(u.metadata.get("role", "user")), u.text or "") for u in self.vault.conversation(session_id)]

    def _stream(
        self,
        out: Stream,
        session_id: str,
        message: str,
        user_id: str | None,
        k: int,
        where: Mapping[str, Any] | None,
        max_new_tokens: int | None,
        codec: str | None,
        quality: QualityFn | None,
        generate_kwargs: dict[str, Any],
    ) -> Iterator[str]:
        """The generator behind :meth:`stream`: generate in a thread, yield text, then finish the turn."""
        from transformers import TextIteratorStreamer

        with self._locks.hold(session_id):
            turn = self._begin(session_id, message, user_id, quality)
            try:
                self._prepare(turn, k, where, max_new_tokens, codec, generate_kwargs)
            except BaseException as exc:
                self._fail(turn, exc)
                raise
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            result: dict[str, Any] = {}

            def work() -> None:
                try:
                    result["output"] = self._generate(turn, streamer)
                except BaseException as exc:
                    result["error"] = exc
                    streamer.end()  # type: ignore[no-untyped-call]  # NOTE: generate() never reached its end()

            worker = threading.Thread(target=work, name="sigmavault-generate", daemon=True)
            worker.start()
            try:
                yield from streamer
            finally:
                worker.join()
                if "error" in result:
                    self._fail(turn, result["error"])
                    raise result["error"]
                try:
                    out.reply = self._finish(turn, result["output"])
                except BaseException as exc:
                    self._fail(turn, exc)
                    raise

    # -- the steps --------------------------------------------------------------------------

    @property
    def busy_sessions(self) -> int:
        """How many sessions have a turn running or waiting (each holds one lock while it does)."""
        return len(self._locks)

    def _begin(self, session_id: str, message: str, user_id: str | None, quality: QualityFn | None) -> _Turn:
        if not isinstance(message, str) or not message.strip():
            raise InvalidInput("message must be a non-empty string")
        if not isinstance(session_id, str) or not session_id:
            raise InvalidInput(f"session_id must be a non-empty string, got {session_id!r}")
        return _Turn(
            request_id=new_request_id(),
            session_id=session_id,
            message=message,
            user_id=user_id,
            started=time.perf_counter(),
            started_ms=time.time_ns() // 1_000_000,
            quality=quality or self.quality,
        )

    def _prepare(
        self,
        turn: _Turn,
        k: int,
        where: Mapping[str, Any] | None,
        max_new_tokens: int | None,
        codec: str | None,
        generate_kwargs: dict[str, Any],
    ) -> None:
        """Steps 1 to 5: session, retrieval, routing, prompt, warm start."""
        sessions = self.vault.sessions
        clock = Clock(turn.latency)
        with clock("session_ms"):
            try:
                session = sessions.get(turn.session_id)
            except NotFound:
                session = sessions.open(turn.session_id, user_id=turn.user_id, exist_ok=True)
            if session.state != "open":
                raise InvalidInput(
                    f"session {turn.session_id!r} is {session.state}; reopen it with "
                    "vault.sessions.update(id, state='open') or start a new one"
                )
            turn.session = session
            turn.user_id = turn.user_id or session.user_id
        with clock("embed_ms"):
            turn.query = _embed(self.docs, [turn.message])[0]
        with clock("retrieval_ms"):
            turn.hits = self.docs.search(turn.query, k, where=where) if self.docs.dim is not None else []
        with clock("routing_ms"):
            settings, turn.routing = self._route(turn.query)
        if max_new_tokens is not None:
            settings["max_new_tokens"] = max_new_tokens
        if codec is not None:
            settings["codec"] = codec
        settings.update(generate_kwargs)
        turn.codec = settings.get("codec")
        turn.generate = {key: v for key, v in settings.items() if key not in _NON_GENERATE}
        turn.routing.update({f"settings.{key}": v for key, v in settings.items() if _scalar(v)})
        with clock("prompt_ms"):
            turn.prompt_ids = self._prompt(session, render_context(turn.hits, turn.message))
        with clock("kv_load_ms"):
            if self.kv_enabled:
                loaded = self.vault.kv.load(self.model, turn.prompt_ids, codec=turn.codec)
                turn.cache, turn.cached, turn.pruned = loaded.cache, loaded.tokens, loaded.prune
                if loaded.prune is not None:
                    turn.routing.update({"kv.prune": loaded.prune, "kv.kept": loaded.kept, "kv.ratio": loaded.ratio})

    def _route(self, query: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Generation settings and the routing decision: the closest ``"routing"`` policy above the threshold."""
        settings = dict(self.generation)
        try:
            found = self.vault.policies.search("routing", query, k=1, min_score=self.route_threshold)
        except DimensionMismatch:
            # NOTE: routing policies learned with another embedder cannot match this one's queries
            return settings, {"policy": "default", "policy_error": "dimension_mismatch"}
        if not found or not isinstance(found[0].params, Mapping):
            return settings, {"policy": "default"}
        policy = found[0]
        settings.update(policy.params)
        return settings, {"policy": policy.id, "policy_score": float(policy.score or 0.0)}

    def _prompt(self, session: Session, content: str) -> list[int]:
        """Step 4: the previous turn's tokens + this turn's, or a prompt rebuilt from stored messages."""
        state = session.metadata.get(_META)
        if isinstance(state, Mapping) and state.get("key") == self._history_key and state.get("tokens"):
            return self.prompts.next_turn([int(t) for t in state["tokens"]], content)
        if session.turn_count == 0:
            return self.prompts.first(content)
        return self.prompts.from_messages(self.history(session.session_id), content)

    def _generate(self, turn: _Turn, streamer: Any) -> list[int]:
        """Step 6: ``model.generate`` on the prompt, from the restored cache; returns the new token ids."""
        import torch

        from sigmavault.kv.prune import generate as continue_pruned
        from sigmavault.runtime.generate import FirstToken, cache_keyword

        ids = torch.tensor([turn.prompt_ids], dtype=torch.long, device=self.model.device)
        timer = FirstToken(streamer)
        kwargs = dict(turn.generate)
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        start = time.perf_counter()
        try:
            if turn.pruned is not None:
                # NOTE: a pruned cache holds fewer slots than the tokens it stands for; positions go on from there
                output = continue_pruned(self.model, ids, turn.cache, turn.cached, streamer=timer, **kwargs)
            else:
                if turn.cache is not None:
                    kwargs[cache_keyword()] = turn.cache
                output = self.model.generate(ids, attention_mask=torch.ones_like(ids), streamer=timer, **kwargs)
        finally:
            end = time.perf_counter()
            turn.first_token = timer.at
            first = timer.at if timer.at is not None else end
            turn.latency["prefill_ms"] = ms(first - start)
            turn.latency["decode_ms"] = ms(end - first)
        return [int(t) for t in output[0, len(turn.prompt_ids) :].tolist()]

    def _finish(self, turn: _Turn, output: list[int]) -> Reply:
        """Steps 7 to 10: save the KV, remember the messages, update the session, record the witness entry."""
        assert turn.session is not None
        clock = Clock(turn.latency)
        text = self.tokenizer.decode(output, skip_special_tokens=True)
        quality = _score(turn, text)
        sequence = [*turn.prompt_ids, *output]
        ref = turn.session.kv_ref
        saving = None
        if turn.pruned is not None:
            # NOTE: a cache continued from a pruned prefix is not the sequence's lossless KV; storing it would
            # pass pruned slots off as a whole prefix, so the stored pruned prefix stays what later turns load
            turn.routing["kv.save"] = "skipped: served from a pruned prefix"
        elif self.kv_enabled and turn.cache is not None:
            # NOTE: the KV save (mostly file writes) overlaps the reply's embedding; both release the GIL.
            saving = self._background().submit(self._save_kv, turn, sequence)
        with clock("remember_ms"):
            response = _embed(self.memory, [text])[0] if text.strip() else None
        if saving is not None:
            ref = saving.result() or ref  # NOTE: before the transaction below, which the save's commit would wait on
        with clock("session_ms", add=True), self.vault.transaction():
            self._remember(turn, text, response)
            self._update_session(turn, sequence, ref)
        reply = Reply(
            text=text,
            request_id=turn.request_id,
            session_id=turn.session_id,
            prompt_tokens=len(turn.prompt_ids),
            cached_tokens=turn.cached,
            completion_tokens=len(output),
            latency=turn.latency,
            context=turn.hits,
            routing=turn.routing,
            quality=quality,
            output_ids=output,
        )
        with clock("witness_ms"):
            self._witness(turn, reply=reply, response=response)
        return reply

    def _save_kv(self, turn: _Turn, sequence: list[int]) -> str | None:
        """Step 7: store the KV of prompt + reply (the cache covers all but the last token); times itself."""
        start = time.perf_counter()
        try:
            return self.vault.kv.save(self.model, sequence, turn.cache, codec=turn.codec).ref
        finally:
            turn.latency["kv_save_ms"] = ms(time.perf_counter() - start)

    def _background(self) -> ThreadPoolExecutor:
        with self._pool_guard:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sigmavault-kv-save")
            return self._pool

    def close(self) -> None:
        """Stop the runtime's helper thread (the vault stays open; it is the caller's)."""
        with self._pool_guard:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _remember(self, turn: _Turn, text: str, response: Any) -> None:
        """Step 8: the message and the reply as units of the conversation, each the child of the one before."""
        assert turn.session is not None
        state = turn.session.metadata.get(_META)
        last = state.get("last_unit") if isinstance(state, Mapping) else None
        ids = [f"{turn.request_id}-user", f"{turn.request_id}-assistant"]
        meta = [{"role": "user", "request_id": turn.request_id}, {"role": "assistant", "request_id": turn.request_id}]
        vectors: Any
        if response is None:  # NOTE: a blank reply (no text, or whitespace only) is not stored as a unit
            ids, meta, texts, vectors = ids[:1], meta[:1], [turn.message], np.asarray([turn.query])
        else:
            texts, vectors = [turn.message, text], np.stack([turn.query, response])
        parents = [last if isinstance(last, str) else None, ids[0]][: len(ids)]
        if self.memory.info.embedder is None:
            vectors = None  # NOTE: the first add embeds through the collection, which records its embedder's name
        self.memory.add(
            texts,
            vectors=vectors,
            ids=ids,
            metadata=meta,
            kind="message",
            conversation_id=turn.session_id,
            parent_id=parents,
        )
        turn.last_unit = ids[-1]

    def _update_session(self, turn: _Turn, sequence: list[int], ref: str | None) -> None:
        """Step 9: turn count, ``kv_ref``, context embedding (the mean of the turns' queries), last activity."""
        session = turn.session
        assert session is not None
        query = np.asarray(turn.query, dtype=np.float32)
        context = query
        old = session.context
        if old is not None and old.shape == query.shape and session.turn_count > 0:
            context = ((old * session.turn_count + query) / (session.turn_count + 1)).astype(np.float32)
            if not np.any(context):
                context = query
        metadata = {
            **session.metadata,
            _META: {"key": self._history_key, "tokens": sequence, "last_unit": turn.last_unit},
        }
        user: dict[str, Any] = {"user_id": turn.user_id} if turn.user_id and not session.user_id else {}
        self.vault.sessions.update(
            turn.session_id,
            turn_count=session.turn_count + 1,
            last_active=time.time(),
            kv_ref=ref,
            context=context,
            metadata=metadata,
            **user,
        )

    def _fail(self, turn: _Turn, exc: BaseException) -> None:
        """A failed turn: its witness entry carries the error; nothing else is written."""
        # NOTE: the caller must see the original exception, not a failure to audit it.
        with contextlib.suppress(VaultError):
            self._witness(turn, error=exc)

    def _witness(
        self, turn: _Turn, *, reply: Reply | None = None, response: Any = None, error: BaseException | None = None
    ) -> None:
        """Step 10: one witness entry per turn (and a live span when OpenTelemetry is configured)."""
        lat = turn.latency
        lat["total_ms"] = ms(time.perf_counter() - turn.started)
        lat["ttft_ms"] = ms((turn.first_token or time.perf_counter()) - turn.started)
        extra: dict[str, Any] = {
            key: lat[key] for key in ("kv_load_ms", "prefill_ms", "decode_ms", "kv_save_ms", "ttft_ms") if key in lat
        }
        routing: dict[str, Any] = {
            **turn.routing,
            "user_id": turn.user_id,
            "collection": self.docs.name,
            "cached_tokens": turn.cached,
            "context_scores": [round(float(h.score), 6) for h in turn.hits],
            **extra,
        }
        entry = WitnessEntry(
            request_id=turn.request_id,
            session_id=turn.session_id,
            timestamp=turn.started_ms,
            model=self.model_name,
            quality=None if reply is None else reply.quality,
            embedding_ms=lat.get("embed_ms"),
            retrieval_ms=lat.get("retrieval_ms"),
            routing_ms=lat.get("routing_ms"),
            generation_ms=lat["prefill_ms"] + lat["decode_ms"] if "prefill_ms" in lat else None,
            total_ms=lat["total_ms"],
            prompt_tokens=len(turn.prompt_ids) if turn.prompt_ids else None,
            completion_tokens=None if reply is None else reply.completion_tokens,
            context_ids=tuple(h.id for h in turn.hits),
            query_embedding=turn.query,
            response_embedding=response,
            routing=routing,
            error_type=None if error is None else type(error).__name__,
            error_message=None if error is None else (str(error) or type(error).__name__)[:2000],
        )
        self.vault.witness.record(entry)
        provider = self._provider()
        if provider is not None:
            from sigmavault.witness.otel import emit

            emit(provider.get_tracer("sigmavault.runtime"), entry)

    def _provider(self) -> Any:
        if self._tracer_provider is not None:
            return self._tracer_provider
        from sigmavault.witness.otel import configured_provider

        return configured_provider()


class Stream:
    """The text of a streamed turn, piece by piece (iterate it once); ``reply`` is set when it is done.

    Generation runs in a thread (transformers' ``TextIteratorStreamer``). Leaving the loop early still lets
    the turn finish and be recorded, as a served request would.
    """

    def __init__(self, start: Callable[[Stream], Iterator[str]]) -> None:
        self.reply: Reply | None = None
        self._start: Callable[[Stream], Iterator[str]] | None = start

    def __iter__(self) -> Iterator[str]:
        if self._start is None:
            raise InvalidInput("a stream can be iterated once")
        start, self._start = self._start, None
        return start(self)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _embed(collection: Collection, texts: Sequence[str]) -> Any:
    embedder = collection.embedder
    if embedder is None:
        raise EmbedderUnavailable(f"collection {collection.name!r} has no embedder")
    try:
        out = np.asarray(embedder.embed(list(texts)), dtype=np.float32)
    except VaultError:
        raise
    except Exception as exc:
        raise EmbedderUnavailable(f"the embedder of {collection.name!r} failed: {type(exc).__name__}: {exc}") from exc
    if out.ndim != 2 or out.shape[0] != len(texts) or not np.isfinite(out).all():
        raise EmbedderUnavailable(f"the embedder of {collection.name!r} returned {out.shape}, not one vector a text")
    return out


def _score(turn: _Turn, text: str) -> float | None:
    if turn.quality is None:
        return None
    value = turn.quality(turn.message, text, turn.hits)
    return None if value is None else float(value)


def _collection(vault: Vault, which: str | Collection, embedder: Any) -> Collection:
    if isinstance(which, str):
        return vault.collection(which) if embedder is None else vault.collection(which, embedder=embedder)
    # NOTE: resolved again by name, in this vault, with the collection's own embedder (None stays None)
    return vault.collection(which.name, embedder=which.embedder, create=False)
