'use strict';
// http.createServer().listen() on a Unix socket ($SOCK; $FORM 'path' for
// listen(path), 'options' for listen({ path, readableAll: true })). Answers
// each request with what the handler sees of the connection; GET /close
// closes the server and prints "CLOSED <socket file still there>".
// Prints "LISTENING <server.address()> <file mode>".

const fs = require('fs');
const http = require('http');

const sock = process.env.SOCK;
const server = http.createServer((req, res) => {
  const s = req.socket;
  const seen = {
    url: req.url,
    remote: [s.remoteAddress, s.remotePort, s.remoteFamily],
    local: [s.localAddress, s.localPort, s.localFamily],
    address: s.address(),
    serverAddress: server.address(),
  };
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(seen, (k, v) => (v === undefined ? 'undefined' : v)));
  if (req.url === '/close') {
    server.close(() => console.log(`CLOSED ${fs.existsSync(sock)}`));
  }
});
const ready = () => console.log(`LISTENING ${server.address()} ${(fs.statSync(sock).mode & 0o777).toString(8)}`);
if (process.env.FORM === 'options') server.listen({ path: sock, readableAll: true }, ready);
else server.listen(sock, ready);
