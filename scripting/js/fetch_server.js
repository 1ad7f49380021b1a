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

const {
  Server, HttpsServer, kHandle, codedError, checkName, checkValue,
} = require('./http_server.js');

const NativeRequest = globalThis.Request;
const NativeResponse = globalThis.Response;
const NativeHeaders = globalThis.Headers;
const nativeFetch = globalThis.fetch;
const { STATUS_CODES } = require('http');

const kReal = Symbol('kuai.real');        // the undici object, once made
const kX = Symbol('kuai.exchange');       // a request's FetchExchange
const kBody = Symbol('kuai.body');
const kInit = Symbol('kuai.init');
const kHeadersObj = Symbol('kuai.headers');
const kStatus = Symbol('kuai.status');
const kType = Symbol('kuai.type');        // Response.json's default type
const kStream = Symbol('kuai.stream');    // a light Response's body as a stream, once asked for
const kSource = Symbol('kuai.source');    // on such a stream: the body it was made from

const kNullBodyStatus = new Set([101, 103, 204, 205, 304]);
const kTextType = 'text/plain;charset=UTF-8';

// ------------------------------------------------------------------ requests

// What one request needs between the native side and the handler. It is what
// the native callbacks of js/http_server.js see as the handle's req and res
// (push/complete/destroy for the body, writableEnded/_close/_needDrain/emit
// for the response).
class FetchExchange {
  constructor(server, handle, hasBody) {
    this.server = server;
    this.handle = handle;
    this.request = null;
    this.complete = false;      // the request body has ended
    this.aborted = false;       // the client went away
    this.destroyed = false;
    this.writableEnded = false;  // the response is finished
    this._needDrain = false;
    this.hasBody = hasBody;
    this.ended = false;         // ... and its end has been pushed
    this.chunks = null;         // body bytes nobody has asked for yet
    this.buffered = 0;
    this.bodyError = null;
    this.stream = null;         // request.body's controller, once made
    this.waiters = null;        // text()/json()/... waiting for the end
    this.drainWaiter = null;
    this.reader = null;         // the response body's reader, while streaming
    this.controller = null;     // request.signal's AbortController
    this.completed = null;      // info.completed: [promise, resolve, reject]
  }

  // The native side's body events (js/http_server.js onBody/onBodyEnd).
  push(chunk) {
    if (chunk === null) {
      this.ended = true;
      const s = this.stream;
      if (s) {
        this.stream = null;
        try { s.close(); } catch { /* cancelled */ }
      }
      this.finishWaiters();
      return true;
    }
    if (this.stream) {
      this.stream.enqueue(chunk);
      return this.stream.desiredSize > 0;
    }
    (this.chunks || (this.chunks = [])).push(chunk);
    this.buffered += chunk.length;
    // Held until the handler reads: past 64 KiB, the connection waits.
    return this.waiters !== null || this.buffered < 65536;
  }

  finishWaiters() {
    const w = this.waiters;
    if (w === null) return;
    this.waiters = null;
    const err = this.bodyError;
    const body = err ? null : this.takeAll();
    for (const [resolve, reject] of w) {
      if (err) reject(err);
      else resolve(body);
    }
  }

  takeAll() {
    const c = this.chunks;
    this.chunks = null;
    this.buffered = 0;
    if (c === null) return Buffer.alloc(0);
    return c.length === 1 ? c[0] : Buffer.concat(c);
  }

  // The whole body, as one Buffer.
  readAll() {
    if (this.bodyError) return Promise.reject(this.bodyError);
    if (this.ended) return Promise.resolve(this.takeAll());
    return new Promise((resolve, reject) => {
      (this.waiters || (this.waiters = [])).push([resolve, reject]);
      resumeBody(this.handle);
    });
  }

  // The client went away (onAbort): signal, body readers and a streaming
  // response all learn of it.
  destroy(err) {
    if (this.destroyed) return;
    this.destroyed = true;
    this.aborted = true;
    if (!this.complete) {
      const e = err || codedError(Error, 'ECONNRESET', 'aborted');
      this.bodyError = e;
      const s = this.stream;
      this.stream = null;
      if (s) try { s.error(e); } catch { /* already closed */ }
      this.finishWaiters();
    }
    if (this.controller) {
      this.controller.abort(new DOMException('The client closed the connection', 'AbortError'));
    } else {
      this.controller = 'aborted';
    }
  }
  emit(event) {
    if (event === 'drain') {
      const w = this.drainWaiter;
      this.drainWaiter = null;
      if (w) w();
    }
  }
  _close() {
    this.writableEnded = true;
    const r = this.reader;
    this.reader = null;
    if (r) r.cancel(new DOMException('The client closed the connection', 'AbortError')).catch(() => {});
    const w = this.drainWaiter;
    this.drainWaiter = null;
    if (w) w();
    this.settle(false);
  }

  settle(ok) {
    const c = this.completed;
    if (c === null) {
      this.completed = ok ? true : false;
      return;
    }
    if (Array.isArray(c)) {
      this.completed = ok;
      if (ok) c[1]();
      else c[2](new DOMException('The response was not completed', 'AbortError'));
    }
  }
}

function resumeBody(h) {
  if (h && h.paused) {
    h.paused = false;
    h.resumeBody();
  }
}

function hostOf(raw) {
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    const n = raw[i];
    if (n.length === 4 && (n === 'host' || n === 'Host' || n.toLowerCase() === 'host')) return raw[i + 1];
  }
  return '';
}

// The request a handler receives. Its prototype chain holds Request.prototype,
// so `instanceof Request` is true; anything not answered here goes to a real
// Request made on first use (realRequest).
class KuaiRequest {
  constructor(x, method, target, raw, scheme, hostDefault) {
    this[kX] = x;
    this[kReal] = null;
    this._method = method;
    this._target = target;
    this._raw = raw;
    this._scheme = scheme;
    this._hostDefault = hostDefault;
    this._url = null;
    this[kHeadersObj] = null;
    this._used = false;
    this._stream = null;
  }

  get method() { return this._method; }

  get url() {
    let u = this._url;
    if (u === null) {
      const t = this._target;
      if (t.charCodeAt(0) === 47 /* / */) {
        u = this._scheme + '://' + (hostOf(this._raw) || this._hostDefault) + t;
      } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(t)) {
        u = t;  // absolute form
      } else {
        u = this._scheme + '://' + (hostOf(this._raw) || this._hostDefault) + '/' + (t === '*' ? '' : t);
      }
      this._url = u;
    }
    return u;
  }

  get headers() {
    if (this[kReal]) return this[kReal].headers;
    let h = this[kHeadersObj];
    if (h === null) {
      h = new NativeHeaders();
      const raw = this._raw;
      for (let i = 0; i < raw.length; i += 2) {
        if (raw[i].charCodeAt(0) !== 58 /* : */) h.append(raw[i], raw[i + 1]);
      }
      this[kHeadersObj] = h;
    }
    return h;
  }

  get signal() {
    if (this[kReal]) return this[kReal].signal;
    const x = this[kX];
    let c = x.controller;
    if (c === null || c === 'aborted') {
      const was = c === 'aborted';
      c = x.controller = new AbortController();
      if (was) c.abort(new DOMException('The client closed the connection', 'AbortError'));
    }
    return c.signal;
  }

  get body() {
    if (this[kReal]) return this[kReal].body;
    const x = this[kX];
    if (!x.hasBody) return null;
    if (this._stream) return this._stream;
    if (this._used) throw new TypeError('Body is unusable: Body has already been read');
    // Chunks as the connection gives them; past 64 KiB queued, the connection
    // waits until the reader pulls.
    this._stream = new ReadableStream({
      start: (controller) => {
        if (x.bodyError) {
          controller.error(x.bodyError);
          return;
        }
        if (x.chunks) {
          for (const c of x.chunks) controller.enqueue(c);
          x.chunks = null;
          x.buffered = 0;
        }
        if (x.ended) controller.close();
        else x.stream = controller;
      },
      pull: () => resumeBody(x.handle),
      cancel: () => {
        x.stream = null;
        x.chunks = null;
      },
    }, { highWaterMark: 65536, size: (c) => c.byteLength });
    return this._stream;
  }

  get bodyUsed() {
    if (this[kReal]) return this[kReal].bodyUsed;
    if (this._stream) return this._stream.locked;
    return this._used;
  }

  _consume() {
    if (this._used) {
      return Promise.reject(new TypeError('Body is unusable: Body has already been read'));
    }
    this._used = true;
    return this[kX].hasBody ? this[kX].readAll() : Promise.resolve(Buffer.alloc(0));
  }

  text() {
    if (this[kReal] || this._stream) return realRequest(this).text();
    return this._consume().then((b) => b.toString('utf8'));
  }
  json() {
    if (this[kReal] || this._stream) return realRequest(this).json();
    return this._consume().then((b) => JSON.parse(b.toString('utf8')));
  }
  arrayBuffer() {
    if (this[kReal] || this._stream) return realRequest(this).arrayBuffer();
    return this._consume().then((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  }
  bytes() {
    if (this[kReal] || this._stream) return realRequest(this).bytes();
    return this._consume().then((b) => new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
  }
  blob() {
    if (this[kReal] || this._stream) return realRequest(this).blob();
    const type = this.headers.get('content-type') || '';
    return this._consume().then((b) => new Blob([b], { type }));
  }
  formData() {
    if (this[kReal] || this._stream) return realRequest(this).formData();
    const type = this.headers.get('content-type') || '';
    return this._consume().then((b) => new NativeResponse(b, { headers: { 'content-type': type } }).formData());
  }

  get [Symbol.toStringTag]() { return 'Request'; }
}

function realRequest(r) {
  let real = r[kReal];
  if (real === null) {
    const x = r[kX];
    const init = { method: r._method, headers: r.headers, signal: r.signal };
    if (x.hasBody && r._method !== 'GET' && r._method !== 'HEAD') {
      init.body = r.body;
      init.duplex = 'half';
    }
    real = new NativeRequest(r.url, init);
    r[kReal] = real;
  }
  return real;
}

// Every other member of Request.prototype, from the real request.
function forwardRest(Light, Native, realOf) {
  for (const name of Object.getOwnPropertyNames(Native.prototype)) {
    if (name === 'constructor' || Object.prototype.hasOwnProperty.call(Light.prototype, name)) continue;
    const d = Object.getOwnPropertyDescriptor(Native.prototype, name);
    if (d.get) {
      Object.defineProperty(Light.prototype, name, {
        configurable: true,
        enumerable: d.enumerable,
        get() { return realOf(this)[name]; },
      });
    } else if (typeof d.value === 'function') {
      Object.defineProperty(Light.prototype, name, {
        configurable: true,
        writable: true,
        enumerable: d.enumerable,
        value: { [name](...args) { const r = realOf(this); return r[name](...args); } }[name],
      });
    }
  }
}
forwardRest(KuaiRequest, NativeRequest, realRequest);

// --------------------------------------------------------------- responses

// `Response` in an environment that serves fetch handlers: the same API, with
// its body and init kept as given until something needs the real one.
class Response {
  constructor(body = null, init = undefined) {
    let status = 200;
    if (init !== undefined && init !== null) {
      if (typeof init !== 'object') {
        throw new TypeError("Failed to construct 'Response': The provided value is not of type 'ResponseInit'");
      }
      if (init.status !== undefined) {
        status = Number(init.status) | 0;
        if (status < 200 || status > 599) {
          throw new RangeError(`init["status"] must be in the range of 200 to 599, inclusive.`);
        }
      }
      if (init.statusText !== undefined && /[^\t\x20-\x7e\x80-\xff]/.test(String(init.statusText))) {
        throw new TypeError('Invalid statusText');
      }
    }
    if (body !== null && body !== undefined && kNullBodyStatus.has(status)) {
      throw new TypeError('Response constructor: Invalid response status code ' + status);
    }
    this[kBody] = body === undefined ? null : body;
    this[kInit] = init === undefined ? null : init;
    this[kStatus] = status;
    this[kHeadersObj] = null;
    this[kType] = null;
    this[kStream] = undefined;
    this[kReal] = null;
  }

  // A stream of a known body, without the real Response: frameworks that copy
  // a response (new Response(res.body, res), Hono's header changes after the
  // handler) hand it back, and it is sent as the body it came from.
  get body() {
    if (this[kReal]) return this[kReal].body;
    let st = this[kStream];
    if (st === undefined) {
      const b = this[kBody];
      const bytes = knownBytes(b);
      if (b === null) {
        st = null;
      } else if (b instanceof ReadableStream) {
        st = b;
      } else if (bytes !== null) {
        st = new ReadableStream({
          start(c) {
            if (bytes.byteLength) c.enqueue(bytes);
            c.close();
          },
        });
        st[kSource] = b;
      } else {
        return realResponse(this).body;
      }
      this[kStream] = st;
    }
    return st;
  }
  get bodyUsed() {
    if (this[kReal]) return this[kReal].bodyUsed;
    const st = this[kStream];
    return st !== undefined && st !== null && st.locked;
  }

  static json(data, init = undefined) {
    const text = JSON.stringify(data);
    if (text === undefined) throw new TypeError('Value is not JSON serializable');
    const r = new Response(text, init);
    r[kType] = 'application/json';
    return r;
  }
  static error() { return NativeResponse.error(); }
  static redirect(url, status) { return NativeResponse.redirect(url, status); }
  static [Symbol.hasInstance](v) { return v instanceof NativeResponse; }

  get status() { return this[kReal] ? this[kReal].status : this[kStatus]; }
  get ok() { const s = this.status; return s >= 200 && s <= 299; }
  get statusText() {
    if (this[kReal]) return this[kReal].statusText;
    const i = this[kInit];
    return i && i.statusText !== undefined ? String(i.statusText) : '';
  }
  get headers() {
    if (this[kReal]) return this[kReal].headers;
    let h = this[kHeadersObj];
    if (h === null) {
      const i = this[kInit];
      h = new NativeHeaders(i && i.headers ? i.headers : undefined);
      const b = this[kBody];
      if (!h.has('content-type')) {
        const t = this[kType] || defaultType(b);
        if (t) h.set('content-type', t);
      }
      this[kHeadersObj] = h;
    }
    return h;
  }
  get type() { return this[kReal] ? this[kReal].type : 'default'; }
  get url() { return this[kReal] ? this[kReal].url : ''; }
  get redirected() { return this[kReal] ? this[kReal].redirected : false; }

  get [Symbol.toStringTag]() { return 'Response'; }
}

function defaultType(b) {
  if (typeof b === 'string') return kTextType;
  if (b instanceof URLSearchParams) return 'application/x-www-form-urlencoded;charset=UTF-8';
  if (b instanceof Blob) return b.type || '';
  return '';
}

// The bytes of a body known without reading: a string or bytes; else null.
function knownBytes(b) {
  if (typeof b === 'string') return Buffer.from(b);
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (b instanceof URLSearchParams) return Buffer.from(b.toString());
  return null;
}

function realResponse(r) {
  let real = r[kReal];
  if (real === null) {
    const i = r[kInit];
    const headers = r.headers;  // with the default content-type, as undici adds it
    const st = r[kStream];
    real = new NativeResponse(st !== undefined ? st : r[kBody], {
      status: r[kStatus],
      statusText: i && i.statusText !== undefined ? i.statusText : '',
      headers,
    });
    r[kReal] = real;
  }
  return real;
}
forwardRest(Response, NativeResponse, realResponse);
const ResponseProto = Response.prototype;
Object.setPrototypeOf(Response.prototype, NativeResponse.prototype);
Object.setPrototypeOf(Response, NativeResponse);

// `Request` in a serving environment: undici's, also taking kuai's requests
// as input (new Request(request, init)).
class Request extends NativeRequest {
  constructor(input, init) {
    super(input instanceof KuaiRequest ? realRequest(input) : input, init);
  }
  static [Symbol.hasInstance](v) { return v instanceof NativeRequest; }
}
Object.setPrototypeOf(KuaiRequest.prototype, Request.prototype);
Object.defineProperty(KuaiRequest, 'name', { value: 'Request' });

function fetch(input, init) {
  return nativeFetch(input instanceof KuaiRequest ? realRequest(input) : input, init);
}

let globalsInstalled = false;
function installGlobals() {
  if (globalsInstalled) return;
  globalsInstalled = true;
  const define = (name, value) => Object.defineProperty(globalThis, name, {
    value, writable: true, configurable: true, enumerable: false,
  });
  define('Response', Response);
  define('Request', Request);
  // fetch as Node has it unless kuai's client replaced it.
  if (globalThis.fetch === nativeFetch) define('fetch', fetch);
}

// ---------------------------------------------------------------- answering

function headerLines(x, headers, out) {
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
    let lines = headerLines(x, hdrs, scratch);
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
  const lines = headerLines(x, r.headers, scratch);
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
    console.error(err && err.stack ? err.stack : err);
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
    if (c === false) return Promise.reject(new DOMException('The response was not completed', 'AbortError'));
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
    Promise.resolve(promise).catch((err) => console.error(err && err.stack ? err.stack : err));
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
      console.error(e2 && e2.stack ? e2.stack : e2);
      internalError(x);
      return;
    }
    Promise.resolve(r).then((v) => {
      try {
        send(x, v);
      } catch (e3) {
        console.error(e3 && e3.stack ? e3.stack : e3);
        internalError(x);
      }
    }, (e3) => {
      console.error(e3 && e3.stack ? e3.stack : e3);
      internalError(x);
    });
    return;
  }
  console.error(err && err.stack ? err.stack : err);
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
  } else if (!binding || binding.reactor === 0) {
    const shown = addr.hostname.includes(':') ? `[${addr.hostname}]` : addr.hostname;
    console.error(`kuai: serving fetch handler on ${tls ? 'https' : 'http'}://${shown}:${addr.port}/`);
  }
  const signal = o.signal;
  if (signal) {
    if (signal.aborted) server.shutdown();
    else signal.addEventListener('abort', () => server.shutdown(), { once: true });
  }
  return server;
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
  if (binding.reactor === 0) {
    const a = server.addr;
    const shown = a.hostname.includes(':') ? `[${a.hostname}]` : a.hostname;
    console.error(`kuai: serving fetch handler on http://${shown}:${a.port}/`);
  }
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
