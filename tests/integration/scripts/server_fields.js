'use strict';
// More of Node's http.Server and ServerResponse API: the server's fields
// (noDelay, keepAlive, ...), listen({ signal }), Symbol.asyncDispose, and
// res.writeInformation / res.closed / res.errored. Prints "fields ...",
// "signal ...", "dispose ...", then "LISTENING <port>"; GET /info sends
// 1xx answers before its response; GET /info-errors says what bad calls
// throw; GET /state destroys its response and prints "state ..." lines;
// /socket-state, /signal-slow and /signal-ok: the socket's state fields and
// req.signal; /bytes/...: the socket's bytesRead and bytesWritten, printed
// as "bytes ..." lines (at the request, after its 'finish', at the close).

const http = require('http');

const port = Number(process.env.PORT);
const seenSockets = new WeakSet();
const names = ['noDelay', 'keepAlive', 'keepAliveInitialDelay', 'allowHalfOpen', 'httpAllowHalfOpen',
  'pauseOnConnect', 'insecureHTTPParser', 'httpValidation', 'keepAliveTimeoutBuffer',
  'connectionsCheckingInterval'];
const fields = (s) => names.map((n) => `${n}=${s[n]}`).join(' ');
console.log(`fields ${fields(http.createServer())}`);
console.log(`fields ${fields(http.createServer({ noDelay: false, keepAlive: true, keepAliveInitialDelay: 2500,
  insecureHTTPParser: true }))}`);

const server = http.createServer((req, res) => {
  if (req.url === '/info') {
    res.writeInformation(103, { link: '</a.css>; rel=preload' });
    res.writeInformation(199, [['x-a', '1'], ['x-b', ['2', '3']]]);
    return res.end('ok');
  }
  if (req.url === '/info-errors') {
    const codes = [];
    for (const args of [[101], [200], ['103'], [103, 'x'], [103, ['a']], [103, { 'bad name': 1 }]]) {
      try {
        res.writeInformation(...args);
        codes.push('ok');
      } catch (e) {
        codes.push(`${e.code}: ${e.message}`);
      }
    }
    res.end(JSON.stringify(codes));
    try {
      res.writeInformation(103);
    } catch (e) {
      console.log(`after-end ${e.code}`);
    }
    return undefined;
  }
  if (req.url === '/state') {
    console.log(`state before ${res.closed} ${res.errored}`);
    res.on('error', () => {});
    res.on('close', () => console.log(`state closed ${res.closed} ${res.errored && res.errored.message}`));
    res.destroy(new Error('gone'));
    console.log(`state destroyed ${res.closed} ${res.errored && res.errored.message}`);
    return undefined;
  }
  if (req.url === '/socket-state') {
    const s = req.socket;
    return res.end(JSON.stringify([s.readyState, s.connecting, s.pending, s.allowHalfOpen, s.bufferSize,
      s.writableLength, req.client === s, req.trailersDistinct, s.readableLength, s.writableEnded,
      s.writableFinished, s.readableEnded, s.closed, s.errored, typeof s.destroySoon,
      typeof s.resetAndDestroy]));
  }
  if (req.url.startsWith('/bytes/')) {
    const s = req.socket;
    const at = `${s.bytesRead}/${s.bytesWritten}`;
    if (!seenSockets.has(s)) {
      seenSockets.add(s);
      s.on('close', () => console.log(`bytes close ${s.bytesRead}/${s.bytesWritten}`));
    }
    res.on('finish', () => setImmediate(() => {
      console.log(`bytes ${req.url} at ${at} finished ${s.bytesRead}/${s.bytesWritten}`);
    }));
    return res.end(`bytes of ${req.url}`);
  }
  // req.signal: aborted when the client leaves before the response is done,
  // not once the response has finished.
  if (req.url === '/signal-slow') {
    req.signal.addEventListener('abort', () => {
      console.log(`signal aborted ${req.signal.reason.name} ${res.writableEnded}`);
    });
    return setTimeout(() => res.end('late'), 500);
  }
  if (req.url === '/signal-ok') {
    const signal = req.signal;
    res.end('ok');
    setTimeout(() => console.log(`signal after a response aborted=${signal.aborted}`), 200);
    return undefined;
  }
  return res.end('?');
});

(async () => {
  const ac = new AbortController();
  const s = http.createServer();
  s.listen({ port: 0, host: '127.0.0.1', signal: ac.signal }, () => {
    s.on('close', () => console.log(`signal closed listening=${s.listening}`));
    ac.abort();
  });
  await new Promise((resolve) => s.once('close', resolve));

  const d = http.createServer();
  await new Promise((resolve) => d.listen(0, '127.0.0.1', resolve));
  await d[Symbol.asyncDispose]();
  console.log(`dispose listening=${d.listening}`);
  try {
    await d[Symbol.asyncDispose]();
  } catch (e) {
    console.log(`dispose again ${e.code}`);
  }
  try {
    http.createServer().listen({ port: 0, signal: 'x' });
  } catch (e) {
    console.log(`bad signal ${e.code}`);
  }
  server.listen(port, '127.0.0.1', () => console.log(`LISTENING ${port}`));
})();
