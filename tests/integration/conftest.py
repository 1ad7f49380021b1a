"""Fixtures for kuai's integration tests: a document root, kuai servers on
127.0.0.1 (one shared per backend, plus per-test ones with their own flags),
and the checks done when they stop (exit code 0, no sanitizer reports)."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
BANNER_RE = re.compile(r"http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
BACKENDS = ["uring", "epoll"]
BANNER_WORD = {"uring": "io_uring", "epoll": "epoll"}
HELLO_BODY = "Hello, World!"
SANITIZER_MARKERS = ("AddressSanitizer", "runtime error", "LeakSanitizer",
                     "UndefinedBehaviorSanitizer", "ThreadSanitizer")


def kuai_bin() -> str:
    b = os.environ.get("KUAI_BIN")
    if not b:
        return str(REPO / "bazel-bin" / "kuai")
    p = Path(b)
    if not p.is_absolute():
        # Relative to the current directory, else to the repository root.
        p = p.resolve() if p.exists() else (REPO / b)
    return str(p)


KUAI = kuai_bin()


def run_kuai(*args, timeout=10.0):
    """Runs kuai to completion (CLI tests); kills it if it outlives timeout."""
    try:
        return subprocess.run([KUAI, *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"kuai {' '.join(args)} still running after {timeout}s "
                    f"(stdout={e.stdout!r}, stderr={e.stderr!r})")


class KuaiServer:
    """One kuai process. stdout/stderr go to files so a chatty server never
    blocks on a full pipe."""

    _counter = 0

    def __init__(self, args, logdir: Path, expect_io=None):
        KuaiServer._counter += 1
        self.args = [KUAI, *args]
        self.expect_io = expect_io
        self.out_path = logdir / f"kuai{KuaiServer._counter}.out"
        self.err_path = logdir / f"kuai{KuaiServer._counter}.err"
        self.proc = None
        self.port = None
        self.banner = None
        self.returncode = None
        self.checked = False
        self.signalled = False

    def start(self):
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.out_path.read_bytes().decode("utf-8", "replace")
            if "\n" in text:
                self.banner = text.split("\n", 1)[0]
                m = BANNER_RE.search(self.banner)
                if not m:
                    self.kill()
                    pytest.fail(f"unexpected banner {self.banner!r} from {self.cmdline()}")
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                pytest.fail(f"kuai exited with {self.proc.returncode} before serving: "
                            f"{self.cmdline()}\nstderr: {self.stderr()[-2000:]}")
            time.sleep(0.02)
        else:
            self.kill()
            pytest.fail(f"no banner line on stdout within {START_TIMEOUT}s "
                        f"(not printed or not flushed?): {self.cmdline()}\n"
                        f"stderr: {self.stderr()[-2000:]}")
        if self.expect_io:
            word = BANNER_WORD[self.expect_io]
            if word not in self.banner:
                self.kill()
                pytest.fail(f"banner {self.banner!r} does not name the {word} backend")
        return self

    def cmdline(self):
        return " ".join(repr(a) if " " in a else a for a in self.args)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            return self.err_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            return self.out_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def send_signal(self, sig):
        self.signalled = True
        self.proc.send_signal(sig)

    def wait(self, timeout=STOP_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"kuai did not exit within {timeout}s of the signal")
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signals (once: a second signal means 'exit now') and waits."""
        if self.proc.poll() is None and not self.signalled:
            self.send_signal(sig)
        return self.wait(timeout)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def check_clean(self):
        """Exit code 0 and no sanitizer report in stderr."""
        self.checked = True
        err = self.stderr()
        problems = []
        if self.returncode != 0:
            problems.append(f"exit code {self.returncode} (expected 0)")
        for marker in SANITIZER_MARKERS:
            if marker in err:
                problems.append(f"'{marker}' in stderr")
        if problems:
            raise AssertionError(f"{'; '.join(problems)} for {self.cmdline()}\n"
                                 f"stderr tail:\n{err[-3000:]}")


def pytest_report_header(config):
    return f"kuai binary: {KUAI}"


def pytest_collection_modifyitems(config, items):
    if not os.access(KUAI, os.X_OK):
        skip = pytest.mark.skip(reason=f"kuai binary not found at {KUAI} (set KUAI_BIN)")
        for item in items:
            item.add_marker(skip)


# --------------------------------------------------------------------------
# Document root
# --------------------------------------------------------------------------

RANGES_CONTENT = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # 62 bytes
PNG_CONTENT = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"
               b"\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\x00\x01"
               b"\x00\x00\x05\x00\x01\r\n-\xb4\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.fixture(scope="session")
def docroot(tmp_path_factory):
    """base/root is served; base/secret.txt lies outside it (escape target)."""
    base = tmp_path_factory.mktemp("kuai")
    root = base / "root"
    root.mkdir()
    secret = b"TOP-SECRET-OUTSIDE-ROOT-" + os.urandom(8).hex().encode()
    (base / "secret.txt").write_bytes(secret)
    (base / "outsidedir").mkdir()
    (base / "outsidedir" / "inner.txt").write_bytes(secret)

    files = {
        "index.html": b"<!doctype html><title>kuai</title><p>root index page</p>\n",
        "style.css": b"body { color: #123456; }\n",
        "app.js": b"console.log('kuai test');\n",
        "data.json": b'{"kuai": true, "n": 42}\n',
        "image.png": PNG_CONTENT,
        "blob.weirdext": b"\x00\x01\x02unknown type\xff",
        "ranges.txt": RANGES_CONTENT,
        "a b.txt": b"file with a space\n",
        "sub/index.html": b"<p>sub index page</p>\n",
        "sub/page.txt": b"sub page text\n",
        "noindex/a.txt": b"a in noindex\n",
        "noindex/zeta-file.css": b"z {}\n",
    }
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
    big = os.urandom(5 * 1024 * 1024)
    (root / "big.bin").write_bytes(big)

    (root / "link_in.html").symlink_to("index.html")
    (root / "link_out_secret").symlink_to(base / "secret.txt")
    (root / "link_out_etc").symlink_to("/etc/hostname")
    (root / "link_out_dir").symlink_to(base / "outsidedir")

    return SimpleNamespace(
        base=base, root=root, files=files, secret=secret,
        big_sha=hashlib.sha256(big).hexdigest(), big_size=len(big),
    )


@pytest.fixture(scope="session")
def logdir(tmp_path_factory):
    return tmp_path_factory.mktemp("kuai-logs")


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------

@pytest.fixture(scope="session", params=BACKENDS)
def io(request):
    """The I/O backend under test; every behaviour test runs on both."""
    return request.param


def base_args(root, io, threads=2):
    return ["serve", str(root), "--host", "127.0.0.1", "--port", "0",
            "--threads", str(threads), "--io", io]


@pytest.fixture(scope="session")
def _shared_holder(io, docroot, logdir):
    """Holds the shared server of one backend; stops and checks it when the
    session moves on to the other backend."""
    holder = {}
    yield holder
    s = holder.get("server")
    if s is not None:
        if s.returncode is None:
            s.stop()
        s.check_clean()


@pytest.fixture
def server(_shared_holder, io, docroot, logdir):
    """The shared server for this backend (default limits, --respond /hello).
    If an earlier test crashed it, this test fails and a new one is started."""
    s = _shared_holder.get("server")
    if s is not None and not s.alive():
        _shared_holder.pop("server")
        s.returncode = s.proc.returncode
        pytest.fail(f"shared {io} server died (exit {s.returncode}) during an earlier "
                    f"test; stderr tail:\n{s.stderr()[-3000:]}")
    if s is None:
        s = KuaiServer(base_args(docroot.root, io) + ["--respond", f"/hello={HELLO_BODY}"],
                       logdir, expect_io=io).start()
        _shared_holder["server"] = s
    return s


@pytest.fixture
def kuai(io, docroot, logdir):
    """Factory for per-test servers: kuai(*flags, root=None, threads=2).
    Each is stopped with SIGTERM at teardown (unless the test stopped it) and
    must exit 0 without sanitizer reports."""
    started = []

    def start(*flags, root=None, threads=2, io_override=None):
        use_io = io_override or io
        s = KuaiServer(base_args(root or docroot.root, use_io, threads) + list(flags),
                       logdir, expect_io=None if use_io == "auto" else use_io)
        started.append(s)
        return s.start()

    yield start
    errors = []
    for s in started:
        try:
            if s.returncode is None:
                s.stop()
            if not s.checked:
                s.check_clean()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("per-test server did not stop cleanly:\n" + "\n".join(errors))
