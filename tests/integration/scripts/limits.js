'use strict';
// Node's request limits: no body cap, server.maxHeadersCount keeps the first N
// fields, 16 KiB of header fields at most (431 past it).
const http = require('http');
const server = http.createServer((req, res) => {
  let n = 0;
  req.on('data', (c) => { n += c.length; });
  req.on('end', () => res.end(JSON.stringify({ body: n, raw: req.rawHeaders.length / 2,
                                              fields: Object.keys(req.headers) })));
});
server.maxHeadersCount = 5;
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});

// A second server with short timeouts, set after listen(), on a free port.
// (Node looks at them every connectionsCheckingInterval; kuai every 250 ms.)
const quick = http.createServer({ connectionsCheckingInterval: 100 }, (req, res) => {
  req.resume();
  req.on('end', () => res.end('ok'));
});
quick.listen(0, '127.0.0.1', () => {
  quick.headersTimeout = 1000;
  quick.requestTimeout = 2000;
  console.log(`QUICK ${quick.address().port}`);
});
