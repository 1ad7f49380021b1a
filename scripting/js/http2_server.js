'use strict';
// kuai's server side of Node's `http2`: createServer (h2c with prior
// knowledge) and createSecureServer (ALPN h2, with allowHTTP1 also http/1.1)
// served by the reactor's HTTP/2 (nghttp2), with Node's compatibility API:
// 'request' gets an Http2ServerRequest and an Http2ServerResponse built on the
// same handles as http's. HTTP/1.1 requests on an allowHTTP1 server get http's
// IncomingMessage and ServerResponse, as under Node. Node's http2 client
// (http2.connect) is left untouched.

const fs = require('fs');
const { Duplex } = require('stream');
const {
  Server, HttpsServer, IncomingMessage, ServerResponse,
  kCompat, kRawHeaders, kParsedHeaders, kHandle, handleRead, handleWrite,
} = require('./http_server');
const { codedError } = require('./outgoing_headers');

// Fields HTTP/2 has no room for (RFC 9113, 8.2.2). As Node: Connection is
// dropped with a warning when set, the others refuse the head when it goes
// out (te only with "trailers").
const kConnectionFields = new Set([
  'connection', 'upgrade', 'http2-settings', 'te', 'transfer-encoding', 'keep-alive',
  'proxy-connection',
]);

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

const kTokenRe = /^[\^_`a-zA-Z\-0-9!#$%&'*+.|~]+$/;
const kInvalidValueRe = /[^\t\x20-\x7e\x80-\xff]/;

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

// What req.stream / res.stream give: the stream's facts. kuai serves no
// push streams and answers through the response object.
function streamOf(req) {
  const socket = req.socket;
  return {
    pushAllowed: false,
    session: { socket, encrypted: socket.encrypted === true },
    get destroyed() { return req.destroyed; },
  };
}

function validStatus(code) {
  code |= 0;
  if (code === 101) {
    throw codedError(RangeError, 'ERR_HTTP2_INFO_STATUS_NOT_ALLOWED',
      'Informational status codes cannot be used');
  }
  if (code < 100 || code > 599) {
    throw codedError(RangeError, 'ERR_HTTP2_STATUS_INVALID', `Invalid status code: ${code}`);
  }
  return code;
}

function headersSent() {
  return codedError(Error, 'ERR_HTTP2_HEADERS_SENT', 'Response has already been initiated.');
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
    this._sendHead(-1);
    return this;
  }

  // HTTP/2 frames the body itself: no content-length unless the handler set
  // one, no reason phrase, no connection fields.
  _sendHead() {
    if (this.headersSent) return;
    const f = this[kFields];
    let lines = '';
    for (const name in f) {
      const value = f[name];
      if (kConnectionFields.has(name) && !(name === 'te' && value === 'trailers')) {
        throw codedError(TypeError, 'ERR_HTTP2_INVALID_CONNECTION_HEADERS',
          `HTTP/1 Connection specific headers are forbidden: "${name}"`);
      }
      if (Array.isArray(value)) {
        for (const v of value) lines += `${name}: ${v}\r\n`;
      } else {
        lines += `${name}: ${value}\r\n`;
      }
    }
    this.headersSent = true;
    const handle = this[kHandle];
    if (handle) handle.writeHead(this._status, '', lines, -1, -1);
  }

  createPushResponse() {
    throw codedError(Error, 'ERR_HTTP2_PUSH_DISABLED', 'HTTP/2 client has disabled push streams');
  }
  writeEarlyHints() {}
}

// Node's core API: server.on('stream', (stream, headers, flags) => ...), for
// servers with 'stream' listeners and no 'request' listener. The stream is a
// Duplex: the request body to read, the response body to write once
// respond() has sent the head. It rides the handle the way an upgraded
// socket does (handle.tunnel: body in, 'drain' out, abort).
class ServerHttp2Stream extends Duplex {
  constructor(handle, req) {
    super({ allowHalfOpen: true });
    this[kHandle] = handle;
    this.session = { socket: req.socket, encrypted: req.socket.encrypted === true };
    this.pushAllowed = false;
    this.headersSent = false;
    this.sentHeaders = undefined;
    this.aborted = false;
    this.rstCode = undefined;
    this._writeCb = null;
    this._tunnelOf = handle;
  }

  get closed() { return this.destroyed; }

  respond(headers, options) {
    if (this.destroyed) throw codedError(Error, 'ERR_HTTP2_INVALID_STREAM', 'The stream has been destroyed');
    if (this.headersSent) throw headersSent();
    headers = headers || {};
    let status = 200;
    let lines = '';
    const sent = { __proto__: null };
    for (const key of Object.keys(headers)) {
      const name = key.toLowerCase();
      const value = headers[key];
      if (value === undefined) continue;
      if (name === ':status') {
        status = validStatus(value);
        continue;
      }
      if (name[0] === ':') {
        throw codedError(TypeError, 'ERR_HTTP2_INVALID_PSEUDOHEADER', `"${name}" is an invalid pseudoheader or is used incorrectly`);
      }
      if (!kTokenRe.test(name)) {
        throw codedError(TypeError, 'ERR_INVALID_HTTP_TOKEN', `Header name must be a valid HTTP token ["${name}"]`);
      }
      if (name === 'connection' || (kConnectionFields.has(name) && !(name === 'te' && value === 'trailers'))) {
        throw codedError(TypeError, 'ERR_HTTP2_INVALID_CONNECTION_HEADERS',
          `HTTP/1 Connection specific headers are forbidden: "${name}"`);
      }
      for (const v of Array.isArray(value) ? value : [value]) {
        if (kInvalidValueRe.test(String(v))) {
          throw codedError(TypeError, 'ERR_INVALID_CHAR', `Invalid character in header content ["${name}"]`);
        }
        lines += `${name}: ${v}\r\n`;
      }
      sent[name] = value;
    }
    sent[':status'] = status;
    this.headersSent = true;
    this.sentHeaders = sent;
    const handle = this[kHandle];
    if (handle) handle.writeHead(status, '', lines, -1, -1);
    if (options && options.endStream) this.end();
  }

  respondWithFile(file, headers, options) {
    fs.stat(file, (err, st) => {
      if (!err && !st.isFile()) err = codedError(Error, 'ERR_HTTP2_SEND_FILE', 'Directories cannot be sent');
      if (err) {
        const onError = options && options.onError;
        if (typeof onError === 'function') onError(err);
        else this.destroy(err);
        return;
      }
      const h = { ...(headers || {}) };
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-length')) h['content-length'] = st.size;
      this.respond(h);
      fs.createReadStream(file).pipe(this);
    });
  }

  pushStream() {
    throw codedError(Error, 'ERR_HTTP2_PUSH_DISABLED', 'HTTP/2 client has disabled push streams');
  }
  additionalHeaders() {}
  priority() {}
  setTimeout(ms, cb) {
    if (cb) this.once('timeout', cb);
    return this;
  }
  close(code, cb) {
    this.rstCode = code === undefined ? 0 : code;
    if (typeof cb === 'function') this.once('close', cb);
    this.destroy();
  }

  _read() { handleRead(this); }
  _write(chunk, encoding, cb) {
    if (this[kHandle] && !this.headersSent) this.respond();
    handleWrite(this, chunk, encoding, cb);
  }
  _final(cb) {
    if (!this.headersSent) this.respond();
    const h = this[kHandle];
    this[kHandle] = null;
    // The handle still brings the rest of the request body (h.tunnel).
    if (h) h.end();
    this._localEnded = true;
    cb();
    // As Node: the stream closes once both sides are done, read or not.
    if (this._remoteEnded) process.nextTick(() => this.destroy());
  }
  push(chunk, encoding) {
    if (chunk === null) {
      this._remoteEnded = true;
      if (this._localEnded) process.nextTick(() => this.destroy());
    }
    return super.push(chunk, encoding);
  }
  _drained() {
    const cb = this._writeCb;
    this._writeCb = null;
    if (cb) cb();
  }
  _destroy(err, cb) {
    const h = this[kHandle];
    this[kHandle] = null;
    if (this._tunnelOf) this._tunnelOf.tunnel = null;
    if (h) {
      // Cut short: by the client (a reset: 'aborted') or by the handler.
      h.tunnel = null;
      if (!this.writableFinished) {
        this.aborted = true;
        this.emit('aborted');
      }
      h.abort();
    }
    const w = this._writeCb;
    this._writeCb = null;
    if (w) w(err || codedError(Error, 'ERR_STREAM_DESTROYED', 'Cannot call write after a stream was destroyed'));
    cb(err);
  }
}

// The 'stream' event for a request dispatch() made: true when it was taken.
function emitStream(server, req, res, handle, flags) {
  if (server.listenerCount('request') > 0 || server.listenerCount('stream') === 0) return false;
  const stream = new ServerHttp2Stream(handle, req);
  handle.req = null;
  handle.res = null;
  handle.tunnel = stream;
  const bodyless = !(flags & 16);
  server.emit('stream', stream, req.headers, bodyless ? 5 : 4, req.rawHeaders);
  return true;
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
