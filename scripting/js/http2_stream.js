'use strict';
// Node's core HTTP/2 server API on kuai's HTTP/2: server.on('stream',
// (stream, headers, flags, rawHeaders) => ...) for servers with 'stream'
// listeners and no 'request' listener, and the session object a connection's
// streams share. The stream is a Duplex: the request body to read, the
// response body to write once respond() has sent the head. It rides the
// exchange's handle the way an upgraded socket does (handle.tunnel: body
// in, 'drain' out, abort), with Node's respond / respondWithFile /
// respondWithFD / additionalHeaders / trailers / close(code) on top.

const EventEmitter = require('events');
const fs = require('fs');
const { Duplex } = require('stream');
const { inspect } = require('util');
const { kHandle, handleRead, handleWrite } = require('./http_server');
const { codedError, receivedText, kTokenRe, kInvalidValueRe } = require('./outgoing_headers');

// Fields HTTP/2 has no room for (RFC 9113, 8.2.2); te only with "trailers".
const kConnectionFields = new Set([
  'connection', 'upgrade', 'http2-settings', 'te', 'transfer-encoding', 'keep-alive',
  'proxy-connection',
]);
function checkNotConnectionSpecific(name, value) {
  if (kConnectionFields.has(name) && !(name === 'te' && value === 'trailers')) {
    throw codedError(TypeError, 'ERR_HTTP2_INVALID_CONNECTION_HEADERS',
      `HTTP/1 Connection specific headers are forbidden: "${name}"`);
  }
}

// RST_STREAM codes (RFC 9113, 7).
const NO_ERROR = 0;
const INTERNAL_ERROR = 2;
const CANCEL = 8;
const kErrorNames = [
  'NGHTTP2_NO_ERROR', 'NGHTTP2_PROTOCOL_ERROR', 'NGHTTP2_INTERNAL_ERROR', 'NGHTTP2_FLOW_CONTROL_ERROR',
  'NGHTTP2_SETTINGS_TIMEOUT', 'NGHTTP2_STREAM_CLOSED', 'NGHTTP2_FRAME_SIZE_ERROR',
  'NGHTTP2_REFUSED_STREAM', 'NGHTTP2_CANCEL', 'NGHTTP2_COMPRESSION_ERROR', 'NGHTTP2_CONNECT_ERROR',
  'NGHTTP2_ENHANCE_YOUR_CALM', 'NGHTTP2_INADEQUATE_SECURITY', 'NGHTTP2_HTTP_1_1_REQUIRED',
];

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

function invalidStream() {
  return codedError(Error, 'ERR_HTTP2_INVALID_STREAM', 'The stream has been destroyed');
}

function checkObject(value, name) {
  if (value !== undefined && (value === null || typeof value !== 'object')) {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
      `The "${name}" argument must be of type object. Received ${receivedText(value)}`);
  }
}

// A headers argument (an object, as Node requires) as a null-prototype copy.
function headersCopy(headers) {
  if (headers === null || typeof headers !== 'object') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
      `The "headers" argument must be of type object. Received ${receivedText(headers)}`);
  }
  return Object.assign({ __proto__: null }, headers);
}

function utcDate() {
  return new Date().toUTCString();
}

// A field block as Node's http2 checks it: names lower-cased and tokens, the
// one pseudo-header a response may carry (`:status`, where `status` says so;
// trailers carry none), no connection-specific fields, values without
// control characters. Returns the "name: value\r\n" lines and the status.
function fieldLines(headers, status) {
  let lines = '';
  for (const key of Object.keys(headers)) {
    const value = headers[key];
    if (value === undefined || key === '') continue;
    const name = key.toLowerCase();
    if (name[0] === ':') {
      if (name !== ':status' || status === undefined) {
        throw codedError(TypeError, 'ERR_HTTP2_INVALID_PSEUDOHEADER',
          `"${name}" is an invalid pseudoheader or is used incorrectly`);
      }
      continue;
    }
    if (!kTokenRe.test(name)) {
      throw codedError(TypeError, 'ERR_INVALID_HTTP_TOKEN', `Header name must be a valid HTTP token ["${name}"]`);
    }
    checkNotConnectionSpecific(name, value);
    for (const v of Array.isArray(value) ? value : [value]) {
      if (kInvalidValueRe.test(String(v))) {
        throw codedError(TypeError, 'ERR_INVALID_CHAR', `Invalid character in header content ["${name}"]`);
      }
      lines += `${name}: ${v}\r\n`;
    }
  }
  return lines;
}

// The response's fields as Node keeps them (stream.sentHeaders): the
// handler's, then :status and date where it gave none (and did not turn
// sendDate off).
function responseHeaders(param, options) {
  checkObject(param, 'headers');
  const headers = { __proto__: null };
  if (param) {
    for (const key of Object.keys(param)) headers[key] = param[key];
  }
  if (headers[':status'] === undefined) headers[':status'] = 200;
  headers[':status'] = validStatus(headers[':status']);
  if ((headers.date === undefined || headers.date === null) && !(options && options.sendDate === false)) {
    headers.date = utcDate();
  }
  return headers;
}

function payloadForbidden(stream, status) {
  if (status === 204 || status === 205 || status === 304 || stream.headRequest) {
    throw codedError(Error, 'ERR_HTTP2_PAYLOAD_FORBIDDEN', `Responses with ${status} status must not have a payload`);
  }
}

function fileOptions(options) {
  checkObject(options, 'options');
  options = { ...options };
  for (const key of ['offset', 'length']) {
    if (options[key] !== undefined && typeof options[key] !== 'number') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE',
        `The property 'options.${key}' is invalid. Received ${inspect(options[key])}`);
    }
  }
  if (options.statCheck !== undefined && typeof options.statCheck !== 'function') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE',
      `The property 'options.statCheck' is invalid. Received ${inspect(options.statCheck)}`);
  }
  return options;
}

const kSession = Symbol('kuai.h2session');
const kClosed = Symbol('kuai.h2closed');
const kWantTrailers = Symbol('kuai.wantTrailers');
const kTrailersReady = Symbol('kuai.trailersReady');
const kStreamId = Symbol('kuai.h2id');
const kByPeer = Symbol('kuai.h2resetByPeer');  // the client reset the stream

// One per connection, shared by its streams (stream.session). kuai's HTTP/2
// runs natively: these are its facts, and the controls a handler may use on
// a connection it does not own are no-ops.
class ServerHttp2Session extends EventEmitter {
  constructor(socket, encrypted) {
    super();
    this.socket = socket;
    this.encrypted = encrypted;
    this.alpnProtocol = encrypted ? 'h2' : 'h2c';
    this.type = 0;  // NGHTTP2_SESSION_SERVER
    this.closed = false;
    this.destroyed = false;
    this.connecting = false;
    this.pendingSettingsAck = false;
    this.originSet = undefined;
    // What kuai announces (server/http2_session.cc), and the protocol's
    // defaults for the client's.
    this.localSettings = {
      headerTableSize: 4096, enablePush: false, initialWindowSize: 1 << 20, maxFrameSize: 16384,
      maxConcurrentStreams: 100, maxHeaderListSize: 65535, enableConnectProtocol: false,
    };
    this.remoteSettings = {
      headerTableSize: 4096, enablePush: false, initialWindowSize: 65535, maxFrameSize: 16384,
      maxConcurrentStreams: 4294967295, maxHeaderListSize: 4294967295, enableConnectProtocol: false,
    };
    socket.once('close', () => {
      this.closed = this.destroyed = true;
      this.emit('close');
    });
  }

  get state() { return { effectiveLocalWindowSize: 16 << 20, outboundQueueSize: 0 }; }
  settings() {}
  goaway() {}
  ping(payload, cb) {
    if (typeof payload === 'function') cb = payload;
    if (typeof cb === 'function') process.nextTick(cb, null, 0, Buffer.alloc(8));
    return true;
  }
  close(cb) {
    if (typeof cb === 'function') this.once('close', cb);
  }
  destroy() {}
  setTimeout(ms, cb) {
    if (cb) this.once('timeout', cb);
    return this;
  }
  ref() {}
  unref() {}
}

// The connection's session, made with its first stream (when the server
// hears of it: 'session').
function sessionFor(server, socket, encrypted) {
  let session = socket[kSession];
  if (session === undefined) {
    session = socket[kSession] = new ServerHttp2Session(socket, encrypted === true);
    server.emit('session', session);
  }
  return session;
}

class ServerHttp2Stream extends Duplex {
  constructor(handle, session, id, method, endAfterHeaders) {
    super({ allowHalfOpen: true });
    this[kHandle] = handle;
    this.session = session;
    this.id = id;
    this.headersSent = false;
    this.sentHeaders = undefined;
    this.sentInfoHeaders = undefined;
    this.sentTrailers = undefined;
    this.aborted = false;
    this.rstCode = NO_ERROR;
    this.pending = false;
    this.endAfterHeaders = endAfterHeaders;
    this.headRequest = method === 'HEAD';
    this[kClosed] = false;
    this[kWantTrailers] = false;
    this[kTrailersReady] = false;
    this._writeCb = null;
    this._tunnelOf = handle;
  }

  get closed() { return this[kClosed]; }
  get pushAllowed() { return false; }
  get bufferSize() { return this.writableLength; }
  get state() {
    const local = this.writableFinished || this[kClosed];
    const remote = this.readableEnded || this[kClosed];
    return {
      // nghttp2's stream states: open, half-closed (local, remote), closed.
      state: local && remote ? 7 : local ? 5 : remote ? 6 : 2,
      weight: 16, sumDependencyWeight: 0, localClose: local ? 1 : 0, remoteClose: remote ? 1 : 0,
      localWindowSize: 1 << 20,
    };
  }

  respond(headers, options) {
    if (this.destroyed || this[kClosed]) throw invalidStream();
    if (this.headersSent) throw headersSent();
    checkObject(options, 'options');
    options = options || {};
    headers = responseHeaders(headers, options);
    const status = headers[':status'];
    const lines = fieldLines(headers, status);
    this.headersSent = true;
    this.sentHeaders = headers;
    if (options.waitForTrailers) this[kWantTrailers] = true;
    const handle = this[kHandle];
    // 2: the date is among the lines, or none is wanted (Exchange::kOwnDate).
    if (handle) handle.writeHead(status, '', lines, -1, -1, 2);
    if (options.endStream || status === 204 || status === 205 || status === 304 || this.headRequest) {
      this.end();
    }
  }

  respondWithFile(path, headers, options) {
    if (this.destroyed || this[kClosed]) throw invalidStream();
    if (this.headersSent) throw headersSent();
    options = fileOptions(options);
    headers = responseHeaders(headers, options);
    payloadForbidden(this, headers[':status']);
    const fail = (err, fd) => {
      if (fd !== undefined) fs.close(fd, () => {});
      if (typeof options.onError === 'function') options.onError(err);
      else this.destroy(err);
    };
    fs.open(path, 'r', (err, fd) => {
      if (err) return fail(err);
      if (this.destroyed || this[kClosed]) return fs.close(fd, () => {});
      fs.fstat(fd, (err2, stat) => {
        if (err2) return fail(err2, fd);
        if (!stat.isFile()) {
          if (stat.isDirectory() || options.offset !== undefined || options.length !== undefined) {
            return fail(stat.isDirectory()
              ? codedError(Error, 'ERR_HTTP2_SEND_FILE', 'Directories cannot be sent')
              : codedError(Error, 'ERR_HTTP2_SEND_FILE_NOSEEK',
                'Offset or length can only be specified for regular files'), fd);
          }
          options.offset = -1;
          options.length = -1;
        }
        if (this.destroyed || this[kClosed]) return fs.close(fd, () => {});
        if ((options.statCheck && options.statCheck.call(this, stat, headers) === false) ||
            this.headersSent) {
          return fs.close(fd, () => {});
        }
        const offset = options.offset > 0 ? options.offset : 0;
        let length = options.length;
        if (stat.isFile()) {
          length = length === undefined || length < 0 ? stat.size - offset : Math.min(stat.size - offset, length);
          headers['content-length'] = length;
        }
        this._sendFd(fd, headers, offset, length, options, true);
      });
    });
  }

  respondWithFD(fd, headers, options) {
    if (this.destroyed || this[kClosed]) throw invalidStream();
    if (this.headersSent) throw headersSent();
    options = fileOptions(options);
    if (fd !== null && typeof fd === 'object' && typeof fd.fd === 'number') {
      fd = fd.fd;  // a FileHandle
    } else if (typeof fd !== 'number') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        `The "fd" argument must be of type number or an instance of FileHandle. Received ${receivedText(fd)}`);
    }
    headers = responseHeaders(headers, options);
    payloadForbidden(this, headers[':status']);
    if (options.statCheck === undefined) {
      this._sendFd(fd, headers, options.offset, options.length, options, false);
      return;
    }
    fs.fstat(fd, (err, stat) => {
      if (err) return this.destroy(err);
      if (this.destroyed || this[kClosed]) return this.destroy(invalidStream());
      const range = { offset: options.offset !== undefined ? options.offset : 0,
                      length: options.length !== undefined ? options.length : -1 };
      if (options.statCheck.call(this, stat, headers, range) === false || this.headersSent) return;
      this._sendFd(fd, headers, range.offset, range.length, options, false);
    });
  }

  // The head, then the file's bytes from `offset` (`length` of them; < 0 or
  // undefined: to its end). A descriptor the stream opened is closed after.
  _sendFd(fd, headers, offset, length, options, owned) {
    try {
      this.respond(headers, { waitForTrailers: options.waitForTrailers, sendDate: options.sendDate });
    } catch (err) {
      if (owned) fs.close(fd, () => {});
      this.destroy(err);
      return;
    }
    const start = offset > 0 ? offset : 0;
    const opts = { fd, autoClose: owned, start };
    if (length !== undefined && length >= 0) {
      if (length === 0) {
        if (owned) fs.close(fd, () => {});
        this.end();
        return;
      }
      opts.end = start + length - 1;
    }
    const source = fs.createReadStream(null, opts);
    source.on('error', () => this.close(INTERNAL_ERROR));
    source.pipe(this);
  }

  // A 1xx before the response (103 Early Hints and the like).
  additionalHeaders(headers) {
    if (this.destroyed || this[kClosed]) throw invalidStream();
    if (this.headersSent) {
      throw codedError(Error, 'ERR_HTTP2_HEADERS_AFTER_RESPOND',
        'Cannot specify additional headers after response initiated');
    }
    headers = headersCopy(headers);
    let status;
    if (headers[':status'] !== undefined && headers[':status'] !== null) {
      status = headers[':status'] |= 0;
      if (status === 101) {
        throw codedError(Error, 'ERR_HTTP2_STATUS_101',
          'HTTP status code 101 (Switching Protocols) is forbidden in HTTP/2');
      }
      if (status < 100 || status >= 200) {
        throw codedError(RangeError, 'ERR_HTTP2_INVALID_INFO_STATUS',
          `Invalid informational status code: ${headers[':status']}`);
      }
    }
    const lines = fieldLines(headers, status === undefined ? 0 : status);
    (this.sentInfoHeaders || (this.sentInfoHeaders = [])).push(headers);
    const handle = this[kHandle];
    if (handle && status !== undefined) handle.writeInformational(status, lines);
  }

  // The trailing HEADERS, once 'wantTrailers' has been emitted (respond's
  // waitForTrailers).
  sendTrailers(headers) {
    if (this.destroyed || this[kClosed]) throw invalidStream();
    if (this.sentTrailers) {
      throw codedError(Error, 'ERR_HTTP2_TRAILERS_ALREADY_SENT', 'Trailing headers have already been sent');
    }
    if (!this[kTrailersReady]) {
      throw codedError(Error, 'ERR_HTTP2_TRAILERS_NOT_READY',
        'Trailing headers cannot be sent until after the wantTrailers event is emitted');
    }
    headers = headersCopy(headers);
    const lines = fieldLines(headers, undefined);
    this.sentTrailers = headers;
    setImmediate(() => this._finishLocal(lines));
  }

  pushStream() {
    throw codedError(Error, 'ERR_HTTP2_PUSH_DISABLED', 'HTTP/2 client has disabled push streams');
  }
  priority() {}
  setTimeout(ms, cb) {
    if (cb) this.once('timeout', cb);
    return this;
  }

  // RST_STREAM with `code` (NO_ERROR by default); 'aborted' when the
  // response was not complete.
  close(code = NO_ERROR, cb) {
    if (typeof code !== 'number') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        `The "code" argument must be of type number. Received ${receivedText(code)}`);
    }
    if (!Number.isInteger(code) || code < 0 || code > 4294967295) {
      throw codedError(RangeError, 'ERR_OUT_OF_RANGE',
        `The value of "code" is out of range. It must be ${Number.isInteger(code)
          ? '>= 0 && <= 4294967295' : 'an integer'}. Received ${code}`);
    }
    if (cb !== undefined && typeof cb !== 'function') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        `The "callback" argument must be of type function. Received ${receivedText(cb)}`);
    }
    if (this[kClosed]) return;
    if (cb) this.once('close', cb);
    this._reset(code);
    this.destroy();
  }

  _reset(code) {
    this[kClosed] = true;
    this.rstCode = code;
    if (!this.writableEnded && !this.aborted) {
      this.aborted = true;
      this.emit('aborted');
    }
    const h = this[kHandle];
    this[kHandle] = null;
    if (h) {
      h.tunnel = null;
      h.abort(code);
    }
  }

  // The client's RST_STREAM: 'aborted' and its code in rstCode. Node then
  // raises ERR_HTTP2_STREAM_ERROR for codes other than CANCEL; here only to
  // an 'error' listener (an uncaught one would let any client end the
  // environment and every request in flight on its thread).
  _peerReset(code) {
    this[kByPeer] = true;
    this._reset(code);
  }

  _read() { handleRead(this); }
  _write(chunk, encoding, cb) {
    if (this[kHandle] && !this.headersSent) this.respond();
    handleWrite(this, chunk, encoding, cb);
  }
  _final(cb) {
    if (!this.headersSent && !this.destroyed) this.respond();
    cb();
    if (!this[kWantTrailers]) {
      this._finishLocal('');
      return;
    }
    // As Node: once the body is out, 'wantTrailers'; with no listener the
    // stream ends with no trailers.
    setImmediate(() => {
      if (this.destroyed || this[kClosed]) return;
      this[kTrailersReady] = true;
      if (!this.emit('wantTrailers')) this.sendTrailers({});
    });
  }
  // The response's end, with its trailer lines.
  _finishLocal(trailerLines) {
    const h = this[kHandle];
    this[kHandle] = null;
    // The handle still brings the rest of the request body (h.tunnel).
    if (h) {
      if (trailerLines) h.setTrailers(trailerLines);
      h.end();
    }
    this._localEnded = true;
    // As Node: the stream closes once both sides are done, read or not.
    if (this._remoteEnded) process.nextTick(() => this.destroy());
  }
  // The request's trailing fields (from js/http_server.js's body end).
  _trailers(raw) {
    const t = { __proto__: null };
    for (let i = 0; i < raw.length; i += 2) {
      const prev = t[raw[i]];
      t[raw[i]] = prev === undefined ? raw[i + 1] : `${prev}, ${raw[i + 1]}`;
    }
    this.emit('trailers', t, 0, raw);
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
    if (this._tunnelOf) this._tunnelOf.tunnel = null;
    if (this[kHandle]) {
      // Cut short, by the client (a reset) or by the handler: as Node, a
      // handler's error resets with INTERNAL_ERROR (an AbortError with
      // CANCEL), a plain destroy() with NO_ERROR.
      const code = err ? (err.name === 'AbortError' ? CANCEL : INTERNAL_ERROR) : NO_ERROR;
      this._reset(code);
    }
    this[kClosed] = true;
    const w = this._writeCb;
    this._writeCb = null;
    if (w) w(err || codedError(Error, 'ERR_STREAM_DESTROYED', 'Cannot call write after a stream was destroyed'));
    if (!err && this.rstCode !== NO_ERROR && this.rstCode !== CANCEL &&
        !(this[kByPeer] && this.listenerCount('error') === 0)) {
      err = codedError(Error, 'ERR_HTTP2_STREAM_ERROR',
        `Stream closed with error code ${kErrorNames[this.rstCode] || this.rstCode}`);
    }
    cb(err);
  }
}

// Every HTTP/2 request of an http2 server comes here first (dispatch()):
// its session and stream id are noted for the compatibility API, and the
// 'stream' event gets it when the server has 'stream' listeners and no
// 'request' listener. Returns true when it was taken.
function emitStream(server, req, res, handle, flags, id) {
  const socket = req.socket;
  const session = sessionFor(server, socket, socket.encrypted);
  req[kSession] = session;
  req[kStreamId] = id;
  if (server.listenerCount('request') > 0 || server.listenerCount('stream') === 0) return false;
  const stream = new ServerHttp2Stream(handle, session, id, req.method, Boolean(flags & 32));
  handle.req = null;
  handle.res = null;
  handle.tunnel = stream;
  const bodyless = !(flags & 16);
  session.emit('stream', stream, req.headers, bodyless ? 5 : 4, req.rawHeaders);
  server.emit('stream', stream, req.headers, bodyless ? 5 : 4, req.rawHeaders);
  return true;
}

module.exports = {
  ServerHttp2Stream, ServerHttp2Session, emitStream, validStatus, headersSent, fieldLines,
  checkNotConnectionSpecific, kSession, kStreamId,
};
