'use strict';
// Socket timeouts as Node has them: req.setTimeout, res.setTimeout,
// socket.setTimeout and server.setTimeout, each restarted by reads and
// writes; with nobody listening for 'timeout', the connection is destroyed.
// And server.getConnections / closeAllConnections.
// Two servers: $PORT (no server timeout) and one on a free port
// (server.setTimeout(200) with no callback). Prints "LISTENING <port>
// <other port>" once both listen.

const http = require('http');

const port = Number(process.env.PORT);
const fired = [];  // 'timeout' callbacks that ran when they should not have

const routes = {
  '/req-timeout'(req, res) {
    req.setTimeout(150, () => {
      res.statusCode = 504;
      res.end('request timed out');
    });
  },
  '/res-timeout'(req, res) {
    res.setTimeout(150, (socket) => {
      res.statusCode = 503;
      res.end(`response timed out ${socket === req.socket}`);
    });
  },
  // A socket timeout nobody listens for: the connection goes.
  '/socket-timeout'(req) {
    req.socket.setTimeout(150);
  },
  // Writes restart the timer: 8 writes 60 ms apart outlast a 200 ms timeout.
  '/slow-writes'(req, res) {
    res.setTimeout(200, () => res.end('TIMEOUT'));
    let n = 0;
    const t = setInterval(() => {
      res.write('x');
      if (++n === 8) {
        clearInterval(t);
        res.end('done');
      }
    }, 60);
  },
  // Answered in time: the timeout stops with the response.
  '/in-time'(req, res) {
    res.setTimeout(200, () => fired.push('in-time'));
    setTimeout(() => res.end('ok'), 20);
  },
  '/fired'(req, res) {
    res.end(JSON.stringify(fired));
  },
  '/destroy'(req) {
    req.socket.destroy();
  },
  '/connections'(req, res) {
    server.getConnections((err, n) => res.end(err ? err.code : `connections=${n}`));
  },
  '/close-all'(req, res) {
    res.write('bye');
    server.closeAllConnections();
  },
};

function handler(req, res) {
  const route = routes[new URL(req.url, 'http://x').pathname];
  if (route) route(req, res);
}

let listening = 0;
function ready() {
  if (++listening === 2) console.log(`LISTENING ${port} ${timed.address().port}`);
}
const server = http.createServer(handler).listen(port, '127.0.0.1', ready);
// The server's own timeout, with no callback: a hanging request is cut.
const timed = http.createServer((req, res) => {
  if (req.url === '/quick') res.end('quick');
}).setTimeout(200).listen(0, '127.0.0.1', ready);
