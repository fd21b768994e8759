"""sv.Runtime on a real (tiny, random-weight) Llama model: warm turns, identical output, memory, audit, routing.

The model and tokenizer are built once per module; every test opens its own vault. Random weights are
enough here: what is checked is that the runtime reuses KV and records what happened, not what it says.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import HashingEmbedder, python_env, run_py
from transformers import StoppingCriteria

import sigmavault as sv
from sigmavault.cli import main
from sigmavault.kv.prune import generate as prune_generate
from sigmavault.runtime import LATENCY_KEYS
from sigmavault.testing import tiny_llm

DOCS = [
    "Readers never block writers in WAL mode: each reader sees a snapshot of the database.",
    "Writers queue on the busy timeout instead of failing with database is locked.",
    "A checkpoint copies pages from the write-ahead log back into the database file.",
    "The KV cache stores attention keys and values so a prompt prefix is not computed twice.",
]
QUESTIONS = ["How do readers avoid blocking?", "And what do writers do?", "When does a checkpoint run?"]
SYSTEM = "You answer from the context."


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The tiny model on one torch thread: on a busy 2-core machine more threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llm() -> tuple[Any, Any]:
    tokenizer = tiny_llm.build_tokenizer()
    return tiny_llm.build_model(tokenizer, seed=3), tokenizer


@pytest.fixture(scope="module")
def sharp_llm() -> tuple[Any, Any]:
    """Random weights drawn wide (std 0.15): greedy output then depends on every token and position, where the
    default init's near-flat logits repeat one token whatever the cache holds."""
    tokenizer = tiny_llm.build_tokenizer()
    model = tiny_llm.build_model(tokenizer, seed=3)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.15)
    return model, tokenizer


@pytest.fixture(scope="module")
def model_dir(llm: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tokenizer = llm
    return tiny_llm.save(model, tokenizer, tmp_path_factory.mktemp("tiny-llm") / "model")


def open_vault(path: Path) -> sv.Vault:
    vault = sv.open(path)
    docs = vault.collection("docs", embedder=HashingEmbedder())
    if len(docs) == 0:
        docs.add(DOCS, ids=[f"doc{i}" for i in range(len(DOCS))])
    return vault


def runtime(vault: sv.Vault, llm: tuple[Any, Any], **kwargs: Any) -> sv.Runtime:
    model, tokenizer = llm
    return sv.Runtime(vault, model, tokenizer, system_prompt=SYSTEM, embedder=HashingEmbedder(), **kwargs)


@pytest.fixture
def rt_vault(tmp_path: Path) -> Iterator[sv.Vault]:
    vault = open_vault(tmp_path / "vault")
    try:
        yield vault
    finally:
        vault.close()


def test_later_turns_start_warm_and_match_an_uncached_run(tmp_path: Path, llm: tuple[Any, Any]) -> None:
    warm_vault, cold_vault = open_vault(tmp_path / "warm"), open_vault(tmp_path / "cold")
    with warm_vault, cold_vault:
        warm, cold = runtime(warm_vault, llm), runtime(cold_vault, llm, kv=False)
        previous = None
        for i, question in enumerate(QUESTIONS):
            if i == len(QUESTIONS) - 1:
                stream = warm.stream("s", question, k=2, max_new_tokens=8)
                pieces = list(stream)
                assert stream.reply is not None
                got = stream.reply
                assert "".join(pieces) == got.text
            else:
                got = warm.chat("s", question, k=2, max_new_tokens=8)
            want = cold.chat("s", question, k=2, max_new_tokens=8)
            assert got.output_ids == want.output_ids and got.text == want.text
            assert got.prompt_tokens == want.prompt_tokens and want.cached_tokens == 0
            if previous is None:
                assert got.cached_tokens == 0
            else:
                # the whole previous turn (prompt and reply) is reused: the cache ends one token short of it
                assert got.cached_tokens == previous.prompt_tokens + previous.completion_tokens - 1
                assert got.prompt_tokens > got.cached_tokens
            previous = got
        assert warm_vault.kv.stats()["hits"] == 2


def test_a_restart_resumes_as_warm_as_without_it(tmp_path: Path, llm: tuple[Any, Any], model_dir: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    with open_vault(one) as vault:
        rt = runtime(vault, llm)
        expected = [rt.chat("s", q, k=2, max_new_tokens=6) for q in QUESTIONS]
    with open_vault(two) as vault:
        rt = runtime(vault, llm)
        for q in QUESTIONS[:2]:
            rt.chat("s", q, k=2, max_new_tokens=6)
    child = run_py(
        """
        import json, sys
        from conftest import HashingEmbedder
        import sigmavault as sv
        from sigmavault.testing import tiny_llm
        model, tokenizer = tiny_llm.load(sys.argv[2])
        with sv.open(sys.argv[1]) as vault:
            rt = sv.Runtime(vault, model, tokenizer, system_prompt=sys.argv[3], embedder=HashingEmbedder())
            r = rt.chat("s", sys.argv[4], k=2, max_new_tokens=6)
        print(json.dumps({"cached": r.cached_tokens, "prompt": r.prompt_tokens, "ids": r.output_ids}))
        """,
        str(two),
        str(model_dir),
        SYSTEM,
        QUESTIONS[2],
    )
    assert child == {
        "cached": expected[2].cached_tokens,
        "prompt": expected[2].prompt_tokens,
        "ids": expected[2].output_ids,
    }
    assert child["cached"] > 0


def test_a_tokenizer_without_chat_template_uses_the_plain_one(rt_vault: sv.Vault, llm: tuple[Any, Any]) -> None:
    plain = tiny_llm.build_tokenizer(chat_template=False)  # the same vocabulary, so the same model reads it
    rt = sv.Runtime(rt_vault, llm[0], plain, system_prompt=SYSTEM, embedder=HashingEmbedder())
    first = rt.chat("p", QUESTIONS[0], k=1, max_new_tokens=4)
    second = rt.chat("p", QUESTIONS[1], k=1, max_new_tokens=4)
    text = rt.prompts.render(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}], generation_prompt=True
    )
    assert text == f"{SYSTEM}\n\nUser: hi\n\nAssistant:"
    assert second.cached_tokens == first.prompt_tokens + first.completion_tokens - 1


def test_turns_served_from_a_pruned_prefix_keep_positions_and_say_so(
    tmp_path: Path, sharp_llm: tuple[Any, Any]
) -> None:
    llm = sharp_llm
    warm_vault, cold_vault = open_vault(tmp_path / "warm"), open_vault(tmp_path / "cold")
    with warm_vault, cold_vault:
        # ratio 1.0 keeps every slot: a correct continuation must then match an uncached run exactly
        warm_vault.kv.configure(prune="sink_window", ratio=1.0)
        warm, cold = runtime(warm_vault, llm), runtime(cold_vault, llm, kv=False)
        replies = []
        for question in QUESTIONS:
            got = warm.chat("p", question, k=2, max_new_tokens=8)
            want = cold.chat("p", question, k=2, max_new_tokens=8)
            assert got.output_ids == want.output_ids
            replies.append(got)
        warm_vault.witness.flush()
        second = dict(warm_vault.witness.get(replies[1].request_id).routing or {})
        assert second["kv.prune"].startswith("sink_window") and second["kv.kept"] == replies[1].cached_tokens > 0
        assert second["kv.save"].startswith("skipped")
        # the third turn falls back to the first turn's pruned prefix, the one stored
        assert replies[2].cached_tokens == replies[1].cached_tokens
        warm_vault.kv.configure(prune="sink_window", ratio=0.5)
        half = runtime(warm_vault, llm)
        half.chat("q", QUESTIONS[0], k=2, max_new_tokens=4)
        reply = half.chat("q", QUESTIONS[1], k=2, max_new_tokens=4)
        warm_vault.witness.flush()
        routing = dict(warm_vault.witness.get(reply.request_id).routing or {})
        assert 0 < routing["kv.kept"] < reply.cached_tokens and reply.completion_tokens == 4
        # the reply continued the pruned cache at the original positions (kv.prune.generate, checked against a
        # masked full cache in test_kv_prune), not at the cache's length as plain generate would
        model, tokenizer = llm
        history = warm_vault.sessions.get("q").metadata["sigmavault.runtime"]["tokens"]
        prompt = history[: len(history) - len(reply.output_ids)]
        loaded = warm_vault.kv.load(model, prompt)
        assert loaded.prune is not None and loaded.tokens == reply.cached_tokens
        ids = torch.tensor([prompt])
        want = prune_generate(
            model,
            ids,
            loaded.cache,
            loaded.tokens,
            max_new_tokens=4,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        assert reply.output_ids == want[0, len(prompt) :].tolist()


def test_witness_entry_records_the_turn(rt_vault: sv.Vault, llm: tuple[Any, Any]) -> None:
    rt = runtime(rt_vault, llm, quality=lambda message, text, hits: 0.25 + 0.5 * len(hits) / 4)
    rt.chat("w", QUESTIONS[0], user_id="alice", k=3, max_new_tokens=5)
    reply = rt.chat("w", QUESTIONS[1], k=3, max_new_tokens=5)
    assert set(LATENCY_KEYS) <= set(reply.latency)
    assert all(v >= 0 for v in reply.latency.values())
    assert reply.latency["ttft_ms"] <= reply.latency["total_ms"]
    assert reply.latency["prefill_ms"] + reply.latency["decode_ms"] <= reply.latency["total_ms"]
    rt_vault.witness.flush()
    entry = rt_vault.witness.get(reply.request_id)
    assert entry.session_id == "w" and entry.model == rt.model_name
    assert entry.prompt_tokens == reply.prompt_tokens and entry.completion_tokens == reply.completion_tokens == 5
    assert entry.quality == pytest.approx(0.625) == reply.quality
    assert entry.context_ids == tuple(h.id for h in reply.context) and len(reply.context) == 3
    assert entry.query_embedding is not None and entry.query_embedding.shape == (64,)
    assert entry.retrieval_ms == reply.latency["retrieval_ms"] and entry.total_ms == reply.latency["total_ms"]
    assert entry.generation_ms == pytest.approx(reply.latency["prefill_ms"] + reply.latency["decode_ms"])
    routing = dict(entry.routing or {})
    assert routing["policy"] == "default" and routing["user_id"] == "alice"  # the session remembers its user
    assert routing["cached_tokens"] == reply.cached_tokens > 0
    assert routing["settings.max_new_tokens"] == 5 and routing["settings.do_sample"] is False
    assert routing["context_scores"] == [round(h.score, 6) for h in reply.context]
    for key in ("kv_load_ms", "prefill_ms", "decode_ms", "kv_save_ms", "ttft_ms"):
        assert routing[key] == reply.latency[key]
    assert not entry.failed


def test_messages_become_a_conversation_and_the_session_follows(rt_vault: sv.Vault, llm: tuple[Any, Any]) -> None:
    model, tokenizer = llm
    rt = runtime(rt_vault, llm)
    # NOTE: a random model may answer in blank tokens, which are not stored; keyword arguments reach generate()
    blank = [i for i in range(len(tokenizer)) if not tokenizer.decode([i], skip_special_tokens=True).strip()]
    replies = [rt.chat("c", q, user_id="bob", k=2, max_new_tokens=6, suppress_tokens=blank) for q in QUESTIONS[:2]]
    assert all(r.text.strip() for r in replies)
    units = rt_vault.conversation("c")
    assert [u.metadata["role"] for u in units] == ["user", "assistant", "user", "assistant"]
    assert [u.text for u in units[::2]] == QUESTIONS[:2]
    assert units[1].text == replies[0].text
    assert rt_vault.chain(units[-1].id) == [u.id for u in reversed(units)]
    hits = rt.memory.search(units[2].text or "", 1)
    assert hits[0].id == units[2].id  # the stored messages are searchable
    session = rt_vault.sessions.get("c")
    assert session.turn_count == 2 and session.user_id == "bob"
    assert session.kv_ref is not None
    restored = rt_vault.kv.load_ref(model, session.kv_ref)
    last = replies[-1]
    assert restored.tokens == last.prompt_tokens + last.completion_tokens - 1
    assert session.context is not None and session.context.shape == (64,)
    assert rt.history("c") == [(str(u.metadata["role"]), u.text) for u in units]


def test_concurrent_turns_of_a_session_run_one_at_a_time_and_leave_no_lock(
    rt_vault: sv.Vault, llm: tuple[Any, Any]
) -> None:
    tokenizer = llm[1]
    rt = runtime(rt_vault, llm)
    blank = [i for i in range(len(tokenizer)) if not tokenizer.decode([i], skip_special_tokens=True).strip()]

    def turn(i: int) -> Any:
        return rt.chat(f"s{i % 2}", QUESTIONS[i % 3], k=1, max_new_tokens=2, suppress_tokens=blank)

    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(turn, range(6)))
    assert len(done) == 6
    for sid in ("s0", "s1"):  # each session saw three whole turns, none interleaved with another
        assert rt_vault.sessions.get(sid).turn_count == 3
        roles = [u.metadata["role"] for u in rt_vault.conversation(sid)]
        assert roles == ["user", "assistant"] * 3
    assert rt.busy_sessions == 0  # the per-session locks went with their turns


class Boom(RuntimeError):
    pass


class ExplodeAfter(StoppingCriteria):
    """Raises inside generate() once ``n`` tokens were generated: a generation that fails half-way."""

    def __init__(self, prompt: int, n: int) -> None:
        self.limit = prompt + n

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        if input_ids.shape[1] >= self.limit:
            raise Boom("the accelerator fell over")
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)  # type: ignore[return-value]


def test_a_failed_generation_is_audited_and_leaves_state_consistent(rt_vault: sv.Vault, llm: tuple[Any, Any]) -> None:
    rt = runtime(rt_vault, llm)
    first = rt.chat("f", QUESTIONS[0], k=2, max_new_tokens=6)
    before = rt_vault.sessions.get("f")
    chunks = rt_vault.kv.stats()["disk"]
    messages = rt_vault.conversation("f")
    with pytest.raises(Boom, match="fell over"):
        rt.chat("f", QUESTIONS[1], k=2, max_new_tokens=6, stopping_criteria=[ExplodeAfter(first.prompt_tokens, 2)])
    with pytest.raises(Boom):
        list(rt.stream("f", QUESTIONS[1], k=2, max_new_tokens=6, stopping_criteria=[ExplodeAfter(0, 2)]))
    assert rt_vault.sessions.get("f") == before
    assert rt_vault.conversation("f") == messages
    assert rt_vault.kv.stats()["disk"] == chunks
    rt_vault.witness.flush()
    failed = rt_vault.witness.query(session_id="f", errors_only=True)
    assert len(failed) == 2 and {e.error_type for e in failed} == {"Boom"}
    assert all(e.error_message == "the accelerator fell over" and e.prompt_tokens for e in failed)
    assert rt_vault.check().ok
    after = rt.chat("f", QUESTIONS[1], k=2, max_new_tokens=6)
    assert after.cached_tokens == first.prompt_tokens + first.completion_tokens - 1


def test_bad_turns_are_refused_clearly(rt_vault: sv.Vault, llm: tuple[Any, Any]) -> None:
    rt = runtime(rt_vault, llm)
    with pytest.raises(sv.InvalidInput, match="message"):
        rt.chat("b", "   ")
    rt.chat("b", QUESTIONS[0], max_new_tokens=2)
    rt_vault.sessions.close("b")
    with pytest.raises(sv.InvalidInput, match="closed"):
        rt.chat("b", QUESTIONS[1], max_new_tokens=2)
    rt_vault.witness.flush()
    assert rt_vault.witness.count(session_id="b", errors_only=True) == 1
    with pytest.raises(sv.EmbedderUnavailable):
        sv.Runtime(rt_vault, llm[0], llm[1], collection=rt_vault.collection("vectors-only", embedder=None))


def test_learned_routing_policy_routes_similar_requests(rt_vault: sv.Vault, llm: tuple[Any, Any]) -> None:
    rt = runtime(rt_vault, llm, quality=lambda message, text, hits: 0.9 if "readers" in message else 0.2)
    good = [rt.chat(f"r{i}", "How do readers avoid blocking writers?", k=1, max_new_tokens=3) for i in range(3)]
    rt.chat("r9", "Something unrelated entirely", k=1, max_new_tokens=7)  # below min_quality: not learned from
    learned = rt.learn(min_quality=0.7, k=4)
    assert len(learned) == 1
    policy = learned[0]
    assert policy.kind == "routing" and policy.params == {"max_new_tokens": 3, "do_sample": False}
    assert set(policy.provenance) == {r.request_id for r in good}
    assert policy.confidence == pytest.approx(0.9)
    again = rt.learn(min_quality=0.7, k=4)  # a rerun replaces what the first run learned, it does not add copies
    assert len(again) == 1 and again[0].params == policy.params and again[0].id != policy.id
    assert [p.id for p in rt_vault.policies.list("routing")] == [again[0].id]
    policy = again[0]
    routed = rt.chat("new", "How do readers avoid blocking writers at all?", k=1)
    assert routed.routing["policy"] == policy.id and routed.routing["policy_score"] >= rt.route_threshold
    assert routed.completion_tokens == 3  # the policy's setting, not the runtime's default of 64
    other = rt.chat("other", "Checkpoints copy pages", k=1, max_new_tokens=2)
    assert other.routing["policy"] == "default"
    wide = sv.Runtime(rt_vault, llm[0], llm[1], collection="wide", embedder=HashingEmbedder(dim=32), memory="wide-m")
    mismatched = wide.chat("w", "How do readers avoid blocking writers?", k=1, max_new_tokens=1)  # 32-d vs 64-d
    assert mismatched.routing["policy"] == "default"


def test_witness_exports_opentelemetry_genai_spans(rt_vault: sv.Vault, llm: tuple[Any, Any]) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    live = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(live))
    rt = runtime(rt_vault, llm, tracer_provider=provider)
    first = rt.chat("o", QUESTIONS[0], user_id="carol", k=2, max_new_tokens=4)
    second = rt.chat("o", QUESTIONS[1], k=2, max_new_tokens=4)
    with pytest.raises(Boom):
        rt.chat("o", QUESTIONS[2], k=2, max_new_tokens=4, stopping_criteria=[ExplodeAfter(0, 1)])
    assert [s.name for s in live.get_finished_spans()] == [f"chat {rt.model_name}"] * 3

    exported = InMemorySpanExporter()
    batch = TracerProvider()
    batch.add_span_processor(SimpleSpanProcessor(exported))
    assert rt_vault.witness.export_otel(batch, session_id="o") == 3
    spans = exported.get_finished_spans()
    assert [s.attributes["gen_ai.response.id"] for s in spans] == [
        first.request_id,
        second.request_id,
        spans[2].attributes["gen_ai.response.id"],
    ]
    attrs = dict(spans[1].attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "transformers"
    assert attrs["gen_ai.request.model"] == rt.model_name and attrs["gen_ai.conversation.id"] == "o"
    assert attrs["gen_ai.usage.input_tokens"] == second.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == second.completion_tokens == 4
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == second.cached_tokens > 0
    assert attrs["gen_ai.request.max_tokens"] == 4 and attrs["gen_ai.data_source.id"] == "docs"
    assert attrs["user.id"] == "carol"
    docs = json.loads(str(attrs["gen_ai.retrieval.documents"]))
    assert [d["id"] for d in docs] == [h.id for h in second.context]
    assert [d["score"] for d in docs] == pytest.approx([h.score for h in second.context], abs=1e-6)
    assert spans[1].end_time - spans[1].start_time == pytest.approx(second.latency["total_ms"] * 1e6, abs=1e3)
    assert spans[1].status.status_code == StatusCode.UNSET
    assert spans[2].attributes["error.type"] == "Boom" and spans[2].status.status_code == StatusCode.ERROR
    live_attrs = dict(live.get_finished_spans()[1].attributes or {})
    assert live_attrs == attrs


def test_cli_chat_reports_reuse_and_errors_cleanly(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = tmp_path / "cli-vault"
    with open_vault(vault) as v:  # the CLI uses the collection's default embedder: give it a fresh collection
        v.collection("notes", embedder=HashingEmbedder()).add(["a note written with another embedder"])
    entry = "import sys; from sigmavault.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", entry, "chat", str(vault), "--model", str(model_dir)]
    proc = subprocess.run(
        [*cmd, "--collection", "empty", "--session", "cli-1", "--max-new-tokens", "4", "--json"],
        input="How do readers avoid blocking?\n\nAnd writers?\n",
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [t["completion_tokens"] for t in turns] == [4, 4]
    assert turns[0]["cached_tokens"] == 0 and turns[1]["cached_tokens"] > 0
    # the same command in-process: the human-readable status line, and errors exit 2 with a message, not a traceback
    monkeypatch.setattr(sys, "stdin", io.StringIO("And checkpoints?\n"))
    assert main(["chat", str(vault), "--model", str(model_dir), "--collection", "empty", "--session", "cli-1"]) == 0
    status = capsys.readouterr().out.splitlines()[-1]
    assert status.startswith("[turn ") and "reused " in status and "ttft " in status and "total " in status
    reused = int(status.split("reused ")[1].split("/")[0])
    assert reused == turns[1]["prompt_tokens"] + turns[1]["completion_tokens"] - 1
    for argv, stdin, message in (
        (["chat", str(vault), "--model", str(model_dir), "--collection", "notes"], "hello\n", "embedder"),
        (["chat", str(vault), "--model", str(tmp_path / "nope")], "", "no model"),
    ):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    with sv.open(vault) as v:
        assert v.sessions.get("cli-1").turn_count == 3
        assert v.witness.count(session_id="cli-1") == 3
