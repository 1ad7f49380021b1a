'use strict';
// What the http client's code sees of an exchange besides the request
// (js/http_client.js): the socket object behind req.socket / res.socket, and
// the response, a kuai IncomingMessage fed by the native call.

const EventEmitter = require('events');
const { IncomingMessage, installSocketStubs } = require('./http_server.js');

// req.socket / res.socket: what code reads of a connection. The connection
// itself belongs to the native pool.
class ClientSocket extends EventEmitter {
  constructor(req, port) {
    super();
    this._req = req;
    this.remoteAddress = undefined;
    this.remotePort = port;
    this.remoteFamily = undefined;
    this.localAddress = undefined;
    this.localPort = undefined;
    this.encrypted = undefined;
    this.connecting = false;
    this.readable = true;
    this.writable = true;
    this.destroyed = false;
    this.bytesRead = 0;
    this.bytesWritten = 0;
  }
  setTimeout(ms, cb) {
    if (cb) this.once('timeout', cb);
    this._req.setTimeout(ms);
    return this;
  }
  destroy(err) {
    this._req.destroy(err);
    return this;
  }
  end() { return this; }
}
installSocketStubs(ClientSocket.prototype);

// The response: kuai's IncomingMessage (headers merged as Node does), fed by
// the native call, with Node's client-side destroy semantics.
class ClientIncomingMessage extends IncomingMessage {
  constructor(socket, req) {
    super(socket);
    this.req = req;
    this._dumped = false;
    this._nativePaused = false;
  }

  _read() {
    if (!this._nativePaused) return;
    this._nativePaused = false;
    if (this.req) this.req._drainNative();
  }

  // Nobody reads the body: let it flow into the void (the connection goes
  // back to the pool once the response is complete).
  _dump() {
    if (this._dumped) return;
    this._dumped = true;
    this.removeAllListeners('data');
    this.resume();
  }

  setTimeout(ms, cb) {
    if (cb) this.on('timeout', cb);
    if (this.req) this.req.setTimeout(ms);
    return this;
  }

  _destroy(err, cb) {
    if (!this.readableEnded || !this.complete) {
      this.aborted = true;
      this.emit('aborted');
    }
    const req = this.req;
    if (this.aborted && req && !req.destroyed) req.destroy(err);
    // As Node: an error is emitted only when someone listens for it.
    process.nextTick(() => cb(this.listenerCount('error') > 0 ? err : undefined));
  }
}

module.exports = { ClientSocket, ClientIncomingMessage };
