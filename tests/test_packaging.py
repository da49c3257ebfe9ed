"""A wheel install (``pip install .``, not editable) has every module and serves the dashboard.

The wheel is built the way ``./dev`` installs the project: pip builds it in an isolated
environment with the ``[build-system]`` backend (the venv's own setuptools, from ensurepip,
cannot build wheels). It is installed with ``--no-deps --no-index`` into a fresh venv whose
dependencies come from this test's environment through a ``.pth`` file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.request import urlopen

from conftest import REPO, wait_for

WEB = REPO / "web"
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
# import/export ... from "x", import "x", import("x")
IMPORT = re.compile(
    r"""(?:import|export)\s*(?:[^'"();]*?\sfrom\s*)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]"""
)


def run(*args: str | Path, cwd: Path, timeout: float = 120) -> str:
    """Run a command outside the checkout (``python -c`` would import streamkit from cwd)."""
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of a copy of the checkout (so no build/ folder is left in the shared tree)."""
    source = tmp_path / "source"
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "streamkit", source / "streamkit", ignore=junk)
    shutil.copytree(WEB, source / "web", ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("streamkit-*.whl")
    return wheel


def install(wheel: Path, venv: Path) -> Path:
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv.parent)
    python = venv / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python)
    run(*pip, "install", "-q", "--no-deps", "--no-index", "--no-compile", wheel, cwd=venv.parent)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(run(python, "-c", where, cwd=venv.parent).strip())
    (site / "streamkit-test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def served(url: str) -> tuple[bytes, str]:
    with urlopen(url, timeout=10) as response:
        assert response.status == 200, url
        return response.read(), response.headers["Content-Type"]


def module_graph(base: str) -> dict[str, bytes]:
    """Every JS module the dashboard loads, from its import map and ``/js/app.js`` on."""
    page = served(base + "/")[0].decode()
    imports = json.loads(re.search(r'type="importmap">(.*?)</script>', page, re.S).group(1))
    bare = imports["imports"]
    todo, found = [base + "/js/app.js", *(base + path for path in bare.values())], {}
    while todo:
        url = todo.pop()
        if url in found:
            continue
        body, content_type = served(url)
        assert "javascript" in content_type, (url, content_type)
        found[url] = body
        for spec in (static or dynamic for static, dynamic in IMPORT.findall(body.decode())):
            todo.append(base + bare[spec] if spec in bare else urljoin(url, spec))
    return found


def test_a_wheel_install_serves_the_dashboard(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    packaged = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "streamkit").rglob("*.py")}
    assert modules - packaged == set()

    python = install(wheel, tmp_path / "venv")
    where = run(python, "-c", "import streamkit; print(streamkit.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), where

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "numbers.csv").write_text("a\n1\n")
    config = tmp_path / "streamkit.toml"
    config.write_text('[gateway]\nflight_port = 0\nhttp_port = 0\n[tenants.demo]\npath = "data"\n')
    log = tmp_path / "gateway.log"
    with open(log, "w") as stderr:
        gateway = subprocess.Popen(
            [python, "-m", "streamkit", "gateway", "up", "--config", config],
            cwd=tmp_path,
            env=CLEAN_ENV,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:

        def dashboard_url() -> str | None:
            assert gateway.poll() is None, log.read_text()
            found = re.search(r"dashboard +(http://127\.0\.0\.1:\d+)/", log.read_text())
            return found and found.group(1)

        base = wait_for(dashboard_url, 20, "the dashboard URL on stderr")
        page, content_type = served(base + "/")
        assert page == (WEB / "index.html").read_bytes()
        assert content_type.startswith("text/html")
        assert served(base + "/style.css")[0] == (WEB / "style.css").read_bytes()
        graph = module_graph(base)
        assert {"/js/app.js", "/node_modules/apache-arrow/Arrow.dom.mjs"} <= {
            urlsplit(url).path for url in graph
        }
        for url, body in graph.items():
            assert body == (WEB / urlsplit(url).path.lstrip("/")).read_bytes(), url
    finally:
        gateway.terminate()
        try:
            gateway.wait(10)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(10)
