"""Command-line behaviour: --help, --version, errors, and port conflicts."""

import re
import socket

import pytest

from conftest import KUAI, KuaiServer, base_args, run_kuai


def one_kuai_line(p, what):
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"{what}: expected one stderr line, got {p.stderr!r}"
    assert lines[0].startswith("kuai:"), f"{what}: stderr line {lines[0]!r} does not start with 'kuai:'"
    return lines[0]


def test_help():
    p = run_kuai("--help")
    assert p.returncode == 0, p
    out = p.stdout + p.stderr
    assert re.search(r"usage", out, re.I), out
    for flag in ("serve", "--port", "--io", "--max-body", "--header-timeout"):
        assert flag in out, f"--help does not mention {flag}:\n{out}"


def test_version():
    p = run_kuai("--version")
    assert p.returncode == 0, p
    assert re.search(r"\d+\.\d+", p.stdout), f"no version number in {p.stdout!r}"


@pytest.mark.parametrize("args", [
    ["--no-such-flag"],
    ["serve", "{root}", "--no-such-flag"],
    ["serve", "{root}", "--port", "0", "--bogus", "1"],
], ids=["global", "serve", "serve-with-value"])
def test_unknown_flag(docroot, args):
    args = [a.format(root=docroot.root) for a in args]
    p = run_kuai(*args, timeout=5)
    assert p.returncode != 0, p
    line = one_kuai_line(p, "unknown flag")
    assert "bogus" in line or "no-such-flag" in line, f"message does not name the flag: {line!r}"


@pytest.mark.parametrize("flag,value", [
    ("--io", "bogus"),
    ("--port", "99999"),
    ("--port", "abc"),
    ("--threads", "0"),
    ("--max-body", "12q"),
    ("--max-body", "-1"),
    ("--header-timeout", "soon"),
    ("--max-headers", "x"),
])
def test_bad_flag_value(docroot, flag, value):
    p = run_kuai(*base_args(docroot.root, "epoll")[:-2], flag, value, timeout=5)
    assert p.returncode != 0, f"{flag} {value} was accepted: {p!r}"
    one_kuai_line(p, f"{flag} {value}")


def test_flag_missing_value(docroot):
    p = run_kuai("serve", str(docroot.root), "--port", timeout=5)
    assert p.returncode != 0, p
    one_kuai_line(p, "--port without a value")


def test_missing_directory(tmp_path):
    missing = tmp_path / "does-not-exist"
    p = run_kuai("serve", str(missing), "--host", "127.0.0.1", "--port", "0", timeout=5)
    assert p.returncode != 0, p
    line = one_kuai_line(p, "missing directory")
    assert str(missing) in line, f"message does not name the path: {line!r}"


def test_not_a_directory(docroot):
    f = docroot.root / "index.html"
    p = run_kuai("serve", str(f), "--host", "127.0.0.1", "--port", "0", timeout=5)
    assert p.returncode != 0, p
    line = one_kuai_line(p, "file instead of directory")
    assert str(f) in line, line


def test_port_in_use_by_plain_socket(io, docroot):
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(8)
        port = holder.getsockname()[1]
        args = base_args(docroot.root, io)
        args[args.index("--port") + 1] = str(port)
        p = run_kuai(*args, timeout=5)
        assert p.returncode != 0, f"kuai started on a port already in use: {p!r}"
        line = one_kuai_line(p, "port in use")
        assert re.search(r"in use", line, re.I), f"message does not say in use: {line!r}"
    finally:
        holder.close()


def test_port_in_use_by_another_kuai(kuai, io, docroot):
    first = kuai()
    args = base_args(docroot.root, io)
    args[args.index("--port") + 1] = str(first.port)
    p = run_kuai(*args, timeout=5)
    assert p.returncode != 0, (f"a second kuai started on port {first.port} held by another "
                               f"kuai (SO_REUSEPORT shared?): {p!r}")
    line = one_kuai_line(p, "port in use by kuai")
    assert re.search(r"in use", line, re.I), line
    # The first one is unaffected.
    from httpraw import get, roundtrip
    assert roundtrip(first.port, get("/index.html")).status == 200


def test_port_in_use_by_another_kuai_other_backend(kuai, io, docroot):
    first = kuai()
    other = "epoll" if io == "uring" else "uring"
    args = base_args(docroot.root, other)
    args[args.index("--port") + 1] = str(first.port)
    p = run_kuai(*args, timeout=5)
    assert p.returncode != 0, p
    assert re.search(r"in use", one_kuai_line(p, "port in use"), re.I)


def test_explicit_port(kuai, io, docroot, logdir):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    args = base_args(docroot.root, io)
    args[args.index("--port") + 1] = str(port)
    srv = KuaiServer(args, logdir, expect_io=io).start()
    try:
        assert srv.port == port, srv.banner
        assert f"serving {docroot.root} on http://127.0.0.1:{port}" in srv.banner, srv.banner
        assert "(2 threads" in srv.banner, srv.banner
    finally:
        srv.stop()
    srv.check_clean()

