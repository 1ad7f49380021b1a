'use strict';
// A server's connections as Node's http.Server shows them: 'connection'
// with the socket (kuai: with the connection's first request), the socket's
// 'close'; socket.end() and socket.destroy() between requests close the
// connection; closeIdleConnections() and closeAllConnections(); close()
// closes idle connections at once and emits 'close' once the others end.
// Two servers: $PORT (A, the control side) and B on a free port. Prints
// "LISTENING <A port> <B port>". GET /events on A: what happened so far.

const http = require('http');

const port = Number(process.env.PORT);
const events = [];
const t0 = Date.now();
let connections = 0;

function track(server, name) {
  server.on('connection', (socket) => {
    const n = ++connections;
    events.push(`${name} connection ${typeof socket.remoteAddress} ${typeof socket.destroy}`);
    socket.on('close', () => events.push(`${name} socket close ${n}`));
  });
}

const b = http.createServer((req, res) => {
  if (req.url === '/slow') return setTimeout(() => res.end('slow'), 400);
  res.end('b');
  // After the response: the connection is idle.
  const socket = req.socket;
  if (req.url === '/end') res.on('finish', () => setImmediate(() => socket.end()));
  if (req.url === '/destroy') res.on('finish', () => setImmediate(() => socket.destroy()));
  if (req.url === '/close-idle') res.on('finish', () => setImmediate(() => b.closeIdleConnections()));
  if (req.url === '/close-all') res.on('finish', () => setImmediate(() => b.closeAllConnections()));
});
track(b, 'b');

const a = http.createServer((req, res) => {
  if (req.url === '/events') return res.end(JSON.stringify(events));
  if (req.url === '/close-b') {
    const started = Date.now();
    b.close(() => events.push(`b close after ${Date.now() - started >= 300 ? 'the slow request' : 'nothing'}`));
    return res.end('closing');
  }
  res.end('a');
});

a.listen(port, '127.0.0.1', () => {
  b.listen(0, '127.0.0.1', () => console.log(`LISTENING ${port} ${b.address().port} ${t0 > 0}`));
});
