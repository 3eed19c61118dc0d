"""Hostile raw HTTP: every error is JSON with its RFC status, quotes nothing sent, and the daemon keeps serving.

Runs against the parser aiohttp has active: llhttp (C) by default, the pure-Python one under
AIOHTTP_NO_EXTENSIONS=1 (inherited by the daemon).
"""

from __future__ import annotations

import json
import socket

import pytest
from aiohttp import http_parser
from helpers import Response

from dada.server.http_errors import http_error

MARK = b"EVILMARKER123"  # in the path or a header of every request: it must not come back
HOST = b"Host: dada.test"
C_PARSER = http_parser.HttpRequestParser is not http_parser.HttpRequestParserPy


def request(method: bytes, target: bytes, *headers: bytes, version: bytes = b"1.1") -> bytes:
    return b"%s %s HTTP/%s\r\n%s\r\n" % (method, target, version, b"".join(h + b"\r\n" for h in headers))


def get(target: bytes, *headers: bytes, version: bytes = b"1.1") -> bytes:
    return request(b"GET", target, *headers, version=version)


CASES = {
    "request line too long": (get(b"/" + MARK + b"a" * 9000, HOST), 414),
    "header value too long": (get(b"/healthz", HOST, b"X-Long: " + MARK + b"b" * 9000), 431),
    "header name too long": (get(b"/healthz", HOST, b"X-" + MARK + b"c" * 9000 + b": 1"), 431),
    "200 headers": (get(b"/healthz", HOST, *(b"X-%d: %s" % (i, MARK) for i in range(200))), 431),
    "NUL in path": (get(b"/" + MARK + b"\x00", HOST), 400),
    "NUL in header": (get(b"/healthz", HOST, b"X-A: " + MARK + b"\x00"), 400),
    "unknown method": (request(b"FOO", b"/healthz?" + MARK, HOST), 501),
    "lower-case method": (request(b"get", b"/healthz?" + MARK, HOST), 501),
    "HTTP/9.9": (get(b"/healthz?" + MARK, HOST, version=b"9.9"), 505),
    "HTTP/2.0": (get(b"/healthz?" + MARK, HOST, version=b"2.0"), 505),
    "no Host on HTTP/1.1": (get(b"/healthz?" + MARK), 400),
    "two Hosts": (get(b"/healthz?" + MARK, HOST, b"Host: " + MARK), 400),
    "Content-Length -1": (get(b"/healthz?" + MARK, HOST, b"Content-Length: -1"), 400),
    "two Content-Lengths": (get(b"/healthz?" + MARK, HOST, b"Content-Length: 1", b"Content-Length: 2") + b"ab", 400),
    "Content-Length and Transfer-Encoding":
        (get(b"/healthz?" + MARK, HOST, b"Content-Length: 5", b"Transfer-Encoding: chunked") + b"0\r\n\r\n", 400),
    "chunked not last": (get(b"/healthz?" + MARK, HOST, b"Transfer-Encoding: gzip"), 400),
    "unknown transfer coding":
        (get(b"/healthz?" + MARK, HOST, b"Transfer-Encoding: gzip, chunked") + b"0\r\n\r\n", 501),
    "header without colon": (get(b"/healthz", HOST, MARK), 400),
    "space in header name": (get(b"/healthz", HOST, b"X " + MARK + b": 1"), 400),
    "obs-fold": (get(b"/healthz", HOST, b"X-A: a", b" " + MARK), 400),
    "bad chunk size on GET":
        (get(b"/healthz?" + MARK, HOST, b"Transfer-Encoding: chunked") + b"Z" + MARK + b"\r\n", 400),
    "absolute-form, foreign host": (get(b"http://" + MARK + b".example.com/healthz", HOST), 400),
    "TLS handshake": (b"\x16\x03\x01\x00\xa5\x01" + MARK + b"\r\n\r\n", 400),
    "CONNECT": (request(b"CONNECT", MARK + b".example.com:443", b"Host: " + MARK + b".example.com:443"), 405),
    "POST on a GET route": (request(b"POST", b"/healthz?" + MARK, HOST, b"Content-Length: 0"), 405),
    "PUT on /progress": (request(b"PUT", b"/progress/" + MARK, HOST, b"Content-Length: 0"), 405),
}


def read_response(sock: socket.socket) -> tuple[Response, bytes]:
    """One whole response (head, then Content-Length bytes of body) and the raw bytes it came in."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        raw, body = raw + chunk, body + chunk
    return Response(int(status_line.split()[1]), headers, body), raw


def exchange(port: int, data: bytes) -> tuple[Response, bytes]:
    """Send ``data`` on a new connection; the response and every byte the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        r, raw = read_response(sock)
        sock.shutdown(socket.SHUT_WR)  # the server closes once it sees the end: anything more it sent comes first
        while chunk := sock.recv(65536):
            raw += chunk
    assert len(raw) == raw.index(b"\r\n\r\n") + 4 + len(r.body), f"bytes after the response: {raw!r}"
    return r, raw


@pytest.mark.parametrize("name", CASES)
def test_error_is_json_and_quotes_nothing(daemon, name):
    data, status = CASES[name]
    if name == "lower-case method" and not C_PARSER:
        pytest.skip("the pure-Python parser upper-cases the method before the server sees it")
    r, raw = exchange(daemon.port, data)
    assert r.status == status, (name, r.status, r.body)
    assert r.content_type == "application/json", (name, r.headers)
    body = r.json()
    assert set(body) == {"error", "status", "message"} and body["status"] == status, body
    assert body["error"] == "http" and body["message"], body
    assert MARK not in raw and MARK.lower() not in raw.lower(), raw
    if status == 405:
        assert r.headers["allow"], r.headers
    assert daemon.alive()


def test_allow_names_the_route_methods(daemon):
    assert exchange(daemon.port, CASES["POST on a GET route"][0])[0].headers["allow"] == "GET,HEAD"
    assert exchange(daemon.port, CASES["PUT on /progress"][0])[0].headers["allow"] == "DELETE,GET,HEAD"
    r, _ = exchange(daemon.port, request(b"DELETE", b"/progress/nothing", HOST))  # a real route
    assert r.status == 404 and r.json()["error"] == "not_found"


def test_keep_alive_survives_good_and_refused_requests(daemon):
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=30) as sock:
        for data, status in [(get(b"/healthz", HOST), 200), (get(b"/healthz", HOST), 200),
                             (CASES["POST on a GET route"][0], 405), (CASES["unknown transfer coding"][0], 501),
                             (get(b"http://dada.test/healthz", HOST), 200),  # absolute-form naming the Host
                             (get(b"/healthz", HOST, version=b"1.0"), 200)]:
            sock.sendall(data)
            r, _ = read_response(sock)
            assert r.status == status, (data[:40], r.status, r.body)
            assert r.content_type == "application/json"
        assert json.loads(r.body)["status"] == "ok"
    assert daemon.alive()


def test_crashes_outside_the_middlewares_are_json_too():
    assert http_error(500, RuntimeError("EVILMARKER123")).body() == {
        "error": "internal", "status": 500, "message": "internal error; the server log has the details"}
    assert http_error(504, None).body() == {"error": "http", "status": 504, "message": "Gateway Timeout"}
