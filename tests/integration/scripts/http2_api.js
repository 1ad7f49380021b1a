// http2.createServer / createSecureServer with Node's compatibility API, the
// same under node and kuai. argv[2]: a directory with ecdsa.key and ecdsa.pem (tools/gen-test-certs).
// Prints "LISTENING <h2c port> <secure allowHTTP1 port> <secure h2-only port>".
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const http2 = require('http2');

function tryCode(fn) {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return `${e.code}: ${e.message}`;
  }
}

function handler(req, res) {
  const url = new URL(req.url, 'http://x');
  switch (url.pathname) {
    case '/':
      res.end('hello');
      return;
    case '/fields':
      res.setHeader('X-One', 'a');
      res.setHeader('Set-Cookie', ['s=1', 't=2']);
      res.writeHead(201, 'Made', { 'X-Two': ['1', '2'], 'Content-Type': 'text/plain' });
      res.end('made');
      return;
    case '/flat':
      res.writeHead(202, ['X-A', '1', 'X-B', '2']);
      res.end();
      return;
    case '/chunks':
      res.write('a');
      res.write(Buffer.from('b'));
      res.end('c', () => {});
      return;
    case '/connection':
      res.setHeader('Connection', 'close');
      res.end('kept out');
      return;
    case '/length':
      res.setHeader('Content-Length', '6');
      res.end('length');
      return;
    case '/many':
      // More fields than fit a small fixed table.
      for (let i = 0; i < 60; ++i) res.setHeader(`X-Field-${i}`, `value ${i} `.repeat(i % 7 + 1).trim());
      res.end('many');
      return;
    case '/no-content':
      res.statusCode = 204;
      res.end();
      return;
    case '/errors': {
      const out = {
        status700: tryCode(() => { res.statusCode = 700; }),
        info101: tryCode(() => { res.statusCode = 101; }),
        push: tryCode(() => res.createPushResponse({ ':path': '/p' }, () => {})),
        undefinedValue: tryCode(() => res.setHeader('X-U', undefined)),
        badName: tryCode(() => res.setHeader('X Y', '1')),
        names: res.getHeaderNames(),
      };
      res.setHeader('Content-Type', 'application/json');
      res.writeHead(200);
      out.again = tryCode(() => res.writeHead(200));
      out.afterSent = tryCode(() => res.setHeader('a', 'b'));
      out.headersSent = res.headersSent;
      out.statusMessage = res.statusMessage;
      res.end(JSON.stringify(out));
      return;
    }
    case '/echo': {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({
          request: req.constructor.name,
          response: res.constructor.name,
          method: req.method,
          url: req.url,
          httpVersion: req.httpVersion,
          major: req.httpVersionMajor,
          minor: req.httpVersionMinor,
          authority: req.authority === undefined ? null : req.authority,
          scheme: req.scheme === undefined ? null : req.scheme,
          headers: req.headers,
          rawHeaders: req.rawHeaders,
          complete: req.complete,
          bodyLength: body.length,
          bodySha256: crypto.createHash('sha256').update(body).digest('hex'),
          encrypted: Boolean(req.socket && req.socket.encrypted),
        }));
      });
      return;
    }
    case '/big': {
      // 1 MiB in 16 KiB writes, waiting for 'drain' when write() says so.
      const n = 64;
      let i = 0;
      const chunk = Buffer.alloc(16384);
      const pump = () => {
        while (i < n) {
          chunk.fill(i & 0xff);
          ++i;
          if (!res.write(Buffer.from(chunk))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      res.setHeader('Content-Type', 'application/octet-stream');
      pump();
      return;
    }
    default:
      res.statusCode = 404;
      res.end('not found');
  }
}

const dir = process.argv[2];
const tls = { key: fs.readFileSync(path.join(dir, 'ecdsa.key')), cert: fs.readFileSync(path.join(dir, 'ecdsa.pem')) };
const plain = http2.createServer(handler);
const both = http2.createSecureServer({ ...tls, allowHTTP1: true }, handler);
const only = http2.createSecureServer(tls, handler);
let ready = 0;
const up = () => {
  if (++ready === 3) {
    console.log(`LISTENING ${plain.address().port} ${both.address().port} ${only.address().port}`);
  }
};
plain.listen(Number(process.env.PORT), '127.0.0.1', up);
both.listen(0, '127.0.0.1', up);
only.listen(0, '127.0.0.1', up);
