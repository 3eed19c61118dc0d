"""dadafs answers its mounts only: the shared secret (--secret-file, $DADAFS_SECRET) or --allow networks."""

from __future__ import annotations

import errno
import os
import secrets
import subprocess
import sys
from pathlib import Path
from unittest import mock

import helpers
import pytest
from helpers import FsServer, Mount, Proc

FRAGMENT = 1 << 20
HEADER = "X-Dadafs-Secret"
GUARDED = ("/stat/a.bin", "/list", "/list/sub", "/data/a.bin", "/metrics")


class Server(FsServer):
    """``dadafs serve`` with extra flags (``flags`` may change between restarts)."""

    def __init__(self, src: Path, cache: Path, *flags: str) -> None:
        self.flags = list(flags)
        super().__init__(str(src), str(cache), 8 * FRAGMENT, FRAGMENT)

    def start(self) -> None:
        # FsServer builds its command through helpers.Proc: hand it ours, with the flags added
        with mock.patch.object(helpers, "Proc", lambda cmd: Proc([*cmd, *self.flags])):
            super().start()

    def stderr(self) -> str:
        """Stop it; what it wrote."""
        self.stop()
        assert self.proc is not None and self.proc.proc.stderr is not None
        return self.proc.proc.stderr.read().decode()


@pytest.fixture(autouse=True)
def no_secret_in_environment(monkeypatch):
    monkeypatch.delenv("DADAFS_SECRET", raising=False)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("access") / "src"
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(os.urandom(2 * FRAGMENT + 4321))
    (root / "sub" / "b.txt").write_bytes(b"beamline\n" * 1000)
    (root / "sub" / "c.bin").write_bytes(os.urandom(FRAGMENT))
    (root / "empty").write_bytes(b"")
    return root


def secret_file(folder: Path, secret: str, name: str = "secret") -> str:
    path = folder / name
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="module")
def secret() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def guarded(src, secret, tmp_path_factory):
    s = Server(src, tmp_path_factory.mktemp("cache"), "--secret-file",
               secret_file(tmp_path_factory.mktemp("etc"), secret))
    yield s
    s.stop()


def files(root: Path | str) -> dict[str, bytes]:
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def refused(server: FsServer, path: str, headers: dict[str, str] | None = None) -> bool:
    r = server.get(path, headers)
    if r.status != 403:
        return False
    assert r.content_type == "application/json" and r.json()["status"] == 403 and r.json()["error"]
    return True


def mount_cmd(url: str, mountpoint: Path, *flags: str) -> subprocess.CompletedProcess:
    mountpoint.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "dadafs.cli", "mount", url, str(mountpoint), "--retry", "1", *flags],
                          capture_output=True, text=True, timeout=60)


def test_raw_requests_need_the_secret(guarded, secret):
    assert guarded.get("/healthz").status == 200  # open: balancers and systemd check it
    for path in GUARDED:
        assert refused(guarded, path), path
        assert refused(guarded, path, {HEADER: secret[:-1] + "x"}), path  # a wrong secret
        assert refused(guarded, path, {"X-Dada-Node-Secret": secret}), path  # dada's header is not dadafs's
        r = guarded.get(path, {HEADER: secret})
        assert r.status == 200, (path, r.body)
        assert secret.encode() not in r.body
    assert guarded.get("/data/a.bin", {HEADER: secret, "Range": "bytes=0-9"}).status == 206


def test_mount_with_the_secret_reads_the_source(guarded, secret, src, tmp_path, monkeypatch):
    m = Mount(guarded.url, str(tmp_path / "file"), "--secret-file", secret_file(tmp_path, secret))
    try:
        assert files(m.mountpoint) == files(src)
        assert sorted(os.listdir(f"{m.mountpoint}/sub")) == ["b.txt", "c.bin"]
    finally:
        assert m.stop() == 0
    monkeypatch.setenv("DADAFS_SECRET", secret)  # the environment instead of a file
    m = Mount(guarded.url, str(tmp_path / "env"))
    try:
        assert files(m.mountpoint) == files(src)
    finally:
        assert m.stop() == 0


def test_mount_without_the_secret_fails_at_once(guarded, secret, tmp_path):
    out = mount_cmd(guarded.url, tmp_path / "none")  # in the background, as users mount
    assert out.returncode == 1 and "refuses this mount (HTTP 403)" in out.stderr, out.stderr
    assert "--secret-file" in out.stderr and not os.path.ismount(tmp_path / "none")
    wrong = secret_file(tmp_path, secrets.token_hex(32), "wrong.secret")
    out = mount_cmd(guarded.url, tmp_path / "wrong", "--foreground", "--secret-file", wrong)
    assert out.returncode == 1 and "not its secret" in out.stderr, out.stderr
    assert not os.path.ismount(tmp_path / "wrong")
    out = mount_cmd(guarded.url, tmp_path / "missing", "--foreground", "--secret-file", str(tmp_path / "nope"))
    assert out.returncode == 2 and "nope" in out.stderr


def test_allowed_networks(src, tmp_path):
    loopback = Server(src, tmp_path / "c1", "--allow", "127.0.0.1/32")
    try:
        assert all(loopback.get(p).status == 200 for p in GUARDED)
        m = Mount(loopback.url, str(tmp_path / "mnt"))
        try:
            assert files(m.mountpoint) == files(src)
        finally:
            m.stop()
    finally:
        loopback.stop()
    elsewhere = Server(src, tmp_path / "c2", "--allow", "10.0.0.0/8")
    try:
        assert elsewhere.get("/healthz").status == 200
        assert all(refused(elsewhere, p) for p in GUARDED)
        out = mount_cmd(elsewhere.url, tmp_path / "out", "--foreground")
        assert out.returncode == 1 and "refuses this mount" in out.stderr
    finally:
        elsewhere.stop()
    out = subprocess.run([sys.executable, "-m", "dadafs.cli", "serve", str(src), "--allow", "10.0.0.0/33"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "10.0.0.0/33" in out.stderr


def test_secret_or_network_and_a_refusal_later(src, tmp_path, monkeypatch):
    """Either door lets in; a server that stops accepting a running mount: EIO (cached data still read), logged."""
    old, new = secrets.token_hex(16), secrets.token_hex(16)
    monkeypatch.setenv("DADAFS_SECRET", old)
    server = Server(src, tmp_path / "cache", "--allow", "10.0.0.0/8")
    m = Mount(server.url, str(tmp_path / "mnt"))
    try:
        a = (src / "a.bin").read_bytes()
        assert Path(m.mountpoint, "a.bin").read_bytes() == a
        server.stop()
        monkeypatch.setenv("DADAFS_SECRET", new)  # the server's secret changed; the mount's did not
        server.start()
        assert refused(server, "/stat/a.bin", {HEADER: old})
        assert Path(m.mountpoint, "a.bin").read_bytes() == a  # cached
        with pytest.raises(OSError) as e:
            Path(m.mountpoint, "sub", "c.bin").read_bytes()
        assert e.value.errno == errno.EIO
        assert m.proc.alive()
    finally:
        m.stop()
        logs = server.stderr() + m.proc.proc.stderr.read().decode()
    assert "refuses this mount now (HTTP 403)" in logs and HEADER in logs  # said, but never the secret
    assert old not in logs and new not in logs
