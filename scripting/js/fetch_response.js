'use strict';
// Fetch-style handlers (js/fetch_server.js): the `Response`, `Request` and
// `fetch` globals of an environment that serves fetch handlers. kuai's
// Response keeps its body and init as given (so js/fetch_server.js can send a
// known body with its length and no stream) and makes the real undici one
// only when something needs it; Request and fetch also take kuai's requests.

const { KuaiRequest, realRequest, forwardRest, kReal, kHeadersObj } = require('./fetch_request.js');

const NativeRequest = globalThis.Request;
const NativeResponse = globalThis.Response;
const NativeHeaders = globalThis.Headers;
const nativeFetch = globalThis.fetch;

const kBody = Symbol('kuai.body');
const kInit = Symbol('kuai.init');
const kStatus = Symbol('kuai.status');
const kType = Symbol('kuai.type');        // Response.json's default type
const kStream = Symbol('kuai.stream');    // a light Response's body as a stream, once asked for
const kSource = Symbol('kuai.source');    // on such a stream: the body it was made from

const kNullBodyStatus = new Set([101, 103, 204, 205, 304]);
const kTextType = 'text/plain;charset=UTF-8';

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

module.exports = {
  Response, installGlobals, realResponse, ResponseProto,
  kBody, kInit, kStatus, kType, kSource,
};
