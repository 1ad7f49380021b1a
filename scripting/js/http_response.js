'use strict';
// The response side of kuai's `http` server (js/http_server.js): Node's
// ServerResponse over a native request handle (writeHead/write/end), with the
// checks Node makes of what a handler writes.

const Stream = require('stream');
const { inspect } = require('util');
const { STATUS_CODES } = require('http');
const {
  kHeaders, codedError, checkName, checkValue, installOutgoingHeaders, trailerLines, receivedText, addFieldLine,
} = require('./outgoing_headers.js');
const {
  kHandle, kDefaultHighWater, kSocket, kRequestCount, touchSocket, releaseSocket,
} = require('./http_incoming.js');

const kServer = Symbol('kuai.server');  // the response's Server (null: none)
const kUniqueHeaders = Symbol('kuai.uniqueHeaders');  // a Server's uniqueHeaders
const kTrailerLines = Symbol('kuai.trailerLines');  // addTrailers
// The body's length when end(data) makes the head: writeHead, called through
// _implicitHeader as in Node (where on-headers and the like hook in), hands
// it to _sendHead. -1 otherwise.
const kImplicitLength = Symbol('kuai.implicitLength');
// The head as sent (its status and the handler's fields), for _header.
const kHeadLines = Symbol('kuai.headLines');
// A response head's layout (server/exchange.h, Exchange::kNodeOrder...).
const kNodeOrder = 1;
const kOwnDate = 2;
const kOwnConnection = 4;
const kOwnKeepAlive = 8;
const kOwnTransferEncoding = 16;
// Node's test for a Transfer-Encoding field that makes it frame the body in chunks.
const kChunkedRe = /(?:^|\W)chunked(?:$|\W)/i;

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
    this[kImplicitLength] = -1;
    this[kHeadLines] = null;
  }

  // Node's _header, which libraries test to know whether the head is out
  // (express-session, compression): the head's text once sent, else null.
  get _header() {
    if (!this.headersSent) return null;
    const reason = this.statusMessage !== undefined ? this.statusMessage : (STATUS_CODES[this.statusCode] || 'unknown');
    return `HTTP/1.1 ${this.statusCode} ${reason}\r\n${this[kHeadLines] || ''}\r\n`;
  }
  set _header(v) {
    Object.defineProperty(this, '_header', { value: v, writable: true, configurable: true, enumerable: true });
  }
  get _headerSent() { return this.headersSent; }

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
    // As Node: the phrase is fixed here (a later statusCode keeps it).
    if (reason !== undefined) this.statusMessage = reason;
    else if (!this.statusMessage) this.statusMessage = STATUS_CODES[statusCode] || 'unknown';
    if (headers) {
      if (Array.isArray(headers)) {
        const pairs = headers.length > 0 && Array.isArray(headers[0]);
        if (!pairs && headers.length % 2 !== 0) {
          throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE',
            `The argument 'headers' is invalid. Received ${inspect(headers)}`);
        }
        if (this[kHeaders].length === 0) {
          // As Node when writeHead alone gives the fields: each pair a line
          // of its own, in the order given.
          if (pairs) {
            for (const [k, v] of headers) addFieldLine(this, k, v);
          } else {
            for (let i = 0; i < headers.length; i += 2) addFieldLine(this, headers[i], headers[i + 1]);
          }
        } else if (pairs) {
          for (const [k, v] of headers) this.appendHeader(k, v);
        } else {
          // Over fields set before: those named here replaced, repeats kept.
          for (let i = 0; i < headers.length; i += 2) this.removeHeader(headers[i]);
          for (let i = 0; i < headers.length; i += 2) {
            if (headers[i]) this.appendHeader(headers[i], headers[i + 1]);
          }
        }
      } else {
        for (const k of Object.keys(headers)) {
          if (headers[k] !== undefined) this.setHeader(k, headers[k]);
        }
      }
    }
    this._sendHead(this[kImplicitLength]);
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
      else if (key === 'transfer-encoding') {
        // As Node: the handler's own field goes out as given; when it says
        // chunked, the body is still framed in chunks (by the native side).
        layout |= kOwnTransferEncoding;
        if (kChunkedRe.test(String(value))) this.chunkedEncoding = true;
      }
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
    // As Node: a Content-Length the handler removed is not put back.
    if (contentLength >= 0 && this._removedContLen) contentLength = -1;
    if (this.chunkedEncoding) {
      contentLength = -1;  // chunks, under the handler's own field
    } else if (contentLength >= 0 && this.req && this.req.method === 'HEAD') {
      // As Node: no length of its own for a HEAD answer (what end() was
      // given, if anything, is not the length a GET would have).
      contentLength = -1;
    } else if (hasLength || (layout & kOwnTransferEncoding)) {
      contentLength = -2;  // the handler's own framing: the body as written
    }
    this[kHeadLines] = lines;
    const handle = this[kHandle];
    const reason = this.statusMessage !== undefined ? this.statusMessage
      : (STATUS_CODES[this.statusCode] || 'unknown');
    const server = this[kServer];
    // As Node: with server.maxRequestsPerSocket, Keep-Alive says max=, and the
    // socket's last request is answered with Connection: close.
    const maxRequests = server && this.req && this.req.httpVersionMajor === 1
      ? ~~server.maxRequestsPerSocket : 0;
    if (maxRequests > 0 && this.req.socket && this.req.socket[kRequestCount] >= maxRequests) close = true;
    const keepAlive = close ? -3 : server ? Math.floor(server.keepAliveTimeout / 1000) : -1;
    if (handle) handle.writeHead(this.statusCode, reason, lines, contentLength, keepAlive, layout, maxRequests);
  }

  flushHeaders() {
    if (!this.headersSent) this._implicitHeader();
  }

  // As Node: the head a write or end makes goes through writeHead.
  _implicitHeader() { this.writeHead(this.statusCode); }

  write(chunk, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    if (chunk === null) {
      throw codedError(TypeError, 'ERR_STREAM_NULL_VALUES', 'May not write null values to stream');
    }
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        'The "chunk" argument must be of type string or an instance of Buffer or Uint8Array');
    }
    if (this.writableEnded) {
      const err = codedError(Error, 'ERR_STREAM_WRITE_AFTER_END', 'write after end');
      process.nextTick(() => {
        if (cb) cb(err);
        this.emit('error', err);
      });
      return false;
    }
    if (this.destroyed) {
      // The client has gone: as Node, false (a writer waiting for 'drain'
      // stops) and the callback's error, no 'error' event.
      const err = codedError(Error, 'ERR_STREAM_DESTROYED', 'Cannot call write after a stream was destroyed');
      if (cb) process.nextTick(cb, err);
      return false;
    }
    if (typeof chunk === 'string' && encoding && encoding !== 'utf8' && encoding !== 'utf-8') {
      chunk = Buffer.from(chunk, encoding);
    }
    if (this[kServer] && this[kServer].rejectNonStandardBodyWrites) checkBodyAllowed(this);
    if (this.strictContentLength) checkStrictLength(this, chunk, false);
    if (!this.headersSent) this._implicitHeader();
    const req = this.req;
    if (req) touchSocket(req[kSocket]);
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
      this[kImplicitLength] = length;
      try {
        this._implicitHeader();
      } finally {
        this[kImplicitLength] = -1;
      }
    }
    this.writableEnded = true;
    this.finished = true;
    if (this.req) releaseSocket(this.req[kSocket], this);
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
    if (this.req) releaseSocket(this.req[kSocket], this);
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
    if (err) {
      this._errored = err;
      process.nextTick(() => this.emit('error', err));
    }
    process.nextTick(() => this._close());
    return this;
  }

  setTimeout(ms, cb) {
    if (cb) this.on('timeout', cb);
    const s = this.req ? this.req[kSocket] : null;
    if (s !== null && s !== undefined) s.setTimeout(ms);
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
  // Any 1xx but 101 before the head, with the fields given (an object,
  // [[name, value], ...] or [name, value, ...]), as Node's writeInformation.
  writeInformation(statusCode, headers, cb) {
    if (this.headersSent) {
      throw codedError(Error, 'ERR_HTTP_HEADERS_SENT', 'Cannot write headers after they are sent to the client');
    }
    if (typeof statusCode !== 'number' || !Number.isInteger(statusCode)) {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        `The "statusCode" argument must be of type number. Received ${receivedText(statusCode)}`);
    }
    if (statusCode < 100 || statusCode > 199) {
      throw codedError(RangeError, 'ERR_OUT_OF_RANGE',
        `The value of "statusCode" is out of range. It must be >= 100 && <= 199. Received ${statusCode}`);
    }
    if (statusCode === 101) {
      throw codedError(RangeError, 'ERR_HTTP_INVALID_STATUS_CODE', `Invalid status code: ${statusCode}`);
    }
    let lines = '';
    const add = (name, value) => {
      checkName(name);
      checkValue(name, value);
      lines += `${name}: ${value}\r\n`;  // (an array as String() gives it, as Node)
    };
    if (headers !== undefined && headers !== null) {
      if (Array.isArray(headers)) {
        if (headers.length && Array.isArray(headers[0])) {
          for (const [name, value] of headers) add(name, value);
        } else {
          if (headers.length % 2 !== 0) {
            throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE',
              `The argument 'headers' is invalid. Received ${inspect(headers)}`);
          }
          for (let i = 0; i < headers.length; i += 2) add(headers[i], headers[i + 1]);
        }
      } else if (typeof headers === 'object') {
        for (const key of Object.keys(headers)) add(key, headers[key]);
      } else {
        throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
          `The "headers" argument must be of type object. Received ${receivedText(headers)}`);
      }
    }
    const h = this[kHandle];
    if (h) h.writeInformational(statusCode, lines);
    if (typeof cb === 'function') process.nextTick(cb);
    return true;
  }

  // Stream state, as Node's OutgoingMessage reports it.
  get closed() { return this._closed === true; }
  get errored() { return this._errored === undefined ? null : this._errored; }

  // 102 Processing before the head (as Node, which writes it as it is).
  writeProcessing(cb) {
    const h = this[kHandle];
    if (h && !this.headersSent) h.writeInformational(102, '');
    if (typeof cb === 'function') process.nextTick(cb);
  }
}

installOutgoingHeaders(ServerResponse.prototype);

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
    let shown = inspect(v);
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

module.exports = {
  kServer, kUniqueHeaders, kTrailerLines, kImplicitLength, ServerResponse, bodyForbidden, checkBodyAllowed,
  linkHints,
};
