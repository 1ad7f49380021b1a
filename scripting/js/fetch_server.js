'use strict';
// Fetch-style handlers, the shape of Deno.serve, Bun.serve and Workers:
// handler(request, info) returns a Response or a promise of one.
//
//   require('kuai').serve({ port, hostname, fetch, signal, onListen, onError })
//   kuai app.mjs            (a main module whose default export has fetch())
//   { app: 'app.mjs' }      (a config app route, the same)
//
// Node's Request and Response (undici's) cost microseconds each to build, more
// than the rest of a request's path, so the objects a handler sees are built
// lazily: a request is a `Request` (instanceof, every field and method) whose
// url, headers, signal and body come into being on first use and whose body
// methods read the connection directly; `new Response(...)` made in a serving
// environment records its body and init, and a known body (string, bytes,
// JSON, nothing) goes to the connection with its head without becoming a
// stream. Anything these objects do not answer themselves (clone(), the body
// as a stream, cache, mode, ...) is answered by a real undici object made from
// them on first use, so nothing of the standard API is missing.
//
// This file answers (what the handler returned, to the native handle) and
// holds the servers; js/fetch_request.js has the request side and
// js/fetch_response.js the Response/Request/fetch globals.

const { Server, HttpsServer } = require('./http_server.js');
const { codedError, checkName, checkValue } = require('./outgoing_headers.js');
const { FetchExchange, KuaiRequest, notCompleted, kReal, kHeadersObj } = require('./fetch_request.js');
const {
  Response, installGlobals, realResponse, ResponseProto, kBody, kInit, kStatus, kType, kSource,
} = require('./fetch_response.js');

const NativeResponse = globalThis.Response;
const NativeHeaders = globalThis.Headers;
const { STATUS_CODES } = require('http');

function logError(err) {
  console.error(err && err.stack ? err.stack : err);
}

// ---------------------------------------------------------------- answering

function headerLines(headers, out) {
  // out: { lines, type } - type: whether a content-type was given.
  let lines = '';
  let hasType = false;
  const add = (name, value) => {
    checkName(name);
    value = String(value);
    checkValue(name, value);
    const lower = name.toLowerCase();
    if (lower === 'content-length' || lower === 'transfer-encoding' || lower === 'connection' ||
        lower === 'keep-alive') return;
    if (lower === 'content-type') hasType = true;
    lines += name + ': ' + value + '\r\n';
  };
  if (headers === null || headers === undefined) {
    // nothing
  } else if (headers instanceof NativeHeaders) {
    for (const [k, v] of headers) add(k, v);
  } else if (Array.isArray(headers) || typeof headers[Symbol.iterator] === 'function') {
    for (const pair of headers) {
      if (!pair || pair.length !== 2) throw new TypeError('Headers constructor: expected name/value pair to be length 2');
      add(pair[0], pair[1]);
    }
  } else if (typeof headers === 'object') {
    for (const k in headers) {
      if (Object.prototype.hasOwnProperty.call(headers, k)) add(k, headers[k]);
    }
  } else {
    throw new TypeError('Headers constructor: the init is not an object');
  }
  out.type = hasType;
  return lines;
}

const scratch = { type: false };

// Sends what the handler returned.
function send(x, r) {
  if (x.writableEnded) return;
  const h = x.handle;
  if (r !== null && typeof r === 'object' && (Object.getPrototypeOf(r) === ResponseProto || kBody in r) &&
      r[kReal] === null) {
    let body = r[kBody];
    if (body instanceof ReadableStream && body[kSource] !== undefined && !body.locked) {
      body = body[kSource];  // a copy of a light Response (see its body getter)
    }
    const init = r[kInit];
    const hdrs = r[kHeadersObj] !== null ? r[kHeadersObj] : (init !== null ? init.headers : undefined);
    let lines = headerLines(hdrs, scratch);
    const status = r[kStatus];
    const text = init !== null && init.statusText ? String(init.statusText) : '';
    if (typeof body === 'string') {
      if (!scratch.type) lines += r[kType] === null ? 'content-type: text/plain;charset=UTF-8\r\n' : 'content-type: application/json\r\n';
      return finish(x, h, status, text, lines, body, Buffer.byteLength(body));
    }
    if (body === null) return finish(x, h, status, text, lines, undefined, 0);
    if (body instanceof Uint8Array) return finish(x, h, status, text, lines, body, body.byteLength);
    if (body instanceof ArrayBuffer) return finish(x, h, status, text, lines, Buffer.from(body), body.byteLength);
    if (ArrayBuffer.isView(body)) {
      const b = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      return finish(x, h, status, text, lines, b, b.byteLength);
    }
    if (body instanceof URLSearchParams) {
      const s = body.toString();
      if (!scratch.type) lines += 'content-type: application/x-www-form-urlencoded;charset=UTF-8\r\n';
      return finish(x, h, status, text, lines, s, Buffer.byteLength(s));
    }
    if (body instanceof Blob) {
      if (!scratch.type && body.type) lines += 'content-type: ' + body.type + '\r\n';
      body.arrayBuffer().then((ab) => {
        if (!x.writableEnded) finish(x, h, status, text, lines, Buffer.from(ab), ab.byteLength);
      }, (err) => failed(x.server, x, err));
      return undefined;
    }
    // FormData, streams, async iterables: through the real Response.
    r = realResponse(r);
  }
  if (!(r instanceof NativeResponse)) {
    throw new TypeError('Return value from serve handler must be a response or a promise resolving to a response');
  }
  if (r.type === 'error') {
    // Response.error(): the connection is closed without an answer.
    x.writableEnded = true;
    h.abort();
    x.server._done(x, false);
    return undefined;
  }
  const lines = headerLines(r.headers, scratch);
  const body = r.body;
  if (body === null) return finish(x, h, r.status, r.statusText, lines, undefined, 0);
  if (body.locked || r.bodyUsed) throw new TypeError('Response body object should not be disturbed or locked');
  h.writeHead(r.status, r.statusText || STATUS_CODES[r.status] || 'unknown', lines, -1, -1);
  return pump(x, h, body.getReader());
}

function finish(x, h, status, text, lines, body, length) {
  h.writeHead(status, text || STATUS_CODES[status] || 'unknown', lines, length, -1);
  x.writableEnded = true;
  h.end(body);
  x.server._done(x, true);
}

// A streamed body, with backpressure: the next chunk is read once the
// connection has taken the last one.
async function pump(x, h, reader) {
  x.reader = reader;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (x.writableEnded) return;
      if (done) break;
      if (!(value instanceof Uint8Array) && typeof value !== 'string') {
        throw new TypeError('Response body stream chunks must be Uint8Array');
      }
      if (!h.write(value)) {
        x._needDrain = true;
        await new Promise((resolve) => { x.drainWaiter = resolve; });
        if (x.writableEnded) return;
      }
    }
  } catch (err) {
    x.reader = null;
    if (x.writableEnded) return;
    // The head is out: all that can be said is that the body is cut short.
    logError(err);
    x.writableEnded = true;
    h.abort();
    x.server._done(x, false);
    return;
  }
  x.reader = null;
  if (x.writableEnded) return;
  x.writableEnded = true;
  h.end();
  x.server._done(x, true);
}

function internalError(x) {
  if (x.writableEnded) return;
  finish(x, x.handle, 500, '', 'content-type: text/plain;charset=UTF-8\r\n', 'Internal Server Error', 21);
}

// ------------------------------------------------------------------ servers

class ServeInfo {
  constructor(x, remoteAddress, remotePort) {
    this._x = x;
    this._addr = remoteAddress;
    this._port = remotePort;
    this._remote = null;
  }
  get remoteAddr() {
    return this._remote || (this._remote = { transport: 'tcp', hostname: this._addr, port: this._port });
  }
  // Resolves once the response has been handed over in full, rejects when it
  // could not be (as Deno's info.completed).
  get completed() {
    const x = this._x;
    const c = x.completed;
    if (c === true) return Promise.resolve();
    if (c === false) return Promise.reject(notCompleted());
    if (Array.isArray(c)) return c[0];
    let resolve; let reject;
    const p = new Promise((res, rej) => { resolve = res; reject = rej; });
    p.catch(() => {});
    x.completed = [p, resolve, reject];
    return p;
  }
}

// Workers' third argument.
const executionContext = Object.freeze({
  waitUntil(promise) {
    Promise.resolve(promise).catch((err) => logError(err));
  },
  passThroughOnException() {},
});

function serverClass(tls) {
  return tls ? FetchHttpsServer : FetchServer;
}

function setupFetch(server, handler, thisArg, onError) {
  server._handler = handler;
  server._thisArg = thisArg;
  server._onError = onError;
  server._inflight = 0;
  server._idle = null;
  server._authority = null;
  server._dispatch = dispatchFetch;
}

function dispatchFetch(server, handle, method, target, raw, version, remoteAddress, remotePort,
                       encrypted, connId, flags) {
  const x = new FetchExchange(server, handle, (flags & 16) !== 0);
  handle.req = x;
  handle.res = x;
  let authority = server._authority;
  if (authority === null) {
    // For a request with no Host field (HTTP/1.0): the listener's address.
    const a = server._address;
    authority = server._authority = a
      ? (a.address.includes(':') ? `[${a.address}]` : a.address) + ':' + a.port : 'localhost';
  }
  const req = new KuaiRequest(x, method, target, raw, encrypted ? 'https' : 'http', authority);
  x.request = req;
  server._inflight++;
  if (flags & 2) handle.writeContinue();  // Expect: 100-continue: read on
  let r;
  try {
    r = server._handler.call(server._thisArg, req, new ServeInfo(x, remoteAddress, remotePort), executionContext);
  } catch (err) {
    return failed(server, x, err);
  }
  if (r !== null && typeof r === 'object' && Object.getPrototypeOf(r) !== ResponseProto &&
      typeof r.then === 'function' && !(r instanceof NativeResponse)) {
    r.then((v) => {
      try {
        send(x, v);
      } catch (err) {
        failed(server, x, err);
      }
    }, (err) => failed(server, x, err));
    return undefined;
  }
  try {
    send(x, r);
  } catch (err) {
    failed(server, x, err);
  }
  return undefined;
}

// A handler that threw or rejected: onError's answer, else 500 (the error
// logged), for this request only.
function failed(server, x, err) {
  if (x.writableEnded) return;
  const onError = server._onError;
  if (typeof onError === 'function') {
    let r;
    try {
      r = onError(err);
    } catch (e2) {
      logError(e2);
      internalError(x);
      return;
    }
    Promise.resolve(r).then((v) => {
      try {
        send(x, v);
      } catch (e3) {
        logError(e3);
        internalError(x);
      }
    }, (e3) => {
      logError(e3);
      internalError(x);
    });
    return;
  }
  logError(err);
  internalError(x);
}

const fetchMethods = {
  _done(x, ok) {
    x.settle(ok);
    if (--this._inflight === 0 && this._idle) {
      const done = this._idle;
      this._idle = null;
      done();
    }
  },
  // Deno's server object: addr, finished, shutdown(), ref(), unref().
  get addr() {
    const a = this._address;
    return a ? { transport: 'tcp', hostname: a.address, port: a.port } : null;
  },
  get finished() {
    if (!this._finished) {
      this._finished = new Promise((resolve) => { this._resolveFinished = resolve; });
    }
    return this._finished;
  },
  // Stops listening, then resolves once the requests in flight are answered.
  shutdown() {
    if (this.listening) this.close();
    const finished = this.finished;
    if (this._inflight === 0) {
      this._resolveFinished();
    } else if (!this._idle) {
      this._idle = () => this._resolveFinished();
    }
    return finished;
  },
};

function addFetchMethods(cls) {
  for (const key of Object.getOwnPropertyNames(fetchMethods)) {
    Object.defineProperty(cls.prototype, key, Object.getOwnPropertyDescriptor(fetchMethods, key));
  }
}

class FetchServer extends Server {}
class FetchHttpsServer extends HttpsServer {}
addFetchMethods(FetchServer);
addFetchMethods(FetchHttpsServer);

let binding = null;  // host/port defaults from the command line

function pickHandler(options, handler) {
  if (typeof options === 'function') return [options, undefined];
  if (typeof handler === 'function') return [handler, undefined];
  if (options && typeof options.fetch === 'function') return [options.fetch, options];
  if (options && typeof options.handler === 'function') return [options.handler, options];
  return [null, undefined];
}

// require('kuai').serve(...): serve(handler), serve(options, handler),
// serve({ fetch, ... }).
function serve(options, handler) {
  const [fn, thisArg] = pickHandler(options, handler);
  if (!fn) {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
      'serve() needs a handler: serve(handler), serve(options, handler) or serve({ fetch })');
  }
  const o = options && typeof options === 'object' ? options : {};
  installGlobals();
  const tls = o.cert !== undefined || o.key !== undefined;
  const Cls = serverClass(tls);
  const server = tls ? new Cls({ cert: o.cert, key: o.key }, undefined, 'serve') : new Cls({});
  if (tls) server._http2 = 1;  // ALPN h2 and http/1.1, as Deno.serve
  setupFetch(server, fn, thisArg, o.onError);
  let port = o.port !== undefined ? o.port : (binding && binding.serveDefaults ? binding.serveDefaults.port : 8000);
  if (typeof port === 'string' && /^\d+$/.test(port)) port = Number(port);
  const host = o.hostname !== undefined ? o.hostname
    : (binding && binding.serveDefaults ? binding.serveDefaults.host : '0.0.0.0');
  server._listenNow(host, port);
  const addr = server.addr;
  if (typeof o.onListen === 'function') {
    o.onListen(addr);
  } else {
    announce(server, tls);
  }
  const signal = o.signal;
  if (signal) {
    if (signal.aborted) server.shutdown();
    else signal.addEventListener('abort', () => server.shutdown(), { once: true });
  }
  return server;
}

// Where a server without onListen serves, said once (thread 0).
function announce(server, tls) {
  if (binding && binding.reactor !== 0) return;
  const a = server.addr;
  const shown = a.hostname.includes(':') ? `[${a.hostname}]` : a.hostname;
  console.error(`kuai: serving fetch handler on ${tls ? 'https' : 'http'}://${shown}:${a.port}/`);
}

// A module's export that is a fetch-style handler: { fetch } (Deno, Bun,
// Workers, Hono's app), or a namespace whose default export is one.
function fetchTarget(exported) {
  if (exported === null || exported === undefined) return null;
  if (typeof exported === 'object' || typeof exported === 'function') {
    if (typeof exported.fetch === 'function' && typeof exported.callback !== 'function') return exported;
    const d = exported.default;
    if (d && (typeof d === 'object' || typeof d === 'function') && typeof d.fetch === 'function' &&
        typeof d.callback !== 'function') {
      return d;
    }
  }
  return null;
}

// kuai app.mjs / a config app route: serve the module's fetch().
function serveModule(target, route) {
  installGlobals();
  const server = new FetchServer({});
  setupFetch(server, target.fetch, target, target.onError);
  if (route !== undefined) return server._kuaiRoute(route);
  const port = typeof target.port === 'number' && !binding.portGiven ? target.port : binding.serveDefaults.port;
  const host = typeof target.hostname === 'string' && !binding.hostGiven ? target.hostname
    : binding.serveDefaults.host;
  server._listenNow(host, port);
  announce(server, false);
  return server;
}

module.exports = {
  install(nativeBinding) { binding = nativeBinding; },
  serve,
  serveModule,
  fetchTarget,
  KuaiRequest,
  Response,
};
