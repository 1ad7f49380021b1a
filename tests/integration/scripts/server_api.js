'use strict';
// http.Server: listen() overloads, address(), 'listening'/'request'/'close'/
// 'error' events, close(cb), the timeout properties. $PORTS holds six free
// ports, $HELD_PORT one that another process is listening on. Every
// observation is a JSON line on stdout tagged with the server's name and this
// environment's id (kuai runs the script once per reactor thread).

const http = require('http');
const { threadId } = require('worker_threads');

const ENV = `${process.pid}-${threadId}`;
const P = process.env.PORTS.split(',').map(Number);
const HELD = Number(process.env.HELD_PORT);

function out(srv, obj) {
  console.log(JSON.stringify({ env: ENV, srv, ...obj }));
}

function answer(name) {
  return (req, res) => res.end(`server ${name}`);
}

function props(s) {
  return {
    keepAliveTimeout: s.keepAliveTimeout,
    headersTimeout: s.headersTimeout,
    requestTimeout: s.requestTimeout,
    maxHeadersCount: s.maxHeadersCount,
    timeout: s.timeout,
    isServer: s instanceof http.Server,
  };
}

// a: listen(port); the 'listening' event; address() before and after.
const a = http.createServer(answer('a'));
const aBefore = a.address();
const aListeningBefore = a.listening;
a.on('listening', () => out('a', {
  before: aBefore, listeningBefore: aListeningBefore, listening: a.listening,
  address: a.address(), props: props(a),
}));
a.listen(P[0]);

// b: listen(port, host); the handler added as a 'request' listener.
const b = http.createServer();
b.on('request', answer('b'));
b.on('listening', () => out('b', { address: b.address() }));
b.listen(P[1], '127.0.0.1');

// c: listen(port, host, cb); `this` in the callback.
const c = http.createServer(answer('c'));
c.listen(P[2], '127.0.0.1', function listening() {
  out('c', { address: c.address(), thisIsServer: this === c });
});

// d: listen(options, cb).
const d = http.createServer(answer('d'));
const dRet = d.listen({ port: P[3], host: '127.0.0.1' }, () => out('d', { address: d.address() }));
out('d-return', { returnsServer: dRet === d });

// e: listen(0): address() has the port picked.
const e = http.createServer(answer('e'));
e.listen(0, '127.0.0.1', () => {
  const addr = e.address();
  out('e', { family: addr.family, address: addr.address, portIsNumber: typeof addr.port === 'number' && addr.port > 0, port: addr.port });
});

// f: closed 300 ms after it listens: the 'close' event, then close()'s callback.
const f = http.createServer(answer('f'));
f.on('close', () => out('f-close-event', { listening: f.listening, address: f.address() }));
f.listen(P[4], '127.0.0.1', () => {
  out('f', { address: f.address() });
  setTimeout(() => {
    const ret = f.close((err) => out('f-closed', { err: err ? err.code : null }));
    out('f-close-return', { returnsServer: ret === f });
  }, 300);
});

// g: close() on a server that never listened.
const g = http.createServer();
g.close((err) => out('g-closed', { err: err ? err.code : null }));

// h: a port held by another process: an 'error' event with EADDRINUSE.
const h = http.createServer(answer('h'));
h.on('error', (err) => out('h-error', {
  code: err.code, syscall: err.syscall, address: err.address, port: err.port,
  isError: err instanceof Error, listening: h.listening,
}));
h.on('listening', () => out('h-listening', {}));
h.listen(HELD, '127.0.0.1');

// k: keepAliveTimeout set by the script (the Keep-Alive header says so).
const k = http.createServer(answer('k'));
k.keepAliveTimeout = 2000;
k.listen(P[5], '127.0.0.1', () => out('k', { keepAliveTimeout: k.keepAliveTimeout }));

setTimeout(() => out('ready', {}), 600);
