'use strict';
// The request side of kuai's `http` server (js/http_server.js): Node's
// IncomingMessage over a native request handle, the socket stand-ins handlers
// see (the connection itself is the reactor's), and the stream helpers shared
// with the upgraded socket and HTTP/2's streams.

const EventEmitter = require('events');
const Stream = require('stream');
const { Readable } = Stream;
const { codedError } = require('./outgoing_headers.js');

const kHandle = Symbol('kuai.handle');
const kRawHeaders = Symbol('kuai.rawHeaders');
const kParsedHeaders = Symbol('kuai.parsedHeaders');
const kTrailers = Symbol('kuai.trailers');
const kPeer = Symbol('kuai.peer');  // [remoteAddress, remotePort, encrypted]
const kSocket = Symbol('kuai.socket');
const kLocal = Symbol('kuai.local');  // [address, port] of a connection's own end, once asked
const kLocalHandle = Symbol('kuai.localHandle');  // a handle of the connection, to ask
const kTimer = Symbol('kuai.timer');
const kBytes = Symbol('kuai.bytes');  // [bytesRead, bytesWritten] once the connection closed
const kRequestCount = Symbol('kuai.requestCount');  // HTTP/1 requests seen on a connection  // the socket's timeout while one of its requests is answered
// Node 26's default for both streams of an exchange.
const kDefaultHighWater = 65536;

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
    // (A Unix socket's peer has no address: undefined, as under Node.)
    this.remoteAddress = remoteAddress || undefined;
    this.remotePort = remoteAddress ? remotePort : undefined;
    this.remoteFamily = remoteAddress ? familyOf(remoteAddress) : undefined;
    this.encrypted = encrypted || undefined;
    this.readable = true;
    this.writable = true;
    this.destroyed = false;
    this.timeout = undefined;
    this._httpMessage = null;  // the response being answered (as Node's)
    this[kLocal] = undefined;
    this[kLocalHandle] = null;
    this[kTimer] = null;
    this[kBytes] = undefined;
  }
  // As Node's socket timeout: `ms` without a read or write while a request
  // of this connection is answered emits 'timeout' (see onSocketTimeout).
  setTimeout(ms, cb) {
    ms = Number(ms) || 0;
    this.timeout = ms;
    if (cb) {
      if (ms === 0) this.removeListener('timeout', cb);
      else this.once('timeout', cb);
    }
    armSocketTimer(this);
    return this;
  }
  // The connection closes, cutting the request being answered short (as
  // Node's).
  destroy() {
    if (!this.destroyed) {
      this.destroyed = true;
      const res = this._httpMessage;
      if (res !== null && !res.writableEnded) {
        res.destroy();
      } else {
        closeConnections([this[kConnId]], true);
      }
    }
    return this;
  }
  // Between requests the connection closes (as Node's end() of an idle
  // keep-alive socket); a request in flight is answered first.
  end() {
    if (!this.destroyed && this._httpMessage === null) closeConnections([this[kConnId]], false);
    return this;
  }
  // net.Socket's state, as a server's socket reports it (the bytes are the
  // reactor's).
  get readyState() { return this.destroyed ? 'closed' : 'open'; }
  get connecting() { return false; }
  get pending() { return false; }
  get allowHalfOpen() { return true; }
  get bufferSize() { return 0; }
  get writableLength() { return 0; }
  get readableLength() { return 0; }
  // (The connection's own streams are the reactor's: these say whether it
  // is still there, as a socket's do while it is open, and once it closed.)
  get writableEnded() { return this.destroyed; }
  get writableFinished() { return this.destroyed; }
  get readableEnded() { return this.destroyed; }
  get closed() { return this.destroyed; }
  get errored() { return null; }
  // As Node's: the connection's bytes so far (plaintext under TLS), what is
  // queued to send included.
  get bytesRead() { return connectionBytes(this)[0]; }
  get bytesWritten() { return connectionBytes(this)[1]; }
  // As Node's: end once the queued output is out / close at once.
  destroySoon() { return this.end(); }
  resetAndDestroy() { return this.destroy(); }
}

// A TLS connection's socket: what a server-side TLSSocket tells of the
// handshake (asked of the native side on first use).
const kTls = Symbol('kuai.tls');
function tlsInfo(socket) {
  let t = socket[kTls];
  if (t === undefined) {
    const h = socket[kLocalHandle];
    t = h ? h.tlsInfo() : undefined;
    if (t !== undefined) socket[kTls] = t;
  }
  return t;
}
function asksForCertificates(socket) {
  return !!(socket.server && socket.server._requestCert);
}
class KuaiTlsSocket extends KuaiSocket {
  // As Node: with requestCert, whether the client's certificate verified
  // against options.ca (and if not, why); otherwise false and null.
  get authorized() {
    const t = tlsInfo(this);
    return asksForCertificates(this) && t !== undefined && t[6] === '';
  }
  get authorizationError() {
    const t = tlsInfo(this);
    return asksForCertificates(this) && t !== undefined && t[6] !== '' ? t[6] : null;
  }
  get alpnProtocol() {
    const t = tlsInfo(this);
    return t !== undefined && t[3] ? t[3] : false;
  }
  get servername() {
    const t = tlsInfo(this);
    return t !== undefined && t[4] ? t[4] : false;
  }
  getProtocol() {
    const t = tlsInfo(this);
    return t !== undefined ? t[0] : null;
  }
  getCipher() {
    const t = tlsInfo(this);
    return t !== undefined ? { name: t[1], standardName: t[2], version: t[0] } : undefined;
  }
  isSessionReused() {
    const t = tlsInfo(this);
    return t !== undefined && t[5];
  }
  // The client's certificate in Node's shape ({} when it sent none).
  getPeerCertificate() {
    if (tlsInfo(this) === undefined) return null;
    const x509 = this.getPeerX509Certificate();
    return x509 === undefined ? {} : x509.toLegacyObject();
  }
  getPeerX509Certificate() {
    const t = tlsInfo(this);
    if (t === undefined || t[7] === undefined) return undefined;
    const { X509Certificate } = require('crypto');
    return new X509Certificate(t[7]);
  }
}

// A connection's socket object.
function newSocket(remoteAddress, remotePort, encrypted) {
  return encrypted ? new KuaiTlsSocket(remoteAddress, remotePort, encrypted)
    : new KuaiSocket(remoteAddress, remotePort, encrypted);
}

// Closes connections by id (js/http_server.js installs the native binding's).
const kConnId = Symbol('kuai.connId');
let connectionCloser = null;
function closeConnections(ids, now) {
  ids = ids.filter((id) => id !== undefined);
  if (connectionCloser !== null && ids.length > 0) connectionCloser(ids, now);
}
function setConnectionCloser(fn) {
  connectionCloser = fn;
}

// [bytesRead, bytesWritten]: asked of the request being answered, else of
// the reactor (between requests), and kept from the connection's close.
let bytesOfConnection = null;
function connectionBytes(socket) {
  if (socket[kBytes] !== undefined) return socket[kBytes];
  const h = socket[kLocalHandle];
  let b = h ? h.bytes() : undefined;
  if (b === undefined && bytesOfConnection !== null && socket[kConnId] !== undefined) {
    b = bytesOfConnection(socket[kConnId]);
  }
  return b === undefined ? [0, 0] : b;
}
function setConnectionBytes(fn) {
  bytesOfConnection = fn;
}
function connectionClosed(socket, bytesRead, bytesWritten) {
  if (bytesRead !== undefined) socket[kBytes] = [bytesRead, bytesWritten];
}

// The socket timeout runs while a request is answered: from its dispatch,
// restarted by each chunk read or written, stopped when the response ends.
// (Idle keep-alive connections are the native side's, keepAliveTimeout.)
function armSocketTimer(socket) {
  if (socket[kTimer] !== null) {
    clearTimeout(socket[kTimer]);
    socket[kTimer] = null;
  }
  if (socket.timeout > 0 && socket._httpMessage !== null) {
    socket[kTimer] = setTimeout(onSocketTimeout, socket.timeout, socket);
  }
}

function touchSocket(socket) {
  if (socket !== null && socket !== undefined && socket[kTimer] !== null && socket[kTimer] !== undefined) {
    socket[kTimer].refresh();
  }
}

// The response `res` is done: its connection's timeout stops (a later request
// of the connection starts it again).
function releaseSocket(socket, res) {
  if (socket === null || socket === undefined || socket._httpMessage !== res) return;
  socket._httpMessage = null;
  armSocketTimer(socket);
}

// As Node's server: 'timeout' on the socket, then on the request (while it is
// not all in), the response and the server; when none of them has a
// listener, the socket is destroyed (the exchange cut short).
function onSocketTimeout(socket) {
  socket[kTimer] = null;
  socket.emit('timeout');
  const res = socket._httpMessage;
  const req = res !== null ? res.req : null;
  const reqTimeout = req !== null && req !== undefined && !req.complete && req.emit('timeout', socket);
  const resTimeout = res !== null && res.emit('timeout', socket);
  const serverTimeout = socket.server ? socket.server.emit('timeout', socket) : false;
  if (!reqTimeout && !resTimeout && !serverTimeout) socket.destroy();
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

// The connection's own end (localAddress, localPort, localFamily, address()),
// asked of the native side on first use: few handlers look.
function localOf(socket) {
  let l = socket[kLocal];
  if (l === undefined) {
    const h = socket[kLocalHandle];
    l = h ? h.local() : undefined;
    if (l !== undefined && !l[0]) l = null;  // a Unix socket: no address
    if (l !== undefined) socket[kLocal] = l;  // (else asked again next time)
  }
  return l;
}
function familyOf(address) {
  return address.includes(':') ? 'IPv6' : 'IPv4';
}
function installLocalAddress(proto) {
  Object.defineProperties(proto, {
    localAddress: { get() { const l = localOf(this); return l ? l[0] : undefined; }, configurable: true },
    localPort: { get() { const l = localOf(this); return l ? l[1] : undefined; }, configurable: true },
    localFamily: { get() { const l = localOf(this); return l ? familyOf(l[0]) : undefined; }, configurable: true },
    address: {
      value() {
        const l = localOf(this);
        return l ? { address: l[0], family: familyOf(l[0]), port: l[1] } : {};
      },
      writable: true,
      configurable: true,
    },
  });
}
installLocalAddress(KuaiSocket.prototype);

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

function distinctFields(raw) {
  const out = Object.create(null);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    (out[name] || (out[name] = [])).push(raw[i + 1]);
  }
  return out;
}

const kAbortController = Symbol('kuai.abortController');

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
      s = this[kSocket] = newSocket(p[0], p[1], p[2]);
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

  get headersDistinct() { return distinctFields(this.rawHeaders); }
  get trailersDistinct() { return distinctFields(this.rawTrailers); }
  get client() { return this.socket; }

  // As Node's: aborted when the connection closes before the response has
  // finished (a client that went away); made on first use.
  get signal() {
    let ac = this[kAbortController];
    if (ac === undefined) {
      ac = this[kAbortController] = new AbortController();
      const res = this[kHandle] ? this[kHandle].res : undefined;
      const socket = this[kSocket];
      if (this.destroyed && (!this.readableEnded || !this.complete)) {
        ac.abort();
      } else if (socket && !(res && res.writableFinished)) {
        if (socket.destroyed) {
          ac.abort();
        } else {
          const onClose = () => ac.abort();
          socket.once('close', onClose);
          if (res) res.once('finish', () => socket.removeListener('close', onClose));
        }
      }
    }
    return ac.signal;
  }

  _read() { handleRead(this); }

  setTimeout(ms, cb) {
    if (cb) this.on('timeout', cb);
    const s = this[kSocket];
    if (s !== null && s !== undefined) s.setTimeout(ms);
    return this;
  }

  _destroy(err, cb) {
    if (!this.complete && !this.aborted) this.aborted = true;
    // As Node: the error is raised only when someone listens for it (a
    // client that leaves mid-body must not become an uncaught exception).
    process.nextTick(() => cb(this.listenerCount('error') > 0 ? err : undefined));
  }
}
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
    // (A Unix socket's peer has no address: undefined, as under Node.)
    this.remoteAddress = remoteAddress || undefined;
    this.remotePort = remoteAddress ? remotePort : undefined;
    this.remoteFamily = remoteAddress ? familyOf(remoteAddress) : undefined;
    this.encrypted = encrypted || undefined;
    this._writeCb = null;
    this[kLocal] = undefined;
    this[kLocalHandle] = handle;
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
installLocalAddress(UpgradedSocket.prototype);

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

module.exports = {
  kHandle, kRawHeaders, kParsedHeaders, kTrailers, kPeer, kSocket, kDefaultHighWater, kLocalHandle,
  kConnId, kRequestCount, closeConnections, setConnectionCloser, setConnectionBytes, connectionClosed, newSocket,
  KuaiTlsSocket,
  armSocketTimer, touchSocket, releaseSocket,
  KuaiSocket, installSocketStubs, fieldsObject, IncomingMessage, handleRead, handleWrite, UpgradedSocket,
  trailerFields, setReceivedTrailers,
};
