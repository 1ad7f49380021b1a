'use strict';
// 'upgrade' (with the ws package's WebSocketServer in noServer mode, and a
// hand-written raw protocol switch), 'checkContinue' and 'checkExpectation'.
// $APPS: tests/apps (its node_modules holds ws).
const http = require('http');
const path = require('path');
const { WebSocketServer } = require(path.join(process.env.APPS, 'node_modules', 'ws'));

const wss = new WebSocketServer({ noServer: true });
// shouldUpgradeCallback: /declined stays a plain request (req.upgrade false);
// a callback that throws fails the request.
const server = http.createServer({
  shouldUpgradeCallback(req) {
    if (req.url === '/throw') throw new Error('no deciding this one');
    return req.url !== '/declined';
  },
}, (req, res) => {
  let n = 0;
  req.on('data', (c) => { n += c.length; });
  req.on('end', () => res.end(`request ${req.method} ${req.url} ${n}` +
                              (req.url === '/declined' ? ` upgrade=${req.upgrade}` : '')));
});
for (const bad of [5, 'yes', null, {}]) {
  try {
    http.createServer({ shouldUpgradeCallback: bad });
  } catch (e) {
    console.log(`shouldUpgradeCallback ${e.name} ${e.code}: ${e.message}`);
  }
}

server.on('upgrade', (req, socket, head) => {
  if (req.url === '/ws') {
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => {
        ws.send(isBinary ? data : `echo:${data}`, { binary: isBinary });
      });
    });
  } else if (req.url === '/raw') {
    // A protocol of our own: after the 101, upper-cased echo until "bye".
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: shout\r\nConnection: Upgrade\r\n\r\n');
    if (head.length) socket.write(head.toString().toUpperCase());
    if (req.headers['content-length'] || req.headers['transfer-encoding']) {
      // A body the head announced is the request's, before the new protocol.
      req.on('data', (d) => socket.write(`[body:${d}]`));
      req.on('end', () => socket.write('[end]'));
      req.on('aborted', () => socket.write('[aborted]'));
    }
    socket.on('data', (d) => {
      const s = d.toString();
      if (s.includes('bye')) socket.end('BYE\n');
      else socket.write(s.toUpperCase());
    });
  } else {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  }
});

server.on('checkContinue', (req, res) => {
  if (req.headers['x-allow'] === 'yes') {
    res.writeContinue();
    server.emit('request', req, res);
  } else {
    res.writeHead(403, { 'Content-Type': 'text/plain' });
    res.end('no continue');
  }
});

server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
