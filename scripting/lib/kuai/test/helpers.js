'use strict';

// Test helpers: run an App (or any request listener) on 127.0.0.1 with
// Node's own http server, and send real requests to it.

const http = require('node:http');

// startApp(app | listener) -> { port, server, close() }
function startApp(app) {
  const listener = typeof app === 'function' ? app : app.callback();
  const server = http.createServer(listener);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        server,
        close: () => new Promise((done) => { server.closeAllConnections?.(); server.close(() => done()); }),
      });
    });
  });
}

// send(port, method, path, headers?, body?) -> { status, message, headers, body }
function send(port, method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, method, path, headers: headers || {}, agent: false,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode,
        message: res.statusMessage,
        headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        aborted: false,
      }));
      res.on('error', (err) => resolve({
        status: res.statusCode, message: res.statusMessage, headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8'), aborted: true, error: err.code || err.message,
      }));
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

module.exports = { startApp, send };

// fetchApp(app, method, path, headers?, body?): start, send one request, stop.
async function fetchApp(app, method, path, headers, body) {
  const s = await startApp(app);
  try {
    return await send(s.port, method, path, headers, body);
  } finally {
    await s.close();
  }
}

module.exports.fetchApp = fetchApp;
