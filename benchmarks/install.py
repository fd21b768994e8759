"""How long ``pip install`` of sigmavault's core takes in a fresh venv, and how much it installs, next to chromadb.

Each install runs in its own fresh ``python -m venv`` (in a temp directory), with the pip and the
package-index settings of this machine. For each target:

- ``cold``: ``pip install --no-cache-dir TARGET``: nothing cached, every wheel downloaded (and our
  project's wheel built, its build backend fetched into an isolated build env).
- ``warm``: the same install again into another fresh venv, with a private pip cache that a first
  (untimed) install filled: what a re-install costs.
- ``installed_mb``: what the install added to the venv (its size minus a fresh venv's).

For the project it also times ``pip wheel --no-deps --no-cache-dir PROJECT`` alone (``build_s``: the
build backend's share). Peer: ``chromadb`` in the same run. Prints one JSON object; ratios are
project / peer. The load average is printed beside the figures: on a busy machine they are noisy.

    .venv/bin/python benchmarks/install.py [--project .] [--peer chromadb] [--no-warm]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _size_mb(path: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total / 1e6


def _venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    return where / "bin" / "python"


def _pip(python: Path, *args: str, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"pip {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return took


def _measure(target: str, tmp: Path, baseline_mb: float, *, warm: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"target": target}
    cold_dir = tmp / "cold"
    python = _venv(cold_dir)
    out["cold_s"] = round(_pip(python, "install", "--no-cache-dir", target), 2)
    out["installed_mb"] = round(_size_mb(cold_dir) - baseline_mb, 1)
    shutil.rmtree(cold_dir)
    if warm:
        env = {**os.environ, "PIP_CACHE_DIR": str(tmp / "cache")}
        prime = _venv(tmp / "prime")
        _pip(prime, "install", target, env=env)
        shutil.rmtree(tmp / "prime")
        python = _venv(tmp / "warm")
        out["warm_s"] = round(_pip(python, "install", target, env=env), 2)
        shutil.rmtree(tmp / "warm")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=str(ROOT), help="the project to install (a path)")
    parser.add_argument("--peer", default="chromadb", help="the peer requirement, installed the same way")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm (cached) installs")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sv-install-") as tmp_name:
        tmp = Path(tmp_name)
        _venv(tmp / "empty")
        baseline = _size_mb(tmp / "empty")
        build_python = tmp / "empty" / "bin" / "python"
        build_s = _pip(build_python, "wheel", "--no-deps", "--no-cache-dir", "-w", str(tmp / "wheel"), args.project)
        wheels = list((tmp / "wheel").glob("*.whl"))
        wheel_kb = round(wheels[0].stat().st_size / 1e3, 1) if wheels else None
        shutil.rmtree(tmp / "empty")
        results = {}
        for label, target in (("sigmavault", args.project), ("peer", args.peer)):
            sub = tmp / label
            sub.mkdir()
            results[label] = _measure(target, sub, baseline, warm=not args.no_warm)
    ours, peer = results["sigmavault"], results["peer"]
    ours["build_s"] = round(build_s, 2)
    ours["wheel_kb"] = wheel_kb
    ratios = {"cold_s": round(ours["cold_s"] / peer["cold_s"], 3), "installed_mb": 0.0}
    ratios["installed_mb"] = round(ours["installed_mb"] / peer["installed_mb"], 3) if peer["installed_mb"] else 0.0
    if "warm_s" in ours:
        ratios["warm_s"] = round(ours["warm_s"] / peer["warm_s"], 3)
    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "fresh_venv_mb": round(baseline, 1),
                "sigmavault": ours,
                "peer": peer,
                "ratio_sigmavault_over_peer": ratios,
                "target": "core cold install <= 10 s",
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
