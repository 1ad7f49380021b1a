'use strict';
// Node's 'clientError': a request that cannot be parsed, is too large or
// times out reaches the listener with Node's error code, and the listener
// answers through the socket with raw bytes. Prints "clientError <code>
// <message> writable=<bool> destroyed=<bool> raw=<bool>" for each, then:
//   - by default: socket.end() with a 400 naming the code;
//   - a request with "X-Mode: write-destroy": socket.write() then destroy();
//   - "X-Mode: silent": nothing (the connection is the listener's to leave).
// Requests that parse get "ok". headersTimeout 1 s: a head left unfinished
// times out (ERR_HTTP_REQUEST_TIMEOUT).

const http = require('http');

const server = http.createServer({ connectionsCheckingInterval: 200 }, (req, res) => res.end('ok\n'));
server.headersTimeout = 1000;
server.requestTimeout = 1000;
server.on('clientError', (err, socket) => {
  const raw = err.rawPacket ? err.rawPacket.toString('latin1') : '';
  console.log(`clientError ${err.code} ${err.message} writable=${socket.writable} ` +
              `destroyed=${socket.destroyed} raw=${Buffer.isBuffer(err.rawPacket)}`);
  if (raw.includes('X-Mode: silent')) return;
  if (raw.includes('X-Mode: write-destroy')) {
    socket.write('HTTP/1.1 418 Nope\r\nContent-Length: 0\r\n\r\n', () => socket.destroy());
    return;
  }
  const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout'
    : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${err.code.length}\r\n` +
             `Connection: close\r\n\r\n${err.code}`);
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
