'use strict';
// http.createServer's options, as Node checks and applies them: timeouts,
// keepAliveTimeout, joinDuplicateHeaders, IncomingMessage/ServerResponse.
const http = require('http');

const bad = [
  { keepAliveTimeout: 'x' }, { keepAliveTimeout: 1.5 }, { keepAliveTimeout: -1 },
  { requestTimeout: null }, { headersTimeout: 2 ** 60 }, { headersTimeout: 9000, requestTimeout: 5000 },
  { joinDuplicateHeaders: 1 }, { joinDuplicateHeaders: 'yes' }, { shouldUpgradeCallback: true },
  { maxHeaderSize: '1k' }, { maxHeaderSize: -5 }, { rejectNonStandardBodyWrites: 1 },
  { highWaterMark: 'x' }, { highWaterMark: null }, { requireHostHeader: 1 }, { uniqueHeaders: ['a', 1] },
];
for (const o of bad) {
  try {
    http.createServer(o);
    console.log(`accepted ${JSON.stringify(o)}`);
  } catch (e) {
    console.log(`refused ${e.name} ${e.code}: ${e.message}`);
  }
}
const t = http.createServer({ keepAliveTimeout: 1234, requestTimeout: 1000 });
console.log(`values ${t.keepAliveTimeout} ${t.requestTimeout} ${t.headersTimeout} ${t.joinDuplicateHeaders} ` +
            `${t.maxHeaderSize} ${t.rejectNonStandardBodyWrites}`);

class MyRequest extends http.IncomingMessage {
  get greeting() { return `MyRequest ${this.url}`; }
}
class MyResponse extends http.ServerResponse {
  answer() {
    this.setHeader('Content-Type', 'application/json');
    this.end(JSON.stringify({ greeting: this.req.greeting, headers: this.req.headers,
                              isMine: this instanceof MyResponse && this.req instanceof MyRequest }));
  }
}
const join = process.env.JOIN === '1';
const server = http.createServer({ IncomingMessage: MyRequest, ServerResponse: MyResponse,
                                   joinDuplicateHeaders: join, maxHeaderSize: 2000,
                                   rejectNonStandardBodyWrites: join },
                                 (req, res) => {
  // Body bytes where none may go: thrown with rejectNonStandardBodyWrites,
  // dropped without; reported in a header (the response has no body).
  if (req.url === '/no-body') {
    res.statusCode = 204;
    const out = [];
    for (const f of [() => res.write('x'), () => res.write(''), () => res.end('y')]) {
      try { out.push(String(f() === true)); } catch (e) { out.push(e.code); }
    }
    if (!res.headersSent) res.setHeader('X-Writes', out.join(','));
    if (!res.writableEnded) res.end();
    console.log(`no-body ${out.join(',')}`);
    return;
  }
  // A response that asks for the connection to end: Connection: close.
  if (req.url === '/close-set') res.setHeader('Connection', 'close');
  if (req.url === '/close-keepalive-flag') res.shouldKeepAlive = false;
  if (req.url === '/close-head') {
    res.writeHead(200, { 'Content-Type': 'text/plain', Connection: 'close' });
    res.end('closing');
    return;
  }
  res.answer();
});
const d = http.createServer();
const n = http.createServer({ highWaterMark: -1, requireHostHeader: false, uniqueHeaders: 'x' });
console.log(`more ${d.highWaterMark} ${d.requireHostHeader} ${n.highWaterMark} ${n.requireHostHeader}`);

// requireHostHeader: false takes HTTP/1.1 requests with no Host; the fields
// uniqueHeaders names go out as one line; highWaterMark sizes both streams.
const lenient = http.createServer({ requireHostHeader: false, uniqueHeaders: ['X-U'], highWaterMark: 1024 },
                                  (req, res) => {
  res.setHeader('X-U', ['a', 'b']);
  res.setHeader('X-V', ['c', 'd']);
  res.setHeader('Cookie', ['e=1', 'f=2']);
  res.end(JSON.stringify({ host: req.headers.host === undefined ? null : req.headers.host,
                           readable: req.readableHighWaterMark, writable: res.writableHighWaterMark }));
});
lenient.listen(0, '127.0.0.1', () => {
  server.listen(Number(process.env.PORT), '127.0.0.1', () => {
    console.log(`LENIENT ${lenient.address().port}`);
    console.log(`LISTENING ${server.address().port}`);
  });
});
