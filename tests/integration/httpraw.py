"""A small raw-socket HTTP/1.x client for exact-byte tests against kuai.

Conn sends bytes verbatim and parses responses out of whatever the server
writes back: status line, headers, and a body framed by Content-Length,
chunked encoding, or the connection closing. Several pipelined responses can be
read one after another from the same buffer, and expect_close() checks that the
server closed the connection without sending anything more.

TLS: Conn speaks TLS when given tls=<ssl.SSLContext>, or when its port is a
TlsPort (what the server fixtures hand out for https servers), so a test written
against plain sockets runs unchanged over TLS. TLS goes through memory BIOs on
top of the plain socket: each send() is its own TLS record (send_split thus
splits records too), records without application data (session tickets) never
count as response bytes, and `sock` stays the TCP socket for raw bytes.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import time

DEFAULT_TIMEOUT = 5.0

IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} GMT$"
)


class TlsPort(int):
    """A port number that also says the server there speaks TLS: Conn and
    roundtrip given one connect with its context and SNI name."""

    def __new__(cls, port, context, server_hostname="localhost"):
        self = super().__new__(cls, port)
        self.context = context
        self.server_hostname = server_hostname
        return self


def tls_client_context(cafile):
    """A client context that trusts only cafile and checks the host name."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class ConnectionClosed(AssertionError):
    """The server closed the connection before a complete response arrived."""


class ResponseTimeout(AssertionError):
    """Nothing complete arrived within the timeout."""


class Response:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), in order
        self.body = body
        self.raw = raw  # the exact bytes of this response

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def headers_named(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_token(self, name, token):
        """True when a comma-separated header (e.g. Connection) holds token."""
        token = token.lower()
        for v in self.headers_named(name):
            if token in (t.strip().lower() for t in v.split(",")):
                return True
        return False

    @property
    def content_type(self):
        v = self.header("Content-Type")
        return v.split(";")[0].strip().lower() if v is not None else None

    def __repr__(self):
        head = self.raw.split(b"\r\n\r\n", 1)[0]
        return f"<Response {self.status} head={head[:600]!r} body[{len(self.body)}]={self.body[:120]!r}>"


def build(method="GET", path="/", version="HTTP/1.1", headers=None, body=b"",
          host="localhost"):
    """Builds request bytes. headers: list of (name, value) or raw str lines."""
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    for h in headers or []:
        lines.append(h if isinstance(h, str) else f"{h[0]}: {h[1]}")
    if isinstance(body, str):
        body = body.encode()
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def get(path="/", **kw):
    return build("GET", path, **kw)


def chunked(*parts):
    """Encodes body parts as a chunked body (with the last-chunk)."""
    out = b""
    for p in parts:
        if isinstance(p, str):
            p = p.encode()
        out += b"%x\r\n" % len(p) + p + b"\r\n"
    return out + b"0\r\n\r\n"


def _parse_head(head: bytes):
    lines = head.split(b"\r\n")
    m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
    if not m:
        raise AssertionError(f"bad status line: {lines[0][:200]!r}")
    headers = []
    for line in lines[1:]:
        if b":" not in line:
            raise AssertionError(f"bad header line in response: {line[:200]!r}")
        k, v = line.split(b":", 1)
        if k != k.strip() or not k:
            raise AssertionError(f"bad header name in response: {line[:200]!r}")
        headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
    return (m.group(1).decode(), int(m.group(2)),
            (m.group(3) or b"").decode("latin-1"), headers)


class Conn:
    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT,
                 rcvbuf=None, nodelay=True, tls=None, sni=None, session=None):
        """tls: an ssl.SSLContext to handshake with, False for plain TCP even on
        a TlsPort, None to follow the port. sni: the server name to send and
        check (default: the TlsPort's, else "localhost"). session: an
        ssl.SSLSession to resume."""
        self.timeout = timeout
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((host, port))
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.tls = None  # ssl.SSLObject once TLS is on
        self.tls_error = None  # the ssl.SSLError that ended the session, if any
        if tls is None:
            tls = getattr(port, "context", None)
        if tls:
            self.start_tls(tls, sni or getattr(port, "server_hostname", "localhost"),
                           session=session)

    # --- TLS -------------------------------------------------------------
    def start_tls(self, context, server_hostname="localhost", timeout=None, session=None):
        """Runs the TLS handshake; raises ConnectionClosed when the server
        closes or aborts it, ResponseTimeout when it stalls."""
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._in, self._out, server_side=False,
                                    server_hostname=server_hostname, session=session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._recv_raw(deadline, "the TLS handshake"):
                    raise ConnectionClosed(
                        f"connection closed ({'reset' if self.reset else 'FIN'}) "
                        "during the TLS handshake") from None
            except ssl.SSLError as e:
                self._flush(ignore_errors=True)
                raise ConnectionClosed(f"TLS handshake failed: {e}") from None
        self._flush()

    @property
    def tls_version(self):
        return self.tls.version() if self.tls else None

    def peer_cert(self):
        """The server's leaf certificate as DER bytes (TLS only)."""
        return self.tls.getpeercert(binary_form=True)

    def _flush(self, ignore_errors=False):
        data = self._out.read()
        if data:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                if not ignore_errors:
                    raise
                return False
        return True

    def _recv_raw(self, deadline, what):
        """One recv on the TCP socket into the TLS input; False at EOF/reset."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ResponseTimeout(f"timed out waiting for {what}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise ResponseTimeout(f"timed out waiting for {what}") from None
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self._in.write(data)
        return True

    def _read_tls(self):
        """Moves decrypted application data into buf; returns its length."""
        n = 0
        while not self.eof:
            try:
                data = self.tls.read(262144)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify
                self.eof = True
                break
            except ssl.SSLError as e:  # an alert, or a record that does not decrypt
                self.eof, self.tls_error = True, e
                break
            if not data:
                self.eof = True
                break
            self.buf += data
            n += len(data)
        self._flush(ignore_errors=True)
        return n

    # --- context manager -------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # --- sending ---------------------------------------------------------
    def send(self, data, ignore_errors=False):
        """Sends all of data. With ignore_errors, a peer that already closed
        (EPIPE/ECONNRESET) is not an error: the test reads what came back."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        try:
            if self.tls is not None:
                self.tls.write(data)
                return self._flush()
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            if not ignore_errors:
                raise
            return False

    def send_split(self, data, sizes=(1, 2, 3, 5, 7, 11, 13, 17), pause=0.001):
        """Sends data in pieces of the given sizes (cycled), pausing between
        them so they arrive as separate segments."""
        i = k = 0
        while i < len(data):
            n = sizes[k % len(sizes)]
            self.send(data[i:i + n])
            i += n
            k += 1
            if pause:
                time.sleep(pause)

    def close_notify(self):
        """Sends the TLS close_notify alert (and no FIN); reading goes on."""
        try:
            self.tls.unwrap()
        except ssl.SSLError:  # wants the peer's close_notify: not waited for
            pass
        self._flush(ignore_errors=True)

    def shutdown_write(self):
        """Half-closes: over TLS, close_notify first, then the TCP FIN."""
        if self.tls is not None:
            self.close_notify()
        self.sock.shutdown(socket.SHUT_WR)

    # --- receiving -------------------------------------------------------
    def _fill(self, deadline, what="a response"):
        """Waits for more response bytes: True when some arrived, False when
        the connection closed."""
        if self.tls is not None:
            return self._fill_tls(deadline, what)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ResponseTimeout(
                f"timed out waiting for {what}; buffered {len(self.buf)} bytes: "
                f"{bytes(self.buf[:300])!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise ResponseTimeout(
                f"timed out waiting for {what}; buffered {len(self.buf)} bytes: "
                f"{bytes(self.buf[:300])!r}") from None
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _fill_tls(self, deadline, what):
        while True:
            if self._read_tls():
                return True
            if self.eof:
                return False
            try:
                self._recv_raw(deadline, what)
            except ResponseTimeout:
                raise ResponseTimeout(
                    f"timed out waiting for {what}; buffered {len(self.buf)} bytes: "
                    f"{bytes(self.buf[:300])!r}") from None

    def poll(self, timeout):
        """True when response bytes or the close arrived within timeout (TLS
        records without application data, like session tickets, do not count)."""
        if self.buf or self.eof:
            return True
        if self.tls is None:
            r, _, _ = select.select([self.sock], [], [], timeout)
            return bool(r)
        try:
            return self._fill(time.monotonic() + timeout) or self.eof
        except ResponseTimeout:
            return False

    def _try_parse(self, head_only):
        buf = self.buf
        idx = buf.find(b"\r\n\r\n")
        if idx < 0:
            return None
        version, status, reason, headers = _parse_head(bytes(buf[:idx]))
        pos = idx + 4
        resp = Response(version, status, reason, headers, b"", b"")
        te = ",".join(resp.headers_named("Transfer-Encoding")).lower()
        cls = resp.headers_named("Content-Length")
        if head_only or 100 <= status < 200 or status in (204, 304):
            end, body = pos, b""
        elif "chunked" in te:
            body = bytearray()
            p = pos
            while True:
                nl = buf.find(b"\r\n", p)
                if nl < 0:
                    return None
                size_field = bytes(buf[p:nl]).split(b";")[0].strip()
                try:
                    size = int(size_field, 16)
                except ValueError:
                    raise AssertionError(f"bad chunk size in response: {size_field!r}")
                p = nl + 2
                if size == 0:
                    if buf[p:p + 2] == b"\r\n":
                        end = p + 2
                    else:
                        t = buf.find(b"\r\n\r\n", p)
                        if t < 0:
                            return None
                        end = t + 4
                    break
                if len(buf) < p + size + 2:
                    return None
                body += buf[p:p + size]
                if buf[p + size:p + size + 2] != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF in response")
                p += size + 2
            body = bytes(body)
        elif cls:
            if len(set(cls)) != 1:
                raise AssertionError(f"response has conflicting Content-Length: {cls}")
            n = int(cls[0])
            if len(buf) < pos + n:
                return None
            end, body = pos + n, bytes(buf[pos:pos + n])
        else:
            # Delimited by the connection closing.
            if not self.eof:
                return None
            end, body = len(buf), bytes(buf[pos:])
        resp.body = body
        resp.raw = bytes(buf[:end])
        del buf[:end]
        return resp

    def read_response(self, head=False, timeout=None):
        """Reads one complete response (an interim 1xx counts as one).
        head=True: the request was HEAD, so the response has no body."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            r = self._try_parse(head)
            if r is not None:
                return r
            if self.eof:
                raise ConnectionClosed(
                    f"connection closed ({'reset' if self.reset else 'FIN'}) before a "
                    f"complete response; got {len(self.buf)} bytes: {bytes(self.buf[:300])!r}")
            self._fill(deadline)

    def read_final(self, head=False, timeout=None):
        """Reads responses until a non-1xx one; returns (interims, final)."""
        interims = []
        while True:
            r = self.read_response(head=head, timeout=timeout)
            if r.status >= 200:
                return interims, r
            interims.append(r)

    def read_responses(self, heads, timeout=None):
        """heads: one bool per expected response (True = answer to HEAD)."""
        return [self.read_response(head=h, timeout=timeout) for h in heads]

    def expect_close(self, timeout=3.0):
        """Asserts the server closes the connection within timeout and sends
        nothing more. Returns seconds waited."""
        start = time.monotonic()
        deadline = start + timeout
        if self.buf:
            raise AssertionError(
                f"unexpected bytes after the response: {bytes(self.buf[:300])!r}")
        while not self.eof:
            try:
                got = self._fill(deadline, what="the server to close the connection")
            except ResponseTimeout:
                raise AssertionError(
                    f"connection still open {timeout}s after the response "
                    "(expected the server to close it)") from None
            if got:
                raise AssertionError(
                    f"unexpected bytes instead of a close: {bytes(self.buf[:300])!r}")
        return time.monotonic() - start

    def expect_silence(self, duration):
        """Asserts nothing arrives and the connection stays open for duration."""
        deadline = time.monotonic() + duration
        try:
            while True:
                got = self._fill(deadline, what="silence")
                if got:
                    raise AssertionError(
                        f"unexpected bytes: {bytes(self.buf[:300])!r}")
                raise AssertionError("server closed a connection that should stay open")
        except ResponseTimeout:
            return

    def read_until_close(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eof:
            self._fill(deadline, what="the connection to close")
        data = bytes(self.buf)
        self.buf.clear()
        return data


def roundtrip(port, data, head=False, timeout=DEFAULT_TIMEOUT):
    """One request on a fresh connection; returns the (final) response."""
    with Conn(port, timeout=timeout) as c:
        c.send(data)
        _, r = c.read_final(head=head)
        return r


def byteranges(content_type, body):
    """The parts of a multipart/byteranges body (RFC 9110 14.6) as a list of
    (Content-Range, Content-Type, bytes), checking its framing strictly: the
    boundary from `content_type`, CRLF before every delimiter but the first,
    the closing delimiter last."""
    prefix = "multipart/byteranges; boundary="
    assert content_type and content_type.startswith(prefix), content_type
    delim = b"--" + content_type[len(prefix):].encode()
    assert body.startswith(delim), body[:80]
    parts = []
    at = 0
    while True:
        assert body[at:at + len(delim)] == delim, (at, body[at:at + 80])
        at += len(delim)
        if body[at:] == b"--\r\n":
            return parts
        assert body[at:at + 2] == b"\r\n", body[at:at + 80]
        fields_end = body.index(b"\r\n\r\n", at)
        fields = {}
        for line in body[at + 2:fields_end].split(b"\r\n"):
            name, _, value = line.partition(b":")
            fields[name.strip().lower().decode()] = value.strip().decode()
        nxt = body.index(b"\r\n" + delim, fields_end + 4)
        parts.append((fields.get("content-range"), fields.get("content-type"), body[fields_end + 4:nxt]))
        at = nxt + 2
