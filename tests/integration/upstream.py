#!/usr/bin/env python3
"""A test upstream (origin) server for the reverse-proxy tests.

Python standard library only: one thread accepts, one thread per TCP
connection serves it (blocking sockets, so /slow and /drip never hold up other
connections). Listens on 127.0.0.1 only. Used in-process by test_proxy.py
(`Upstream("a").start()`) and standalone:

    python3 tests/integration/upstream.py --port 9001 --name a

Every response carries
    X-Upstream: <name>
    X-Conn-Count: <TCP connections accepted so far by this upstream>
    X-Conn-Id: <number of this TCP connection, 1, 2, ...>
    X-Request-Count: <requests so far on this connection, this one included>
so a client behind a proxy can see which upstream answered and whether the
proxy reused its upstream connections. Keep-alive is on (HTTP/1.1 unless
`Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).

Paths (query parameters in brackets; HEAD works everywhere and sends no body):
    /hello                  "hello from <name>\\n"
    /echo                   JSON: method, target, version, headers (list of
                            [name, value] in order), body length and sha256,
                            a chunked body's trailer fields.
                            [hop=1]: the response also carries hop-by-hop
                            headers (Keep-Alive, Proxy-Connection, Trailer,
                            Upgrade, and X-Resp-Hop named in Connection) that a
                            proxy must drop, and X-Resp-End, which it must keep.
    /bytes/N                N bytes of pattern_bytes() with Content-Length
    /chunked/N              the same N bytes chunked [size=K: chunk size, else
                            a mix of sizes; trailer=1: trailer fields]
    /close-delimited/N      N bytes, no Content-Length, closed after [v=1.0:
                            an HTTP/1.0 status line]
    /slow/MS                waits MS ms, then answers like /hello
    /drip                   [n=10 pieces of size=10 bytes every ms=100 ms;
                            chunked=1] a slow body
    /die-mid                [n=100000] announces n bytes, sends half, closes
                            [rst=1: with a reset; chunked=1: a chunked body
                            without its last chunk]
    /garbage                a malformed response (GARBAGE), then close [kind=
                            status (default), header, length, badlength,
                            chunk, http09; keep=1: keep the connection open]
    /truncated-head         part of a response head, then close
    /upload                 reads the body (Content-Length or chunked), answers
                            JSON {"length": .., "sha256": .., "chunked": ..}
    /status/N               status N (no body for 1xx/204/304)
    /health                 200 "ok", or 503 while `healthy` is False
    /ws                     WebSocket (RFC 6455) upgrade, then echoes every
                            data frame, answers ping with pong, close with close
Any other path: 404. `Expect: 100-continue` gets an interim 100 before the body
is read.

Controls for tests (attributes of Upstream): `fail_mode` ("reset": read the
request head, then reset the connection; "close": the same with a FIN; "hang":
read it and never answer; "stall": read the head, then nothing more, and never
answer; None), `healthy`, `pause()` / `resume()` (stop and
start listening: connections are refused meanwhile), `drop_connections()`.
Statistics: `accepted`, `open`, `max_open`, `requests`, `health_requests`,
`log` (one RequestRecord per request head read, health checks included).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
IDLE_TIMEOUT = 60.0  # an idle upstream connection is closed after this
MAX_HEAD = 64 * 1024
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# ---------------------------------------------------------------------------
# Deterministic body content: byte i is _BLOCK[i % _PERIOD]. The period is a
# prime, so it lines up with no buffer size; a body shifted, cut or doubled
# anywhere has a different sha256.

_PERIOD = 65521
_SLICE = 256 * 1024


def _make_block():
    out = bytearray()
    h = b"kuai upstream pattern"
    while len(out) < _PERIOD:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:_PERIOD])


_BLOCK = _make_block()
_REPEATED = _BLOCK * ((_PERIOD + _SLICE) // _PERIOD + 1)  # any slice of <= _SLICE from any phase


def pattern_pieces(n, piece=_SLICE, offset=0):
    """Yields the bytes [offset, offset + n) of the pattern in pieces."""
    pos, end = offset, offset + n
    while pos < end:
        k = min(piece, _SLICE, end - pos)
        start = pos % _PERIOD
        yield _REPEATED[start:start + k]
        pos += k


def pattern_bytes(n, offset=0):
    """The first n bytes of the pattern (from offset) as one bytes object."""
    return b"".join(pattern_pieces(n, offset=offset))


_sha_cache: dict = {}


def pattern_sha256(n):
    """sha256 hex digest of pattern_bytes(n), cached."""
    if n not in _sha_cache:
        h = hashlib.sha256()
        for p in pattern_pieces(n):
            h.update(p)
        _sha_cache[n] = h.hexdigest()
    return _sha_cache[n]


# What /garbage?kind=K sends: each is a malformed response a proxy must answer
# with 502.
GARBAGE = {
    "status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 4\r\n\r\nnope",      # bad status code
    "header": b"HTTP/1.1 200 OK\r\nno colon in this line\r\nContent-Length: 4\r\n\r\nnope",
    "length": b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nnope",
    "badlength": b"HTTP/1.1 200 OK\r\nContent-Length: 4x\r\n\r\nnope",
    "chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n0\r\n\r\n",
    "http09": b"SPLORK\x00\x01 this is not HTTP at all\r\n\r\nnope",    # no status line
}

# Chunk sizes /chunked/N cycles through when no size is given.
CHUNK_MIX = (1, 7, 100, 4096, 65536, 13, 16384, 2)

# ---------------------------------------------------------------------------


class _Closed(Exception):
    """The peer closed (or reset) the connection, or it timed out."""


class _BadRequest(Exception):
    pass


@dataclass
class RequestRecord:
    conn_id: int
    method: str
    target: str
    version: str
    headers: list  # [(name, value)]
    time: float = field(default_factory=time.monotonic)

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    @property
    def path(self):
        return urlsplit(self.target).path


class _Reader:
    """Buffered reads from a blocking socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _more(self):
        try:
            data = self.sock.recv(262144)
        except (socket.timeout, ConnectionError, OSError):
            raise _Closed() from None
        if not data:
            raise _Closed()
        self.buf += data

    def read_head(self):
        """The request or response head up to and without the blank line;
        None on a clean close before its first byte."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[:i])
                del self.buf[:i + 4]
                return head
            if len(self.buf) > MAX_HEAD:
                raise _BadRequest("head too large")
            if not self.buf:
                try:
                    self._more()
                except _Closed:
                    return None
            else:
                self._more()

    def readline(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > MAX_HEAD:
                raise _BadRequest("line too long")
            self._more()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_upto(self, n):
        """At most n bytes (at least one); what is buffered first."""
        if not self.buf:
            self._more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def body_pieces(self, headers, trailers=None):
        """Yields the request body's pieces (Content-Length or chunked); a
        chunked body's trailer fields go into `trailers` as [name, value]."""
        te = ",".join(v for k, v in headers if k.lower() == "transfer-encoding").lower()
        if "chunked" in te:
            while True:
                line = self.readline()
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _BadRequest(f"bad chunk size {line[:40]!r}") from None
                if size == 0:
                    while True:  # trailer fields, then the blank line
                        line = self.readline()
                        if not line:
                            return
                        name, _, value = line.decode("latin-1").partition(":")
                        if trailers is not None:
                            trailers.append([name, value.strip(" \t")])
                left = size
                while left:
                    piece = self.read_upto(left)
                    left -= len(piece)
                    yield piece
                if self.read_exact(2) != b"\r\n":
                    raise _BadRequest("chunk without CRLF")
        cl = [v for k, v in headers if k.lower() == "content-length"]
        if cl:
            left = int(cl[0])
            while left:
                piece = self.read_upto(min(left, 262144))
                left -= len(piece)
                yield piece


def _reset(sock):
    """Closes sock with a TCP reset."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _parse_request_head(head):
    lines = head.split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(f"bad request line {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        if b":" not in line:
            raise _BadRequest(f"bad header line {line[:80]!r}")
        k, v = line.split(b":", 1)
        headers.append((k.decode("latin-1").strip(), v.decode("latin-1").strip()))
    return parts[0], parts[1], parts[2], headers


def _tokens(headers, name):
    name = name.lower()
    out = set()
    for k, v in headers:
        if k.lower() == name:
            out.update(t.strip().lower() for t in v.split(",") if t.strip())
    return out


REASONS = {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
           204: "No Content", 206: "Partial Content", 301: "Moved Permanently",
           302: "Found", 304: "Not Modified", 400: "Bad Request", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class Upstream:
    def __init__(self, name="up", port=0, host=HOST):
        self.name = name
        self.host = host
        self.port = port
        self.fail_mode = None  # None, "reset", "close", "hang", "stall"
        self.healthy = True
        self._lock = threading.Lock()
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self.requests = 0  # request heads read, health checks excluded
        self.health_requests = 0
        self.log: list[RequestRecord] = []
        self._listener = None
        self._accept_thread = None
        self._conns = {}  # conn id -> socket
        self._threads = []
        self._stopping = False

    # ------------------------------------------------------------ lifecycle
    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(1024)
        self.port = s.getsockname()[1]
        self._listener = s
        self._stopping = False
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(s,),
                                               name=f"upstream-{self.name}-accept", daemon=True)
        self._accept_thread.start()
        return self

    def pause(self):
        """Stops listening: new connections are refused, open ones go on."""
        s, self._listener = self._listener, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes accept()
            except OSError:
                pass
            s.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None

    def resume(self):
        """Listens again on the same port."""
        if self._listener is None:
            self.start()
        return self

    def drop_connections(self, rst=True):
        """Closes every open connection (with a reset by default)."""
        with self._lock:
            socks = list(self._conns.values())
        for s in socks:
            if rst:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self._stopping = True
        self.pause()
        self.drop_connections()
        deadline = time.monotonic() + 2  # threads asleep in /slow are daemons
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self):
        return self.start() if self._listener is None else self

    def __exit__(self, *exc):
        self.stop()

    def reset_stats(self):
        with self._lock:
            self.requests = 0
            self.health_requests = 0
            self.log = []

    def records(self, path_prefix=None):
        """Request records (health checks left out unless asked for)."""
        with self._lock:
            recs = list(self.log)
        if path_prefix is None:
            return [r for r in recs if r.path != "/health"]
        return [r for r in recs if r.path.startswith(path_prefix)]

    # ------------------------------------------------------------ serving
    def _accept_loop(self, listener):
        while not self._stopping:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                cid = self.accepted
                self.open += 1
                self.max_open = max(self.max_open, self.open)
                self._conns[cid] = sock
                self._threads = [t for t in self._threads if t.is_alive()]
            t = threading.Thread(target=self._serve, args=(sock, cid),
                                 name=f"upstream-{self.name}-{cid}", daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, sock, cid):
        sock.settimeout(IDLE_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = _Reader(sock)
        nreq = 0
        try:
            while True:
                try:
                    head = reader.read_head()
                except _BadRequest:
                    self._send_simple(sock, 400, b"bad request\n", close=True, cid=cid, nreq=nreq)
                    return
                if head is None:
                    return
                try:
                    method, target, version, headers = _parse_request_head(head)
                except _BadRequest:
                    self._send_simple(sock, 400, b"bad request\n", close=True, cid=cid, nreq=nreq)
                    return
                nreq += 1
                rec = RequestRecord(cid, method, target, version, headers)
                path = rec.path
                with self._lock:
                    self.log.append(rec)
                    if path == "/health":
                        self.health_requests += 1
                    else:
                        self.requests += 1
                mode = self.fail_mode
                if mode and path != "/health":
                    if mode == "reset":
                        _reset(sock)
                        return
                    if mode == "close":
                        return
                    if mode == "hang":
                        while not self._stopping:  # until the peer goes away
                            try:
                                reader._more()
                            except _Closed:
                                return
                        return
                    if mode == "stall":
                        while not self._stopping:  # reads nothing more: the body backs up
                            time.sleep(0.05)
                        return
                ctx = _Exchange(self, sock, reader, cid, nreq, method, target, version, headers)
                if not ctx.handle():
                    return
        except (_Closed, _BadRequest, ConnectionError, OSError):
            return
        finally:
            with self._lock:
                self.open -= 1
                self._conns.pop(cid, None)
            try:
                sock.close()
            except OSError:
                pass

    def _send_simple(self, sock, status, body, close, cid, nreq):
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                f"X-Upstream: {self.name}\r\nX-Conn-Count: {self.accepted}\r\n"
                f"X-Conn-Id: {cid}\r\nX-Request-Count: {nreq}\r\n"
                f"Content-Length: {len(body)}\r\n"
                + ("Connection: close\r\n" if close else "") + "\r\n")
        try:
            sock.sendall(head.encode() + body)
        except OSError:
            pass


class _Exchange:
    """One request on a connection: reads its body as needed and answers.
    handle() returns True to keep the connection for another request."""

    def __init__(self, up, sock, reader, cid, nreq, method, target, version, headers):
        self.up, self.sock, self.reader = up, sock, reader
        self.cid, self.nreq = cid, nreq
        self.method, self.target, self.version, self.headers = method, target, version, headers
        self.trailers = []  # a chunked body's trailer fields, once read
        u = urlsplit(target)
        self.path = u.path
        self.query = {k: v[-1] for k, v in parse_qs(u.query).items()}
        conn = _tokens(headers, "connection")
        if version == "HTTP/1.0":
            self.keep = "keep-alive" in conn
        else:
            self.keep = "close" not in conn
        self.head_only = method == "HEAD"
        self.body_read = False
        self.sent_continue = False

    # -- helpers ---------------------------------------------------------
    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def has_body(self):
        return (self.header("Content-Length") not in (None, "0")
                or "chunked" in (self.header("Transfer-Encoding") or "").lower())

    def maybe_continue(self):
        if (not self.sent_continue and self.version == "HTTP/1.1"
                and (self.header("Expect") or "").lower() == "100-continue"):
            self.sent_continue = True
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def body_pieces(self):
        if self.body_read:
            return
        self.body_read = True
        if self.has_body():
            self.maybe_continue()
        yield from self.reader.body_pieces(self.headers, self.trailers)

    def drain_body(self):
        h = hashlib.sha256()
        n = 0
        for p in self.body_pieces():
            h.update(p)
            n += len(p)
        return n, h.hexdigest()

    def std_headers(self):
        return [("X-Upstream", self.up.name), ("X-Conn-Count", str(self.up.accepted)),
                ("X-Conn-Id", str(self.cid)), ("X-Request-Count", str(self.nreq))]

    def send_head(self, status, headers, length=None, chunked=False, close=False):
        """Sends the status line and headers; framing from length / chunked,
        neither: delimited by the close (then close is forced)."""
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        for k, v in self.std_headers() + list(headers):
            lines.append(f"{k}: {v}")
        if length is not None:
            lines.append(f"Content-Length: {length}")
        elif chunked:
            lines.append("Transfer-Encoding: chunked")
        elif not (100 <= status < 200 or status in (204, 304)):
            close = True
        if close or not self.keep:
            lines.append("Connection: close")
            self.keep = False
        elif self.version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def respond(self, status, body=b"", headers=(), ctype="text/plain"):
        if not self.body_read:
            self.drain_body()
        hs = list(headers)
        if ctype and body is not None and not (100 <= status < 200 or status in (204, 304)):
            hs.append(("Content-Type", ctype))
        if 100 <= status < 200 or status in (204, 304):
            self.send_head(status, hs)
            return self.keep
        self.send_head(status, hs, length=len(body))
        if not self.head_only and body:
            self.sock.sendall(body)
        return self.keep

    def int_path_arg(self, prefix):
        try:
            return int(self.path[len(prefix):])
        except ValueError:
            return None

    # -- dispatch --------------------------------------------------------
    def handle(self):
        p = self.path
        if p == "/hello":
            return self.respond(200, f"hello from {self.up.name}\n".encode())
        if p == "/echo":
            return self.echo()
        if p.startswith("/bytes/"):
            return self.bytes_(self.int_path_arg("/bytes/"))
        if p.startswith("/chunked/"):
            return self.chunked(self.int_path_arg("/chunked/"))
        if p.startswith("/close-delimited/"):
            return self.close_delimited(self.int_path_arg("/close-delimited/"))
        if p.startswith("/slow/"):
            ms = self.int_path_arg("/slow/")
            if ms is None:
                return self.respond(400, b"bad delay\n")
            if not self.body_read:
                self.drain_body()
            time.sleep(ms / 1000)
            return self.respond(200, f"hello from {self.up.name} after {ms} ms\n".encode())
        if p == "/drip":
            return self.drip()
        if p == "/die-mid":
            return self.die_mid()
        if p == "/garbage":
            self.drain_body()
            kind = self.query.get("kind", "status")
            self.sock.sendall(GARBAGE[kind])
            return self.query.get("keep") == "1"  # keep=1: the connection stays open
        if p == "/truncated-head":
            self.drain_body()
            self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Len")
            return False
        if p == "/upload":
            te = (self.header("Transfer-Encoding") or "").lower()
            n, sha = self.drain_body()
            doc = {"length": n, "sha256": sha, "chunked": "chunked" in te}
            return self.respond(200, json.dumps(doc).encode(), ctype="application/json")
        if p.startswith("/status/"):
            code = self.int_path_arg("/status/")
            if code is None or not 200 <= code <= 599:
                return self.respond(400, b"bad status\n")
            extra = [("ETag", '"v1"')] if code == 304 else []
            return self.respond(code, f"status {code}\n".encode(), headers=extra)
        if p == "/health":
            return self.respond(200 if self.up.healthy else 503,
                                b"ok\n" if self.up.healthy else b"unhealthy\n")
        if p == "/ws":
            return self.websocket()
        return self.respond(404, b"not found\n")

    # -- modes -----------------------------------------------------------
    def echo(self):
        n, sha = self.drain_body()
        doc = {"upstream": self.up.name, "method": self.method, "target": self.target,
               "version": self.version, "headers": [[k, v] for k, v in self.headers],
               "body_length": n, "body_sha256": sha, "conn_id": self.cid,
               "trailers": self.trailers}
        hs = []
        if self.query.get("hop") == "1":
            hs = [("Keep-Alive", "timeout=30, max=100"), ("Proxy-Connection", "keep-alive"),
                  ("Trailer", "X-Nothing"), ("Upgrade", "h2c"),
                  ("Connection", "X-Resp-Hop, Upgrade"), ("X-Resp-Hop", "must-not-pass"),
                  ("X-Resp-End", "kept")]
        return self.respond(200, json.dumps(doc).encode(), headers=hs, ctype="application/json")

    def bytes_(self, n):
        if n is None or n < 0:
            return self.respond(400, b"bad length\n")
        self.drain_body()
        self.send_head(200, [("Content-Type", "application/octet-stream")], length=n)
        if not self.head_only:
            for piece in pattern_pieces(n):
                self.sock.sendall(piece)
        return self.keep

    def chunked(self, n):
        if n is None or n < 0:
            return self.respond(400, b"bad length\n")
        self.drain_body()
        trailer = self.query.get("trailer") == "1"
        hs = [("Content-Type", "application/octet-stream")]
        if trailer:
            hs.append(("Trailer", "X-Checksum"))
        if self.version == "HTTP/1.0":  # no chunked for 1.0: close-delimited
            self.send_head(200, hs, close=True)
            if not self.head_only:
                for piece in pattern_pieces(n):
                    self.sock.sendall(piece)
            return False
        self.send_head(200, hs, chunked=True)
        if self.head_only:
            return self.keep
        size = int(self.query["size"]) if "size" in self.query else None
        pos, i = 0, 0
        out = bytearray()
        while pos < n:
            k = min(size or CHUNK_MIX[i % len(CHUNK_MIX)], n - pos)
            i += 1
            out += b"%x\r\n" % k + pattern_bytes(k, offset=pos) + b"\r\n"
            pos += k
            if len(out) >= 65536:
                self.sock.sendall(out)
                out = bytearray()
        out += b"0\r\n"
        if trailer:
            # A checksum, a repeated field, optional whitespace, and a
            # hop-by-hop field a proxy must not pass on.
            out += (f"X-Checksum: {pattern_sha256(n)}\r\nX-Count: 1\r\nX-Pad:  v  \r\n"
                    "X-Count:2\r\nKeep-Alive: timeout=1\r\n").encode()
        out += b"\r\n"
        self.sock.sendall(out)
        return self.keep

    def close_delimited(self, n):
        if n is None or n < 0:
            return self.respond(400, b"bad length\n")
        self.drain_body()
        version = "HTTP/1.0" if self.query.get("v") == "1.0" else "HTTP/1.1"
        head = (f"{version} 200 OK\r\nX-Upstream: {self.up.name}\r\n"
                f"X-Conn-Count: {self.up.accepted}\r\nX-Conn-Id: {self.cid}\r\n"
                f"X-Request-Count: {self.nreq}\r\nContent-Type: application/octet-stream\r\n"
                + ("Connection: close\r\n" if version == "HTTP/1.1" else "") + "\r\n")
        self.sock.sendall(head.encode())
        if not self.head_only:
            for piece in pattern_pieces(n):
                self.sock.sendall(piece)
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return False

    def drip(self):
        self.drain_body()
        n = int(self.query.get("n", 10))
        size = int(self.query.get("size", 10))
        ms = int(self.query.get("ms", 100))
        chunked = self.query.get("chunked") == "1"
        hs = [("Content-Type", "application/octet-stream")]
        if chunked:
            self.send_head(200, hs, chunked=True)
        else:
            self.send_head(200, hs, length=n * size)
        if self.head_only:
            return self.keep
        for i in range(n):
            time.sleep(ms / 1000)
            piece = pattern_bytes(size, offset=i * size)
            self.sock.sendall(b"%x\r\n" % size + piece + b"\r\n" if chunked else piece)
        if chunked:
            self.sock.sendall(b"0\r\n\r\n")
        return self.keep

    def die_mid(self):
        self.drain_body()
        n = int(self.query.get("n", 100000))
        hs = [("Content-Type", "application/octet-stream")]
        half = n // 2
        if self.query.get("chunked") == "1":
            self.send_head(200, hs, chunked=True)
            self.sock.sendall(b"%x\r\n" % half + pattern_bytes(half) + b"\r\n")
        else:
            self.send_head(200, hs, length=n)
            for piece in pattern_pieces(half):
                self.sock.sendall(piece)
        time.sleep(0.05)  # let it reach the proxy as data before the close
        if self.query.get("rst") == "1":
            _reset(self.sock)
        else:
            self.sock.shutdown(socket.SHUT_RDWR)
        return False

    def websocket(self):
        key = self.header("Sec-WebSocket-Key")
        upgrade = "websocket" in _tokens(self.headers, "upgrade")
        if self.method != "GET" or not key or not upgrade \
                or "upgrade" not in _tokens(self.headers, "connection"):
            return self.respond(400, b"not a websocket upgrade\n")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.keep = True  # the 101 must not say Connection: close
        lines = ["HTTP/1.1 101 Switching Protocols"]
        lines += [f"{k}: {v}" for k, v in self.std_headers()]
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept}"]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while True:
            try:
                fin, opcode, payload = ws_read_frame(self.reader)
            except _Closed:
                return False
            if opcode == 0x8:  # close: answer with the same status, then close
                self.sock.sendall(ws_frame(0x8, payload[:2]))
                return False
            if opcode == 0x9:  # ping
                self.sock.sendall(ws_frame(0xA, payload))
            elif opcode in (0x0, 0x1, 0x2):
                self.sock.sendall(ws_frame(opcode, payload, fin=fin))


# ---------------------------------------------------------------------------
# WebSocket frames (RFC 6455), shared with the tests' client side.

def ws_frame(opcode, payload=b"", fin=True, mask=None):
    """One frame; mask: 4 bytes (clients must mask) or None."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return head + mask + payload
    return head + payload


def ws_read_frame(reader):
    """(fin, opcode, unmasked payload) of the next frame from a _Reader."""
    b0, b1 = reader.read_exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", reader.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", reader.read_exact(8))[0]
    mask = reader.read_exact(4) if b1 & 0x80 else None
    payload = reader.read_exact(n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return bool(b0 & 0x80), b0 & 0x0F, payload


def ws_accept_for(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


# ---------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="kuai's test upstream server (127.0.0.1 only)")
    ap.add_argument("--port", type=int, default=0, help="port (0: any free one)")
    ap.add_argument("--name", default="up", help="the X-Upstream value")
    args = ap.parse_args(argv)
    up = Upstream(args.name, args.port).start()
    print(f"upstream {up.name} listening on http://{up.address}", flush=True)
    done = threading.Event()

    def on_signal(signum, frame):
        done.set()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not done.wait(1.0):
        pass
    up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
