'use strict';
// 'connect': the tunnel a forward proxy opens for CONNECT host:port. The
// socket the listener gets is the connection itself; here it is piped to a
// net.connect() to the address asked for (this same server in the tests).
// With NO_CONNECT=1 there is no 'connect' listener: a CONNECT is then closed
// unanswered, and the 'request' listener never sees it.
const http = require('http');
const net = require('net');

const server = http.createServer((req, res) => {
  if (req.method === 'CONNECT') console.log(`request saw CONNECT ${req.url}`);
  res.end(`hello ${req.method} ${req.url}`);
});
if (!process.env.NO_CONNECT) {
  server.on('connect', (req, client, head) => {
    if (req.url === 'refuse.example:443') {
      client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const at = req.url.lastIndexOf(':');
    const upstream = net.connect(Number(req.url.slice(at + 1)), req.url.slice(0, at), () => {
      client.write(`HTTP/1.1 200 Connection Established\r\nX-Tunnel: ${req.httpVersion} ${head.length >= 0}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
}
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
