"""The Debian package (tools/package): its control data and files, its
dependencies resolvable by apt on this Debian, the systemd unit valid for
systemd, and an install into a throwaway root (dpkg --root, maintainer scripts
run chrootless with $DPKG_ROOT): the kuai user created, the installed kuai
serving the default site and an app through the packaged Node.js runtime,
then a purge."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import KUAI, REPO
from httpraw import get, roundtrip

BIN = Path(KUAI).parent

# The package is made of the optimised build (the sanitized one loads the
# sanitizer runtimes and BoringSSL from places no package provides); it is
# tested in the optimised stage.
pytestmark = pytest.mark.skipif(os.environ.get("KUAI_SANITIZED") == "1",
                                reason="packages the optimised build, not the sanitized one")


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if not (BIN / "kuai.node").exists():
        pytest.fail(f"no kuai.node beside {KUAI}: build //:kuai.node")
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([str(REPO / "tools" / "package"), "--bin", str(BIN), "--fast", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    debs = list(out.glob("kuai_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def dpkg_deb(*args):
    r = subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True)
    return r.stdout


def test_control_and_files(deb):
    version = subprocess.run([KUAI, "--version"], capture_output=True, text=True).stdout.split()[1]
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    assert deb.name == f"kuai_{version}_{arch}.deb"
    fields = dpkg_deb("-f", str(deb))
    assert "Package: kuai\n" in fields and f"Version: {version}\n" in fields
    depends = dpkg_deb("-f", str(deb), "Depends")
    for pkg in ("liburing2", "libnghttp2-14", "libbrotli1", "libzstd1", "zlib1g", "libc6", "passwd"):
        assert pkg in depends, depends
    files = {line.split()[-1].lstrip(".") for line in dpkg_deb("-c", str(deb)).splitlines()}
    for f in ("/usr/bin/kuai", "/usr/lib/kuai/kuai.node", "/usr/lib/kuai/node/bin/node",
              "/lib/systemd/system/kuai.service", "/etc/kuai/kuai.config.js",
              "/usr/share/kuai/html/index.html", "/usr/share/doc/kuai/copyright"):
        assert f in files, f
    control = Path(str(deb) + ".control")
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text().split() == ["/etc/kuai/kuai.config.js"]
    for script in ("postinst", "prerm", "postrm"):
        path = control / script
        assert os.access(path, os.X_OK), script
        subprocess.run(["sh", "-n", str(path)], check=True)


def test_apt_resolves_the_dependencies(deb):
    # What `apt install ./kuai_*.deb` would do on this Debian, simulated.
    r = subprocess.run(["apt-get", "install", "-s", "-q", str(deb)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Inst kuai" in r.stdout and "Conf kuai" in r.stdout, r.stdout


def test_unit_is_valid_for_systemd(deb, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing (tools/setup installs systemd)")
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    unit = (tree / "lib/systemd/system/kuai.service").read_text()
    assert "Type=notify" in unit and "User=kuai" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    # The binary at its installed path, here under the extracted tree.
    local = tmp_path / "kuai.service"
    local.write_text(unit.replace("/usr/bin/kuai", str(tree / "usr/bin/kuai")))
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # The unit's own pre-start check passes on the shipped config (its root
    # taken from the tree).
    config = tmp_path / "kuai.config.js"
    config.write_text((tree / "etc/kuai/kuai.config.js").read_text()
                      .replace("/usr/share/kuai/html", str(tree / "usr/share/kuai/html")))
    r = subprocess.run([str(tree / "usr/bin/kuai"), "--check-config", str(config)], capture_output=True, text=True)
    assert r.returncode == 0 and "ok (1 listener, 1 route)" in r.stdout, r.stdout + r.stderr


def throwaway_root(path: Path) -> Path:
    (path / "var/lib/dpkg/info").mkdir(parents=True)
    (path / "var/lib/dpkg/updates").mkdir()
    (path / "var/lib/dpkg/status").touch()
    (path / "var/lib/dpkg/available").touch()
    (path / "etc").mkdir()
    for f in ("passwd", "group", "shadow", "gshadow"):
        (path / "etc" / f).write_text("".join(l for l in Path("/etc", f).read_text().splitlines(True)
                                              if l.startswith("root:")))
    return path


def dpkg(root, *args):
    return subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends",
                           "--log=/dev/null", *args], capture_output=True, text=True, timeout=120)


def serve(kuai, config):
    proc = subprocess.Popen([str(kuai), "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "serving" in line, line + proc.stderr.read()
    return proc, int(line.rsplit(":", 1)[1].split()[0])


def stop(proc):
    proc.terminate()
    assert proc.wait(timeout=15) == 0


def test_install_serve_purge_in_a_throwaway_root(deb, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("dpkg --root installs as root")
    root = throwaway_root(tmp_path / "root")
    r = dpkg(root, "-i", str(deb))
    assert r.returncode == 0, r.stdout + r.stderr
    status = subprocess.run(["dpkg", f"--root={root}", "-s", "kuai"], capture_output=True, text=True).stdout
    assert "Status: install ok installed" in status
    # postinst: the system user and group the unit runs as.
    user = [l for l in (root / "etc/passwd").read_text().splitlines() if l.startswith("kuai:")]
    assert len(user) == 1 and user[0].endswith(":/nonexistent:/usr/sbin/nologin"), user
    uid = int(user[0].split(":")[2])
    assert uid < 1000, user  # a system user
    assert any(l.startswith("kuai:") for l in (root / "etc/group").read_text().splitlines())
    # Configured again (as on an upgrade): the user is not added twice.
    r = dpkg(root, "-i", str(deb))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sum(l.startswith("kuai:") for l in (root / "etc/passwd").read_text().splitlines()) == 1

    kuai = root / "usr/bin/kuai"
    # The default site, as the service serves it (on a free port, its root
    # inside the throwaway root).
    config = tmp_path / "default.config.js"
    config.write_text((root / "etc/kuai/kuai.config.js").read_text()
                      .replace("/usr/share/kuai/html", str(root / "usr/share/kuai/html"))
                      .replace("port: 80", "port: 0"))
    proc, port = serve(kuai, config)
    try:
        page = roundtrip(port, get("/"))
        assert page.status == 200 and b"kuai is serving" in page.body, page.raw[:300]
    finally:
        stop(proc)
    # An app route runs on the packaged Node.js runtime.
    app = tmp_path / "app.js"
    app.write_text("module.exports = (req, res) => res.end('node ' + process.version + ' at ' + process.execPath);\n")
    appConfig = tmp_path / "app.config.json"
    appConfig.write_text(json.dumps({"listen": [{"port": 0}], "routes": [{"match": "/", "app": str(app)}]}))
    proc, port = serve(kuai, appConfig)
    try:
        r = roundtrip(port, get("/"))
        assert r.status == 200, r.raw[:300]
        assert f"at {root}/usr/lib/kuai/node/bin/node".encode() in r.body, r.body[-200:]
    finally:
        stop(proc)

    r = dpkg(root, "--purge", "kuai")
    assert r.returncode == 0, r.stdout + r.stderr
    for f in ("usr/bin/kuai", "usr/lib/kuai/node/bin/node", "etc/kuai/kuai.config.js",
              "lib/systemd/system/kuai.service"):
        assert not (root / f).exists(), f
