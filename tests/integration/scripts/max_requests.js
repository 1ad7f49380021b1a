'use strict';
// server.maxRequestsPerSocket = 2: Keep-Alive says max=2 and the second
// request on a connection is answered with Connection: close.
const http = require('http');

const server = http.createServer((req, res) => res.end(`ok ${req.url}\n`));
server.maxRequestsPerSocket = 2;
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
