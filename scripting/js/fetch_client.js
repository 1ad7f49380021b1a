'use strict';
// require('kuai').fetch: the WHATWG fetch that Node ships (undici), for http:
// URLs over kuai's http client (js/http_client.js: the reactor thread's
// native keep-alive pools). The standard parses the input (a global Request);
// redirects, request bodies (buffered or streamed), decoding of the response
// body and abort signals are handled here; the answer is a real global
// Response. https: URLs, and http: before the client is installed, go to
// Node's own fetch.

const Stream = require('stream');
const zlib = require('zlib');
const { URL } = require('url');
const client = require('./http_client.js');

const kRedirect = new Set([301, 302, 303, 307, 308]);
const kNullBody = new Set([101, 204, 205, 304]);
const kRequestBodyHeaders = ['content-encoding', 'content-language', 'content-location',
  'content-type', 'content-length'];
// The fetch standard's blocked ports.
const kBadPorts = new Set([1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69,
  77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143,
  161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587,
  601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 5060, 5061, 6000, 6566, 6665,
  6666, 6667, 6668, 6669, 6697, 10080]);

function fetchFailed(cause) {
  return new TypeError('fetch failed', { cause });
}

function isStreamBody(b) {
  return b !== null && typeof b === 'object' &&
    (typeof b.getReader === 'function' || typeof b[Symbol.asyncIterator] === 'function');
}

// A web ReadableStream over a Node Readable, with backpressure both ways.
function webStream(src, onCancel) {
  let controller = null;
  let settled = false;
  const stream = new ReadableStream({
    start(c) {
      controller = c;
      src.on('data', (chunk) => {
        if (settled) return;
        c.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if (c.desiredSize <= 0) src.pause();
      });
      src.once('end', () => {
        if (settled) return;
        settled = true;
        c.close();
      });
      src.once('error', (err) => fail(err));
    },
    pull() {
      src.resume();
    },
    cancel(reason) {
      settled = true;
      onCancel(reason);
    },
  }, { highWaterMark: 64 * 1024, size: (chunk) => chunk.byteLength });
  function fail(err) {
    if (settled) return;
    settled = true;
    try {
      controller.error(err);
    } catch {}
  }
  return { stream, fail, done: () => settled };
}

function decoder(coding) {
  const flush = { flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  switch (coding) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip(flush);
    case 'deflate':
      return zlib.createInflate(flush);
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      return null;
  }
}

// Sends one request; resolves with { req, res } on the response head.
function sendOnce(url, method, headers, body, streamBody, signal) {
  return new Promise((resolve, reject) => {
    const list = [['host', url.host], ['connection', 'keep-alive']];
    for (const [k, v] of headers) {
      if (k === 'host' || k === 'connection' || k === 'content-length' || k === 'transfer-encoding') continue;
      list.push([k, v]);
    }
    const defaults = [['accept', '*/*'], ['accept-language', '*'], ['sec-fetch-mode', 'cors'],
      ['user-agent', 'undici'], ['accept-encoding', 'gzip, deflate']];
    for (const [k, v] of defaults) if (!headers.has(k)) list.push([k, v]);
    if (streamBody) {
      list.push(['transfer-encoding', 'chunked']);
    } else if (body !== null) {
      list.push(['content-length', String(body.length)]);
    } else if (method === 'POST' || method === 'PUT') {
      list.push(['content-length', '0']);
    }
    let req;
    try {
      req = new client.ClientRequest({
        hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
        port: url.port ? Number(url.port) : 80,
        path: url.pathname + url.search,
        method,
        headers: list,
      });
      req._forceStream = false;  // the list says the framing
    } catch (err) {
      reject(fetchFailed(err));
      return;
    }
    let answered = false;
    const onAbort = () => {
      req.destroy();
      if (!answered) reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    req.once('response', (res) => {
      answered = true;
      signal.removeEventListener('abort', onAbort);
      resolve({ req, res });
    });
    req.on('error', (err) => {
      if (answered) return;
      answered = true;
      signal.removeEventListener('abort', onAbort);
      reject(signal.aborted ? signal.reason : fetchFailed(err));
    });
    if (streamBody) {
      pump(streamBody, req).catch((err) => req.destroy(err));
    } else {
      req.end(body === null ? undefined : body);
    }
  });
}

async function pump(source, req) {
  const iterable = typeof source[Symbol.asyncIterator] === 'function' ? source : null;
  const reader = iterable ? null : source.getReader();
  const it = iterable ? iterable[Symbol.asyncIterator]() : null;
  while (!req.destroyed) {
    const { value, done } = reader ? await reader.read() : await it.next();
    if (done) break;
    const chunk = typeof value === 'string' ? Buffer.from(value) : value;
    if (!req.write(chunk)) {
      await new Promise((resolve) => {
        const go = () => {
          req.off('drain', go);
          req.off('close', go);
          resolve();
        };
        req.on('drain', go);
        req.on('close', go);
      });
    }
  }
  if (!req.destroyed) req.end();
}

function makeResponse(req, res, url, redirected, method, signal) {
  const status = res.statusCode;
  const headers = new Headers();
  const raw = res.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i], raw[i + 1]);
  let body = null;
  let cleanup = () => {};
  if (method === 'HEAD' || kNullBody.has(status)) {
    res.resume();
  } else {
    let source = res;
    const codings = (headers.get('content-encoding') || '').toLowerCase().split(',')
      .map((s) => s.trim()).filter(Boolean);
    if (codings.length && codings.every((c) => decoder(c) !== null)) {
      const decoders = codings.reverse().map(decoder);
      source = Stream.pipeline(res, ...decoders, () => {});
    }
    const web = webStream(source, () => req.destroy());
    body = web.stream;
    const onAbort = () => {
      req.destroy();
      if (source !== res) source.destroy();
      web.fail(signal.reason);
    };
    if (signal.aborted) {
      onAbort();
    } else {
      signal.addEventListener('abort', onAbort, { once: true });
      cleanup = () => signal.removeEventListener('abort', onAbort);
      source.once('end', cleanup);
      source.once('close', cleanup);
    }
  }
  let statusText = res.statusMessage || '';
  if (!/^[\t\x20-\x7e\x80-\xff]*$/.test(statusText)) statusText = '';
  const response = new Response(body, { status, statusText, headers });
  const href = new URL(url.href);
  href.hash = '';
  Object.defineProperties(response, {
    url: { value: href.href, enumerable: false, configurable: true },
    redirected: { value: redirected, enumerable: false, configurable: true },
    type: { value: 'basic', enumerable: false, configurable: true },
  });
  return response;
}

async function fetch(input, init) {
  let streamBody = null;
  let requestInit = init;
  if (init && typeof init === 'object' && isStreamBody(init.body)) {
    streamBody = init.body;
    requestInit = Object.assign({}, init, { body: undefined });
  }
  // The standard's parsing of everything (URL, method, headers, body, mode):
  // a Request, as the global fetch makes one.
  const request = new Request(input, requestInit);
  let url = new URL(request.url);
  if (url.protocol !== 'http:' || !client.installed()) return globalThis.fetch(input, init);

  let method = request.method;
  if (streamBody && (method === 'GET' || method === 'HEAD')) {
    throw new TypeError('Request with GET/HEAD method cannot have body.');
  }
  const signal = request.signal;
  if (signal.aborted) throw signal.reason;
  const headers = new Headers(request.headers);
  let body = request.body !== null ? Buffer.from(await request.arrayBuffer()) : null;
  const mode = request.redirect;
  let redirects = 0;
  for (;;) {
    const port = url.port ? Number(url.port) : 80;
    if (kBadPorts.has(port)) throw fetchFailed(new Error('bad port'));
    const { req, res } = await sendOnce(url, method, headers, body, streamBody, signal);
    const status = res.statusCode;
    const location = kRedirect.has(status) ? res.headers.location : undefined;
    if (location === undefined || mode === 'manual') {
      return makeResponse(req, res, url, redirects > 0, method, signal);
    }
    res.resume();  // read and dropped: the connection goes back to the pool
    if (mode === 'error') throw fetchFailed(new Error('unexpected redirect'));
    let next;
    try {
      next = new URL(location, url);
    } catch (err) {
      throw fetchFailed(err);
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw fetchFailed(new TypeError('URL scheme must be a HTTP(S) scheme'));
    }
    if (++redirects > 20) throw fetchFailed(new Error('redirect count exceeded'));
    if (((status === 301 || status === 302) && method === 'POST') ||
        (status === 303 && method !== 'GET' && method !== 'HEAD')) {
      method = 'GET';
      body = null;
      streamBody = null;
      for (const name of kRequestBodyHeaders) headers.delete(name);
    } else if (streamBody) {
      throw fetchFailed(new TypeError('Cannot follow a redirect with a streamed request body'));
    }
    if (next.origin !== url.origin) {
      headers.delete('authorization');
      headers.delete('proxy-authorization');
      headers.delete('cookie');
    }
    url = next;
    if (url.protocol === 'https:') {
      const r = await globalThis.fetch(url.href, { method, headers, body, redirect: mode, signal });
      Object.defineProperty(r, 'redirected', { value: true, configurable: true });
      return r;
    }
  }
}

module.exports = { fetch };
