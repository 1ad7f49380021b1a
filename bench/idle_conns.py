#!/usr/bin/env python3
"""Open N keep-alive connections, send one request on each, read the response,
and keep them open and idle, so that bench/run can read the server's RSS.

Usage: idle_conns.py HOST PORT PATH N [TIMEOUT_S]

Protocol on stdout/stdin (used by bench/run):
  prints "READY ok=K failed=F"  once every connection got its response (or
                                failed, or TIMEOUT_S passed)
  reads a line "CHECK"        -> prints "ALIVE k" (connections still open)
  reads EOF or "QUIT"         -> resets every connection (no TIME_WAIT) and exits
"""
import errno
import resource
import select
import socket
import struct
import sys
import time


def main():
    host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 100
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))

    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").encode()
    ep = select.epoll()
    socks = {}        # fd -> socket
    state = {}        # fd -> "connecting" | "reading" | "idle"
    rbuf = {}         # fd -> bytes read so far
    ok = failed = started = 0
    max_connecting = 256
    connecting = 0
    deadline = time.monotonic() + timeout

    def fail(fd):
        nonlocal failed
        s = socks.pop(fd)
        try:
            ep.unregister(fd)
        except OSError:
            pass
        s.close()
        state.pop(fd, None)
        rbuf.pop(fd, None)
        failed += 1

    def response_complete(data):
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return False
        length = 0
        for line in data[:end].split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        return len(data) >= end + 4 + length

    while (ok + failed < n) and time.monotonic() < deadline:
        while started < n and connecting < max_connecting:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            err = s.connect_ex((host, port))
            started += 1
            if err not in (0, errno.EINPROGRESS):
                s.close()
                failed += 1
                continue
            fd = s.fileno()
            socks[fd] = s
            state[fd] = "connecting"
            rbuf[fd] = b""
            connecting += 1
            ep.register(fd, select.EPOLLOUT)
        for fd, ev in ep.poll(0.5):
            s = socks.get(fd)
            if s is None:
                continue
            if state[fd] == "connecting":
                connecting -= 1
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    fail(fd)
                    continue
                try:
                    s.send(request)
                except OSError:
                    fail(fd)
                    continue
                state[fd] = "reading"
                ep.modify(fd, select.EPOLLIN)
            elif state[fd] == "reading":
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    fail(fd)
                    continue
                if not data:
                    fail(fd)
                    continue
                rbuf[fd] += data
                if response_complete(rbuf[fd]):
                    ok += 1
                    state[fd] = "idle"
                    rbuf[fd] = b""
                    ep.unregister(fd)
    failed += n - ok - failed
    print(f"READY ok={ok} failed={failed}", flush=True)

    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "CHECK":
            # An idle connection the server closed is readable (EOF/RST).
            alive = 0
            idle = [s for fd, s in socks.items() if state.get(fd) == "idle"]
            for i in range(0, len(idle), 1000):
                chunk = idle[i:i + 1000]
                p = select.epoll()
                for s in chunk:
                    p.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
                readable = {fd for fd, _ in p.poll(0)}
                p.close()
                alive += sum(1 for s in chunk if s.fileno() not in readable)
            print(f"ALIVE {alive}", flush=True)
        elif cmd == "QUIT":
            break
    for s in socks.values():
        s.close()  # SO_LINGER 0: reset, no TIME_WAIT


if __name__ == "__main__":
    main()
