"""I/O backend selection: explicit choice, auto, and auto falling back to epoll
when the kernel refuses io_uring."""

from pathlib import Path

import pytest

from conftest import KuaiServer, base_args
from httpraw import get, roundtrip

SYSCTL = Path("/proc/sys/kernel/io_uring_disabled")


def test_banner_names_backend(kuai, io):
    s = kuai(threads=3)
    word = {"uring": "io_uring", "epoll": "epoll"}[io]
    assert f"(3 threads, {word})" in s.banner, s.banner
    assert roundtrip(s.port, get("/index.html")).status == 200


def test_threads_one(kuai):
    s = kuai(threads=1)
    assert "(1 thread" in s.banner, s.banner
    for _ in range(3):
        assert roundtrip(s.port, get("/index.html")).status == 200


def test_auto_prefers_io_uring(docroot, logdir):
    if SYSCTL.exists() and SYSCTL.read_text().strip() != "0":
        pytest.skip(f"io_uring is disabled here ({SYSCTL} = {SYSCTL.read_text().strip()})")
    s = KuaiServer(base_args(docroot.root, "auto"), logdir).start()
    try:
        assert "io_uring" in s.banner, s.banner
        assert roundtrip(s.port, get("/index.html")).status == 200
    finally:
        s.stop()
    s.check_clean()


def test_auto_falls_back_to_epoll(docroot, logdir):
    if not SYSCTL.exists():
        pytest.skip(f"{SYSCTL} does not exist on this kernel")
    try:
        previous = SYSCTL.read_text().strip()
    except OSError as e:
        pytest.skip(f"cannot read {SYSCTL}: {e}")
    s = None
    try:
        try:
            SYSCTL.write_text("2\n")
        except OSError as e:
            pytest.skip(f"cannot write {SYSCTL}: {e}")
        s = KuaiServer(base_args(docroot.root, "auto"), logdir).start()
        banner = s.banner
    finally:
        # Restore at once: the setting is machine-wide.
        try:
            SYSCTL.write_text(previous + "\n")
        except OSError as e:
            pytest.fail(f"could not restore {SYSCTL} to {previous}: {e}")
    try:
        assert "epoll" in banner and "io_uring" not in banner, banner
        for _ in range(3):
            r = roundtrip(s.port, get("/index.html"))
            assert r.status == 200, r
    finally:
        s.stop()
    s.check_clean()
