"""Command line: help texts, configuration files, the demo command."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import Daemon

from dada.config import Config


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dada.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [(), ("serve",), ("demo",)])
def test_help_explains(args):
    out = run(*args, "--help")
    assert out.returncode == 0
    assert "usage: dada" in out.stdout
    for flag in {(): ["serve", "demo"], ("serve",): ["--port", "--config", "--root"],
                 ("demo",): ["--size", "--serve"]}[args]:
        assert flag in out.stdout


def test_console_script_installed():
    out = subprocess.run(["dada", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "serve" in out.stdout


def test_config_file_and_flag_precedence(tmp_path):
    cfg = tmp_path / "dada.toml"
    cfg.write_text('port = 9001\nmax_frames = 7\n[roots]\nraw = "/data"\n')
    c = Config.load(str(cfg), port=9002)
    assert c.port == 9002 and c.max_frames == 7 and c.roots == {"raw": "/data"}
    cfg.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="unknown settings prot"):
        Config.load(str(cfg), roots={"": "/"})
    out = run("serve")
    assert out.returncode == 2 and "no data root" in out.stderr


def test_named_roots_from_config(tmp_path, demo_root):
    cfg = tmp_path / "dada.toml"
    cfg.write_text(f'[roots]\nbeamline = "{demo_root}"\n')
    d = Daemon(["serve", "--config", str(cfg)])
    try:
        assert d.get("/browse").json()["folders"] == ["beamline"]
        assert d.get("/meta/beamline/eiger/u16/scan_0001.json").status == 200
        assert d.get("/meta/eiger/u16/scan_0001.json").status == 404
    finally:
        d.stop()


def test_demo_generates_then_reuses(tmp_path):
    out = run("demo", str(tmp_path / "d"), "--size", "tiny")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d/eiger/u16/scan_0001_truth.npz").exists()
    again = run("demo", str(tmp_path / "d"), "--size", "tiny")
    assert "using the existing demo data" in again.stderr


def test_main_job_demo_serve(tmp_path):
    """The README's first command: generate the demo if absent, then serve it."""
    d = Daemon(["demo", str(tmp_path / "m"), "--size", "tiny", "--serve"])
    try:
        assert d.get("/frame/eiger/u16/scan_0001/0.png?log=1").status == 200
        assert d.get("/meta/live/scan_0003.json").json()["complete"] is False
    finally:
        d.stop()
