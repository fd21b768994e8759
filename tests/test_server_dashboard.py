"""The dashboard in a real headless Chromium (Debian's ``chromium``): it renders the collections'
counts, the KV figures, the witness latency chart and search hits from a live server."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from serving import running

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/test.sh installs it)")


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once with a fresh profile; virtual time lets the page's fetches finish."""
    assert CHROMIUM is not None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=8000",
        "--window-size=1200,1000",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


def test_dashboard_renders_counts_chart_and_hits(tmp_path: Path) -> None:
    with running(tmp_path / "vault") as url, httpx.Client(base_url=url) as c:
        c.post("/v1/collections/docs/units", json={"texts": ["cats purr softly", "dogs bark loudly", "fish swim"]})
        c.post("/v1/collections/notes/units", json={"texts": ["a note"]})
        c.post("/v1/witness", json=[{"total_ms": float(5 + i), "model": "m"} for i in range(20)])
        c.get("/v1/collections/ghost")  # a recent error to list

        dom = chromium(tmp_path / "profile", "--dump-dom", f"{url}/#collection=docs&q=cats%20purr").stdout
        rows = dict(re.findall(r"<tr><td>(\w+)</td><td class=\"num\">(\d+)</td></tr>", dom))
        assert rows == {"docs": "3", "notes": "1"}
        assert "4 units" in dom and "20 witness entries" in dom
        assert 'id="latency-chart"' in dom and dom.count('class="series-p') == 3
        assert "hit rate" in dom and "0.0 %" in dom
        assert re.search(r'<li class="hit"><b>[\d.]+</b> cats purr softly</li>', dom)
        assert "/v1/collections/ghost" in dom and "not_found" in dom

        shot = tmp_path / "dashboard.png"
        chromium(tmp_path / "profile2", f"--screenshot={shot}", f"{url}/#collection=docs&q=cats%20purr")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
