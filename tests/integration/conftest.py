"""Fixtures for kuai's integration tests: a document root, kuai servers on
127.0.0.1 (one shared per backend and scheme, plus per-test ones with their own
flags), test certificates, and the checks done when they stop (exit code 0, no
sanitizer reports).

Schemes: the tests of the modules in TLS_MODULES run twice, over plain HTTP and
over HTTPS (`scheme` = http / https): `server` and `kuai` then start kuai with
--tls-cert/--tls-key and hand out a TlsPort, on which httpraw.Conn speaks TLS."""

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

from httpraw import TlsPort, tls_client_context

REPO = Path(__file__).resolve().parents[2]
BANNER_RE = re.compile(r"(https?)://(127\.0\.0\.1|\d+\.\d+\.\d+\.\d+):(\d+)")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
BACKENDS = ["uring", "epoll"]
BANNER_WORD = {"uring": "io_uring", "epoll": "epoll"}
SCHEMES = ["http", "https"]
# Modules whose tests also run over TLS (the others: plain HTTP only).
TLS_MODULES = {"test_protocol", "test_limits", "test_malformed", "test_static",
               "test_native"}
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


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The pinned Node.js that runs kuai's scripts (tools/setup installs it) is also
# the reference the scripting tests compare kuai with, so that messages match
# exactly. Missing, or another version: the whole run fails (pytest_sessionstart).
NODE = str(Path(os.environ.get("KUAI_TEST_NODE") or REPO / ".deps" / "node" / "bin" / "node"))
NODE_VERSION = re.search(r"^NODE_VERSION=(\S+)$", (REPO / "tools" / "setup").read_text(), re.M).group(1)


def pytest_sessionstart(session):
    if not os.access(KUAI, os.X_OK):
        raise pytest.UsageError(f"no kuai binary at {KUAI} (build it, or set KUAI_BIN)")
    try:
        got = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError as e:
        raise pytest.UsageError(f"the pinned Node.js is missing ({NODE}: {e}); run tools/setup")
    if got != f"v{NODE_VERSION}":
        raise pytest.UsageError(f"{NODE} is {got or 'not runnable'}, the pin (tools/setup) is v{NODE_VERSION}")


def no_scripting_reason():
    """Why scripts cannot run with this kuai (None when they can): a KUAI_BIN
    of a build without the scripting addon beside it."""
    if not (Path(KUAI).parent / "kuai.node").exists() and not os.environ.get("KUAI_ADDON"):
        return f"no kuai.node next to {KUAI}: this build has no scripting layer"
    return None


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

    def __init__(self, args, logdir: Path, expect_io=None, certs=None):
        """certs: the test certificates (see the certs fixture); needed when
        the server speaks TLS, for the client side of the connections."""
        KuaiServer._counter += 1
        self.certs = certs
        self.scheme = None
        self.args = [KUAI, *args]
        self.expect_io = expect_io
        self.out_path = logdir / f"kuai{KuaiServer._counter}.out"
        self.err_path = logdir / f"kuai{KuaiServer._counter}.err"
        self.proc = None
        self.port = None
        self.host = "127.0.0.1"
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
                self.scheme = m.group(1)
                self.host = m.group(2)
                self.port = int(m.group(3))
                if self.scheme == "https":
                    if self.certs is None:
                        self.kill()
                        pytest.fail(f"https banner but no test certificates: {self.cmdline()}")
                    self.port = TlsPort(self.port, self.certs.context)
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

    @property
    def url(self):
        return f"{self.scheme}://{self.host}:{int(self.port)}"

    @property
    def curl_tls(self):
        """curl options to trust this server's certificate (none for http)."""
        return ["--cacert", str(self.certs.ca)] if self.scheme == "https" else []

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
# Certificates
# --------------------------------------------------------------------------

def make_certs(directory: Path):
    """Runs tools/gen-test-certs DIR; returns the file paths and a client
    context that trusts the test CA."""
    p = subprocess.run([str(REPO / "tools" / "gen-test-certs"), str(directory)],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        pytest.fail(f"tools/gen-test-certs failed ({p.returncode}): {p.stderr[-2000:]}")
    d = Path(directory)
    return SimpleNamespace(
        dir=d, ca=d / "ca.pem", ca_key=d / "ca.key",
        ecdsa=d / "ecdsa.pem", ecdsa_key=d / "ecdsa.key",
        rsa=d / "rsa.pem", rsa_key=d / "rsa.key",
        context=tls_client_context(d / "ca.pem"),
    )


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """ca.pem, an ECDSA leaf (localhost, 127.0.0.1, kuai.test) and an RSA leaf
    (other.test), made once per session by tools/gen-test-certs."""
    return make_certs(tmp_path_factory.mktemp("kuai-certs"))


def tls_args(certs):
    """The ECDSA leaf as the default certificate, the RSA one for other.test."""
    return ["--tls-cert", str(certs.ecdsa), "--tls-key", str(certs.ecdsa_key),
            "--tls-cert", str(certs.rsa), "--tls-key", str(certs.rsa_key)]


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------

@pytest.fixture(scope="session", params=BACKENDS)
def io(request):
    """The I/O backend under test; every behaviour test runs on both."""
    return request.param


@pytest.fixture
def scheme():
    """http, or in the modules of TLS_MODULES http and https (see below)."""
    return "http"


def pytest_generate_tests(metafunc):
    # Function-scoped on purpose: the shared servers are kept per scheme in
    # _shared_holder, so no session fixture depends on the scheme.
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if module in TLS_MODULES and "scheme" in metafunc.fixturenames:
        metafunc.parametrize("scheme", SCHEMES)


def base_args(root, io, threads=2):
    return ["serve", str(root), "--host", "127.0.0.1", "--port", "0",
            "--threads", str(threads), "--io", io]


@pytest.fixture(scope="session")
def _shared_holder(io, docroot, logdir):
    """Holds the shared servers of one backend (one per scheme); stops and
    checks them when the session moves on to the other backend."""
    holder = {}
    yield holder
    errors = []
    for s in holder.values():
        try:
            if s.returncode is None:
                s.stop()
            s.check_clean()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        raise AssertionError("\n".join(errors))


@pytest.fixture
def server(_shared_holder, io, scheme, docroot, logdir, request):
    """The shared server for this backend and scheme (default limits,
    --respond /hello). If an earlier test crashed it, this test fails and a new
    one is started."""
    s = _shared_holder.get(scheme)
    if s is not None and not s.alive():
        _shared_holder.pop(scheme)
        s.returncode = s.proc.returncode
        pytest.fail(f"shared {io} {scheme} server died (exit {s.returncode}) during an "
                    f"earlier test; stderr tail:\n{s.stderr()[-3000:]}")
    if s is None:
        args = base_args(docroot.root, io) + ["--respond", f"/hello={HELLO_BODY}"]
        certs = None
        if scheme == "https":
            certs = request.getfixturevalue("certs")
            args += tls_args(certs)
        s = KuaiServer(args, logdir, expect_io=io, certs=certs).start()
        if s.scheme != scheme:
            s.kill()
            pytest.fail(f"banner {s.banner!r} does not say {scheme}://")
        _shared_holder[scheme] = s
    return s


@pytest.fixture
def kuai(io, scheme, docroot, logdir, certs):
    """Factory for per-test servers: kuai(*flags, root=None, threads=2).
    With scheme https the ECDSA test certificate is added first (tls=False
    leaves it out; a test may also give its own --tls-cert flags).
    Each is stopped with SIGTERM at teardown (unless the test stopped it) and
    must exit 0 without sanitizer reports."""
    started = []

    def start(*flags, root=None, threads=2, io_override=None, tls=None):
        use_io = io_override or io
        if tls is None:
            tls = scheme == "https"
        extra = tls_args(certs) if tls else []
        s = KuaiServer(base_args(root or docroot.root, use_io, threads) + extra + list(flags),
                       logdir, expect_io=None if use_io == "auto" else use_io, certs=certs)
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
