'use strict';
// kuai's server side of Node's `http`: Server, IncomingMessage and
// ServerResponse over the reactor's connections. The native side hands each
// request over as a handle (writeHead/write/end) with its method, target and raw
// headers; bodies arrive through onBody/onBodyEnd. Node's http client is left
// untouched.

const EventEmitter = require('events');
const Stream = require('stream');
const { Readable } = Stream;
const {
  kHeaders, codedError, checkName, checkValue, installOutgoingHeaders, trailerLines, receivedText,
} = require('./outgoing_headers.js');

const kHandle = Symbol('kuai.handle');
const kRawHeaders = Symbol('kuai.rawHeaders');
const kParsedHeaders = Symbol('kuai.parsedHeaders');
const kTrailers = Symbol('kuai.trailers');

// Duplicates of these are dropped (first wins), as Node does.
const kSingleValued = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from',
  'host', 'if-modified-since', 'if-unmodified-since', 'last-modified', 'location',
  'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent',
]);

// The object behind req.socket / res.socket: what handlers read of a connection.
class KuaiSocket extends EventEmitter {
  constructor(remoteAddress, remotePort, encrypted) {
    super();
    this.remoteAddress = remoteAddress;
    this.remotePort = remotePort;
    this.remoteFamily = remoteAddress && remoteAddress.includes(':') ? 'IPv6' : 'IPv4';
    this.encrypted = encrypted || undefined;
    this.readable = true;
    this.writable = true;
    this.destroyed = false;
  }
  setTimeout() { return this; }
  destroy() { this.destroyed = true; return this; }
  end() { return this; }
}

// What the socket stand-ins (KuaiSocket, UpgradedSocket, the client's
// ClientSocket) accept and ignore: the connection is the reactor's.
function installSocketStubs(proto) {
  for (const name of ['setNoDelay', 'setKeepAlive', 'ref', 'unref']) {
    Object.defineProperty(proto, name, { value() { return this; }, writable: true, configurable: true });
  }
  Object.defineProperty(proto, 'address', { value() { return {}; }, writable: true, configurable: true });
}
installSocketStubs(KuaiSocket.prototype);

const kPeer = Symbol('kuai.peer');  // [remoteAddress, remotePort, encrypted]
const kSocket = Symbol('kuai.socket');
const kMaxFields = Symbol('kuai.maxFields');
const kTrailerLines = Symbol('kuai.trailerLines');  // addTrailers
// A response head's layout (server/exchange.h, Exchange::kNodeOrder...).
const kNodeOrder = 1;
const kOwnDate = 2;
const kOwnConnection = 4;
const kOwnKeepAlive = 8;
const kReqClass = Symbol('kuai.IncomingMessage');  // options.IncomingMessage
const kResClass = Symbol('kuai.ServerResponse');

// Node's object of fields: names lower-cased, set-cookie an array, cookies
// joined with '; ', a single-valued field's repeats dropped (joined with
// joinDuplicateHeaders), the others joined with ', '.
function fieldsObject(raw, join) {
  const h = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const value = raw[i + 1];
    const prev = h[name];
    if (prev === undefined) {
      h[name] = name === 'set-cookie' ? [value] : value;
    } else if (name === 'set-cookie') {
      prev.push(value);
    } else if (name === 'cookie') {
      h[name] = prev + '; ' + value;
    } else if (!kSingleValued.has(name) || join) {
      h[name] = prev + ', ' + value;
    }
  }
  return h;
}

class IncomingMessage extends Readable {
  constructor(socket) {
    // The server's highWaterMark, when it has one of its own.
    const server = socket && socket.server;
    super(server && server.highWaterMark !== kDefaultHighWater && typeof server.highWaterMark === 'number'
      ? { highWaterMark: server.highWaterMark } : undefined);
    this[kSocket] = socket || null;
    this[kPeer] = null;
    this.httpVersionMajor = 1;
    this.httpVersionMinor = 1;
    this.httpVersion = '1.1';
    this.complete = false;
    this.aborted = false;
    this.upgrade = false;
    this.method = null;
    this.url = '';
    this.statusCode = null;
    this.statusMessage = null;
    this.rawTrailers = [];
    this[kRawHeaders] = null;  // set by dispatch
    this[kParsedHeaders] = null;
    this[kTrailers] = null;
  }

  // As in Node, an accessor: the object is made on first use.
  get trailers() {
    let t = this[kTrailers];
    if (t === null) t = this[kTrailers] = {};
    return t;
  }
  set trailers(v) { this[kTrailers] = v; }

  // Made on first use: most handlers never look at the socket.
  get socket() {
    let s = this[kSocket];
    if (!s) {
      const p = this[kPeer] || ['', 0, false];
      s = this[kSocket] = new KuaiSocket(p[0], p[1], p[2]);
    }
    return s;
  }
  set socket(v) { this[kSocket] = v; }
  get connection() { return this.socket; }
  set connection(v) { this.socket = v; }

  get rawHeaders() {
    let r = this[kRawHeaders];
    if (r === null) r = this[kRawHeaders] = [];
    return r;
  }
  set rawHeaders(v) { this[kRawHeaders] = v; }

  // Built on first use: most handlers read a header or two, some none.
  get headers() {
    let h = this[kParsedHeaders];
    if (h) return h;
    h = fieldsObject(this.rawHeaders, this.joinDuplicateHeaders);
    this[kParsedHeaders] = h;
    return h;
  }
  set headers(v) { this[kParsedHeaders] = v; }

  get headersDistinct() {
    const out = Object.create(null);
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toLowerCase();
      (out[name] || (out[name] = [])).push(raw[i + 1]);
    }
    return out;
  }

  _read() { handleRead(this); }

  setTimeout(ms, cb) {
    if (cb) this.on('timeout', cb);
    return this;
  }

  _destroy(err, cb) {
    if (!this.complete && !this.aborted) this.aborted = true;
    cb(err);
  }
}

class ServerResponse extends Stream {
  constructor(req) {
    super();
    this.req = req;
    this.statusCode = 200;
    this.statusMessage = undefined;
    this.sendDate = true;
    this.headersSent = false;
    this.finished = false;
    this.writableEnded = false;
    this.writableFinished = false;
    this.writable = true;
    this.destroyed = false;
    this.chunkedEncoding = false;
    this.strictContentLength = false;
    this.shouldKeepAlive = true;
    this.useChunkedEncodingByDefault = true;
    this[kHeaders] = [];
    this[kHandle] = null;
  }

  get socket() { return this.req ? this.req.socket : null; }
  set socket(v) { Object.defineProperty(this, 'socket', { value: v, writable: true, configurable: true }); }
  get connection() { return this.socket; }
  get writableCorked() { return 0; }
  get writableLength() { return 0; }
  get writableHighWaterMark() {
    const server = this[kServer];
    return server && server.highWaterMark !== undefined ? server.highWaterMark : kDefaultHighWater;
  }
  get writableObjectMode() { return false; }
  get writableNeedDrain() { return this._needDrain === true; }

  _assertHeadersOpen(what) {
    if (this.headersSent) {
      throw codedError(Error, 'ERR_HTTP_HEADERS_SENT',
        `Cannot ${what} headers after they are sent to the client`);
    }
  }

  writeHead(statusCode, reason, headers) {
    if (this.headersSent) {
      throw codedError(Error, 'ERR_HTTP_HEADERS_SENT', 'Cannot write headers after they are sent to the client');
    }
    if (typeof reason !== 'string') {
      headers = reason;
      reason = undefined;
    }
    statusCode |= 0;
    if (statusCode < 100 || statusCode > 999) {
      throw codedError(RangeError, 'ERR_HTTP_INVALID_STATUS_CODE', `Invalid status code: ${statusCode}`);
    }
    this.statusCode = statusCode;
    if (reason !== undefined) this.statusMessage = reason;
    if (headers) {
      if (Array.isArray(headers)) {
        if (headers.length && Array.isArray(headers[0])) {
          for (const [k, v] of headers) this.appendHeader(k, v);
        } else {
          for (let i = 0; i + 1 < headers.length; i += 2) this.appendHeader(headers[i], headers[i + 1]);
        }
      } else {
        for (const k of Object.keys(headers)) {
          if (headers[k] !== undefined) this.setHeader(k, headers[k]);
        }
      }
    }
    this._sendHead(-1);
    return this;
  }

  // contentLength: a known body length for an implicit head (end(data)), else -1.
  _sendHead(contentLength) {
    if (this.headersSent) return;
    this.headersSent = true;
    const h = this[kHeaders];
    let lines = '';
    let hasLength = false;
    // As Node: a Connection field saying close (or shouldKeepAlive set to
    // false) ends the connection after this response. The handler's own
    // Date, Connection and Keep-Alive go out as given (kOwn* for the native
    // side, which adds what the handler left out, in Node's order).
    let close = this.shouldKeepAlive === false;
    let layout = this.sendDate ? kNodeOrder : kNodeOrder | kOwnDate;
    for (let i = 0; i < h.length; i += 3) {
      const key = h[i];
      const name = h[i + 1];
      const value = h[i + 2];
      if (key === 'content-length') hasLength = true;
      else if (key === 'transfer-encoding') this.chunkedEncoding = true;
      else if (key === 'date') layout |= kOwnDate;
      else if (key === 'connection') {
        layout |= kOwnConnection;
        if (/(?:^|,)\s*close\s*(?:,|$)/i.test(String(value))) close = true;
      } else if (key === 'keep-alive') layout |= kOwnKeepAlive;
      if (Array.isArray(value)) {
        // As Node: several Cookie values, or a field the server's
        // uniqueHeaders names, go out as one line joined with '; '.
        const unique = this[kServer] && this[kServer][kUniqueHeaders];
        if (value.length > 1 && (key === 'cookie' || (unique && unique.has(key)))) {
          lines += name + ': ' + value.join('; ') + '\r\n';
        } else {
          for (const v of value) lines += name + ': ' + v + '\r\n';
        }
      } else {
        lines += name + ': ' + value + '\r\n';
      }
    }
    if (this.chunkedEncoding) {
      // The handler frames the body itself.
      contentLength = -2;
    } else if (hasLength) {
      contentLength = -2;
    }
    const handle = this[kHandle];
    const reason = this.statusMessage !== undefined ? this.statusMessage
      : (STATUS_CODES[this.statusCode] || 'unknown');
    const server = this[kServer];
    const keepAlive = close ? -3 : server ? Math.floor(server.keepAliveTimeout / 1000) : -1;
    if (handle) handle.writeHead(this.statusCode, reason, lines, contentLength, keepAlive, layout);
  }

  flushHeaders() { this._sendHead(-1); }

  _implicitHeader() { this._sendHead(-1); }

  write(chunk, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    if (this.writableEnded) {
      const err = codedError(Error, 'ERR_STREAM_WRITE_AFTER_END', 'write after end');
      process.nextTick(() => {
        if (cb) cb(err);
        this.emit('error', err);
      });
      return false;
    }
    if (chunk === null) {
      throw codedError(TypeError, 'ERR_STREAM_NULL_VALUES', 'May not write null values to stream');
    }
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        'The "chunk" argument must be of type string or an instance of Buffer or Uint8Array');
    }
    if (typeof chunk === 'string' && encoding && encoding !== 'utf8' && encoding !== 'utf-8') {
      chunk = Buffer.from(chunk, encoding);
    }
    if (this[kServer] && this[kServer].rejectNonStandardBodyWrites) checkBodyAllowed(this);
    if (this.strictContentLength) checkStrictLength(this, chunk, false);
    if (!this.headersSent) this._sendHead(-1);
    const handle = this[kHandle];
    const ok = handle ? handle.write(chunk) : true;
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
    if (this.writableEnded) {
      if (cb) process.nextTick(cb);
      return this;
    }
    if (chunk !== undefined && chunk !== null && typeof chunk === 'string' && encoding &&
        encoding !== 'utf8' && encoding !== 'utf-8') {
      chunk = Buffer.from(chunk, encoding);
    }
    if (chunk && this[kServer] && this[kServer].rejectNonStandardBodyWrites) checkBodyAllowed(this);
    if (this.strictContentLength) checkStrictLength(this, chunk, true);
    if (!this.headersSent) {
      let length = 0;
      if (chunk !== undefined && chunk !== null) {
        length = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
      }
      this._sendHead(length);
    }
    this.writableEnded = true;
    this.finished = true;
    const handle = this[kHandle];
    if (handle && this[kTrailerLines]) handle.setTrailers(this[kTrailerLines]);
    if (handle) handle.end(chunk === null ? undefined : chunk);
    // Node's order: 'prefinish' now; end()'s callback (null) and 'finish' once
    // the data is handed over (writableFinished true from then on); 'close'
    // in the tick after.
    this.emit('prefinish');
    process.nextTick(() => {
      this.writableFinished = true;
      process.nextTick(() => {
        this._close();
        // As Node does: a request body nobody read is drained once the response
        // is done, so the request ends (and closes) too. A complete request that
        // nobody listens to needs no draining: nothing could observe it.
        const req = this.req;
        if (req && !req.readableEnded && !req.destroyed && req.readableFlowing !== true &&
            (!req.complete || req.listenerCount('end') + req.listenerCount('close') +
              req.listenerCount('data') + req.listenerCount('readable') > 0)) {
          req.resume();
        }
      });
      if (cb) cb(null);
      this.emit('finish');
    });
    return this;
  }

  _close() {
    if (this._closed) return;
    this._closed = true;
    this.emit('close');
  }

  destroy(err) {
    if (this.destroyed) return this;
    this.destroyed = true;
    if (!this.writableEnded) {
      // As Node destroys the socket: the response is cut short (nothing if
      // its head has not gone out), never completed as if it had succeeded.
      const handle = this[kHandle];
      this.writableEnded = true;
      if (handle) handle.abort();
    }
    if (err) process.nextTick(() => this.emit('error', err));
    process.nextTick(() => this._close());
    return this;
  }

  setTimeout(ms, cb) {
    if (cb) this.on('timeout', cb);
    return this;
  }

  assignSocket() {}
  detachSocket() {}
  cork() {}
  uncork() {}
  // Sent after the last chunk of a chunked body (as Node: only then).
  addTrailers(headers) {
    this[kTrailerLines] = trailerLines(headers);
  }

  // 103 Early Hints before the response, as Node: hints.link (a string or an
  // array of them, each "<url>; param=value..."), then the other hints.
  writeEarlyHints(hints, cb) {
    if (hints === null || typeof hints !== 'object' || Array.isArray(hints)) {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        `The "hints" argument must be of type object. Received ${receivedText(hints)}`);
    }
    if (hints.link === null || hints.link === undefined) return;
    const link = linkHints(hints.link);
    if (link.length === 0) return;
    let lines = `Link: ${link}\r\n`;
    for (const key of Object.keys(hints)) {
      if (key === 'link') continue;
      checkName(key);
      checkValue(key, hints[key]);
      lines += `${key}: ${hints[key]}\r\n`;
    }
    const h = this[kHandle];
    if (h && !this.headersSent) h.writeInformational(103, lines);
    if (typeof cb === 'function') process.nextTick(cb);
  }

  writeContinue(cb) {
    const h = this[kHandle];
    if (h && !this.headersSent) h.writeContinue();
    if (typeof cb === 'function') process.nextTick(cb);
  }
  writeProcessing() {}
}

installOutgoingHeaders(ServerResponse.prototype);

// A stream over a request's handle (the request body, an upgraded socket, an
// HTTP/2 stream): reading resumes a paused body; a write the connection has
// no room for completes on 'drain' (stream._writeCb, called from onDrain).
function handleRead(stream) {
  const h = stream[kHandle];
  if (h && h.paused) {
    h.paused = false;
    h.resumeBody();
  }
}

function handleWrite(stream, chunk, encoding, cb) {
  const h = stream[kHandle];
  if (!h) {
    cb(codedError(Error, 'ERR_STREAM_DESTROYED', 'Cannot call write after a stream was destroyed'));
    return;
  }
  if (h.write(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk)) cb();
  else stream._writeCb = cb;
}

// The socket an 'upgrade' listener gets: the connection itself, raw bytes both
// ways (the listener writes its own "101 Switching Protocols"). No half-close:
// ending either side closes the connection once queued bytes are out.
class UpgradedSocket extends Stream.Duplex {
  constructor(handle, remoteAddress, remotePort, encrypted) {
    super({ allowHalfOpen: false });
    this[kHandle] = handle;
    this.remoteAddress = remoteAddress;
    this.remotePort = remotePort;
    this.remoteFamily = remoteAddress && remoteAddress.includes(':') ? 'IPv6' : 'IPv4';
    this.encrypted = encrypted || undefined;
    this._writeCb = null;
  }
  _read() {
    // As Node: reading the socket lets an unread request body flow (and be
    // dropped), or the bytes after it could never arrive.
    const h = this[kHandle];
    if (h && h.nextTunnel === this && h.req) h.req.resume();
    handleRead(this);
  }
  _write(chunk, encoding, cb) { handleWrite(this, chunk, encoding, cb); }
  _drained() {
    const cb = this._writeCb;
    this._writeCb = null;
    if (cb) cb();
  }
  _final(cb) {
    this._close();
    cb();
  }
  _destroy(err, cb) {
    this._close();
    const w = this._writeCb;
    this._writeCb = null;
    if (w) w(err || codedError(Error, 'ERR_STREAM_DESTROYED', 'socket closed'));
    cb(err);
  }
  _close() {
    const h = this[kHandle];
    this[kHandle] = null;
    if (h) {
      h.tunnel = null;
      h.nextTunnel = null;
      h.abort();
    }
  }
  setTimeout(ms, cb) {
    if (cb) this.once('timeout', cb);
    return this;
  }
}
installSocketStubs(UpgradedSocket.prototype);

// Whether an Upgrade request goes to 'upgrade' (server.shouldUpgradeCallback),
// recorded as req.upgrade. A callback that throws fails the request as a
// throwing 'request' listener does (null).
function upgradeTaken(server, req, res) {
  let taken;
  try {
    taken = !!server.shouldUpgradeCallback(req);
  } catch (err) {
    handlerFailed(err, res);
    return null;
  }
  req.upgrade = taken;
  return taken;
}

// A response that carries no body: to a HEAD request, or 1xx/204/304.
function bodyForbidden(res) {
  const status = res.statusCode;
  return (res.req !== null && res.req !== undefined && res.req.method === 'HEAD') ||
    status === 204 || status === 304 || (status >= 100 && status < 200);
}

// With createServer({ rejectNonStandardBodyWrites: true }), as Node: body
// bytes where bodyForbidden throw (else they are dropped).
function checkBodyAllowed(res) {
  if (bodyForbidden(res)) {
    throw codedError(Error, 'ERR_HTTP_BODY_NOT_ALLOWED',
      'Adding content for this request method or response status is not allowed.');
  }
}

// res.strictContentLength: the body must match the Content-Length field
// (a write past it, or an end short of or past it, throws), as Node checks.
const kBytesWritten = Symbol('kuai.bytesWritten');
function checkStrictLength(res, chunk, fromEnd) {
  if (res.chunkedEncoding || bodyForbidden(res)) return;
  const declared = res.getHeader('content-length');
  if (declared === undefined || res.hasHeader('transfer-encoding')) return;
  const expected = +declared;
  const len = chunk === undefined || chunk === null ? 0
    : typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength;
  const total = (res[kBytesWritten] || 0) + len;
  if (fromEnd ? total !== expected : total > expected) {
    throw codedError(Error, 'ERR_HTTP_CONTENT_LENGTH_MISMATCH',
      `Response body's content-length of ${total} byte(s) does not match the content-length of ` +
      `${expected} byte(s) set in header`);
  }
  res[kBytesWritten] = total;
}

// Node's check of writeEarlyHints' link values.
const kLinkValueRe = /^(?:<[^>]*>)(?:\s*;\s*[^;"\s]+(?:=(")?[^;"\s]*\1)?)*$/;
function linkHints(link) {
  const bad = (v) => {
    let shown = require('util').inspect(v);
    if (shown.length > 128) shown = `${shown.slice(0, 128)}...`;
    return codedError(TypeError, 'ERR_INVALID_ARG_VALUE',
      'The argument \'hints\' must be an array or string of format "</styles.css>; rel=preload; as=style". ' +
      `Received ${shown}`);
  };
  const one = (v) => {
    if (typeof v !== 'string' || !kLinkValueRe.test(v)) throw bad(v);
    return v;
  };
  if (typeof link === 'string') return one(link);
  if (!Array.isArray(link)) throw bad(link);
  return link.map(one).join(', ');
}

function optionalInteger(v, name, otherwise) {
  if (v === undefined) return otherwise;
  if (typeof v !== 'number') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
      `The "${name}" argument must be of type number. Received ${receivedText(v)}`);
  }
  if (!Number.isInteger(v)) {
    throw codedError(RangeError, 'ERR_OUT_OF_RANGE',
      `The value of "${name}" is out of range. It must be an integer. Received ${v}`);
  }
  if (v < 0 || v > Number.MAX_SAFE_INTEGER) {
    throw outOfRange(name, `>= 0 && <= ${Number.MAX_SAFE_INTEGER}`, v);
  }
  return v;
}

// Node's ERR_OUT_OF_RANGE, large integers written with _ separators.
function outOfRange(name, range, v) {
  let shown = String(v);
  if (Number.isInteger(v) && Math.abs(v) > 2 ** 32) {
    const start = shown[0] === '-' ? 1 : 0;
    let tail = '';
    let i = shown.length;
    for (; i >= start + 4; i -= 3) tail = `_${shown.slice(i - 3, i)}${tail}`;
    shown = shown.slice(0, i) + tail;
  }
  return codedError(RangeError, 'ERR_OUT_OF_RANGE',
    `The value of "${name}" is out of range. It must be ${range}. Received ${shown}`);
}

// What Node's parser counts against maxHeaderSize: the target and every
// field's name and value.
function headBytes(url, raw) {
  let n = url.length;
  for (let i = 0; i < raw.length; i++) n += raw[i].length;
  return n;
}

function validateBooleanOption(v, name) {
  if (typeof v !== 'boolean') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
      `The "${name}" property must be of type boolean. Received ${receivedText(v)}`);
  }
}


function expectation(raw) {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 6 && raw[i].toLowerCase() === 'expect') return raw[i + 1];
  }
  return undefined;
}

const servers = new Map();  // id -> Server, this environment's
const kDefaultHighWater = 65536;
const kUniqueHeaders = Symbol('kuai.uniqueHeaders');

// Node's uniqueHeaders: fields whose several values go out as one line,
// joined with '; ' (null: none).
function uniqueHeadersOption(headers) {
  if (!Array.isArray(headers)) return null;
  const unique = new Set();
  for (let i = 0; i < headers.length; i++) unique.add(headers[i].toLowerCase());
  return unique;
}

class Server extends EventEmitter {
  constructor(options, requestListener) {
    super();
    if (typeof options === 'function') {
      requestListener = options;
      options = {};
    }
    this._options = options || {};
    this._tls = null;
    this._http2 = 0;  // binding.listen's http2 mode (js/http2_server.js)
    if (requestListener) this.on('request', requestListener);
    this._id = 0;
    this._address = null;
    this.listening = false;
    const o = this._options;
    // Node's options, checked as Node checks them.
    this[kReqClass] = o.IncomingMessage || IncomingMessage;
    this[kResClass] = o.ServerResponse || ServerResponse;
    this._requestTimeout = optionalInteger(o.requestTimeout, 'requestTimeout', 300000);
    this._headersTimeout = optionalInteger(o.headersTimeout, 'headersTimeout',
                                           Math.min(60000, this._requestTimeout));
    if (this._requestTimeout > 0 && this._headersTimeout > this._requestTimeout) {
      throw outOfRange('headersTimeout', '<= requestTimeout', o.headersTimeout);
    }
    this.keepAliveTimeout = optionalInteger(o.keepAliveTimeout, 'keepAliveTimeout', 5000);
    if (o.joinDuplicateHeaders !== undefined) {
      validateBooleanOption(o.joinDuplicateHeaders, 'options.joinDuplicateHeaders');
    }
    this.joinDuplicateHeaders = o.joinDuplicateHeaders;
    if (o.rejectNonStandardBodyWrites !== undefined) {
      validateBooleanOption(o.rejectNonStandardBodyWrites, 'options.rejectNonStandardBodyWrites');
    }
    this.rejectNonStandardBodyWrites = o.rejectNonStandardBodyWrites || false;
    // A head larger than this is a 431, as Node (below kuai's own limit).
    this.maxHeaderSize = o.maxHeaderSize === undefined ? undefined
      : optionalInteger(o.maxHeaderSize, 'maxHeaderSize', undefined);
    if (o.requireHostHeader !== undefined) {
      validateBooleanOption(o.requireHostHeader, 'options.requireHostHeader');
    }
    // False: HTTP/1.1 requests without Host are served (req.headers.host
    // undefined), not refused with 400.
    this.requireHostHeader = o.requireHostHeader !== false;
    // The streams' high-water mark (net.Server's option): a negative one is
    // the default, 64 KiB.
    if (o.highWaterMark !== undefined && typeof o.highWaterMark !== 'number') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        `The "options.highWaterMark" property must be of type number. Received ${receivedText(o.highWaterMark)}`);
    }
    this.highWaterMark = o.highWaterMark === undefined || o.highWaterMark < 0 ? kDefaultHighWater : o.highWaterMark;
    this[kUniqueHeaders] = uniqueHeadersOption(o.uniqueHeaders);
    this.maxHeadersCount = null;
    this.maxRequestsPerSocket = 0;
    this.timeout = 0;
    // Which Upgrade requests the 'upgrade' listener takes; the others are
    // plain requests (req.upgrade false). As Node: by default, all of them
    // while there is a listener.
    const shouldUpgrade = o.shouldUpgradeCallback;
    if (shouldUpgrade !== undefined) {
      if (typeof shouldUpgrade !== 'function') {
        throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
          'The "options.shouldUpgradeCallback" property must be of type function. ' +
          `Received ${receivedText(shouldUpgrade)}`);
      }
      this.shouldUpgradeCallback = shouldUpgrade;
    } else {
      this.shouldUpgradeCallback = function shouldUpgradeCallback() {
        return this.listenerCount('upgrade') > 0;
      };
    }
    // Fetch-style servers (js/fetch_server.js) answer through their own path.
    this._dispatch = null;
  }

  listen(...args) {
    let port = 0;
    let host;
    let cb;
    if (typeof args[args.length - 1] === 'function') cb = args.pop();
    if (args.length && typeof args[0] === 'object' && args[0] !== null) {
      port = args[0].port;
      host = args[0].host;
    } else {
      port = args[0];
      if (typeof args[1] === 'string') host = args[1];
    }
    if (typeof port === 'string' && /^\d+$/.test(port)) port = Number(port);
    if (port === undefined || port === null) port = 0;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
      throw codedError(RangeError, 'ERR_SOCKET_BAD_PORT',
        `options.port should be >= 0 and < 65536. Received ${port}.`);
    }
    if (cb) this.once('listening', cb);
    try {
      this._listenNow(host, port);
    } catch (e) {
      process.nextTick(() => this.emit('error', e));
      return this;
    }
    process.nextTick(() => this.emit('listening'));
    return this;
  }

  // Listens at once or throws (what listen() reports as 'error').
  _listenNow(host, port) {
    let result;
    const tls = this._tls;
    try {
      result = binding.listen(host || '::', port, tls, this._http2);
    } catch (e) {
      if (!host && e.code !== 'ERR_KUAI_TLS') {
        try {
          result = binding.listen('0.0.0.0', port, tls, this._http2);
          host = '0.0.0.0';
        } catch (e2) {
          e = e2;
        }
      }
      if (!result) {
        e.syscall = 'listen';
        e.port = port;
        e.address = host || '::';
        throw e;
      }
    }
    this._id = result[0];
    const address = host || '::';
    this._address = {
      address,
      family: address.includes(':') ? 'IPv6' : 'IPv4',
      port: result[1],
    };
    servers.set(this._id, this);
    this.listening = true;
    this._pushTimeouts();
  }

  // kuai --config: this server answers the app route whose script is `app`.
  _kuaiRoute(app) {
    this._id = binding.route(app);
    servers.set(this._id, this);
    this.listening = true;
    return this;
  }

  // Node's request timeouts (408 past them), for connections accepted after a
  // change.
  get headersTimeout() { return this._headersTimeout; }
  set headersTimeout(v) {
    this._headersTimeout = v;
    this._pushTimeouts();
  }
  get requestTimeout() { return this._requestTimeout; }
  set requestTimeout(v) {
    this._requestTimeout = v;
    this._pushTimeouts();
  }
  _pushTimeouts() {
    if (this._id !== undefined && this.listening) {
      binding.setTimeouts(this._id, Number(this._headersTimeout) || 0,
                          Number(this._requestTimeout) || 0, this.requireHostHeader);
    }
  }

  address() { return this.listening ? { ...this._address } : null; }

  close(cb) {
    if (!this.listening) {
      const err = codedError(Error, 'ERR_SERVER_NOT_RUNNING', 'Server is not running.');
      if (cb) process.nextTick(cb, err);
      return this;
    }
    binding.close(this._id);
    servers.delete(this._id);
    this.listening = false;
    if (cb) this.once('close', cb);
    process.nextTick(() => this.emit('close'));
    return this;
  }

  closeAllConnections() {}
  closeIdleConnections() {}
  setTimeout(ms, cb) {
    this.timeout = ms;
    if (cb) this.on('timeout', cb);
    return this;
  }
  ref() { return this; }
  unref() { return this; }
}

// A handler that throws or rejects answers 500 for its own request only.
function handlerFailed(err, res) {
  console.error(err && err.stack ? err.stack : err);
  if (!res.headersSent) {
    res.statusCode = 500;
    for (const k of res.getHeaderNames()) res.removeHeader(k);
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.end('Internal Server Error');
  } else if (!res.writableEnded) {
    res.destroy();
  }
}

// One socket object per connection, for all its requests (as in Node).
const sockets = new Map();  // connection id -> KuaiSocket

// version: 10, 11 or 20 (HTTP/2: as Node's compatibility API, '2.0').
function dispatch(serverId, handle, method, url, rawHeaders, version, remoteAddress, remotePort,
                  encrypted, connId, flags, streamId) {
  const server = servers.get(serverId);
  if (server !== undefined && server._dispatch !== null) {
    return server._dispatch(server, handle, method, url, rawHeaders, version, remoteAddress, remotePort,
                            encrypted, connId, flags);
  }
  let socket = sockets.get(connId);
  if (socket === undefined) {
    socket = new KuaiSocket(remoteAddress, remotePort, encrypted);
    socket.server = server;
    sockets.set(connId, socket);
  }
  // An http2 server's HTTP/2 requests: Node's compatibility objects
  // (js/http2_server.js).
  const compat = version === 20 && server ? server[kCompat] : undefined;
  const req = compat ? new compat.Request(socket)
    : server ? new server[kReqClass](socket) : new IncomingMessage(socket);
  if (server && server.joinDuplicateHeaders) req.joinDuplicateHeaders = true;
  req.method = method;
  req.url = url;
  req.httpVersionMajor = Math.floor(version / 10);
  req.httpVersionMinor = version % 10;
  req.httpVersion = version === 11 ? '1.1' : version === 20 ? '2.0' : version === 10 ? '1.0'
    : `${req.httpVersionMajor}.${req.httpVersionMinor}`;
  // As Node: more fields than server.maxHeadersCount (2000 when null; 0: no
  // count) is a 431, and the connection closes.
  req[kMaxFields] = server && typeof server.maxHeadersCount === 'number'
    ? server.maxHeadersCount : 2000;
  if (compat) {
    rawHeaders = compat.rawHeaders(method, url, rawHeaders, flags);
  } else if (version === 20) {
    // http.createServer over HTTP/2: no pseudo-header fields (:authority is
    // the host field).
    let i = 0;
    while (i < rawHeaders.length && rawHeaders[i][0] === ':') i += 2;
    rawHeaders = rawHeaders.slice(i);
  }
  req[kRawHeaders] = rawHeaders;
  const res = compat ? new compat.Response(req)
    : server ? new server[kResClass](req) : new ServerResponse(req);
  res[kHandle] = handle;
  req[kHandle] = handle;
  res[kServer] = server;
  if (server && server.highWaterMark !== kDefaultHighWater) handle.setHighWater(server.highWaterMark);
  handle.req = req;
  handle.res = res;
  if (!server) {
    res.statusCode = 503;
    res.end();
    return;
  }
  if ((req[kMaxFields] > 0 && rawHeaders.length > 2 * req[kMaxFields]) ||
      (server.maxHeaderSize !== undefined && headBytes(url, rawHeaders) > server.maxHeaderSize)) {
    res.writeHead(431, { Connection: 'close' });
    res.end();
    return;
  }
  if (compat && compat.emitStream(server, req, res, handle, flags, streamId)) return;
  const taken = (flags & 1) && method !== 'CONNECT' ? upgradeTaken(server, req, res) : false;
  if (taken === null) return;  // the callback threw: answered 500
  if (taken) {
    // As Node: the 'upgrade' listener gets the connection; 'request' does not
    // see the request. A body the head announced is the request's ('data',
    // 'end'); the bytes after it (after the head when there is none) arrive
    // as the socket's data (onSwitched).
    if (server.listenerCount('upgrade') === 0) {
      // Taken by shouldUpgradeCallback with no one to take it: the
      // connection is closed, as Node destroys the socket.
      handle.req = null;
      handle.res = null;
      handle.abort();
      return;
    }
    const sock = new UpgradedSocket(handle, remoteAddress, remotePort, encrypted);
    handle.res = null;
    if (flags & 16) {
      handle.nextTunnel = sock;
    } else {
      req.complete = true;
      req.push(null);
      handle.tunnel = sock;
      handle.req = null;
    }
    handle.startRaw();
    server.emit('upgrade', req, sock, Buffer.alloc(0));
    return;
  }
  const expect = flags & 2 ? expectation(rawHeaders) : undefined;
  if (expect !== undefined) {
    if (/^\s*100-continue\s*$/i.test(expect)) {
      if (server.listenerCount('checkContinue') > 0) {
        server.emit('checkContinue', req, res);
        return;
      }
      handle.writeContinue();
    } else if (server.listenerCount('checkExpectation') > 0) {
      server.emit('checkExpectation', req, res);
      return;
    } else {
      res.writeHead(417);
      res.end();
      return;
    }
  }
  const listeners = server.listeners('request');
  if (listeners.length === 0) {
    res.statusCode = 404;
    res.end();
    return;
  }
  for (const fn of listeners) {
    try {
      const r = fn.call(server, req, res);
      if (r && typeof r.then === 'function') r.then(undefined, (err) => handlerFailed(err, res));
    } catch (err) {
      handlerFailed(err, res);
    }
  }
}

// Trailer fields as the native side hands them over ("Name: value\r\n"
// lines: after a chunked body, or HTTP/2's trailing HEADERS): Node's
// rawTrailers list.
function trailerFields(text) {
  const raw = [];
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(': ');
    if (colon > 0) raw.push(line.slice(0, colon), line.slice(colon + 2));
  }
  return raw;
}

// A received message's trailers, set as Node sets them: before 'end'.
function setReceivedTrailers(msg, text) {
  msg.rawTrailers = trailerFields(text);
  msg.trailers = fieldsObject(msg.rawTrailers, msg.joinDuplicateHeaders);
}

function bodyEnd(handle, trailerText) {
  if (trailerText) {
    const req = handle.req;
    if (req && Array.isArray(req.rawTrailers)) {
      setReceivedTrailers(req, trailerText);
    } else if (handle.tunnel && typeof handle.tunnel._trailers === 'function') {
      handle.tunnel._trailers(trailerFields(trailerText));  // an HTTP/2 'stream' listener's stream
    }
  }
  if (handle.tunnel) {
    handle.tunnel.push(null);
    return;
  }
  if (handle.nextTunnel) {
    // The client closed before the upgraded request's body was whole.
    const sock = handle.nextTunnel;
    handle.nextTunnel = null;
    abortRequest(handle.req);
    sock.push(null);
    return;
  }
  const req = handle.req;
  if (!req || req.complete) return;
  req.complete = true;
  if (!handle.body) {
    req.push(null);
    return;
  }
  // As Node: the body's 'data' events, and the next-ticks and promise jobs
  // they queue, come before 'end', also when the body and its end came in
  // one read (after this turn's ticks, behind their promise jobs).
  process.nextTick(() => queueMicrotask(() => req.push(null)));
}

// The client left mid-body: 'aborted', then an ECONNRESET error, 'close'.
function abortRequest(req) {
  if (!req || req.complete || req.destroyed) return;
  req.aborted = true;
  req.emit('aborted');
  const err = new Error('aborted');
  err.code = 'ECONNRESET';
  req.destroy(err);
}

let binding;
let STATUS_CODES = {};
const kServer = Symbol('kuai.server');
const kCompat = Symbol('kuai.compat');  // {Request, Response, rawHeaders} for HTTP/2

// https.Server: the same server with TLS terminated by kuai (BoringSSL) on the
// reactor. cert/key: PEM strings or Buffers, or arrays of them (SNI picks).
class HttpsServer extends Server {
  constructor(options, requestListener, what = 'https.createServer') {
    if (typeof options === 'function') {
      requestListener = options;
      options = {};
    }
    super(options, requestListener);
    const pems = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v])
      .map((x) => (typeof x === 'string' ? x : Buffer.from(x).toString('latin1')));
    const key = pems(options && options.key);
    const cert = pems(options && options.cert);
    if (!key.length || !cert.length) {
      throw codedError(TypeError, 'ERR_KUAI_TLS',
        `${what} needs options.key and options.cert (PEM)`);
    }
    this._tls = { key, cert };
  }
}

module.exports = function install(http, nativeBinding, https) {
  binding = nativeBinding;
  STATUS_CODES = http.STATUS_CODES;
  binding.setCallbacks({
    onRequest(serverId, handle, method, url, rawHeaders, version, remoteAddress, remotePort, encrypted,
              connId, flags, streamId) {
      dispatch(serverId, handle, method, url, rawHeaders, version, remoteAddress, remotePort, encrypted,
               connId, flags, streamId);
      // Nothing follows the head: the request ends here, as if the native
      // side had called onBodyEnd next (it does not).
      if (flags & 32) bodyEnd(handle);
    },
    onBody(handle, chunk) {
      const tunnel = handle.tunnel;
      if (tunnel) {
        if (!tunnel.push(chunk) && !handle.paused) {
          handle.paused = true;
          handle.pauseBody();
        }
        return;
      }
      const req = handle.req;
      handle.body = true;
      // Backpressure: past the stream's high-water mark, stop reading the
      // connection until the handler reads (_read) again.
      if (req && !req.push(chunk) && !handle.paused) {
        handle.paused = true;
        handle.pauseBody();
      }
    },
    onBodyEnd: bodyEnd,
    onSwitched(handle) {
      // The upgraded request's body is whole: end it; the socket reads on.
      const sock = handle.nextTunnel;
      if (!sock) return;
      handle.nextTunnel = null;
      bodyEnd(handle);
      handle.tunnel = sock;
      handle.req = null;
    },
    onAbort(handle) {
      if (handle.tunnel) {
        const t = handle.tunnel;
        handle.tunnel = null;
        t.destroy();
        return;
      }
      const { req, res } = handle;
      if (handle.nextTunnel) {
        const t = handle.nextTunnel;
        handle.nextTunnel = null;
        t.destroy();
      }
      if (req && !req.complete) {
        abortRequest(req);
      } else if (req && !req.destroyed) {
        req.destroy();
      }
      if (res && !res.writableEnded) {
        res.destroyed = true;
        res._close();
      }
    },
    onSocketClose(connId) {
      const socket = sockets.get(connId);
      if (socket === undefined) return;
      sockets.delete(connId);
      socket.destroyed = true;
      socket.readable = socket.writable = false;
      socket.emit('close', false);
    },
    onDrain(handle) {
      if (handle.tunnel) {
        handle.tunnel._drained();
        return;
      }
      const res = handle.res;
      if (res && res._needDrain) {
        res._needDrain = false;
        res.emit('drain');
      }
    },
  });

  function createServer(options, listener) {
    return new Server(options, listener);
  }
  http.createServer = createServer;
  http.Server = Server;
  http.IncomingMessage = IncomingMessage;
  http.ServerResponse = ServerResponse;
  if (https) {
    https.createServer = (options, listener) => new HttpsServer(options, listener);
    https.Server = HttpsServer;
  }
};
module.exports.Server = Server;
module.exports.HttpsServer = HttpsServer;
module.exports.kCompat = kCompat;
module.exports.kRawHeaders = kRawHeaders;
module.exports.kParsedHeaders = kParsedHeaders;
module.exports.kHandle = kHandle;
module.exports.kTrailerLines = kTrailerLines;
module.exports.linkHints = linkHints;
module.exports.handlerFailed = handlerFailed;
module.exports.setReceivedTrailers = setReceivedTrailers;
module.exports.handleRead = handleRead;
module.exports.handleWrite = handleWrite;
module.exports.installSocketStubs = installSocketStubs;
module.exports.IncomingMessage = IncomingMessage;
module.exports.ServerResponse = ServerResponse;
// Shared with the http client (js/http_client.js): header checks as Node's.
