'use strict';
// A server whose handlers call an upstream with require('kuai')'s client, for
// test_scripting_client.py (kuai only: the point is the per-thread native
// pools under a real server). Listens on $PORT at 127.0.0.1; prints
// "LISTENING <port>" once per reactor thread. UPSTREAM: upstream.py's URL.
//   /fetch          fetch(UPSTREAM/hello): its body, X-Conn-Id passed on
//   /get?n=N        get(UPSTREAM/bytes/N) piped into the response
//   /upload         the request body piped into a POST to UPSTREAM/upload
//   /crash          starts an upstream request, then throws (uncaught): the
//                   environment is replaced with the request in flight

const http = require('http');
const { request, get, fetch } = require('kuai');

const U = process.env.UPSTREAM;
const port = Number(process.env.PORT);

http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/fetch') {
    const r = await fetch(U + '/hello');
    const text = await r.text();
    res.setHeader('X-Conn-Id', r.headers.get('x-conn-id'));
    res.end(text);
  } else if (url.pathname === '/get') {
    get(`${U}/bytes/${url.searchParams.get('n')}`, (up) => {
      res.setHeader('X-Conn-Id', up.headers['x-conn-id']);
      res.setHeader('Content-Length', up.headers['content-length']);
      up.pipe(res);
    }).on('error', (e) => {
      res.statusCode = 502;
      res.end(e.code);
    });
  } else if (url.pathname === '/upload') {
    const up = request(U + '/upload', { method: 'POST' }, (ur) => {
      res.setHeader('Content-Type', 'application/json');
      ur.pipe(res);
    });
    up.on('error', (e) => {
      res.statusCode = 502;
      res.end(e.code);
    });
    req.pipe(up);
  } else if (url.pathname === '/crash') {
    get(U + '/slow/400', () => {}).on('error', () => {});
    res.end('crashing\n');
    setTimeout(() => {
      throw new Error('thrown on purpose with an upstream request in flight');
    }, 50);
  } else {
    res.statusCode = 404;
    res.end();
  }
}).listen(port, '127.0.0.1', () => console.log(`LISTENING ${port}`));
