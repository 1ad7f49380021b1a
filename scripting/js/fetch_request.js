'use strict';
// Fetch-style handlers (js/fetch_server.js): the request side. FetchExchange is
// one request's state between the native handle and the handler; KuaiRequest
// is the `Request` the handler receives, its url, headers, signal and body made
// on first use and its body methods reading the connection directly.
// Anything it does not answer itself goes to a real undici Request made from
// it on first use (realRequest).

const { codedError } = require('./outgoing_headers.js');

const NativeRequest = globalThis.Request;
const NativeHeaders = globalThis.Headers;
const NativeResponse = globalThis.Response;

const kReal = Symbol('kuai.real');        // the undici object, once made
const kX = Symbol('kuai.exchange');       // a request's FetchExchange
const kHeadersObj = Symbol('kuai.headers');

// The reason a request's signal and streams end with when the client leaves.
function clientGone() {
  return new DOMException('The client closed the connection', 'AbortError');
}

// info.completed's rejection.
function notCompleted() {
  return new DOMException('The response was not completed', 'AbortError');
}

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
      this.controller.abort(clientGone());
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
    if (r) r.cancel(clientGone()).catch(() => {});
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
      else c[2](notCompleted());
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
      if (was) c.abort(clientGone());
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

module.exports = {
  FetchExchange, KuaiRequest, realRequest, forwardRest, notCompleted, kReal, kHeadersObj,
};
