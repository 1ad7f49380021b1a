// js-hello (node:http): kuai, Node, Bun and Deno all run this file.
'use strict';
const http = require('node:http');

http.createServer((req, res) => res.end('Hello, World!'))
  .listen(Number(process.env.PORT), process.env.HOST || '127.0.0.1');
