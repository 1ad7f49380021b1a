'use strict';
// Node's own sockets (net, here) used from a request handler. GET
// /?port=P connects to 127.0.0.1:P, reads until the peer's FIN and answers
// {"bytes": n}. The peer sends its bytes and FIN at once: the end must be
// seen even when it arrived with the data (libuv stops after a short read
// and looks again only when its loop is run again). Listens on $PORT;
// prints "LISTENING <port>".

const http = require('http');
const net = require('net');

const port = Number(process.env.PORT);
http.createServer((req, res) => {
  const q = new URL(req.url, 'http://x').searchParams;
  const sock = net.connect(Number(q.get('port')), '127.0.0.1');
  let n = 0;
  sock.on('data', (d) => { n += d.length; });
  sock.on('end', () => res.end(JSON.stringify({ bytes: n })));
  sock.on('error', (e) => {
    res.statusCode = 502;
    res.end(e.message);
  });
}).listen(port, '127.0.0.1', () => console.log(`LISTENING ${port}`));
