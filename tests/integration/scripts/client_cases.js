'use strict';
// The http client cases of test_scripting_client.py: `client_cases.js CASE`
// runs one case against the test origins and prints "RESULT <json>", then
// exits. Under kuai require('kuai') is kuai's client (native keep-alive
// pools); under node (NODE_PATH=<repo>/scripting/lib) it is Node's own
// http.request / http.get / global fetch, the reference.
//
// Environment: UPSTREAM (tests/integration/upstream.py), EXTRA (the test's
// small origin: duplicate headers, redirects, gzip, JSON), CLOSED_PORT (a port
// nobody listens on).

const { request, get, fetch } = require('kuai');
const crypto = require('crypto');
const { Writable } = require('stream');

const U = process.env.UPSTREAM;
const X = process.env.EXTRA;
const CLOSED = Number(process.env.CLOSED_PORT);
const upstreamPort = Number(new URL(U).port);

function sha(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

function pick(headers, names) {
  const out = {};
  for (const n of names) out[n] = headers[n];
  return out;
}

function errInfo(e) {
  if (!e) return null;
  return { name: e.name, code: e.code, message: e.message, syscall: e.syscall, port: e.port,
    address: e.address };
}

// The request head as the upstream's /echo saw it, without Connection (Node's
// default agent and kuai may differ there).
function echoed(doc) {
  return {
    method: doc.method,
    target: doc.target,
    headers: doc.headers.filter(([k]) => k.toLowerCase() !== 'connection'),
    bodyLength: doc.body_length,
    bodySha: doc.body_sha256,
  };
}

// Reads a response fully: { status, message, version, headers, raw, body }.
function collect(res) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('error', reject);
    res.on('end', () => resolve({
      status: res.statusCode,
      message: res.statusMessage,
      version: res.httpVersion,
      headers: res.headers,
      raw: res.rawHeaders,
      body: Buffer.concat(chunks),
      complete: res.complete,
    }));
  });
}

function send(url, options, body) {
  return new Promise((resolve, reject) => {
    const req = request(url, options || {}, (res) => collect(res).then(resolve, reject));
    req.on('error', reject);
    req.end(body);
  });
}

async function echo(url, options, body) {
  const r = await send(url, options, body);
  return echoed(JSON.parse(r.body));
}

// Events of a request and its response, in order ('socket' and 'finish' left
// out: kuai's 'finish' means "handed to the native client", which can come
// before a connect fails).
function track(req, extra) {
  const ev = [];
  const label = (prefix, name, x) =>
    prefix + name + (name === 'error' ? `:${x.code}:${x.message}` : '');
  for (const e of ['response', 'abort', 'timeout', 'error', 'close']) {
    req.on(e, (x) => ev.push(label('', e, x)));
  }
  req.on('response', (res) => {
    for (const e of ['aborted', 'error', 'end', 'close']) res.on(e, (x) => ev.push(label('res.', e, x)));
    res.on('data', () => {
      if (!ev.includes('res.data')) ev.push('res.data');
    });
    if (extra) extra(res);
  });
  return new Promise((resolve) => {
    req.on('close', () => setTimeout(() => resolve(ev), 300));
  });
}

const cases = {
  async get_hello() {
    const r = await new Promise((resolve, reject) => {
      get(U + '/hello', (res) => collect(res).then(resolve, reject)).on('error', reject);
    });
    return { status: r.status, message: r.message, version: r.version,
      headers: pick(r.headers, ['content-type', 'content-length', 'x-upstream']),
      body: r.body.toString(), complete: r.complete };
  },

  async url_object_and_options() {
    const url = new URL(U + '/echo?x=1&y=%20z');
    return echo(url, { headers: { 'X-A': '1' } });
  },

  async header_api() {
    const api = {};
    const doc = await new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: upstreamPort, path: '/echo', method: 'put',
        headers: { 'X-One': '1', 'X-Two': ['a', 'b'], Cookie: ['c=1', 'd=2'] } },
      (res) => collect(res).then((r) => resolve(JSON.parse(r.body)), reject));
      req.on('error', reject);
      req.setHeader('X-Three', 3);
      req.setHeader('X-Gone', 'x');
      req.removeHeader('x-gone');
      api.getHeader = req.getHeader('x-two');
      api.hasHeader = [req.hasHeader('X-ONE'), req.hasHeader('x-gone')];
      api.names = req.getHeaderNames();
      api.raw = req.getRawHeaderNames();
      api.headers = { ...req.getHeaders() };
      api.method = req.method;
      api.path = req.path;
      api.headersSentBefore = req.headersSent;
      req.end(Buffer.from('body bytes'));
      api.headersSentAfter = req.headersSent;
      try {
        req.setHeader('X-Late', '1');
      } catch (e) {
        api.late = e.code;
      }
    });
    const unused = request(U + '/echo');
    unused.on('error', () => {});
    try {
      unused.setHeader('Bad Name', 'x');
    } catch (e) {
      api.badName = e.code;
    }
    unused.destroy();
    try {
      request(U + '/echo', { headers: { 'X-Bad': 'a\nb' } });
    } catch (e) {
      api.badValue = e.code;
    }
    return { api, echo: echoed(doc) };
  },

  async headers_array() {
    return echo(U + '/echo', { headers: ['X-B', '2', 'Host', `127.0.0.1:${upstreamPort}`, 'X-B', '3'] });
  },

  async post_string() {
    const r = await send(U + '/upload', { method: 'POST' }, 'hello world');
    const e = await echo(U + '/echo', { method: 'POST', headers: { 'Content-Type': 'text/plain' } }, 'hello');
    return { upload: JSON.parse(r.body), echo: e };
  },

  async put_buffer() {
    const body = crypto.createHash('sha512').update('x').digest();
    const r = await send(U + '/upload', { method: 'PUT' }, body);
    return { upload: JSON.parse(r.body), expect: sha(body) };
  },

  async post_empty() {
    return { post: await echo(U + '/echo', { method: 'POST' }), del: await echo(U + '/echo', { method: 'DELETE' }) };
  },

  async post_chunked_writes() {
    return new Promise((resolve, reject) => {
      const req = request(U + '/upload', { method: 'POST' }, (res) =>
        collect(res).then((r) => resolve({ upload: JSON.parse(r.body),
          expect: sha(Buffer.concat([Buffer.from('one,'), Buffer.from('dé,', 'latin1'),
            Buffer.from([1, 2, 3]), Buffer.from('end')])), writes }), reject));
      req.on('error', reject);
      const writes = [];
      writes.push(req.write('one,'));
      writes.push(req.write('dé,', 'latin1'));
      writes.push(req.write(new Uint8Array([1, 2, 3])));
      req.end('end');
    });
  },

  async content_length_writes() {
    return new Promise((resolve, reject) => {
      const parts = ['abc', 'defg', 'hi'];
      const req = request(U + '/upload', { method: 'PUT', headers: { 'Content-Length': 9 } }, (res) =>
        collect(res).then((r) => resolve({ upload: JSON.parse(r.body), expect: sha(parts.join('')) }), reject));
      req.on('error', reject);
      for (const p of parts) req.write(p);
      req.end();
    });
  },

  // 16 MiB through a slow Writable: the response must not pile up in memory.
  async download_backpressure() {
    const n = 16 * 1024 * 1024;
    return new Promise((resolve, reject) => {
      get(U + `/bytes/${n}`, (res) => {
        const h = crypto.createHash('sha256');
        let length = 0;
        let maxBuffered = 0;
        let writes = 0;
        const slow = new Writable({
          highWaterMark: 64 * 1024,
          write(chunk, enc, cb) {
            h.update(chunk);
            length += chunk.length;
            maxBuffered = Math.max(maxBuffered, res.readableLength);
            if (++writes % 16 === 0) setTimeout(cb, 2);
            else cb();
          },
        });
        res.pipe(slow);
        slow.on('finish', () => resolve({ status: res.statusCode, length, sha: h.digest('hex'),
          boundedBuffer: maxBuffered < 1024 * 1024, maxBuffered }));
        res.on('error', reject);
      }).on('error', reject);
    });
  },

  async chunked_async_iteration() {
    const res = await new Promise((resolve, reject) => get(U + '/chunked/300000', resolve).on('error', reject));
    const h = crypto.createHash('sha256');
    let length = 0;
    for await (const chunk of res) {
      h.update(chunk);
      length += chunk.length;
    }
    return { status: res.statusCode, te: res.headers['transfer-encoding'], length, sha: h.digest('hex'),
      complete: res.complete };
  },

  // 16 MiB written as fast as write() allows, waiting for 'drain'.
  async upload_large() {
    const piece = crypto.randomBytes(64 * 1024);
    const count = 256;
    return new Promise((resolve, reject) => {
      let drains = 0;
      const whole = crypto.createHash('sha256');
      const req = request(U + '/upload', { method: 'POST' }, (res) => collect(res).then((r) =>
        resolve({ upload: JSON.parse(r.body), expect: whole.digest('hex'), drained: drains > 0 }), reject));
      req.on('error', reject);
      let i = 0;
      const pump = () => {
        while (i < count) {
          const chunk = Buffer.from(piece);
          chunk.writeUInt32BE(i, 0);
          whole.update(chunk);
          i++;
          if (!req.write(chunk)) {
            drains++;
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    });
  },

  // 20 requests one after the other: one upstream connection for them all.
  async keepalive_sequential() {
    const ids = [];
    const counts = [];
    for (let i = 0; i < 20; i++) {
      const r = await send(U + '/hello', {});
      ids.push(r.headers['x-conn-id']);
      counts.push(Number(r.headers['x-request-count']));
    }
    return { distinct: new Set(ids).size, last: counts[counts.length - 1], ids };
  },

  async refused() {
    const req = get(`http://127.0.0.1:${CLOSED}/x`);
    let error = null;
    req.on('error', (e) => { error = e; });
    const events = await track(req);
    return { events, error: errInfo(error) };
  },

  // The upstream closes the connection once it has read the request.
  async hang_up() {
    const req = get(U + '/hello');
    let error = null;
    req.on('error', (e) => { error = e; });
    const events = await track(req);
    return { events, error: errInfo(error) };
  },

  // A response that is not HTTP.
  async malformed() {
    const req = get(U + '/garbage?kind=status');
    let error = null;
    req.on('error', (e) => { error = e; });
    const events = await track(req);
    return { events, error: errInfo(error) };
  },

  async timeout() {
    const req = get(U + '/slow/3000');
    req.setTimeout(300, () => req.destroy());
    req.on('error', () => {});
    return { events: await track(req) };
  },

  async options_timeout() {
    const req = get(U + '/slow/3000', { timeout: 300 });
    req.on('timeout', () => req.abort());
    req.on('error', () => {});
    return { events: await track(req), timeout: req.timeout };
  },

  async destroy_mid_response() {
    const req = get(U + '/drip?n=20&ms=50');
    req.on('error', () => {});
    const events = await track(req, (res) => {
      res.on('error', () => {});
      res.once('data', () => req.destroy());
    });
    return { events };
  },

  async upstream_dies_mid_response() {
    const req = get(U + '/die-mid?n=1000000');
    req.on('error', () => {});
    const events = await track(req, (res) => res.on('error', () => {}));
    return { events };
  },

  async abort_before_and_after_start() {
    const a = get(U + '/slow/500');
    const ea = track(a);
    a.abort();
    const b = get(U + '/slow/500');
    b.on('error', () => {});
    const eb = track(b);
    setTimeout(() => b.abort(), 100);
    const c = get(U + '/slow/500');
    c.on('error', () => {});
    const ec = track(c);
    setTimeout(() => c.destroy(new Error('boom')), 100);
    return { before: await ea, after: await eb, withError: await ec };
  },

  async head_and_204() {
    const head = await send(U + '/bytes/100', { method: 'HEAD' });
    const none = await send(U + '/status/204', {});
    return {
      head: { status: head.status, length: head.headers['content-length'], body: head.body.length },
      none: { status: none.status, body: none.body.length, message: none.message },
    };
  },

  async response_headers_merging() {
    const r = await send(X + '/dup', {});
    const res = await new Promise((resolve, reject) => get(X + '/dup', resolve).on('error', reject));
    res.resume();
    const distinct = res.headersDistinct;
    return {
      headers: pick(r.headers, ['set-cookie', 'x-dup', 'content-type', 'cache-control', 'x-latin1',
        'www-authenticate', 'cookie']),
      raw: r.raw.filter((v, i) => i % 2 === 1 || !/^(date|server)$/i.test(v)).length,
      latin1: r.headers['x-latin1'],
      distinct: { 'x-dup': distinct['x-dup'], 'set-cookie': distinct['set-cookie'] },
      body: r.body.toString(),
    };
  },

  async https_delegates() {
    const req = request(`https://127.0.0.1:${CLOSED}/`);
    let error = null;
    req.on('error', (e) => { error = e; });
    req.end();
    await new Promise((resolve) => req.on('close', resolve));
    return { error: errInfo(error) };
  },

  // --- fetch ---------------------------------------------------------------
  async fetch_basic() {
    const r = await fetch(U + '/hello#frag');
    const before = r.bodyUsed;
    const text = await r.text();
    return { status: r.status, statusText: r.statusText, ok: r.ok, url: r.url, redirected: r.redirected,
      type: r.type, contentType: r.headers.get('content-type'), upstream: r.headers.get('x-upstream'),
      text, before, after: r.bodyUsed, isResponse: r instanceof Response, isHeaders: r.headers instanceof Headers };
  },

  async fetch_json() {
    const a = await (await fetch(X + '/json')).json();
    const r = await fetch(U + '/echo', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ hello: 'world' }) });
    const b = await r.json();
    const h = Object.fromEntries(b.headers.map(([k, v]) => [k.toLowerCase(), v]));
    return { a, method: b.method, length: b.body_length, contentType: h['content-type'],
      contentLength: h['content-length'] };
  },

  async fetch_bodies() {
    const out = {};
    const bodies = {
      string: 'text body',
      buffer: Buffer.from('buffer body'),
      uint8: new Uint8Array([1, 2, 3, 4]),
      arraybuffer: new Uint8Array([5, 6, 7]).buffer,
      params: new URLSearchParams({ a: '1', b: 'x y' }),
      empty: '',
    };
    for (const [name, body] of Object.entries(bodies)) {
      const doc = await (await fetch(U + '/echo', { method: 'PUT', body })).json();
      const h = Object.fromEntries(doc.headers.map(([k, v]) => [k.toLowerCase(), v]));
      out[name] = { length: doc.body_length, sha: doc.body_sha256, type: h['content-type'] || null,
        contentLength: h['content-length'] || null, te: h['transfer-encoding'] || null };
    }
    const doc = await (await fetch(U + '/echo', { method: 'POST', body: null })).json();
    out.nullPost = doc.headers.filter(([k]) => /content-length|transfer-encoding/i.test(k));
    return out;
  },

  async fetch_header_shapes() {
    const shapes = {
      object: { 'X-A': '1', 'x-b': '2' },
      array: [['X-A', '1'], ['X-A', '2']],
      headers: new Headers({ 'X-C': '3' }),
    };
    const out = {};
    for (const [name, headers] of Object.entries(shapes)) {
      const doc = await (await fetch(U + '/echo', { headers })).json();
      // Names in lower case: undici keeps the case given, kuai's fetch sends
      // them as Headers lists them.
      out[name] = doc.headers.filter(([k]) => k.toLowerCase().startsWith('x-'))
        .map(([k, v]) => [k.toLowerCase(), v]);
    }
    return out;
  },

  async fetch_redirect_follow() {
    const r = await fetch(X + '/chain/3');
    return { status: r.status, url: r.url, redirected: r.redirected, text: await r.text() };
  },

  async fetch_redirect_methods() {
    const see = await (await fetch(X + '/redirect?code=303&to=/method', { method: 'POST', body: 'abc' })).json();
    const found = await (await fetch(X + '/redirect?code=302&to=/method', { method: 'POST', body: 'abc' })).json();
    const temp = await (await fetch(X + '/redirect?code=307&to=/method', { method: 'POST', body: 'abcd' })).json();
    const perm = await (await fetch(X + '/redirect?code=308&to=/method', { method: 'PUT', body: 'abcde' })).json();
    return { see, found, temp, perm };
  },

  async fetch_redirect_manual() {
    const r = await fetch(X + '/redirect?code=302&to=/method', { redirect: 'manual' });
    await r.arrayBuffer();
    return { status: r.status, location: r.headers.get('location'), redirected: r.redirected, url: r.url };
  },

  async fetch_redirect_error() {
    try {
      await fetch(X + '/redirect?code=301&to=/method', { redirect: 'error' });
      return { error: null };
    } catch (e) {
      return { name: e.name, message: e.message, cause: e.cause && e.cause.message };
    }
  },

  async fetch_too_many_redirects() {
    try {
      await fetch(X + '/chain/25');
      return { error: null };
    } catch (e) {
      return { name: e.name, message: e.message, cause: e.cause && e.cause.message };
    }
  },

  async fetch_abort() {
    const out = {};
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    try {
      await fetch(U + '/slow/2000', { signal: ac.signal });
    } catch (e) {
      out.pending = { name: e.name, isDomException: e instanceof DOMException };
    }
    try {
      await fetch(U + '/hello', { signal: AbortSignal.abort() });
    } catch (e) {
      out.already = { name: e.name };
    }
    const ac2 = new AbortController();
    const r = await fetch(U + '/drip?n=10&ms=100', { signal: ac2.signal });
    setTimeout(() => ac2.abort(), 150);
    try {
      await r.text();
    } catch (e) {
      out.body = { name: e.name };
    }
    // Still usable afterwards.
    out.after = await (await fetch(U + '/hello')).text();
    return out;
  },

  async fetch_refused() {
    try {
      await fetch(`http://127.0.0.1:${CLOSED}/`);
      return { error: null };
    } catch (e) {
      return { name: e.name, message: e.message, cause: errInfo(e.cause) };
    }
  },

  async fetch_gzip() {
    const r = await fetch(X + '/gzip');
    return { status: r.status, encoding: r.headers.get('content-encoding'), text: await r.text() };
  },

  async fetch_body_forms() {
    const ab = await (await fetch(U + '/bytes/1000')).arrayBuffer();
    const blob = await (await fetch(U + '/bytes/2000')).blob();
    const r = await fetch(U + '/chunked/70000');
    const reader = r.body.getReader();
    let length = 0;
    let plain = true;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      length += value.byteLength;
      if (!(value instanceof Uint8Array)) plain = false;
    }
    const head = await fetch(U + '/bytes/100', { method: 'HEAD' });
    const none = await fetch(U + '/status/204');
    return { ab: ab.byteLength, abSha: sha(Buffer.from(ab)), blob: blob.size, blobType: blob.type,
      streamed: length, plain, head: [head.status, head.body, head.headers.get('content-length')],
      none: [none.status, none.body, await none.text()] };
  },

  // Trailers both ways: a chunked upload ending with addTrailers() (the
  // upstream's /echo lists what arrived), a chunked download's trailer
  // fields (repeats, whitespace) in res.trailers / rawTrailers at 'end'.
  async trailers_both_ways() {
    const upload = await new Promise((resolve, reject) => {
      const req = request(U + '/echo', { method: 'POST' }, (res) =>
        collect(res).then((r) => resolve(JSON.parse(r.body)), reject));
      req.on('error', reject);
      req.write('abc');
      req.addTrailers({ 'X-Sum': '42', 'X-List': ['a', 'b'] });
      req.end('def');
    });
    const sized = await new Promise((resolve, reject) => {
      // Content-Length framing has no room for trailers: dropped, as Node.
      const req = request(U + '/echo', { method: 'PUT', headers: { 'Content-Length': 3 } }, (res) =>
        collect(res).then((r) => resolve(JSON.parse(r.body)), reject));
      req.on('error', reject);
      req.addTrailers([['X-Late', '1']]);
      req.end('abc');
    });
    const errors = {};
    const probe = request(U + '/hello');
    probe.on('error', () => {});
    for (const [name, t] of [['badName', { 'bad name': 'x' }], ['badValue', { 'X-V': 'a\nb' }]]) {
      try {
        probe.addTrailers(t);
        errors[name] = null;
      } catch (e) {
        errors[name] = e.code;
      }
    }
    probe.destroy();
    const download = await new Promise((resolve, reject) => {
      get(U + '/chunked/5000?trailer=1', (res) => {
        const before = { ...res.trailers };
        collect(res).then((r) => resolve({ before, trailers: res.trailers, raw: res.rawTrailers,
          length: r.body.length, sha: sha(r.body), complete: r.complete }), reject);
      }).on('error', reject);
    });
    const plain = await new Promise((resolve, reject) => {
      get(U + '/chunked/100', (res) => collect(res).then(() => resolve({ trailers: res.trailers,
        raw: res.rawTrailers }), reject)).on('error', reject);
    });
    return { sent: upload.trailers, sentLength: upload.body_length, sized: sized.trailers, errors,
      download, plain };
  },

  async fetch_duplicate_headers() {
    const r = await fetch(X + '/dup');
    await r.text();
    return { dup: r.headers.get('x-dup'), type: r.headers.get('content-type'),
      cookie: r.headers.get('set-cookie') };
  },

  async fetch_keepalive() {
    const ids = new Set();
    for (let i = 0; i < 20; i++) {
      const r = await fetch(U + '/hello');
      ids.add(r.headers.get('x-conn-id'));
      await r.text();
    }
    return { distinct: ids.size };
  },
};

const name = process.argv[2];
const fn = cases[name];
if (!fn) {
  console.error(`no case ${name}; cases: ${Object.keys(cases).join(' ')}`);
  process.exit(2);
}
fn().then((result) => {
  console.log('RESULT ' + JSON.stringify(result));
}, (err) => {
  console.log('FAILED ' + (err && err.stack ? err.stack : String(err)));
  process.exitCode = 1;
});
