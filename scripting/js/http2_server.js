'use strict';
// kuai's server side of Node's `http2`: createServer (h2c with prior
// knowledge) and createSecureServer (ALPN h2, with allowHTTP1 also http/1.1)
// served by the reactor's HTTP/2 (nghttp2), with Node's compatibility API:
// 'request' gets an Http2ServerRequest and an Http2ServerResponse built on the
// same handles as http's. HTTP/1.1 requests on an allowHTTP1 server get http's
// IncomingMessage and ServerResponse, as under Node. Node's http2 client
// (http2.connect) is left untouched.

const {
  Server, HttpsServer, IncomingMessage, ServerResponse, kCompat, kParsedHeaders, kHandle,
  kTrailerLines, linkHints,
} = require('./http_server');
const { kImplicitLength } = require('./http_response.js');
const { codedError, receivedText, kTokenRe, kInvalidValueRe } = require('./outgoing_headers');
const {
  emitStream, validStatus, headersSent, fieldLines, checkNotConnectionSpecific, kSession, kStreamId,
} = require('./http2_stream');

// Node's http2 keeps the first of these when a request repeats them.
const kSingleValued = new Set([
  ':method', ':path', ':scheme', ':authority', ':status', ':protocol',
  'access-control-allow-credentials', 'access-control-max-age', 'access-control-request-method',
  'age', 'authorization', 'content-encoding', 'content-language', 'content-length',
  'content-location', 'content-md5', 'content-range', 'content-type', 'date', 'dnt', 'etag',
  'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match', 'if-range',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization',
  'range', 'referer', 'retry-after', 'tk', 'upgrade-insecure-requests', 'user-agent',
  'x-content-type-options',
]);

function warn(message) {
  process.emitWarning(message, 'UnsupportedWarning');
}

// The request as Node's http2 compat layer shows it: the pseudo-header fields
// first (as kuai passes them), then the client's own (a host that kuai made
// from :authority is not the client's).
function rawHeaders(method, url, raw, flags) {
  return flags & 4 ? raw.slice(0, raw.length - 2) : raw;
}

class Http2ServerRequest extends IncomingMessage {
  constructor(socket) {
    super(socket);
    this.httpVersionMajor = 2;
    this.httpVersionMinor = 0;
    this.httpVersion = '2.0';
  }

  get headers() {
    let h = this[kParsedHeaders];
    if (h) return h;
    h = { __proto__: null };
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i];
      const value = raw[i + 1];
      const prev = h[name];
      if (prev === undefined) {
        h[name] = name === 'set-cookie' ? [value] : value;
      } else if (!kSingleValued.has(name)) {
        if (name === 'cookie') h[name] = `${prev}; ${value}`;
        else if (name === 'set-cookie') prev.push(value);
        else h[name] = `${prev}, ${value}`;
      }
    }
    this[kParsedHeaders] = h;
    return h;
  }
  set headers(v) { this[kParsedHeaders] = v; }

  get authority() {
    const h = this.headers;
    return h[':authority'] !== undefined ? h[':authority'] : h.host;
  }
  get scheme() { return this.headers[':scheme']; }
  get stream() { return streamOf(this); }
}

// What req.stream / res.stream give: the stream's facts (its id, the
// connection's session). kuai serves no push streams and answers through
// the response object.
const kStreamFacts = Symbol('kuai.h2stream');
function streamOf(req) {
  let facts = req[kStreamFacts];
  if (facts === undefined) {
    facts = req[kStreamFacts] = {
      id: req[kStreamId],
      pushAllowed: false,
      session: req[kSession],
      get destroyed() { return req.destroyed; },
    };
  }
  return facts;
}

// A field as Node's http2 takes it: the name in lower case and a token, a
// value given, connection-specific fields refused with a warning.
function checkField(name, value) {
  if (typeof name !== 'string') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "name" argument must be of type string');
  }
  name = name.trim().toLowerCase();
  if (!kTokenRe.test(name)) {
    throw codedError(TypeError, 'ERR_INVALID_HTTP_TOKEN', `Header name must be a valid HTTP token ["${name}"]`);
  }
  if (value === undefined || value === null) {
    throw codedError(TypeError, 'ERR_HTTP2_INVALID_HEADER_VALUE', `Invalid value "${value}" for header "${name}"`);
  }
  for (const v of Array.isArray(value) ? value : [value]) {
    if (kInvalidValueRe.test(String(v))) {
      throw codedError(TypeError, 'ERR_INVALID_CHAR', `Invalid character in header content ["${name}"]`);
    }
  }
  if (name === 'connection') {
    warn('The provided connection header is not valid, the value will be dropped from the header ' +
         'and will never be in use.');
    return null;
  }
  return name;
}

const kFields = Symbol('kuai.h2fields');  // name -> value, lower-case names
const kH2Trailers = Symbol('kuai.h2trailers');

class Http2ServerResponse extends ServerResponse {
  constructor(req) {
    super(req);
    this[kFields] = { __proto__: null };
    this.statusCode = 200;
  }

  get statusCode() { return this._status; }
  set statusCode(code) { this._status = validStatus(code); }
  get statusMessage() {
    warn('Status message is not supported by HTTP/2 (RFC7540 8.1.2.4)');
    return '';
  }
  set statusMessage(v) {
    if (v !== undefined) warn('Status message is not supported by HTTP/2 (RFC7540 8.1.2.4)');
  }
  get stream() { return streamOf(this.req); }

  setHeader(name, value) {
    if (this.headersSent) throw headersSent();
    name = checkField(name, value);
    if (name !== null) this[kFields][name] = value;
    return this;
  }
  appendHeader(name, value) {
    if (this.headersSent) throw headersSent();
    name = checkField(name, value);
    if (name === null) return this;
    const prev = this[kFields][name];
    this[kFields][name] = prev === undefined ? value
      : (Array.isArray(prev) ? prev : [prev]).concat(value);
    return this;
  }
  getHeader(name) {
    if (typeof name !== 'string') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "name" argument must be of type string');
    }
    return this[kFields][name.trim().toLowerCase()];
  }
  getHeaders() { return { __proto__: null, ...this[kFields] }; }
  getHeaderNames() { return Object.keys(this[kFields]); }
  hasHeader(name) { return this.getHeader(name) !== undefined; }
  removeHeader(name) {
    if (this.headersSent) throw headersSent();
    if (typeof name !== 'string') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "name" argument must be of type string');
    }
    delete this[kFields][name.trim().toLowerCase()];
  }

  writeHead(statusCode, statusMessage, headers) {
    if (this.headersSent) throw headersSent();
    if (typeof statusMessage === 'string') {
      warn('Status message is not supported by HTTP/2 (RFC7540 8.1.2.4)');
    } else {
      headers = statusMessage;
    }
    this.statusCode = statusCode;
    if (Array.isArray(headers)) {
      if (headers.length && Array.isArray(headers[0])) {
        for (const [k, v] of headers) this.appendHeader(k, v);
      } else {
        if (headers.length % 2 !== 0) {
          throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE', "The argument 'headers' is invalid.");
        }
        for (let i = 0; i < headers.length; i += 2) this.appendHeader(headers[i], headers[i + 1]);
      }
    } else if (headers) {
      for (const k of Object.keys(headers)) this.setHeader(k, headers[k]);
    }
    this._sendHead(this[kImplicitLength]);
    return this;
  }

  // HTTP/2 frames the body itself: no content-length unless the handler set
  // one, no reason phrase, no connection fields. As Node: a response that
  // ends with nothing written (end() with no body, length 0 here) goes out
  // as a head that ends the stream, without its trailers.
  _sendHead(length) {
    if (this.headersSent) return;
    if (length === 0) this[kTrailerLines] = undefined;
    const f = this[kFields];
    let lines = '';
    for (const name in f) {
      const value = f[name];
      checkNotConnectionSpecific(name, value);
      if (Array.isArray(value)) {
        for (const v of value) lines += `${name}: ${v}\r\n`;
      } else {
        lines += `${name}: ${value}\r\n`;
      }
    }
    this.headersSent = true;
    const handle = this[kHandle];
    // The handler's own date field, or none with sendDate false (2: the
    // native side adds no date of its own, Exchange::kOwnDate).
    const ownDate = f.date !== undefined || this.sendDate === false;
    if (handle) handle.writeHead(this._status, '', lines, -1, -1, ownDate ? 2 : 0);
  }

  createPushResponse() {
    throw codedError(Error, 'ERR_HTTP2_PUSH_DISABLED', 'HTTP/2 client has disabled push streams');
  }

  // Trailing fields, sent as HEADERS after the body (as Node's compatibility
  // API, on every response).
  setTrailer(name, value) {
    name = checkField(name, value);
    if (name === null) return;
    const t = this[kH2Trailers] || (this[kH2Trailers] = { __proto__: null });
    t[name] = value;
    let lines = '';
    for (const key in t) {
      for (const v of Array.isArray(t[key]) ? t[key] : [t[key]]) lines += `${key}: ${v}\r\n`;
    }
    this[kTrailerLines] = lines;
  }
  addTrailers(headers) {
    for (const key of Object.keys(headers)) this.setTrailer(key, headers[key]);
  }

  // A 1xx before the head (Node: false once the head is out).
  writeInformation(statusCode, headers) {
    if (typeof statusCode !== 'number' || statusCode < 100 || statusCode > 199 || statusCode === 101) {
      throw codedError(RangeError, 'ERR_HTTP2_STATUS_INVALID', `Invalid status code: ${statusCode}`);
    }
    if (this.headersSent || this.writableEnded) return false;
    const lines = headers ? fieldLines(headers, statusCode) : '';
    const handle = this[kHandle];
    if (handle) handle.writeInformational(statusCode, lines);
    return true;
  }
  writeContinue() {
    return this.writeInformation(100);
  }
  // 103 Early Hints: the other hints, then Link (as Node's http2).
  writeEarlyHints(hints) {
    if (hints === null || typeof hints !== 'object' || Array.isArray(hints)) {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        `The "hints" argument must be of type object. Received ${receivedText(hints)}`);
    }
    const link = linkHints(hints.link);
    const headers = { __proto__: null };
    for (const key of Object.keys(hints)) {
      if (key === 'link') continue;
      const name = checkField(key, hints[key]);
      if (name !== null) headers[name] = hints[key];
    }
    if (link.length === 0) return false;
    headers.link = link;
    return this.writeInformation(103, headers);
  }
}

function http2Mode(options) {
  return options && options.allowHTTP1 === true ? 1 : 2;
}

const compat = { Request: Http2ServerRequest, Response: Http2ServerResponse, rawHeaders, emitStream };

// http2.createServer: clear text, HTTP/2 with prior knowledge only (Node's
// allowHTTP1 is for secure servers).
class Http2Server extends Server {
  constructor(options, requestListener) {
    super(options, requestListener);
    this._http2 = 2;
    this[kCompat] = compat;
  }
}

class Http2SecureServer extends HttpsServer {
  constructor(options, requestListener) {
    super(options, requestListener, 'http2.createSecureServer');
    this._http2 = http2Mode(typeof options === 'function' ? {} : options);
    this[kCompat] = compat;
  }
}

module.exports = function install(http2) {
  http2.createServer = (options, listener) => new Http2Server(options, listener);
  http2.createSecureServer = (options, listener) => new Http2SecureServer(options, listener);
  http2.Http2ServerRequest = Http2ServerRequest;
  http2.Http2ServerResponse = Http2ServerResponse;
  http2.Http2Server = Http2Server;
  http2.Http2SecureServer = Http2SecureServer;
};
