// h2-js-hello (node:http2 over TLS, h2 by ALPN; allowHTTP1 for bench/run's
// HTTP/1.1 health check): kuai, Node, Bun and Deno all run this file.
'use strict';
const fs = require('node:fs');
const http2 = require('node:http2');

http2.createSecureServer({
  key: fs.readFileSync(process.env.TLS_KEY),
  cert: fs.readFileSync(process.env.TLS_CERT),
  allowHTTP1: true,
}, (req, res) => res.end('Hello, World!'))
  .listen(Number(process.env.PORT), process.env.HOST || '127.0.0.1');
