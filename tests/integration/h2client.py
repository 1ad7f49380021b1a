"""A frame-level HTTP/2 client for the tests (Python's h2): its own checks
are off, so tests can send what they like."""

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class H2Client:
    """A frame-level HTTP/2 client over one socket (TLS with ALPN h2, or h2c)."""

    def __init__(self, port, tls_ca=None, preface=True, settings=None):
        """The client's own checks are off: tests send what they like."""
        raw = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        if tls_ca:
            ctx = ssl.create_default_context(cafile=str(tls_ca))
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
            assert self.sock.selected_alpn_protocol() == "h2"
        else:
            self.sock = raw
        self.log = []
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_inbound_headers=False,
            validate_outbound_headers=False, normalize_outbound_headers=False))
        if preface:
            self.conn.initiate_connection()
            if settings:
                self.conn.update_settings(settings)
            self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data):
        self.sock.sendall(data)

    def request(self, path, method="GET", end_stream=True, extra=(), scheme="https", authority="localhost",
                order=None):
        """order: the pseudo-header fields' names in the order to send them."""
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", scheme)]
        if authority is not None:
            headers.append((":authority", authority))
        if order is not None:
            headers.sort(key=lambda f: order.index(f[0]))
        headers += list(extra)
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        self.flush()
        return sid

    def send_body(self, sid, data, timeout=10):
        """Sends data on stream sid within the server's windows (waiting for
        its WINDOW_UPDATEs), then ends the stream."""
        deadline = time.time() + timeout
        at = 0
        while at < len(data):
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size,
                       len(data) - at)
            if room <= 0:
                if time.time() > deadline:
                    raise TimeoutError(f"stream {sid}: the server's window stayed shut")
                seen = len(self.log)
                self.events(lambda e: len(e) > seen, timeout=max(0.1, deadline - time.time()))
                continue
            self.conn.send_data(sid, data[at:at + room])
            at += room
            self.flush()
        self.conn.end_stream(sid)
        self.flush()

    def events(self, until, timeout=10):
        """Reads until `until(every event so far)` is true, the server
        closes, or timeout; returns (every event so far, closed). Received
        data is acknowledged (window updates) as it comes."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if until(self.log):
                return self.log, False
            self.sock.settimeout(max(0.05, deadline - time.time()))
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except (ConnectionResetError, ssl.SSLError):
                return self.log, True
            if not data:
                return self.log, True
            try:
                evs = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                return self.log, True
            for e in evs:
                if isinstance(e, h2.events.DataReceived) and e.flow_controlled_length:
                    try:
                        self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                    except h2.exceptions.StreamClosedError:
                        pass
            self.log += evs
            try:
                self.flush()
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                return self.log, True
        return self.log, False

    def response(self, sid, timeout=10, ordered=False):
        """The status, headers and body of stream sid, and whether it ended
        (ordered: the fields as a list, in the order they came)."""
        evs, closed = self.events(lambda e: any(isinstance(x, (h2.events.StreamEnded, h2.events.StreamReset))
                                                and x.stream_id == sid for x in e), timeout)
        headers, body, ended = {}, b"", False
        for e in evs:
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
                headers = list(e.headers) if ordered else dict(e.headers)
            elif isinstance(e, h2.events.DataReceived) and e.stream_id == sid:
                body += e.data
            elif isinstance(e, h2.events.StreamEnded) and e.stream_id == sid:
                ended = True
        return headers, body, ended

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def goaway(events):
    return next((e for e in events if isinstance(e, h2.events.ConnectionTerminated)), None)
