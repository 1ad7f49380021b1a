'use strict';
// kuai's http client: require('kuai').request / get / fetch. Requests go out
// through the reactor thread's native keep-alive pools (server::Agent: one
// pool per origin and thread, with the proxy's timeouts, retries of idempotent
// requests on a stale connection, and backpressure both ways), not through
// Node's net sockets.
//
// request() follows Node's http.request (ClientRequest / IncomingMessage);
// fetch() (js/fetch_client.js, over request()) follows the WHATWG fetch that
// Node ships (undici) and answers a real global Response. https: URLs (and
// unix sockets, createConnection) go to Node's own https.request /
// http.request / fetch.
//
// The native side (environment.cc, JsClientCall): binding.clientRequest(ip,
// port, head, flags) starts a call and returns its handle (write, end, abort,
// drain); the call's events come back through setClientCallbacks.

const Stream = require('stream');
const net = require('net');
const dns = require('dns');
const { URL, urlToHttpOptions } = require('url');
const { ClientSocket, ClientIncomingMessage } = require('./client_message.js');

const {
  checkName, checkValue, codedError, kHeaders: kOutHeaders, installOutgoingHeaders, kTokenRe, trailerLines,
} = require('./outgoing_headers.js');
const { setReceivedTrailers } = require('./http_server.js');

let binding = null;

// > 0 while a call into the binding runs: an event the native side raises
// synchronously then (a call that failed at once) waits for the next tick, so
// JS is never re-entered from inside its own call.
let inNative = 0;
function native(fn) {
  ++inNative;
  try {
    return fn();
  } finally {
    --inNative;
  }
}

// Requests in flight keep the thread's event loop alive (as Node's sockets
// do); the reactor's own sockets are invisible to libuv. One long timer,
// ref'd while anything is in flight.
let inFlight = 0;
let keeper = null;
function hold() {
  if (inFlight++ > 0) return;
  if (keeper === null) {
    keeper = setInterval(() => {}, 1 << 30);
  } else {
    keeper.ref();
  }
}
function unhold() {
  if (--inFlight === 0 && keeper !== null) keeper.unref();
}

const kIdempotent = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'TRACE']);
// Methods Node sends without chunked framing by default (no body expected).
const kNoBodyByDefault = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);
const kInvalidPath = /[^\u0021-\u00ff]/;
const kHighWaterMark = 16 * 1024;

function connResetError(message) {
  const e = new Error(message);
  e.code = 'ECONNRESET';
  return e;
}

function abortError(signal) {
  const e = new Error('The operation was aborted');
  e.name = 'AbortError';
  e.code = 'ABORT_ERR';
  if (signal && signal.reason !== undefined) e.cause = signal.reason;
  return e;
}

function timerDuration(ms, name) {
  if (typeof ms !== 'number') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
      `The "${name}" argument must be of type number. Received ${typeof ms}`);
  }
  if (!(ms >= 0) || ms > 2147483647) {
    throw codedError(RangeError, 'ERR_OUT_OF_RANGE',
      `The value of "${name}" is out of range. It must be >= 0 && <= 2147483647. Received ${ms}`);
  }
  return ms;
}

function validateHost(host, name) {
  if (host !== null && host !== undefined && typeof host !== 'string') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
      `The "options.${name}" property must be of type string or one of undefined or null.`);
  }
  return host;
}

function isURL(v) {
  return v instanceof URL ||
    Boolean(v && typeof v === 'object' && v.href && v.protocol && v.auth === undefined &&
            v.path === undefined);
}

function toBuffer(chunk, encoding) {
  if (typeof chunk === 'string') return Buffer.from(chunk, encoding || 'utf8');
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

function checkChunk(chunk) {
  if (chunk === null) {
    throw codedError(TypeError, 'ERR_STREAM_NULL_VALUES', 'May not write null values to stream');
  }
  if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
      'The "chunk" argument must be of type string or an instance of Buffer or Uint8Array');
  }
}

const kError = Symbol('kuai.error');

class ClientRequest extends Stream {
  // opts: normalized options (a fresh object); cb: a 'response' listener.
  constructor(opts, cb) {
    super();
    this.agent = opts.agent;  // accepted, unused: the native pool is the agent
    const defaultPort = opts.defaultPort || 80;
    let port = opts.port || defaultPort;
    if (typeof port === 'string' && /^\d+$/.test(port)) port = Number(port);
    if (typeof port !== 'number' || !Number.isInteger(port) || port <= 0 || port > 65535) {
      throw codedError(RangeError, 'ERR_SOCKET_BAD_PORT',
        `Port should be > 0 and < 65536. Received ${port}.`);
    }
    const host = validateHost(opts.hostname, 'hostname') || validateHost(opts.host, 'host') ||
      'localhost';
    const setHost = opts.setHost === undefined || Boolean(opts.setHost);

    let method = opts.method;
    if (method !== null && method !== undefined && typeof method !== 'string') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        'The "options.method" property must be of type string.');
    }
    if (method) {
      if (!kTokenRe.test(method)) {
        throw codedError(TypeError, 'ERR_INVALID_HTTP_TOKEN', `Method must be a valid HTTP token ["${method}"]`);
      }
      method = method.toUpperCase();
    } else {
      method = 'GET';
    }
    const path = opts.path ? String(opts.path) : '/';
    if (kInvalidPath.test(path)) {
      throw codedError(TypeError, 'ERR_UNESCAPED_CHARACTERS', 'Request path contains unescaped characters');
    }

    this.method = method;
    this.path = path;
    this.host = host;
    this.protocol = 'http:';
    this.res = null;
    this.aborted = false;
    this.destroyed = false;
    this.finished = false;
    this.writableEnded = false;
    this.writableFinished = false;
    this.reusedSocket = false;
    this.upgradeOrConnect = false;
    this.maxHeadersCount = null;
    this.shouldKeepAlive = true;
    this.useChunkedEncodingByDefault = !kNoBodyByDefault.has(method);
    this.chunkedEncoding = false;
    this.sendDate = false;
    this.timeoutCb = null;
    this.socket = null;
    this._header = null;
    this._trailer = '';
    this._ended = false;
    this[kOutHeaders] = [];
    this[kError] = undefined;

    this._port = port;
    this._address = null;
    this._handle = null;
    this._callDone = false;   // the native call is over (or never started)
    this._closed = false;
    this._hadError = false;
    this._socketAssigned = false;
    this._hasBody = false;
    this._chunked = false;
    this._sentEnd = false;
    this._bodyPaused = false;
    this._needDrain = false;
    this._pending = [];
    this._pendingBytes = 0;
    this._rawHeaderList = null;
    this._forceStream = false;
    this._timer = null;
    this._timeoutMs = 0;

    if (opts.timeout !== undefined) {
      this.timeout = timerDuration(opts.timeout, 'timeout');
      this._timeoutMs = this.timeout;
    }

    let expect = false;
    if (Array.isArray(opts.headers)) {
      // Raw headers are sent as given (no Host added), as Node does; the
      // framing of a body is decided now (chunked unless the list says).
      const list = opts.headers;
      const pairs = [];
      if (list.length && Array.isArray(list[0])) {
        for (const [k, v] of list) pairs.push([k, v]);
      } else {
        if (list.length % 2 !== 0) {
          throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE', 'The argument \'headers\' is invalid.');
        }
        for (let i = 0; i < list.length; i += 2) pairs.push([list[i], list[i + 1]]);
      }
      for (const [k, v] of pairs) {
        checkName(k);
        checkValue(k, v);
        if (String(k).toLowerCase() === 'expect') expect = true;
      }
      this._rawHeaderList = pairs;
      this._forceStream = this.useChunkedEncodingByDefault;
    } else {
      if (opts.headers) {
        for (const key of Object.keys(opts.headers)) this.setHeader(key, opts.headers[key]);
      }
      if (host && setHost && this.getHeader('host') === undefined) {
        let hostHeader = host;
        const colon = hostHeader.indexOf(':');
        if (colon !== -1 && hostHeader.includes(':', colon + 1) && hostHeader.charCodeAt(0) !== 91) {
          hostHeader = `[${hostHeader}]`;
        }
        if (port && +port !== defaultPort) hostHeader += ':' + port;
        this.setHeader('Host', hostHeader);
      }
      if (opts.auth && this.getHeader('authorization') === undefined) {
        this.setHeader('Authorization', 'Basic ' + Buffer.from(opts.auth).toString('base64'));
      }
      expect = this.getHeader('expect') !== undefined;
    }
    if (cb) this.once('response', cb);

    hold();
    const sock = new ClientSocket(this, port);
    process.nextTick(() => this._assignSocket(sock));
    this._resolve(host, opts);

    const signal = opts.signal;
    if (signal) {
      if (signal.aborted) {
        this.destroy(abortError(signal));
      } else {
        const onAbort = () => this.destroy(abortError(signal));
        signal.addEventListener('abort', onAbort, { once: true });
        this.once('close', () => signal.removeEventListener('abort', onAbort));
      }
    }
    // Expect: the head goes out at once (a body follows after 'continue').
    if (expect && !this.destroyed) {
      this._commit(undefined, true);
      process.nextTick(() => this.emit('continue'));
    }
  }

  get connection() { return this.socket; }
  get headersSent() { return this._header !== null; }
  get writableLength() { return this._pendingBytes; }
  get writableHighWaterMark() { return kHighWaterMark; }
  get writableCorked() { return 0; }
  get writableObjectMode() { return false; }
  get writableNeedDrain() { return this._needDrain; }
  get writable() { return !this.writableEnded && !this.destroyed; }

  // --- headers (Node's OutgoingMessage API) --------------------------------
  _assertHeadersOpen(what) {
    if (this._header !== null || this._rawHeaderList !== null) {
      throw codedError(Error, 'ERR_HTTP_HEADERS_SENT',
        `Cannot ${what} headers after they are sent to the client`);
    }
  }

  flushHeaders() {
    if (this._header === null && !this.destroyed) this._commit(undefined, true);
  }

  // The head, once and for all. endLength: the whole body's size when end()
  // commits it; fromFlush: flushHeaders()/Expect (no body seen yet).
  _commit(endLength, fromFlush) {
    if (this._header !== null) return;
    let head = `${this.method} ${this.path} HTTP/1.1\r\n`;
    let connection = false;
    let contentLength;
    let transferEncoding;
    const line = (name, value) => {
      const key = String(name).toLowerCase();
      if (key === 'connection') connection = true;
      else if (key === 'content-length') contentLength = value;
      else if (key === 'transfer-encoding') transferEncoding = value;
      head += `${name}: ${value}\r\n`;
    };
    const field = (name, value) => {
      if (Array.isArray(value)) {
        if (value.length < 2 || String(name).toLowerCase() !== 'cookie') {
          for (const v of value) line(name, v);
        } else {
          line(name, value.join('; '));
        }
      } else {
        line(name, value);
      }
    };
    if (this._rawHeaderList !== null) {
      for (const [k, v] of this._rawHeaderList) field(k, v);
    } else {
      const h = this[kOutHeaders];
      for (let i = 0; i < h.length; i += 3) field(h[i + 1], h[i + 2]);
    }
    // Keep-alive is HTTP/1.1's default; said anyway, as Node's keep-alive agent does.
    if (!connection) head += 'Connection: keep-alive\r\n';
    let hasBody = false;
    let chunked = false;
    if (transferEncoding !== undefined) {
      hasBody = true;
      chunked = /(?:^|[\s,])chunked\s*$/i.test(String(transferEncoding));
    } else if (contentLength !== undefined) {
      hasBody = Number(contentLength) > 0;
    } else if (endLength !== undefined && !this._forceStream) {
      if (this.useChunkedEncodingByDefault || endLength > 0) {
        head += `Content-Length: ${endLength}\r\n`;
      }
      hasBody = endLength > 0;
    } else if (this.useChunkedEncodingByDefault || !fromFlush) {
      head += 'Transfer-Encoding: chunked\r\n';
      hasBody = true;
      chunked = true;
    }
    this.chunkedEncoding = chunked;
    this._header = head + '\r\n';
    this._hasBody = hasBody;
    this._chunked = chunked;
    this._maybeStart();
  }

  // --- the native call -----------------------------------------------------
  _resolve(host, opts) {
    if (net.isIP(host)) {
      this._address = host;
      return;
    }
    if (host === 'localhost') {
      this._address = '127.0.0.1';
      return;
    }
    const lookup = typeof opts.lookup === 'function' ? opts.lookup : dns.lookup;
    let family = 0;
    if (opts.family === 4 || opts.family === 'IPv4') family = 4;
    else if (opts.family === 6 || opts.family === 'IPv6') family = 6;
    const done = (err, address) => {
      if (this._callDone) return;
      if (err) {
        this._failWith(err);
        return;
      }
      if (Array.isArray(address)) address = address.length ? address[0].address : undefined;
      if (!net.isIP(address)) {
        this._failWith(codedError(TypeError, 'ERR_INVALID_IP_ADDRESS', `Invalid IP address: ${address}`));
        return;
      }
      this._address = address;
      this._maybeStart();
    };
    try {
      lookup(host, { family, hints: opts.hints || 0 }, done);
    } catch (err) {
      process.nextTick(done, err);
    }
  }

  _maybeStart() {
    if (this._handle !== null || this._callDone || this.destroyed || this._header === null ||
        this._address === null) {
      return;
    }
    const flags = (kIdempotent.has(this.method) ? 1 : 0) | (this._hasBody ? 2 : 0) |
      (this._chunked ? 4 : 0) | (this.method === 'HEAD' ? 8 : 0);
    let handle;
    try {
      handle = native(() => binding.clientRequest(this._address, this._port, this._header, flags));
    } catch (err) {
      this._callDone = true;  // nothing started; the failure is reported next
      process.nextTick(() => {
        this._callDone = false;
        this._failWith(err);
      });
      return;
    }
    handle.req = this;
    this._handle = handle;
    if (this.socket) this.socket.remoteAddress = this._address;
    this._armTimer();
    const pending = this._pending;
    this._pending = [];
    this._pendingBytes = 0;
    if (this._hasBody) {
      for (const chunk of pending) this._sendNative(chunk);
    }
    // A call's upstream connection is reused only once its request is
    // complete: a bodyless one is complete now.
    if (!this._hasBody || this.writableEnded) this._sendEnd();
    if (this._needDrain && !this._bodyPaused) {
      process.nextTick(() => this._onResume());
    }
    this._maybeFinish();
  }

  _sendNative(buf) {
    const h = this._handle;
    if (this._callDone || buf.length === 0) return !this._bodyPaused;
    const ok = native(() => h.write(buf));
    if (!ok) this._bodyPaused = true;
    return ok;
  }

  _sendEnd() {
    if (this._sentEnd || this._handle === null) return;
    this._sentEnd = true;
    // Trailers have room only after a chunked body (Node drops them otherwise).
    const trailers = this._chunked && this._trailer ? this._trailer : undefined;
    if (!this._callDone) native(() => this._handle.end(trailers));
  }

  // The call is over: no more native events, nothing keeps the loop for it.
  _finishCall() {
    if (this._callDone) return;
    this._callDone = true;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    this._pending = [];
    this._pendingBytes = 0;
    unhold();
  }

  _assignSocket(sock) {
    this._socketAssigned = true;
    if (this.destroyed) {
      // Destroyed before it had a connection (Node's onSocketNT).
      let err = this[kError];
      if (!this.aborted && !err) err = connResetError('socket hang up');
      if (err && !this._hadError) this._emitError(err);
      this._emitClose();
      return;
    }
    this.socket = sock;
    if (this._address !== null) sock.remoteAddress = this._address;
    this.emit('socket', sock);
  }

  _emitError(err) {
    this._hadError = true;
    this.emit('error', err);
  }

  _emitClose() {
    if (this._closed) return;
    this._closed = true;
    this.emit('close');
  }

  // No response: 'error', then 'close'.
  _failWith(err) {
    this._finishCall();
    if (this._closed) return;
    this.destroyed = true;
    if (!this._socketAssigned) {
      // _assignSocket reports it on its tick.
      if (this[kError] === undefined) this[kError] = err;
      return;
    }
    if (!this._hadError) this._emitError(err);
    this._emitClose();
  }

  // --- timeouts --------------------------------------------------------------
  setTimeout(ms, cb) {
    if (this._ended) return this;
    ms = timerDuration(ms, 'msecs');
    if (cb) this.once('timeout', cb);
    this._timeoutMs = ms;
    this._armTimer();
    return this;
  }

  clearTimeout(cb) { return this.setTimeout(0, cb); }

  _armTimer() {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    if (!this._timeoutMs || this._callDone) return;
    this._timer = setTimeout(() => {
      this.emit('timeout');
      if (this.res) this.res.emit('timeout');
    }, this._timeoutMs);
    this._timer.unref();
  }

  // Activity (as a socket's idle timeout counts it).
  _touch() {
    if (this._timer !== null) this._timer.refresh();
  }

  // --- the body ------------------------------------------------------------
  write(chunk, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    checkChunk(chunk);
    if (this.writableEnded) {
      const err = codedError(Error, 'ERR_STREAM_WRITE_AFTER_END', 'write after end');
      process.nextTick(() => {
        if (cb) cb(err);
        this._emitError(err);
      });
      return false;
    }
    if (this.destroyed) {
      const err = codedError(Error, 'ERR_STREAM_DESTROYED', 'Cannot call write after a stream was destroyed');
      if (cb) process.nextTick(cb, err);
      return false;
    }
    if (this._header === null) this._commit(undefined, false);
    return this._writeBody(toBuffer(chunk, encoding), cb);
  }

  _writeBody(buf, cb) {
    this._touch();
    let ok;
    if (buf.length === 0 || !this._hasBody || this._callDone) {
      ok = !this._needDrain;
    } else if (this._handle === null) {
      this._pending.push(buf);
      this._pendingBytes += buf.length;
      ok = this._pendingBytes < kHighWaterMark;
    } else {
      ok = this._sendNative(buf);
    }
    if (cb) process.nextTick(cb);
    if (!ok) this._needDrain = true;
    return ok;
  }

  end(chunk, encoding, cb) {
    if (typeof chunk === 'function') {
      cb = chunk;
      chunk = undefined;
    } else if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    if (chunk !== undefined && chunk !== null) checkChunk(chunk);
    if (this.writableEnded) {
      if (cb) {
        if (this.writableFinished) process.nextTick(cb);
        else this.once('finish', cb);
      }
      return this;
    }
    const buf = chunk !== undefined && chunk !== null ? toBuffer(chunk, encoding) : null;
    if (this._header === null && !this.destroyed) this._commit(buf ? buf.length : 0, false);
    if (cb) this.once('finish', cb);
    if (buf && buf.length && !this.destroyed) this._writeBody(buf, null);
    this.writableEnded = true;
    this.finished = true;
    if (this._handle !== null && this._hasBody) this._sendEnd();
    this._maybeFinish();
    return this;
  }

  // 'finish': the whole request was handed to the native call (which sends
  // it as the connection allows).
  _maybeFinish() {
    if (!this.writableEnded || this.writableFinished || this._handle === null ||
        this._bodyPaused || this.destroyed) {
      return;
    }
    this.writableFinished = true;
    process.nextTick(() => {
      if (this.socket === null) return;  // destroyed before it had a connection
      this.emit('prefinish');
      this.emit('finish');
    });
  }

  // --- cancelling ----------------------------------------------------------
  abort() {
    if (this.aborted) return;
    this.aborted = true;
    process.nextTick(() => this.emit('abort'));
    this.destroy();
  }

  destroy(err) {
    if (this.destroyed) return this;
    this.destroyed = true;
    if (this.res) this.res._dump();
    this[kError] = err;
    const h = this._handle;
    const running = !this._callDone;
    this._finishCall();
    if (h !== null && running) native(() => h.abort());
    // Before the 'socket' tick, _assignSocket reports it.
    if (this._socketAssigned) process.nextTick(() => this._afterDestroy(err));
    return this;
  }

  _afterDestroy(err) {
    if (this._closed) return;
    const res = this.res;
    if (err) {
      if (!this._hadError) this._emitError(err);
    } else if (!res && !this._hadError) {
      this._emitError(connResetError('socket hang up'));
    }
    if (res && !res.complete) res.destroy(connResetError('aborted'));
    this._emitClose();
  }

  // --- native events -------------------------------------------------------
  _onHead(status, reason, rawHeaders, minor) {
    if (this._callDone) return;
    this._touch();
    const res = new ClientIncomingMessage(this.socket, this);
    res.statusCode = status;
    res.statusMessage = reason;
    res.httpVersionMajor = 1;
    res.httpVersionMinor = minor;
    res.httpVersion = `1.${minor}`;
    res.rawHeaders = rawHeaders;
    this.res = res;
    res.on('end', () => {
      // As Node's keep-alive agent: the request is done once its response is.
      this._ended = true;
      this.destroyed = true;
      if (this._timer !== null) {
        clearTimeout(this._timer);
        this._timer = null;
      }
      process.nextTick(() => this._emitClose());
    });
    if (this.aborted || !this.emit('response', res)) res._dump();
  }

  // The response is read again after it paused the native call.
  _drainNative() {
    const h = this._handle;
    if (h) native(() => h.drain());
  }

  _onData(chunk) {
    const res = this.res;
    if (res === null || this._callDone) return true;
    this._touch();
    if (res.destroyed) return true;
    const ok = res.push(chunk);
    if (!ok) res._nativePaused = true;
    return ok;
  }

  _onEnd(trailerText) {
    if (this._callDone) return;
    this._finishCall();
    const res = this.res;
    if (res === null) return;
    if (trailerText) setReceivedTrailers(res, trailerText);
    res.complete = true;
    if (!res.destroyed) res.push(null);
  }

  // The response broke after its head (upstream reset, timeout midway).
  _onBroken() {
    if (this._callDone) return;
    this._finishCall();
    this.destroyed = true;
    const res = this.res;
    if (res && !res.complete) res.destroy(connResetError('aborted'));
    if (!res && !this._hadError) this._emitError(connResetError('socket hang up'));
    this._emitClose();
  }

  // No response at all: 502 (refused, reset, malformed) or 504 (timed out).
  _onFail(status, why) {
    if (this._callDone) return;
    this._finishCall();
    const address = this._address;
    const port = this._port;
    const text = String(why || '').toLowerCase();
    if (status === 504 || text.includes('timed out') || text.includes('timeout')) {
      const e = new Error(`connect ETIMEDOUT ${address}:${port}`);
      Object.assign(e, { errno: -110, code: 'ETIMEDOUT', syscall: 'connect', address, port });
      this._failWith(e);
      return;
    }
    if (text.includes('refused')) {
      const e = new Error(`connect ECONNREFUSED ${address}:${port}`);
      Object.assign(e, { errno: -111, code: 'ECONNREFUSED', syscall: 'connect', address, port });
      this._failWith(e);
      return;
    }
    if (text.includes('malformed') || text.includes('invalid') || text.includes('parse')) {
      const e = new Error(`Parse Error: ${why}`);
      e.code = 'HPE_INVALID_CONSTANT';
      this._failWith(e);
      return;
    }
    if (text.includes('reset') || text.includes('closed')) {
      this._failWith(connResetError('socket hang up'));
      return;
    }
    // The native side did not say why ("bad gateway"): a refused connect is
    // told apart from a connection that broke by trying to connect once more.
    hold();
    probeConnect(address, port, (err) => {
      unhold();
      this._failWith(err || connResetError('socket hang up'));
    });
  }

  _onResume() {
    this._bodyPaused = false;
    if (this._needDrain && !this.destroyed) {
      this._needDrain = false;
      this.emit('drain');
    }
    this._maybeFinish();
  }

  // Node's ClientRequest has these; the native pool decides instead.
  setNoDelay() {}
  setSocketKeepAlive() {}
  cork() {}
  uncork() {}

  // Sent after a chunked body, as Node's; checked as Node checks them.
  addTrailers(headers) {
    this._trailer = trailerLines(headers);
  }
}

// A connect error (ECONNREFUSED, EHOSTUNREACH...) for address:port, or null
// when a connection can be made.
function probeConnect(address, port, cb) {
  let done = false;
  const s = net.connect({ host: address, port });
  const finish = (err) => {
    if (done) return;
    done = true;
    clearTimeout(t);
    s.destroy();
    cb(err);
  };
  const t = setTimeout(() => finish(null), 2000);
  s.once('connect', () => finish(null));
  s.once('error', (err) => finish(err));
}

// ---------------------------------------------------------------------------
// http.request's argument shapes: (url[, options][, cb]) or (options[, cb]).
function normalize(input, options, cb) {
  if (typeof input === 'string') {
    input = urlToHttpOptions(new URL(input));
  } else if (isURL(input)) {
    input = urlToHttpOptions(input);
  } else {
    cb = options;
    options = input;
    input = null;
  }
  if (typeof options === 'function') {
    cb = options;
    options = input || {};
  } else {
    options = Object.assign(input || {}, options);
  }
  return { opts: options, cb: typeof cb === 'function' ? cb : undefined };
}

function request(...args) {
  const { opts, cb } = normalize(args[0], args[1], args[2]);
  const protocol = opts.protocol || 'http:';
  if (protocol === 'https:') return require('https').request(...args);
  if (opts.socketPath || typeof opts.createConnection === 'function' || !binding) {
    return require('http').request(...args);
  }
  if (protocol !== 'http:') {
    throw codedError(TypeError, 'ERR_INVALID_PROTOCOL',
      `Protocol "${protocol}" not supported. Expected "http:"`);
  }
  return new ClientRequest(opts, cb);
}

function get(...args) {
  const req = request(...args);
  req.end();
  return req;
}

// ---------------------------------------------------------------------------

function install(nativeBinding) {
  binding = nativeBinding;
  const deliver = (fn) => function event(handle, a, b, c, d) {
    if (inNative > 0) {
      process.nextTick(fn, handle, a, b, c, d);
      return true;
    }
    return fn(handle, a, b, c, d);
  };
  binding.setClientCallbacks({
    onHead: deliver((handle, status, reason, raw, minor) => {
      if (handle.req) handle.req._onHead(status, reason, raw, minor);
    }),
    onData: deliver((handle, chunk) => (handle.req ? handle.req._onData(chunk) : true)),
    onEnd: deliver((handle, trailerText) => {
      if (handle.req) handle.req._onEnd(trailerText);
    }),
    onAbort: deliver((handle) => {
      if (handle.req) handle.req._onBroken();
    }),
    onFail: deliver((handle, status, why) => {
      if (handle.req) handle.req._onFail(status, why);
    }),
    onResume: deliver((handle) => {
      if (handle.req) handle.req._onResume();
    }),
  });
}

installOutgoingHeaders(ClientRequest.prototype);

module.exports = {
  request,
  get,
  ClientRequest,
  IncomingMessage: ClientIncomingMessage,
  install,
  installed: () => binding !== null,
};
// fetch() (js/fetch_client.js) is built on request(): loaded on first use.
Object.defineProperty(module.exports, 'fetch', {
  enumerable: true,
  configurable: true,
  get: () => require('./fetch_client.js').fetch,
});
