"""Real load balancers (haproxy, nginx, lighttpd) on loopback, configured from the shipped deploy/ files.

The config a test runs is the admin's file with only the machine-specific values swapped: the
marked node block (rebuilt from its first line, one line per backend port), the listen ports, and
the paths the process writes (moved under the test's tmp dir). Every swap must match, so a change
to a deploy file that this helper does not understand fails loudly instead of testing something
else.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from helpers import free_port, missing

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
FILES = {"haproxy": "haproxy.cfg", "nginx": "nginx.conf", "lighttpd": "lighttpd.conf"}
BEGIN, END = re.compile(r"^\s*# --- dada nodes\b.*$", re.M), re.compile(r"^\s*# --- end of dada nodes ---$", re.M)
EXAMPLE_PORT = "8101"  # the port of the example nodes in the deploy files


def require(binary: str) -> str:
    """The binary's path; skip the test without it, but fail under CI (tests/install_parts.sh installs it)."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if path:
        return path
    missing(f"{binary} is not installed (bash tests/install_parts.sh installs it)")


def _is_root_with(user: str) -> bool:
    """Keep a config's privilege drop only where it can work: running as root and the user exists."""
    if os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _sub(text: str, pattern: str, repl: str | Callable[[re.Match], str], kind: str) -> str:
    new, n = re.subn(pattern, repl, text, flags=re.M)
    if n == 0:
        raise AssertionError(f"deploy/{FILES[kind]} no longer has /{pattern}/: update tests/balancers.py")
    return new


def _node_line(template: str, k: int, backend: int | str) -> str:
    """Turn the block's first line (example node ``node1`` on port 8101) into the line for test node k:
    a port on 127.0.0.1, an address ``HOST:PORT`` (haproxy, nginx), or (lighttpd only) a Unix socket path."""
    if isinstance(backend, str) and not backend.startswith("/"):
        line = template.replace("node1:" + EXAMPLE_PORT, backend)
        if line == template:
            raise ValueError(f"HOST:PORT backends are for haproxy and nginx only: {template.strip()}")
    elif isinstance(backend, str):
        line = template.replace(f'"host" => "node1", "port" => {EXAMPLE_PORT}', f'"socket" => "{backend}"')
        if '"socket"' not in line:
            raise ValueError(f"Unix socket backends are for lighttpd only: {template.strip()}")
    else:
        line = template.replace("node1:" + EXAMPLE_PORT, f"127.0.0.1:{backend}")  # haproxy, nginx
        line = line.replace('"host" => "node1"', '"host" => "127.0.0.1"')  # lighttpd
        line = re.sub(r'"port" => ' + EXAMPLE_PORT + r"\b", f'"port" => {backend}', line)
    line = re.sub(r"\bnode1\b", f"node{k}", line)
    line = re.sub(r"\bid 1\b", f"id {k}", line)
    assert not re.search(rf"(?<!\d){EXAMPLE_PORT}(?!\d)|node1:", line), f"example node left in {line!r}"
    return line


def _nodes(text: str, backends: list[int | str], kind: str) -> str:
    """Replace the lines between the node markers by one line per backend, built from the first."""
    begin, end = BEGIN.search(text), END.search(text)
    if not begin or not end:
        raise AssertionError(f"deploy/{FILES[kind]} lost its '# --- dada nodes' markers")
    block = text[begin.end():end.start()].splitlines()
    lines = [ln for ln in block if ln.strip() and not ln.strip().startswith("#")]
    comments = [ln for ln in block if ln.strip().startswith("#")]
    new = [*comments, *(_node_line(lines[0], k, port) for k, port in enumerate(backends, 1))]
    return text[:begin.end()] + "\n" + "\n".join(new) + "\n" + text[end.start():]


def render(kind: str, backends: list[int | str], port: int, stats_port: int, tmp: Path) -> str:
    """The deploy file of ``kind`` with the test's nodes, ports and paths."""
    if kind not in FILES:
        raise ValueError(f"unknown balancer {kind!r}: one of {', '.join(FILES)}")
    text = _nodes((DEPLOY / FILES[kind]).read_text(), backends, kind)
    if kind == "haproxy":
        text = _sub(text, r"^(\s*bind) 127\.0\.0\.1:8080$", rf"\1 127.0.0.1:{port}", kind)
        text = _sub(text, r"^(\s*bind) 127\.0\.0\.1:8404$", rf"\1 127.0.0.1:{stats_port}", kind)
        text = _sub(text, r"/run/haproxy/dada\.sock", str(tmp / "haproxy.sock"), kind)
        # Test nodes are addresses, never names; still, a test asks no name server off this machine.
        text = _sub(text, r"^(\s*)parse-resolv-conf$", r"\1nameserver loopback 127.0.0.1:53", kind)
        if not (_is_root_with("haproxy") and os.path.isdir("/var/lib/haproxy")):
            text = _sub(text, r"^\s*(chroot|user|group) .*$\n", "", kind)
    elif kind == "nginx":
        text = _sub(text, r"^(\s*listen) 127\.0\.0\.1:8080;", rf"\1 127.0.0.1:{port};", kind)
        text = _sub(text, r"^pid /run/nginx\.pid;", f"pid {tmp}/nginx.pid;", kind)
        text = _sub(text, r"/var/log/nginx/", f"{tmp}/", kind)
        text = _sub(text, r"/var/lib/nginx/", f"{tmp}/", kind)
        # Workers must reach the tmp dir: as root they stay root, otherwise there is no user switch.
        text = _sub(text, r"^user www-data;$", "user root;" if os.geteuid() == 0 else "", kind)
    elif kind == "lighttpd":
        text = _sub(text, r"^server\.port = 8080$", f"server.port = {port}", kind)
        for key in ("server.pid-file", "server.errorlog", "accesslog.filename"):
            text = _sub(text, rf'^({re.escape(key)} = )"/[^"]*/([^"/]+)"', rf'\1"{tmp}/\2"', kind)
        text = _sub(text, r'^(server\.document-root = )"[^"]*"', rf'\1"{tmp}"', kind)
        text = _sub(text, r'^(server\.upload-dirs = )\( "[^"]*" \)', rf'\1( "{tmp}" )', kind)
        # lighttpd opens its logs after dropping privileges, and the tmp dir is private: no user switch.
        text = _sub(text, r"^server\.(username|groupname) = .*$\n", "", kind)
    return text


def _command(kind: str, binary: str, conf: Path, tmp: Path) -> list[str]:
    if kind == "haproxy":
        return [binary, "-db", "-f", str(conf)]  # -db: foreground, no daemon
    if kind == "nginx":
        return [binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "nginx-start.log"), "-g", "daemon off;"]
    return [binary, "-D", "-f", str(conf)]


@dataclass
class Balancer:
    """A balancer process in its own process group, listening on 127.0.0.1:``port``."""

    kind: str
    port: int
    stats_port: int
    backends: list[int | str]
    config: Path
    log: Path
    proc: subprocess.Popen = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM by PID and wait; SIGKILL the group we started (nginx's workers too) if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_balancer(kind: str, backends: list[int | str], port: int | None = None,
                   timeout: float = 15, edit: Callable[[str], str] | None = None) -> Balancer:
    """Start ``kind`` (haproxy, nginx, lighttpd) in the foreground in front of ``backends`` (ports on
    127.0.0.1, or HOST:PORT addresses; for lighttpd also Unix socket paths) with the config made from
    deploy/ (then changed by ``edit``, when given, to try a setting); return once it accepts connections on
    127.0.0.1:``port`` (a free one by default)."""
    binary = require(kind)
    # a short folder of its own: HAProxy refuses a stats socket path over 97 bytes, which a pytest tmp_path
    # with a long test name exceeds; removed when the test run ends (the log is read until then)
    tmp = Path(tempfile.mkdtemp(prefix=f"dada-{kind}-"))
    atexit.register(shutil.rmtree, tmp, True)
    port, stats_port = port or free_port(), free_port()
    conf = tmp / FILES[kind]
    text = render(kind, backends, port, stats_port, tmp)
    conf.write_text(edit(text) if edit else text)
    log = tmp / "output.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_command(kind, binary, conf, tmp), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    b = Balancer(kind, port, stats_port, list(backends), conf, log, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited with {proc.returncode}:\n{b.output()}\n--- {conf}:\n{conf.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return b
        except OSError:
            time.sleep(0.05)
    b.stop()
    raise RuntimeError(f"{kind} did not listen on 127.0.0.1:{port} within {timeout:.0f} s:\n{b.output()}")
