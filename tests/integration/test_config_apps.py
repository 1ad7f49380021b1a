"""Config files with `app` routes: each reactor's Node environment loads the
route's script and answers the route with what it exports (a (req, res)
handler, or an App with callback(): kuai's App, Koa, Express), beside static
and proxy routes of the same file. Run in the pinned node with the scripting addon."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import KUAI, KuaiServer, no_scripting_reason

APPS = Path(__file__).resolve().parent.parent / "apps"

if no_scripting_reason():
    pytest.skip(f"app routes need the scripting addon: {no_scripting_reason()}", allow_module_level=True)


def get(port, path, method="GET", data=None, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def start(tmp_path, logdir, routes, threads=2, io="uring"):
    cfg = {"threads": threads, "io": io, "listen": [{"port": 0}], "routes": routes}
    path = tmp_path / "kuai.config.json"
    path.write_text(json.dumps(cfg))
    return KuaiServer(["--config", str(path)], logdir).start()


@pytest.fixture
def apps(tmp_path):
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "a.txt").write_text("static a\n")
    (tmp_path / "handler.js").write_text(
        "module.exports = (req, res) => {\n"
        "  let body = '';\n"
        "  req.setEncoding('utf8');\n"
        "  req.on('data', c => body += c);\n"
        "  req.on('end', () => {\n"
        "    res.setHeader('X-Handler', 'plain');\n"
        "    res.end(JSON.stringify({ method: req.method, url: req.url, body }));\n"
        "  });\n"
        "};\n")
    (tmp_path / "kapp.js").write_text(
        "const { App, Router } = require('kuai');\n"
        "const app = new App();\n"
        "const router = new Router({ prefix: '/k' });\n"
        "router.get('/users/:id', ctx => { ctx.body = { id: ctx.params.id }; });\n"
        "router.get('/fail', ctx => { ctx.throw(418, 'teapot'); });\n"
        "app.use(router.routes()).use(router.allowedMethods());\n"
        "module.exports = app;\n")
    return tmp_path


@pytest.mark.parametrize("io", ["uring", "epoll"])
def test_app_routes_beside_static(apps, logdir, io):
    s = start(apps, logdir, [
        {"match": "/k/", "app": "./kapp.js"},
        {"match": "/h/", "app": "./handler.js"},
        {"match": "/", "static": "./public"},
    ], io=io)
    try:
        for _ in range(4):  # both reactors
            status, _, body = get(s.port, "/k/users/7")
            assert status == 200 and json.loads(body) == {"id": "7"}
        status, _, body = get(s.port, "/k/fail")
        assert status == 418 and body == b"teapot"
        status, _, _ = get(s.port, "/k/users/7", method="POST")
        assert status == 405
        status, headers, body = get(s.port, "/h/x?q=1", method="POST", data=b"payload")
        assert status == 200 and headers["X-Handler"] == "plain"
        assert json.loads(body) == {"method": "POST", "url": "/h/x?q=1", "body": "payload"}
        status, _, body = get(s.port, "/a.txt")
        assert status == 200 and body == b"static a\n"
    finally:
        s.stop()
    s.check_clean()


def test_app_route_beside_proxy(apps, logdir):
    upstream = start(apps, logdir, [{"match": "/", "app": "./handler.js"}], threads=1)
    try:
        s = start(apps, logdir, [
            {"match": "/p/", "proxy": {"upstreams": [f"127.0.0.1:{upstream.port}"]}},
            {"match": "/", "app": "./kapp.js"},
        ])
        try:
            status, headers, body = get(s.port, "/p/echo")
            assert status == 200 and headers["X-Handler"] == "plain"
            assert json.loads(body)["url"] == "/p/echo"
            status, _, body = get(s.port, "/k/users/abc")
            assert status == 200 and json.loads(body) == {"id": "abc"}
        finally:
            s.stop()
        s.check_clean()
    finally:
        upstream.stop()


@pytest.mark.skipif(not (APPS / "node_modules" / "express").exists(),
                    reason="tests/apps not installed (npm ci)")
def test_express_app_route(tmp_path, logdir):
    app = tmp_path / "express_app.js"
    app.write_text(
        f"const express = require({json.dumps(str(APPS / 'node_modules' / 'express'))});\n"
        "const app = express();\n"
        "app.get('/e/:x', (req, res) => res.json({ x: req.params.x, q: req.query }));\n"
        "module.exports = app;\n")
    s = start(tmp_path, logdir, [{"match": "/e/", "app": str(app)}])
    try:
        status, _, body = get(s.port, "/e/1?y=2")
        assert status == 200 and json.loads(body) == {"x": "1", "q": {"y": "2"}}
    finally:
        s.stop()
    s.check_clean()


@pytest.mark.parametrize("source, expect", [
    ("module.exports = 42;\n", "must export a request handler"),
    ("throw new Error('boom at load');\n", "boom at load"),
    ("module.exports = (;\n", "SyntaxError"),
])
def test_broken_app_script_stops_start(tmp_path, source, expect):
    (tmp_path / "bad.js").write_text(source)
    cfg = {"threads": 2, "listen": [{"port": 0}], "routes": [{"match": "/", "app": "./bad.js"}]}
    path = tmp_path / "kuai.config.json"
    path.write_text(json.dumps(cfg))
    p = subprocess.run([KUAI, "--config", str(path)], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p
    assert expect in p.stderr and "bad.js" in p.stderr, p.stderr


def test_header_rules_and_rate_limit_on_app_routes(apps, logdir):
    # An app's own fields (X-Powered-By as Express sets it) removed, the
    # site's set; a rate-limited app route answers 429 before the script.
    (apps / "powered.js").write_text(
        "let calls = 0;\n"
        "module.exports = (req, res) => {\n"
        "  calls++;\n"
        "  res.setHeader('X-Powered-By', 'Express');\n"
        "  res.setHeader('Cache-Control', 'no-store');\n"
        "  res.end('calls ' + calls);\n"
        "};\n")
    s = start(apps, logdir, [
        {"match": "/p/", "app": "./powered.js", "rateLimit": {"rate": 1, "burst": 3},
         "headers": {"remove": ["X-Powered-By"], "set": {"Cache-Control": "private, max-age=60"},
                     "append": {"X-Frame-Options": "DENY"}}},
    ], threads=1)
    try:
        statuses = []
        for i in range(5):
            status, headers, body = get(s.port, "/p/x")
            statuses.append(status)
            assert "X-Powered-By" not in headers, headers
            assert headers.get("Cache-Control") == "private, max-age=60", headers
            assert headers.get("X-Frame-Options") == "DENY", headers
            if status == 200:
                assert body == f"calls {i + 1}".encode()
            else:
                assert headers.get("Retry-After") == "1", headers
        assert statuses[:3] == [200, 200, 200] and statuses[4] == 429, statuses
    finally:
        s.stop()
