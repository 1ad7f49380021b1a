'use strict';
// kuai's https.Server (and the base of http2.createSecureServer's): the http
// server of js/http_server.js with TLS terminated by kuai (BoringSSL) on the
// reactor, and Node's setSecureContext() / addContext().

const { codedError, receivedText } = require('./outgoing_headers.js');
const { Server } = require('./http_server.js');

// What the native side takes of https.createServer's TLS options.
// cert/key: PEM strings or Buffers, or arrays of them (SNI picks).
function tlsOptions(o, what) {
  const pems = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v])
    .map((x) => (typeof x === 'string' ? x : Buffer.from(x).toString('latin1')));
  const key = pems(o.key);
  const cert = pems(o.cert);
  // pfx: PKCS#12 archives (Buffers, or { buf, passphrase }), as Node takes them.
  const pfx = (o.pfx === undefined ? [] : Array.isArray(o.pfx) ? o.pfx : [o.pfx])
    .map((x) => (x && x.buf !== undefined ? x.buf : x))
    .map((x) => (typeof x === 'string' ? x : Buffer.from(x).toString('latin1')));
  if ((!key.length || !cert.length) && !pfx.length) {
    throw codedError(TypeError, 'ERR_KUAI_TLS', `${what} needs options.key and options.cert (PEM), or options.pfx`);
  }
  // requestCert: client certificates, verified against options.ca (the
  // system's roots without it); rejectUnauthorized (default true) refuses
  // the handshake of a client without a valid one, as Node.
  return {
    key, cert, pfx,
    passphrase: typeof o.passphrase === 'string' ? o.passphrase : undefined,
    ca: pems(o.ca),
    requestCert: o.requestCert === true,
    rejectUnauthorized: o.rejectUnauthorized !== false,
    minVersion: o.minVersion,
  };
}

// `tls` with `more`'s certificates after its own.
function withCertificates(tls, more) {
  return {
    ...tls,
    key: [...tls.key, ...more.key], cert: [...tls.cert, ...more.cert], pfx: [...tls.pfx, ...more.pfx],
  };
}

// https.Server: the same server with TLS terminated by kuai (BoringSSL) on the
// reactor.
class HttpsServer extends Server {
  constructor(options, requestListener, what = 'https.createServer') {
    if (typeof options === 'function') {
      requestListener = options;
      options = {};
    }
    super(options, requestListener);
    this._tls = tlsOptions(options || {}, what);
    this._requestCert = this._tls.requestCert;
    this._tlsBase = this._tls;  // the server's own options (setSecureContext's)
    this._tlsAdded = null;      // addContext's certificates
  }

  // As Node's: the TLS options (certificates, ca, requestCert, ...) for the
  // handshakes from now on, in place of the ones given before; connections
  // already open keep theirs. Certificates that do not load throw, and the
  // server keeps its old ones.
  setSecureContext(options) {
    if (options === null || typeof options !== 'object') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        `The "options" argument must be of type object. Received ${receivedText(options)}`);
    }
    this._tlsBase = tlsOptions(options, 'server.setSecureContext');
    this._applyTls();
  }

  // As Node's, for a name's own certificate: { key, cert } (or pfx) join the
  // server's certificates, and a client asking for a name one of them
  // covers (SNI) gets it. (BoringSSL picks by the certificates' own names,
  // so `servername` is only checked; a tls.SecureContext cannot be taken
  // apart into its key and certificate: pass its options instead.)
  addContext(servername, context) {
    if (!servername) {
      throw codedError(Error, 'ERR_TLS_REQUIRED_SERVER_NAME', '"servername" is required parameter for Server.addContext');
    }
    if (context === null || typeof context !== 'object' || context.context !== undefined) {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
        'server.addContext takes the options of the name\'s certificate ({ key, cert } or { pfx })');
    }
    const add = tlsOptions(context, 'server.addContext');
    this._tlsAdded = this._tlsAdded === null ? add : withCertificates(this._tlsAdded, add);
    this._applyTls();
  }

  // The server's options, then the names' certificates (the first
  // certificate stays the default one), for the handshakes from now on.
  _applyTls() {
    const tls = this._tlsAdded === null ? this._tlsBase : withCertificates(this._tlsBase, this._tlsAdded);
    this._setSecureContext(tls);
    this._tls = tls;
    this._requestCert = tls.requestCert;
  }
}

module.exports = { HttpsServer };
