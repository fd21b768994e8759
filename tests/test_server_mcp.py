"""The MCP tools through the official SDK's client: in-process, over stdio (``sigmavault mcp``) and
over streamable HTTP at ``/mcp`` behind the server's keys."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import numpy as np
from conftest import HashingEmbedder, python_env
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from serving import running

import sigmavault as sv
from sigmavault.cli import main
from sigmavault.server.mcp import TOOLS, build_mcp, single_vault

READ_ONLY = {
    "memory_search",
    "memory_get",
    "memory_neighbors",
    "memory_conversation",
    "session_get",
    "kv_stats",
    "witness_query",
    "witness_stats",
}


def payload(result: Any) -> Any:
    """The JSON a tool answered (its text content; the SDK puts "Error executing tool NAME: " before an error's)."""
    text = result.content[0].text
    return json.loads(text[text.index("{") :] if result.is_error else text)


async def exercise(client: Client, *, texts: bool) -> None:
    """List the tools, call each one, and see sigmavault errors come back as error results."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(TOOLS) <= set(tools)
    for name in TOOLS:
        assert bool(tools[name].annotations and tools[name].annotations.read_only_hint) == (name in READ_ONLY), name
    assert tools["memory_delete"].annotations.destructive_hint is True

    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((3, 8)).astype(np.float32)
    args: dict[str, Any] = {
        "collection_name": "mem",
        "ids": ["a", "b", "c"],
        "conversation_id": "conv",
        "metadata": [{"n": 0}, {"n": 1}, {"n": 2}],
    }
    if texts:
        args["texts"] = ["red apples", "green pears", "yellow bananas"]
    else:
        args["vectors"] = vecs.tolist()
    added = await client.call_tool("memory_add", args)
    assert not added.is_error and payload(added) == {"ids": ["a", "b", "c"]}
    probe = {"query": "green pears"} if texts else {"vector": vecs[1].tolist()}
    found = payload(await client.call_tool("memory_search", {"collection_name": "mem", "k": 1, **probe}))
    assert [h["id"] for h in found["hits"]] == ["b"]
    assert payload(await client.call_tool("memory_get", {"unit_id": "c"}))["metadata"] == {"n": 2}
    changed = await client.call_tool("memory_update", {"collection_name": "mem", "unit_id": "c", "metadata": {"n": 9}})
    assert payload(changed)["metadata"] == {"n": 9}
    assert not (await client.call_tool("memory_link", {"source": "a", "target": "b", "kind": "next"})).is_error
    edges = payload(await client.call_tool("memory_neighbors", {"unit_id": "a"}))["edges"]
    assert [(e["target"], e["kind"]) for e in edges] == [("b", "next")]
    convo = payload(await client.call_tool("memory_conversation", {"conversation_id": "conv"}))["units"]
    assert [u["id"] for u in convo] == ["a", "b", "c"]
    assert payload(await client.call_tool("memory_delete", {"collection_name": "mem", "unit_ids": ["c"]})) == {
        "deleted": 1
    }
    assert payload(await client.call_tool("kv_stats", {}))["hits"] == 0
    assert payload(await client.call_tool("witness_query", {"limit": 5})) == {"entries": [], "next_offset": None}
    assert payload(await client.call_tool("witness_stats", {})) == {"stats": []}

    missing = await client.call_tool("memory_get", {"unit_id": "c"})
    assert missing.is_error and payload(missing)["error"]["code"] == "not_found"
    no_session = await client.call_tool("session_get", {"session_id": "nope"})
    assert no_session.is_error and payload(no_session)["error"]["code"] == "not_found"
    bad = await client.call_tool("memory_search", {"collection_name": "mem"})
    assert bad.is_error and payload(bad)["error"]["code"] == "invalid_input"
    unknown_collection = await client.call_tool("memory_search", {"collection_name": "nope", "query": "x"})
    assert unknown_collection.is_error and payload(unknown_collection)["error"]["code"] == "not_found"


def test_mcp_in_process(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        vault.sessions.open("s1", user_id="ann")
        server = build_mcp(single_vault(vault), embedder=HashingEmbedder(16))

        async def go() -> None:
            async with Client(server) as client:
                await exercise(client, texts=True)
                assert payload(await client.call_tool("session_get", {"session_id": "s1"}))["user_id"] == "ann"
                # witness_query pages like GET /v1/witness: next_offset until the last page
                for i in range(3):
                    vault.witness.record({"request_id": f"w{i}"})
                first = payload(await client.call_tool("witness_query", {"limit": 2, "order": "oldest"}))
                assert [e["request_id"] for e in first["entries"]] == ["w0", "w1"] and first["next_offset"] == 2
                last = payload(await client.call_tool("witness_query", {"limit": 2, "offset": 2, "order": "oldest"}))
                assert [e["request_id"] for e in last["entries"]] == ["w2"] and last["next_offset"] is None
                bad = await client.call_tool("witness_query", {"limit": 0})
                assert bad.is_error and payload(bad)["error"]["code"] == "invalid_input"

        anyio.run(go)


def test_mcp_over_stdio(tmp_path: Path) -> None:
    code = "import sys; from sigmavault.cli import main; sys.exit(main())"
    params = StdioServerParameters(
        command=sys.executable, args=["-c", code, "mcp", str(tmp_path / "v")], env=python_env()
    )

    async def go() -> None:
        async with Client(params) as client:
            await exercise(client, texts=False)

    anyio.run(go)
    with sv.open(tmp_path / "v") as vault:  # the tools wrote to the vault on disk
        assert [u.id for u in vault.conversation("conv")] == ["a", "b"]


def _key(file: Path, tenant: str, scope: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main(["keys", "add", str(file), "--tenant", tenant, "--scope", scope])
    return out.getvalue().strip()


def test_mcp_over_streamable_http_behind_keys(tmp_path: Path) -> None:
    file = tmp_path / "keys.json"
    acme, globex_read = _key(file, "acme", "write"), _key(file, "globex", "read")

    def connect(url: str, key: str | None) -> Client:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return Client(streamable_http_client(f"{url}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=30)))

    with running(tmp_path / "root", keys=file, tenants=True, embedder=HashingEmbedder(16)) as url:

        async def go() -> None:
            async with connect(url, acme) as client:
                await exercise(client, texts=True)
            async with connect(url, globex_read) as client:  # another tenant sees none of it, and may not write
                missing = await client.call_tool("memory_get", {"unit_id": "a"})
                assert missing.is_error and payload(missing)["error"]["code"] == "not_found"
                refused = await client.call_tool("memory_add", {"collection_name": "mem", "texts": ["x"]})
                assert refused.is_error and payload(refused)["error"]["code"] == "forbidden"
            refused_without_key = False
            try:
                async with connect(url, None) as client:
                    await client.list_tools()
            except Exception:
                refused_without_key = True
            assert refused_without_key

        anyio.run(go)
        r = httpx2.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
