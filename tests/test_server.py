"""The HTTP API on a real uvicorn server (loopback, free port), driven with httpx: each route's
happy path and its errors, which always come back as {"error": {"code", "message"}}."""

from __future__ import annotations

import base64
import errno
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving import running

import sigmavault as sv
from sigmavault import errors as e
from sigmavault.errors import InvalidInput
from sigmavault.server import create_app
from sigmavault.server.errors import status_of


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    path = tmp_path_factory.mktemp("served")
    with running(path) as url:
        yield url, path


@pytest.fixture
def client(server: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=30) as c:
        yield c


def error_of(response: httpx.Response, status: int) -> str:
    """The error code of a failed response, after checking its status and the one error shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert "Traceback" not in body["error"]["message"]
    return str(body["error"]["code"])


def b64(rows: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(rows, dtype="<f4").tobytes()).decode()


def test_health_and_openapi(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "version": sv.__version__}
    spec = client.get("/openapi.json").json()
    assert "/v1/collections/{name}/search" in spec["paths"]
    assert "404" in spec["paths"]["/v1/collections/{name}"]["get"]["responses"]


def test_collections_create_list_get(client: httpx.Client) -> None:
    made = client.post("/v1/collections", json={"name": "exact", "metric": "ip", "index": "exact"})
    assert made.status_code == 201 and made.json()["metric"] == "ip"
    assert made.json()["index"]["configured"] == "exact"
    names = {c["name"]: c for c in client.get("/v1/collections").json()}
    assert names["exact"]["units"] == 0
    assert client.get("/v1/collections/exact").json()["name"] == "exact"
    assert error_of(client.get("/v1/collections/missing"), 404) == "not_found"
    assert error_of(client.post("/v1/collections", json={"name": "x", "metric": "manhattan"}), 422)
    assert error_of(client.post("/v1/collections", json={"name": "x", "params": {"create": 1}}), 422)
    assert error_of(client.post("/v1/collections", json={"name": "exact", "metric": "l2"}), 400) == "invalid_input"


def test_units_texts_round_trip(client: httpx.Client) -> None:
    added = client.post(
        "/v1/collections/notes/units",
        json={
            "texts": ["the cat sat on the mat", "stock prices fell"],
            "metadata": [{"topic": "pets"}, {"topic": "money"}],
        },
    )
    assert added.status_code == 201
    cat, stock = added.json()["ids"]
    unit = client.get(f"/v1/collections/notes/units/{cat}").json()
    assert unit["text"] == "the cat sat on the mat" and unit["metadata"] == {"topic": "pets"} and "vector" not in unit
    assert len(client.get(f"/v1/collections/notes/units/{cat}", params={"vectors": True}).json()["vector"]) == 32
    assert client.get(f"/v1/units/{stock}").json()["collection"] == "notes"
    listed = client.get("/v1/collections/notes/units", params={"where": json.dumps({"topic": "money"})}).json()
    assert [u["id"] for u in listed] == [stock]
    assert [u["id"] for u in client.get("/v1/collections/notes/units", params={"limit": 1, "offset": 1}).json()] == [
        stock
    ]

    hits = client.post("/v1/collections/notes/search", json={"query": "cat mat", "k": 1}).json()
    assert [h["id"] for h in hits] == [cat]
    text_hits = client.post("/v1/collections/notes/search", json={"query": "prices", "mode": "text"}).json()
    assert [h["id"] for h in text_hits] == [stock]
    hybrid = client.post("/v1/collections/notes/search", json={"query": "cat", "mode": "hybrid", "k": 2}).json()
    assert hybrid[0]["id"] == cat
    filtered = client.post("/v1/collections/notes/search", json={"query": "cat", "where": {"topic": "money"}}).json()
    assert [h["id"] for h in filtered] == [stock]

    changed = client.patch(
        f"/v1/collections/notes/units/{cat}", json={"metadata": {"topic": "cats"}, "state": "archived"}
    )
    assert changed.json()["metadata"] == {"topic": "cats"} and changed.json()["state"] == "archived"
    assert client.post("/v1/collections/notes/search", json={"query": "cat mat", "k": 5}).json()[0]["id"] == stock
    archived = client.post("/v1/collections/notes/search", json={"query": "cat mat", "states": ["archived"]}).json()
    assert [h["id"] for h in archived] == [cat]

    assert client.delete(f"/v1/collections/notes/units/{cat}").status_code == 204
    assert error_of(client.get(f"/v1/collections/notes/units/{cat}"), 404) == "not_found"
    assert error_of(client.delete(f"/v1/collections/notes/units/{cat}"), 404) == "not_found"


def test_units_errors_leave_data_intact(client: httpx.Client) -> None:
    ids = client.post("/v1/collections/strict/units", json={"texts": ["one"]}).json()["ids"]
    assert error_of(client.post("/v1/collections/strict/units", json={"texts": ["  "]}), 400) == "empty_text"
    assert error_of(client.post("/v1/collections/strict/units", json={}), 400) == "invalid_input"
    assert error_of(client.post("/v1/collections/strict/units", json={"texts": "one"}), 422) == "invalid_request"
    assert error_of(client.post("/v1/collections/strict/units", json={"texts": ["a"], "junk": 1}), 422)
    bad_vec = client.post("/v1/collections/strict/units", json={"vectors": [[1.0, 2.0]]})
    assert error_of(bad_vec, 400) == "dimension_mismatch"
    assert error_of(client.post("/v1/collections/strict/units", json={"vectors": [[1.0], [1.0, 2.0]]}), 400)
    assert error_of(client.post("/v1/collections/strict/search", json={"query": "one", "k": 0}), 422)
    assert error_of(client.post("/v1/collections/strict/search", json={}), 400) == "invalid_input"
    assert error_of(client.post("/v1/collections/strict/search", json={"query": " "}), 400) == "empty_text"
    assert error_of(
        client.post("/v1/collections/strict/search", json={"query": "x", "where": {"a": {"$nope": 1}}}), 400
    )
    assert error_of(client.post("/v1/collections/strict/search", json={"query": "x", "states": "bogus"}), 400)
    assert error_of(client.patch("/v1/collections/strict/units/nope", json={"text": "x"}), 404) == "not_found"
    assert error_of(client.patch(f"/v1/collections/strict/units/{ids[0]}", json={"text": ""}), 400) == "empty_text"
    assert error_of(client.post("/v1/collections/strict/units/delete", json={"ids": [ids[0], "nope"]}), 404)
    assert error_of(client.get("/v1/collections/strict/units", params={"where": "[1]"}), 400) == "invalid_input"
    assert error_of(client.post("/v1/collections/strict/units", content=b"{not json"), 422)
    assert [u["id"] for u in client.get("/v1/collections/strict/units").json()] == ids
    assert client.post("/v1/collections/strict/units/delete", json={"ids": ids}).json() == {"count": 1}


def test_vectors_as_lists_and_base64(client: httpx.Client) -> None:
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((40, 8)).astype(np.float32)
    first = client.post(
        "/v1/collections/vecs/units", json={"vectors": rows[:20].tolist(), "ids": [f"v{i}" for i in range(20)]}
    )
    assert first.status_code == 201
    second = client.post(
        "/v1/collections/vecs/units", json={"vectors_b64": b64(rows[20:]), "ids": [f"v{i}" for i in range(20, 40)]}
    )
    assert second.status_code == 201, second.text
    stored = np.array(client.get("/v1/collections/vecs/units/v25", params={"vectors": True}).json()["vector"])
    assert np.allclose(stored, rows[25] / np.linalg.norm(rows[25]), atol=1e-6)
    assert client.post("/v1/collections/vecs/search", json={"vector": rows[3].tolist(), "k": 1}).json()[0]["id"] == "v3"
    assert (
        client.post("/v1/collections/vecs/search", json={"vector_b64": b64(rows[31:32]), "k": 1}).json()[0]["id"]
        == "v31"
    )
    assert error_of(client.post("/v1/collections/vecs/units", json={"vectors_b64": "!!!"}), 400) == "invalid_input"
    assert error_of(client.post("/v1/collections/vecs/units", json={"vectors_b64": b64(rows[:1])[:-4] + "AA=="}), 400)
    assert error_of(client.post("/v1/collections/newvecs/units", json={"vectors_b64": b64(rows[:2])}), 400)
    made = client.post("/v1/collections/newvecs/units", json={"vectors_b64": b64(rows[:2]), "dim": 8})
    assert len(made.json()["ids"]) == 2
    twin = client.post("/v1/collections/vecs/units", json={"vectors": [rows[5].tolist()], "ids": ["twin"]})
    assert twin.status_code == 201
    near = client.post("/v1/collections/vecs/similar", json={"id": "v5", "threshold": 0.95}).json()
    assert [h["id"] for h in near] == ["twin"]
    by_vector = client.post("/v1/collections/vecs/similar", json={"vector": rows[5].tolist(), "k": 2}).json()
    assert {h["id"] for h in by_vector} == {"v5", "twin"}
    assert error_of(client.post("/v1/collections/vecs/similar", json={}), 400) == "invalid_input"
    assert error_of(client.post("/v1/collections/vecs/similar", json={"id": "nope"}), 404) == "not_found"
    duplicate = client.post("/v1/collections/vecs/units", json={"vectors": rows[:1].tolist(), "ids": ["v1"]})
    assert error_of(duplicate, 400) == "invalid_input"


def test_graph_routes(client: httpx.Client) -> None:
    ids = client.post(
        "/v1/collections/chat/units",
        json={
            "texts": ["hi", "hello back", "how are you"],
            "conversation_id": "c1",
            "ids": ["m1", "m2", "m3"],
            "parent_id": [None, "m1", "m2"],
        },
    ).json()["ids"]
    assert ids == ["m1", "m2", "m3"]
    assert client.post(
        "/v1/links", json={"source": "m1", "target": ["m2", "m3"], "kind": "causal", "weight": 0.5}
    ).json() == {"count": 2}
    edges = client.get("/v1/units/m1/neighbors").json()
    assert {(e["target"], e["kind"], e["weight"]) for e in edges} == {("m2", "causal", 0.5), ("m3", "causal", 0.5)}
    assert [e["source"] for e in client.get("/v1/units/m3/neighbors", params={"direction": "in"}).json()] == ["m1"]
    assert client.get("/v1/path", params={"source": "m1", "target": "m3"}).json() == {"path": ["m1", "m3"]}
    assert client.get("/v1/path", params={"source": "m3", "target": "m1"}).json() == {"path": None}
    assert client.get("/v1/units/m3/chain").json() == {"chain": ["m3", "m2", "m1"]}
    assert [u["id"] for u in client.get("/v1/conversations/c1").json()] == ["m1", "m2", "m3"]
    assert client.get("/v1/conversations/none-such").json() == []
    assert client.request("DELETE", "/v1/links", params={"source": "m1", "target": "m3"}).json() == {"count": 1}
    assert error_of(client.post("/v1/links", json={"source": "m1", "target": "ghost"}), 404) == "not_found"
    assert error_of(client.get("/v1/units/ghost/neighbors"), 404) == "not_found"
    assert error_of(client.get("/v1/units/ghost/chain"), 404) == "not_found"
    assert error_of(client.get("/v1/path", params={"source": "m1", "target": "ghost"}), 404) == "not_found"
    assert error_of(client.get("/v1/path", params={"source": "m1", "target": "m2", "max_depth": 0}), 422)
    assert error_of(client.get("/v1/units/m1/neighbors", params={"direction": "up"}), 422)


def test_sessions_and_policies(client: httpx.Client) -> None:
    made = client.post("/v1/sessions", json={"session_id": "s1", "user_id": "ann", "context": [1.0, 0.0, 0.0]})
    assert made.status_code == 201 and made.json()["user_id"] == "ann"
    assert client.get("/v1/sessions/s1").json()["session_id"] == "s1"
    assert client.post("/v1/sessions/s1/touch", json={"turns": 2}).json()["turn_count"] == 2
    found = client.post("/v1/sessions/find", json={"context": [0.9, 0.1, 0.0], "k": 1}).json()
    assert [s["session_id"] for s in found] == ["s1"]
    assert [s["session_id"] for s in client.post("/v1/sessions/find", json={"user_id": "ann"}).json()] == ["s1"]
    assert client.post("/v1/sessions/expire", json={"ttl_seconds": 3600}).json() == {"ids": []}
    assert error_of(client.post("/v1/sessions", json={"session_id": "s1"}), 400) == "invalid_input"
    assert error_of(client.get("/v1/sessions/ghost"), 404) == "not_found"
    assert error_of(client.post("/v1/sessions/ghost/touch", json={}), 404) == "not_found"
    assert error_of(client.post("/v1/sessions/expire", json={"ttl_seconds": -1}), 422)

    pol = client.post(
        "/v1/policies", json={"kind": "router", "params": {"w": 1}, "embedding": [1.0, 0.0], "confidence": 0.9}
    )
    assert pol.status_code == 201
    pid = pol.json()["id"]
    assert client.get(f"/v1/policies/{pid}").json()["params"] == {"w": 1}
    hits = client.post("/v1/policies/search", json={"kind": "router", "vector": [1.0, 0.1], "k": 1}).json()
    assert len(hits) == 1
    assert error_of(client.get("/v1/policies/ghost"), 404) == "not_found"
    assert error_of(client.post("/v1/policies", json={"kind": "router", "confidence": 2.0}), 400) == "invalid_input"
    assert error_of(client.post("/v1/policies/search", json={"kind": "router", "k": 0}), 422)


def test_witness_record_query_stats_and_kv(client: httpx.Client) -> None:
    entries = [
        {"request_id": f"r{i}", "model": "m-a" if i % 2 else "m-b", "total_ms": float(10 + i), "session_id": "s-w"}
        for i in range(7)
    ]
    assert client.post("/v1/witness", json=entries).json() == {"request_ids": [f"r{i}" for i in range(7)]}
    assert client.post("/v1/witness", json={"request_id": "r-err", "error_type": "Timeout"}).status_code == 201
    page = client.get("/v1/witness", params={"session_id": "s-w", "limit": 3, "order": "oldest"}).json()
    assert [e["request_id"] for e in page["entries"]] == ["r0", "r1", "r2"] and page["next_offset"] == 3
    last = client.get("/v1/witness", params={"session_id": "s-w", "limit": 3, "offset": 6, "order": "oldest"}).json()
    assert [e["request_id"] for e in last["entries"]] == ["r6"] and last["next_offset"] is None
    assert [e["request_id"] for e in client.get("/v1/witness", params={"errors_only": True}).json()["entries"]] == [
        "r-err"
    ]
    stats = {s["model"]: s for s in client.get("/v1/witness/stats", params={"by": "model"}).json()}
    assert stats["m-a"]["count"] == 3 and stats["m-b"]["count"] == 4
    assert client.get("/v1/witness/stats", params={"by": "none", "percentiles": "50"}).json()[0]["count"] == 7
    assert client.get("/v1/witness/status").json()["entries"] >= 8
    assert error_of(client.post("/v1/witness", json={"total_ms": "slow"}), 400) == "invalid_input"
    assert error_of(client.get("/v1/witness/stats", params={"field": "nope"}), 400) == "invalid_input"
    assert error_of(client.get("/v1/witness/stats", params={"percentiles": "x"}), 400) == "invalid_input"
    assert error_of(client.get("/v1/witness", params={"order": "sideways"}), 422)
    kv = client.get("/v1/kv/stats").json()
    assert kv["hits"] == 0 and kv["hit_rate"] == 0.0 and "ram" in kv


def test_stats_check_metrics(client: httpx.Client) -> None:
    client.post("/v1/collections/counted/units", json={"texts": ["a b", "c d"]})
    stats = client.get("/v1/stats").json()
    assert stats["collections"]["counted"]["units"] == 2 and "path" not in stats
    assert client.post("/v1/check").json()["ok"] is True
    text = client.get("/metrics").text
    assert 'sigmavault_units{collection="counted"} 2' in text
    assert 'sigmavault_http_requests_total{method="POST",route="/v1/check",status="200"} 1' in text
    assert "sigmavault_http_request_duration_seconds_bucket" in text and 'sigmavault_kv_bytes{tier="ram"}' in text
    assert "sigmavault_witness_queue_depth" in text and "sigmavault_witness_dropped_total" in text
    dash = client.get("/v1/dashboard").json()
    assert {"name": "counted", "units": 2} in dash["collections"]
    assert error_of(client.get("/v1/collections/ghost"), 404) == "not_found"
    assert error_of(client.get("/v1/nothing-here"), 404) == "not_found"
    recent = client.get("/v1/dashboard").json()["errors"]
    assert any(e["code"] == "not_found" and e["path"] == "/v1/collections/ghost" for e in recent)
    assert error_of(client.put("/v1/collections"), 405) == "method_not_allowed"


def test_sse_tail_delivers_records_written_after_connect(client: httpx.Client, server: tuple[str, Path]) -> None:
    client.post("/v1/witness", json={"request_id": "before-connect"})
    got: list[dict[str, object]] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=server[0], timeout=30) as c, c.stream("GET", "/v1/witness/stream") as r:
            event = None
            for line in r.iter_lines():
                if line == ": ready":
                    ready.set()
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "entry":
                    got.append(json.loads(line[6:]))
                    if got[-1]["request_id"] == "after-2":
                        return

    thread = threading.Thread(target=listen)
    thread.start()
    assert ready.wait(30)
    client.post("/v1/witness", json=[{"request_id": "after-1"}, {"request_id": "after-2"}])
    thread.join(30)
    assert not thread.is_alive()
    assert [e["request_id"] for e in got] == ["after-1", "after-2"]


def test_refuses_public_host_without_keys(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="without keys"):
        create_app(tmp_path / "v", host="0.0.0.0")
    with pytest.raises(InvalidInput, match="needs --keys"):
        create_app(tmp_path / "v", tenants=True)


def test_every_error_code_has_its_status() -> None:
    """Each sigmavault error maps to the status its code promises; a full disk is 507 whatever raised it."""
    expected = {
        e.InvalidInput: 400, e.DimensionMismatch: 400, e.InvalidFilter: 400, e.EmptyText: 400,
        e.NotFound: 404, e.ReadOnly: 409, e.VaultLocked: 423, e.VaultClosed: 503,
        e.EmbedderUnavailable: 503, e.Corrupted: 500, e.BundleInvalid: 400, e.EncryptionError: 403,
        e.StorageError: 500, e.StorageFull: 507,
        e.ShardUnavailable: 503,
    }  # fmt: skip
    for cls in e.VaultError.__subclasses__() + e.InvalidInput.__subclasses__():
        assert cls in expected, f"{cls.__name__} has no documented status"
    for cls, status in expected.items():
        assert status_of(cls("x")) == status, cls
    try:
        raise e.VaultError("write failed") from OSError(errno.ENOSPC, "No space left on device")
    except e.VaultError as full:
        assert status_of(full) == 507
