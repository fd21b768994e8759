"""Keys, scopes and tenants on a real server: keys are stored hashed, each scope is refused and
accepted where it should be, and a tenant's key reaches nothing of another tenant's vault."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import httpx
import pytest
from serving import running

from sigmavault.cli import main
from sigmavault.errors import InvalidInput
from sigmavault.server import KeyRing, add_key

SECRET = "ACME-SECRET-7f3a"


def cli_key(file: Path, tenant: str, scope: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["keys", "add", str(file), "--tenant", tenant, "--scope", scope]) == 0
    assert "not shown again" in err.getvalue()
    return out.getvalue().strip()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_file_holds_hashes_only(tmp_path: Path) -> None:
    file = tmp_path / "keys.json"
    key = cli_key(file, "acme", "write")
    text = file.read_text()
    assert key.startswith("svk_") and key not in text
    assert json.loads(text)["keys"][0]["tenant"] == "acme"
    assert (file.stat().st_mode & 0o777) == 0o600
    principal = KeyRing(file).verify(key)
    assert principal is not None and (principal.tenant, principal.scope) == ("acme", "write")
    assert KeyRing(file).verify(key + "x") is None
    with pytest.raises(InvalidInput, match="scope"):
        add_key(file, tenant="acme", scope="root")
    with pytest.raises(InvalidInput, match="tenant"):
        add_key(file, tenant="../etc", scope="read")
    with pytest.raises(InvalidInput, match="no keys file"):
        KeyRing(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InvalidInput, match="malformed"):
        KeyRing(tmp_path / "bad.json")


def test_scopes_refused_and_accepted(tmp_path: Path) -> None:
    file = tmp_path / "keys.json"
    read, write, admin = (cli_key(file, "default", s) for s in ("read", "write", "admin"))
    with running(tmp_path / "vault", keys=file, host="0.0.0.0") as url, httpx.Client(base_url=url) as c:
        assert c.get("/healthz").status_code == 200  # liveness needs no key
        for headers in ({}, auth("svk_wrong"), {"Authorization": f"Basic {read}"}):
            r = c.get("/v1/collections", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/v1/collections", headers=auth(read)).json() == []
        refused = c.post("/v1/collections/d/units", json={"texts": ["x"]}, headers=auth(read))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert c.post("/v1/collections/d/units", json={"texts": ["x"]}, headers=auth(write)).status_code == 201
        assert c.post("/v1/collections/d/search", json={"query": "x"}, headers=auth(read)).status_code == 200
        assert c.post("/v1/check", headers=auth(write)).status_code == 403
        assert c.get("/metrics", headers=auth(read)).status_code == 403
        assert c.post("/v1/check", headers=auth(admin)).json()["ok"] is True
        assert "sigmavault_units" in c.get("/metrics", headers=auth(admin)).text


def _seed(c: httpx.Client, key: str) -> dict[str, str]:
    """Data of every kind in one tenant's vault, each carrying SECRET; returns its ids."""
    h = auth(key)
    ids = c.post(
        "/v1/collections/docs/units",
        json={
            "texts": [f"{SECRET} alpha", f"{SECRET} beta"],
            "metadata": {"tag": SECRET},
            "ids": ["u-a", "u-b"],
            "conversation_id": "conv-1",
            "parent_id": [None, "u-a"],
        },
        headers=h,
    ).json()["ids"]
    assert ids == ["u-a", "u-b"]
    assert c.post("/v1/links", json={"source": "u-a", "target": "u-b"}, headers=h).status_code == 201
    assert (
        c.post(
            "/v1/sessions", json={"session_id": "s-1", "metadata": {"tag": SECRET}, "context": [1.0, 0.0]}, headers=h
        ).status_code
        == 201
    )
    pid = c.post(
        "/v1/policies", json={"kind": "router", "params": {"tag": SECRET}, "embedding": [1.0, 0.0]}, headers=h
    ).json()["id"]
    assert (
        c.post("/v1/witness", json={"request_id": "w-1", "model": SECRET, "total_ms": 5.0}, headers=h).status_code
        == 201
    )
    return {"name": "docs", "unit_id": "u-a", "conversation_id": "conv-1", "session_id": "s-1", "policy_id": pid}


def test_no_route_leaks_across_tenants(tmp_path: Path) -> None:
    file = tmp_path / "keys.json"
    acme, globex = cli_key(file, "acme", "admin"), cli_key(file, "globex", "admin")
    root = tmp_path / "root"
    with running(root, keys=file, tenants=True) as url, httpx.Client(base_url=url, timeout=30) as c:
        params = _seed(c, acme)
        c.post("/v1/collections/docs/units", json={"texts": ["globex own"]}, headers=auth(globex))
        assert SECRET in c.get("/v1/collections/docs/units/u-a", headers=auth(acme)).text  # the seed is readable
        spec = c.get("/openapi.json").json()
        checked = 0
        for path, ops in spec["paths"].items():
            if "get" not in ops or path in ("/v1/witness/stream", "/healthz"):
                continue
            url_path = path.format(**{k: params[k] for k in params if "{" + k + "}" in path})
            r = c.get(url_path, params={"source": "u-a", "target": "u-b"}, headers=auth(globex))
            assert r.status_code in (200, 404), (path, r.text)
            assert SECRET not in r.text, (path, r.text)
            # NOTE: a 404 names the id it was asked for, and the dashboard lists globex's own recent 404s
            if r.status_code == 200 and path != "/v1/dashboard":
                assert "u-a" not in r.text and "s-1" not in r.text, (path, r.text)
            checked += 1
        assert checked >= 15
        reads = [
            ("/v1/collections/docs/search", {"query": SECRET, "mode": "text"}),
            ("/v1/collections/docs/search", {"query": "alpha"}),
            ("/v1/collections/docs/similar", {"id": "u-a"}),
            ("/v1/sessions/find", {"context": [1.0, 0.0]}),
            ("/v1/policies/search", {"kind": "router", "vector": [1.0, 0.0]}),
        ]
        for path, body in reads:
            r = c.post(path, json=body, headers=auth(globex))
            assert r.status_code in (200, 404) and SECRET not in r.text, (path, r.text)
            assert r.status_code == 404 or "u-a" not in r.text, (path, r.text)
        for path, body in [("/v1/links", {"source": "u-a", "target": "u-b"}), ("/v1/sessions/s-1/touch", {})]:
            assert c.post(path, json=body, headers=auth(globex)).status_code == 404
        assert c.delete("/v1/collections/docs/units/u-a", headers=auth(globex)).status_code == 404
        assert SECRET not in c.get("/metrics", headers=auth(globex)).text
        assert all(e["tenant"] == "globex" for e in c.get("/v1/dashboard", headers=auth(globex)).json()["errors"])
        assert c.get("/v1/collections/docs/units/u-a", headers=auth(acme)).status_code == 200  # untouched
    assert sorted(p.name for p in root.iterdir()) == ["acme", "globex"]
