'use strict';
// kuai's server side of Node's `http`: Server over the reactor's connections
// and the dispatch of their requests. The native side hands each request over
// as a handle (writeHead/write/end) with its method, target and raw headers;
// bodies arrive through onBody/onBodyEnd. The request and response objects
// are js/http_incoming.js's and js/http_response.js's. Node's http client is
// left untouched.

const EventEmitter = require('events');
const { codedError, receivedText } = require('./outgoing_headers.js');
const {
  kHandle, kRawHeaders, kParsedHeaders, kDefaultHighWater, KuaiSocket, installSocketStubs, kLocalHandle,
  armSocketTimer, touchSocket, kSocket, kConnId, kRequestCount, closeConnections, setConnectionCloser, newSocket,
  setConnectionBytes, connectionClosed,
  IncomingMessage, handleRead, handleWrite, UpgradedSocket, trailerFields, setReceivedTrailers,
} = require('./http_incoming.js');
const {
  kServer, kUniqueHeaders, kTrailerLines, ServerResponse, linkHints,
} = require('./http_response.js');

const kMaxFields = Symbol('kuai.maxFields');
const kReqClass = Symbol('kuai.IncomingMessage');  // options.IncomingMessage
const kClosing = Symbol('kuai.closing');  // close() called: 'close' once its connections end
const kResClass = Symbol('kuai.ServerResponse');

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

// The Expect field's value, if any.
function expectation(raw) {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 6 && raw[i].toLowerCase() === 'expect') return raw[i + 1];
  }
  return undefined;
}

const servers = new Map();  // id -> Server, this environment's

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
    // Node's (and net.Server's) other fields, as Node sets them; the
    // connections are the reactor's, so they only report the options.
    this.insecureHTTPParser = o.insecureHTTPParser;
    this.httpValidation = o.httpValidation;
    this.keepAliveTimeoutBuffer = o.keepAliveTimeoutBuffer === undefined ? 1000 : o.keepAliveTimeoutBuffer;
    this.connectionsCheckingInterval = o.connectionsCheckingInterval === undefined ? 30000
      : o.connectionsCheckingInterval;
    this.httpAllowHalfOpen = false;
    this.allowHalfOpen = true;
    this.pauseOnConnect = false;
    this.noDelay = o.noDelay === undefined ? true : Boolean(o.noDelay);
    this.keepAlive = Boolean(o.keepAlive);
    this.keepAliveInitialDelay = ~~((Number(o.keepAliveInitialDelay) || 0) / 1000);
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
    let path;
    if (args.length && typeof args[0] === 'object' && args[0] !== null) {
      port = args[0].port;
      host = args[0].host;
      path = args[0].path;
      if (args[0].signal !== undefined) this._closeOnAbort(args[0].signal);
    } else {
      port = args[0];
      if (typeof args[1] === 'string') host = args[1];
      if (typeof port === 'string' && !/^\d+$/.test(port)) path = port;
    }
    if (typeof path === 'string') {
      if (cb) this.once('listening', cb);
      try {
        this._listenPath(path, args[0]);
      } catch (e) {
        process.nextTick(() => this.emit('error', e));
        return this;
      }
      process.nextTick(() => this.emit('listening'));
      return this;
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

  // listen({ signal }): the server closes when the signal aborts (as Node).
  _closeOnAbort(signal) {
    if (signal === null || typeof signal !== 'object' || !('aborted' in signal)) {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        `The "options.signal" property must be an instance of AbortSignal. Received ${receivedText(signal)}`);
    }
    const onAbort = () => { if (this.listening) this.close(); };
    if (signal.aborted) {
      process.nextTick(onAbort);
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    this.once('close', () => signal.removeEventListener('abort', onAbort));
  }

  // await using server = ...: closes it (a server not listening rejects, as Node's).
  async [Symbol.asyncDispose]() {
    await new Promise((resolve, reject) => this.close((err) => (err ? reject(err) : resolve())));
  }

  // A listening TLS server's context from now on (js/https_server.js).
  _setSecureContext(tls) {
    if (this.listening) binding.setSecureContext(this._id, tls, this._http2);
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

  // A Unix socket: every reactor accepts from the one socket at `path`
  // (unlinked when the last reactor's server closes, or when kuai ends).
  _listenPath(path, options) {
    const resolved = path[0] === '\0' ? path : require('path').resolve(path);
    const result = binding.listen(resolved, -1, this._tls, this._http2);
    this._id = result[0];
    this._path = path;
    this._unlink = () => binding.shareUnlisten(resolved);
    servers.set(this._id, this);
    this.listening = true;
    this._pushTimeouts();
    if (options && typeof options === 'object' && (options.readableAll || options.writableAll)) {
      // As libuv's uv_pipe_chmod: read and/or write for everyone, nothing else.
      const mode = (options.readableAll ? 0o444 : 0) | (options.writableAll ? 0o222 : 0);
      require('fs').chmodSync(resolved, mode);
    }
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

  address() {
    if (!this.listening) return null;
    return this._path !== undefined ? this._path : { ...this._address };
  }

  close(cb) {
    if (!this.listening) {
      const err = codedError(Error, 'ERR_SERVER_NOT_RUNNING', 'Server is not running.');
      if (cb) process.nextTick(cb, err);
      return this;
    }
    binding.close(this._id);
    servers.delete(this._id);
    this.listening = false;
    if (this._unlink) this._unlink();
    this._unlink = this._path = undefined;
    if (cb) this.once('close', cb);
    // As Node: idle connections close now; 'close' comes once this
    // reactor's connections of this server have ended.
    this[kClosing] = true;
    this.closeIdleConnections();
    process.nextTick(() => this._closedWhenIdle());
    return this;
  }

  _closedWhenIdle() {
    if (!this[kClosing]) return;
    for (const socket of sockets.values()) {
      if (socket.server === this) return;
    }
    this[kClosing] = false;
    this.emit('close');
  }

  // This reactor's connections (shared-nothing: each thread counts and
  // closes its own, as each cluster worker does under Node).
  getConnections(cb) {
    let n = 0;
    for (const socket of sockets.values()) {
      if (socket.server === this && !socket.destroyed) n++;
    }
    if (typeof cb === 'function') process.nextTick(cb, null, n);
    return this;
  }
  // This reactor's connections of this server (shared-nothing: each reactor
  // closes its own, as each cluster worker does under Node). Connections that
  // have not sent a request yet are the native side's (its header timeout).
  closeAllConnections() {
    const idle = [];
    for (const socket of [...sockets.values()]) {
      if (socket.server !== this) continue;
      if (socket._httpMessage !== null) socket.destroy();
      else idle.push(socket[kConnId]);
    }
    closeConnections(idle, true);
  }
  closeIdleConnections() {
    const idle = [];
    for (const socket of sockets.values()) {
      if (socket.server === this && socket._httpMessage === null) idle.push(socket[kConnId]);
    }
    closeConnections(idle, false);
  }
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

function socketClosed(connId, bytesRead, bytesWritten) {
  const socket = sockets.get(connId);
  if (socket === undefined) return;
  sockets.delete(connId);
  connectionClosed(socket, bytesRead, bytesWritten);
  socket.destroyed = true;
  socket.readable = socket.writable = false;
  // A closing server's last connection: the server's 'close' first (Node's
  // order: its connection count drops before the socket's handle is closed).
  const server = socket.server;
  if (server && server[kClosing]) server._closedWhenIdle();
  socket.emit('close', false);
}

// Node's words for the parse errors (kuai's parser words some differently).
const kParseErrorMessages = {
  HPE_INVALID_METHOD: 'Invalid method encountered',
  HPE_HEADER_OVERFLOW: 'Header overflow',
  HPE_INVALID_VERSION: 'Invalid HTTP version',
  HPE_INVALID_HEADER_TOKEN: 'Invalid header token',
  HPE_INVALID_TRANSFER_ENCODING: 'Transfer-Encoding can\'t be present with Content-Length',
  HPE_INVALID_CHUNK_SIZE: 'Invalid character in chunk size',
  HPE_UNEXPECTED_CONTENT_LENGTH: 'Duplicate Content-Length',
  HPE_INVALID_CONTENT_LENGTH: 'Invalid character in Content-Length',
};

// Node's 'clientError': a request on this connection could not be parsed or
// timed out. With a listener the script answers it through the socket (raw
// bytes: write/end, or destroy) and kuai writes nothing; the connection
// reads no more. Without one, kuai's error page answers (false).
function clientError(serverId, connId, status, code, reason, rawPacket, remoteAddress, remotePort,
                     encrypted) {
  const server = servers.get(serverId);
  if (server === undefined || server.listenerCount('clientError') === 0) return false;
  let socket = sockets.get(connId);
  if (socket === undefined) {
    socket = newSocket(remoteAddress, remotePort, encrypted);
    socket.server = server;
    socket[kConnId] = connId;
    sockets.set(connId, socket);
    if (server.listenerCount('connection') > 0) server.emit('connection', socket);
  }
  rawAnswers(socket, connId);
  let err;
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    err = new Error('Request timeout');
    err.code = code;
  } else {
    err = new Error(`Parse Error: ${kParseErrorMessages[code] || reason}`);
    err.code = code;
    err.bytesParsed = rawPacket.length;
    err.rawPacket = rawPacket;
  }
  try {
    server.emit('clientError', err, socket);
  } catch (e) {
    // As an exception in any listener of Node's: the script's uncaught error.
    process.nextTick(() => { throw e; });
  }
  return true;
}

// The socket of a failed request, as a 'clientError' listener uses it: what
// it writes goes out as it is.
function rawAnswers(socket, connId) {
  const send = (data, encoding, then) => {
    const bytes = data === undefined || data === null ? undefined
      : typeof data === 'string' ? Buffer.from(data, typeof encoding === 'string' ? encoding : 'utf8')
        : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    binding.answerClientError(connId, bytes, then);
  };
  socket.write = function write(data, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    if (this.destroyed || !this.writable) return false;
    send(data, encoding, 0);
    if (typeof cb === 'function') process.nextTick(cb);
    return true;
  };
  socket.end = function end(data, encoding, cb) {
    if (typeof data === 'function') {
      cb = data;
      data = undefined;
    } else if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    if (!this.destroyed && this.writable) {
      this.writable = false;
      send(data, encoding, 1);
    }
    if (typeof cb === 'function') this.once('close', cb);
    return this;
  };
  socket.destroy = function destroy() {
    if (!this.destroyed) {
      this.destroyed = true;
      this.writable = false;
      send(undefined, undefined, 2);
    }
    return this;
  };
  socket.destroySoon = socket.end;
}

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
    socket = newSocket(remoteAddress, remotePort, encrypted);
    socket.server = server;
    // As Node gives each new connection the server's timeout.
    if (server && server.timeout > 0) socket.timeout = server.timeout;
    socket[kConnId] = connId;
    sockets.set(connId, socket);
    socket[kLocalHandle] = handle;
    // Node's 'connection' (and an https server's 'secureConnection'): the
    // reactor accepts without JS, so it comes with the connection's first
    // request, before 'request' (http-terminator, stoppable and the like
    // track sockets this way).
    if (server && server.listenerCount('connection') > 0) server.emit('connection', socket);
    if (encrypted && server && server.listenerCount('secureConnection') > 0) {
      server.emit('secureConnection', socket);
    }
  }
  socket[kLocalHandle] = handle;
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
  socket._httpMessage = res;
  if (socket.timeout > 0) armSocketTimer(socket);
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
  // For maxRequestsPerSocket: the last one is answered with Connection: close
  // (js/http_response.js), and the connection closes after it, so no request
  // comes past it (under Node, one that a client pipelined anyway gets 503 and
  // 'dropRequest').
  if (version !== 20) socket[kRequestCount] = (socket[kRequestCount] || 0) + 1;
  if ((req[kMaxFields] > 0 && rawHeaders.length > 2 * req[kMaxFields]) ||
      (server.maxHeaderSize !== undefined && headBytes(url, rawHeaders) > server.maxHeaderSize)) {
    res.writeHead(431, { Connection: 'close' });
    res.end();
    return;
  }
  if (compat && compat.emitStream(server, req, res, handle, flags, streamId)) return;
  // CONNECT (a tunnel, as a forward proxy is asked for one) goes to
  // 'connect', never to 'request'; an Upgrade request to 'upgrade' when
  // taken. Either listener gets the connection itself.
  const connect = method === 'CONNECT' && version !== 20;
  const taken = connect ? true : (flags & 1) ? upgradeTaken(server, req, res) : false;
  if (taken === null) return;  // the callback threw: answered 500
  if (taken) {
    // As Node: the 'upgrade' ('connect') listener gets the connection;
    // 'request' does not see the request. A body the head announced is the
    // request's ('data', 'end'); the bytes after it (after the head when
    // there is none) arrive as the socket's data (onSwitched).
    const event = connect ? 'connect' : 'upgrade';
    if (server.listenerCount(event) === 0) {
      // A CONNECT with no 'connect' listener, or an upgrade taken by
      // shouldUpgradeCallback with no one to take it: the connection is
      // closed without an answer, as Node destroys the socket.
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
    server.emit(event, req, sock, Buffer.alloc(0));
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
const kCompat = Symbol('kuai.compat');  // {Request, Response, rawHeaders} for HTTP/2

module.exports = function install(http, nativeBinding, https) {
  binding = nativeBinding;
  setConnectionCloser((ids, now) => binding.closeConnections(ids, now));
  setConnectionBytes((connId) => binding.connectionBytes(connId));
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
      if (req) touchSocket(req[kSocket]);
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
    onAbort(handle, peerCode) {
      if (handle.tunnel) {
        const t = handle.tunnel;
        handle.tunnel = null;
        // An HTTP/2 stream reset by the client: its code is the stream's rstCode.
        if (peerCode !== undefined && typeof t._peerReset === 'function') t._peerReset(peerCode);
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
      // HTTP/1: the connection is gone. Its socket closes now, as under Node,
      // before the request's 'error' and 'close' (next tick).
      if (req && req.httpVersionMajor === 1 && req.socket) socketClosed(req.socket[kConnId]);
    },
    onSocketClose(connId, bytesRead, bytesWritten) {
      socketClosed(connId, bytesRead, bytesWritten);
    },
    onClientError: clientError,
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
module.exports.listeningServers = () => [...servers.values()];
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

// https.Server (js/https_server.js builds on Server, exported above).
const { HttpsServer } = require('./https_server.js');
module.exports.HttpsServer = HttpsServer;
