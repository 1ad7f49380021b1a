'use strict';
// Exercises Node's http server API (IncomingMessage, ServerResponse) through a
// set of routes. test_scripting.py runs it under node and under kuai and
// compares what comes back. Listens on $PORT (or argv[2]) at 127.0.0.1 and
// prints "LISTENING <port> <env id>" once listening; kuai prints that line once
// per reactor thread.
//
// State that a route records after its response (events, write() results) is
// kept per environment under the client's ?k= key and read back with
// /report?k=... sent on the same keep-alive connection (same connection, same
// reactor, same environment). Events of aborted requests go to stdout as
// "EVENTS <k> <json>".

const http = require('http');
const crypto = require('crypto');
const { threadId } = require('worker_threads');

const ENV_ID = `${process.pid}-${threadId}-${crypto.randomBytes(4).toString('hex')}`;
const port = Number(process.env.PORT || process.argv[2]);
const reports = new Map();
let socketSerial = 0;

function query(req) {
  return new URL(req.url, 'http://x').searchParams;
}

function json(res, obj, status = 200) {
  const body = JSON.stringify(obj);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.end(body);
}

function outState(res) {
  return {
    headersSent: res.headersSent,
    writableEnded: res.writableEnded,
    writableFinished: res.writableFinished,
    finished: res.finished,
  };
}

function sha(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

const strictLog = [];
const routes = {
  // Request line, headers and socket as the handler sees them.
  '/info'(req, res) {
    const sock = req.socket;
    if (sock.kuaiTestSerial === undefined) sock.kuaiTestSerial = ++socketSerial;
    const info = {
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      httpVersionMajor: req.httpVersionMajor,
      httpVersionMinor: req.httpVersionMinor,
      headers: req.headers,
      headersIsPlainObject: Object.getPrototypeOf(req.headers) === Object.prototype,
      rawHeaders: req.rawHeaders,
      remoteAddress: sock.remoteAddress,
      remotePort: sock.remotePort,
      remoteFamily: sock.remoteFamily,
      localAddress: sock.localAddress,
      localFamily: sock.localFamily,
      localPortIsServers: sock.localPort === port,
      address: sock.address().address === sock.localAddress && sock.address().port === sock.localPort &&
        sock.address().family === sock.localFamily,
      encrypted: String(sock.encrypted),
      connectionIsSocket: req.connection === sock && res.socket === sock,
      socketSerial: sock.kuaiTestSerial,
      completeAtStart: req.complete,
      isIncomingMessage: req instanceof http.IncomingMessage,
      isServerResponse: res instanceof http.ServerResponse,
    };
    req.resume();
    req.on('end', () => {
      info.completeAtEnd = req.complete;
      json(res, info);
    });
  },

  // The request body read four ways: 'data' events, pause()/resume(),
  // async iteration and 'readable'/read().
  '/body'(req, res) {
    const mode = query(req).get('mode') || 'data';
    const chunks = [];
    const out = { mode, completeAtStart: req.complete };
    const done = () => {
      const body = Buffer.concat(chunks);
      out.length = body.length;
      out.sha256 = sha(body);
      out.completeAtEnd = req.complete;
      out.readableEnded = req.readableEnded;
      out.gotChunks = chunks.length > 0;
      json(res, out);
    };
    if (mode === 'data') {
      req.on('data', (c) => chunks.push(c));
      req.on('end', done);
    } else if (mode === 'pause') {
      let paused = false;
      out.dataWhilePaused = 0;
      out.pauses = 0;
      req.on('data', (c) => {
        if (paused) out.dataWhilePaused++;
        chunks.push(c);
        if (out.pauses === 0) {
          req.pause();
          paused = true;
          out.pauses++;
          out.isPausedAfterPause = req.isPaused();
          setTimeout(() => {
            paused = false;
            req.resume();
            out.isPausedAfterResume = req.isPaused();
          }, 100);
        }
      });
      req.on('end', done);
    } else if (mode === 'iter') {
      (async () => {
        for await (const c of req) chunks.push(c);
        done();
      })().catch((e) => json(res, { error: String(e) }, 500));
    } else if (mode === 'readable') {
      req.on('readable', () => {
        let c;
        while ((c = req.read()) !== null) chunks.push(c);
      });
      req.on('end', done);
    }
  },

  // Echo through req.pipe(res).
  '/pipe'(req, res) {
    res.setHeader('Content-Type', 'application/octet-stream');
    req.pipe(res);
  },

  '/status'(req, res) {
    const q = query(req);
    res.statusCode = Number(q.get('code'));
    if (q.has('msg')) res.statusMessage = q.get('msg');
    res.end(`status ${res.statusCode}`);
  },

  // setHeader/getHeader/getHeaders/getHeaderNames/hasHeader/removeHeader.
  '/headers-api'(req, res) {
    const r = {};
    res.setHeader('X-MiXeD-Case', 'v1');
    res.setHeader('x-number', 42);
    res.setHeader('Set-Cookie', ['a=1; Path=/', 'b=2']);
    res.setHeader('X-Removed', 'gone');
    res.setHeader('X-Replaced', 'first');
    res.setHeader('x-REPLACED', 'second');
    r.getNumber = res.getHeader('X-NUMBER');
    r.getNumberType = typeof res.getHeader('x-number');
    r.getCookie = res.getHeader('set-cookie');
    r.getMissing = String(res.getHeader('x-nope'));
    r.hasMixed = res.hasHeader('x-mixed-case');
    r.hasRemovedBefore = res.hasHeader('X-Removed');
    res.removeHeader('x-removed');
    r.hasRemovedAfter = res.hasHeader('X-Removed');
    const h = res.getHeaders();
    r.getHeadersNullProto = Object.getPrototypeOf(h) === null;
    r.getHeaders = h;
    r.names = res.getHeaderNames();
    r.headersSentBefore = res.headersSent;
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(r));
  },

  // appendHeader onto nothing, a string, an array; with an array; the names
  // as first written; then once the head went out.
  '/append-header'(req, res) {
    const r = {};
    res.appendHeader('X-New', 'one');
    res.setHeader('x-str', 'a');
    res.appendHeader('X-Str', 'b');
    res.setHeader('X-Arr', ['c', 'd']);
    res.appendHeader('x-arr', ['e', 'f']);
    res.appendHeader('Set-Cookie', 'k=1');
    res.appendHeader('set-cookie', 'l=2');
    r.str = res.getHeader('x-str');
    r.arr = res.getHeader('X-ARR');
    r.raw = res.getRawHeaderNames();
    r.chain = res.appendHeader('X-Chain', 1) === res;
    try {
      res.appendHeader('Bad Name', 'x');
    } catch (e) {
      r.badName = e.code;
    }
    try {
      res.appendHeader('X-Bad', 'a\nb');
    } catch (e) {
      r.badValue = e.code;
    }
    res.setHeader('Content-Type', 'application/json');
    res.write(JSON.stringify(r));
    try {
      res.appendHeader('X-Late', '1');
      res.end(';no error');
    } catch (e) {
      res.end(`;late=${e.code}`);
    }
  },

  // setHeader values merged into writeHead's, writeHead's winning.
  '/writehead-merge'(req, res) {
    res.setHeader('X-A', 'from-setHeader');
    res.setHeader('X-B', 'from-setHeader');
    res.writeHead(201, { 'X-B': 'from-writeHead', 'X-C': 'from-writeHead' });
    res.end('merged');
  },

  '/writehead-reason'(req, res) {
    res.writeHead(202, 'Custom Reason Phrase', { 'Content-Type': 'text/plain' });
    res.end('reason');
  },

  '/writehead-array'(req, res) {
    res.writeHead(200, ['X-Arr', 'one', 'X-Arr', 'two', 'Content-Type', 'text/plain']);
    res.end('array');
  },

  // writeHead's array alone: each pair a line, in order; over fields set
  // before: those replaced, the pairs grouped; an odd count: an error (and
  // the status phrase writeHead fixed stays).
  '/writehead-array-order'(req, res) {
    res.writeHead(200, ['X-A', '1', 'X-B', '2', 'X-A', '3']);
    res.end('order');
  },
  '/writehead-array-over'(req, res) {
    res.setHeader('X-A', '0');
    res.setHeader('X-C', 'c');
    res.writeHead(200, ['X-A', '1', 'X-B', '2', 'X-A', '3']);
    res.end('over');
  },
  '/writehead-array-odd'(req, res) {
    try {
      res.writeHead(200, ['X-A', '1', 'X-B']);
    } catch (e) {
      res.statusCode = 400;
      res.end(`${e.code} ${e.message}`);
    }
  },

  // The handler's own Transfer-Encoding: chunked: the body still goes out
  // in chunks (under its field, not a second one), trailers too.
  '/own-transfer-encoding'(req, res) {
    res.setHeader('Transfer-Encoding', 'chunked');
    res.write('x');
    res.end('y');
  },
  '/own-transfer-encoding-trailers'(req, res) {
    res.writeHead(200, { 'Transfer-Encoding': 'chunked', Trailer: 'X-T' });
    res.write('a');
    res.addTrailers({ 'X-T': 'v' });
    setTimeout(() => res.end('b'), 5);
  },

  // writeHead wrapped the way on-headers wraps it (compression,
  // express-session, morgan): the head that write(), end() or flushHeaders()
  // makes goes through it, and _header says when the head is out.
  '/hooked-writehead'(req, res) {
    const via = new URL(req.url, 'http://x').searchParams.get('via');
    const writeHead = res.writeHead;
    let calls = 0;
    res.writeHead = function hooked(...args) {
      calls++;
      this.setHeader('X-Hook-Args', JSON.stringify(args));
      this.setHeader('X-Header-Before', String(this._header));
      return writeHead.apply(this, args);
    };
    res.statusCode = 203;
    const after = () => `calls=${calls} header=${typeof res._header} ${res._header.split('\r\n')[0]}`;
    if (via === 'end') return res.end('body');
    if (via === 'flush') res.flushHeaders();
    else res.write('first;');
    res.end(after());
  },
  // Fields the handler removed are not added back: Content-Length (the body
  // goes in chunks) and Date.
  '/removed-fields'(req, res) {
    res.setHeader('Content-Length', 5);
    res.removeHeader('Content-Length');
    res.removeHeader('Date');
    res.end('hello');
  },

  // 102 Processing before the response.
  '/processing'(req, res) {
    res.writeProcessing();
    res.end('processed');
  },

  // A setHeader after the head went out: the script reports the error code.
  '/late-setheader'(req, res) {
    res.write('part;');
    try {
      res.setHeader('X-Late', '1');
      res.end('no error');
    } catch (e) {
      res.end(`code=${e.code}`);
    }
  },

  '/chunked'(req, res) {
    res.setHeader('Content-Type', 'text/plain');
    res.write('a');
    res.write(Buffer.from('b'));
    res.end('c');
  },

  // The handler's own Connection, Keep-Alive and Date fields go out as
  // given (Node writes them verbatim and adds only what is missing);
  // sendDate = false leaves Date out.
  '/own-fields'(req, res) {
    const q = new URL(req.url, 'http://x').searchParams;
    if (q.has('c')) res.setHeader('Connection', q.get('c'));
    if (q.has('ka')) res.setHeader('Keep-Alive', q.get('ka'));
    if (q.has('date')) res.setHeader('Date', q.get('date'));
    if (q.has('nodate')) res.sendDate = false;
    res.setHeader('X-After', '1');
    if (q.has('chunked')) res.write('a');
    res.end('x');
  },

  // setHeaders with a Headers object (cookies kept apart) and a Map; the
  // argument checks of setHeaders, writeEarlyHints and addTrailers.
  '/set-headers'(req, res) {
    const h = new Headers({ 'x-h': 'v', 'content-type': 'text/x' });
    h.append('set-cookie', 'a=1');
    h.append('set-cookie', 'b=2');
    res.setHeaders(h);
    res.setHeaders(new Map([['x-m', ['1', '2']], ['x-n', 3]]));
    const out = [];
    for (const bad of [[['a', 'b']], null, 'x']) {
      try { res.setHeaders(bad); out.push('ok'); } catch (e) { out.push(`${e.code}: ${e.message}`); }
    }
    for (const bad of [null, 5, [], { link: 5 }, { link: 'nope' }, { link: ['</a>; rel=preload', 'bad'] },
                       { link: [] }, {}]) {
      try { res.writeEarlyHints(bad); out.push('ok'); } catch (e) { out.push(`${e.code}: ${e.message}`); }
    }
    for (const bad of [{ 'bad name': 1 }, { X: 'a\nb' }, [['Y', 'ok'], ['', 'x']]]) {
      try { res.addTrailers(bad); out.push('ok'); } catch (e) { out.push(`${e.code}: ${e.message}`); }
    }
    res.end(out.join('\n'));
  },
  // 103 Early Hints, then the response; trailers after a chunked body.
  // res.strictContentLength: what throws is logged for /strict-log.
  '/strict-end'(req, res) {
    res.strictContentLength = true;
    res.setHeader('Content-Length', 2);
    try {
      res.end('abc');
    } catch (e) {
      strictLog.push(`${e.code}: ${e.message}`);
      res.destroy();
    }
  },
  '/strict-write'(req, res) {
    res.strictContentLength = true;
    res.setHeader('Content-Length', 3);
    res.write('ab');
    for (const tryIt of [() => res.write('cd'), () => res.end('cd')]) {
      try {
        tryIt();
      } catch (e) {
        strictLog.push(`${e.code}: ${e.message}`);
      }
    }
    res.end('c');
  },
  // (per reactor thread: ask on the connection that made the entries)
  '/strict-log'(req, res) {
    res.end(JSON.stringify(strictLog.splice(0)));
  },
  // The request's trailer fields, once its body has ended.
  '/request-trailers'(req, res) {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => res.end(JSON.stringify({ body, trailers: req.trailers, rawTrailers: req.rawTrailers })));
  },
  '/early-hints'(req, res) {
    res.writeEarlyHints({ link: ['</a.css>; rel=preload; as=style', '</b.js>; rel=preload'], 'x-hint': 'yes' },
                        () => res.end('after hints'));
  },
  '/trailers'(req, res) {
    res.writeHead(200, { Trailer: 'X-T, X-U' });
    res.write('body');
    res.addTrailers([['X-T', 'done'], ['X-U', ['1', '2']]]);
    res.end();
  },
  '/fixed'(req, res) {
    res.setHeader('Content-Type', 'text/plain');
    res.end('fixed body');
  },

  '/empty'(req, res) {
    res.end();
  },

  // A handler that answers HEAD without the body (as tinyhttp's send does).
  '/head-aware'(req, res) {
    res.setHeader('Content-Type', 'text/plain');
    if (req.method === 'HEAD') return res.end();
    return res.end('the body GET gets');
  },

  // 204/304: whatever the handler writes is not sent.
  '/nocontent'(req, res) {
    res.statusCode = Number(query(req).get('code'));
    res.setHeader('X-Kept', 'yes');
    res.write('not sent');
    res.end('not sent either');
  },

  // flushHeaders sends the head now; the body follows 300 ms later.
  // flushHeaders(): the head goes out now; the body once /release?k= came
  // (or after 10 s).
  '/flush'(req, res) {
    res.setHeader('X-Flushed', 'yes');
    const before = res.headersSent;
    res.flushHeaders();
    const after = res.headersSent;
    const done = () => res.end(`headersSent ${before}->${after}`);
    const timer = setTimeout(done, 10000);
    reports.set(`release ${query(req).get('k')}`, () => { clearTimeout(timer); done(); });
  },
  '/release'(req, res) {
    const release = reports.get(`release ${query(req).get('k')}`);
    if (release) release();
    res.end(release ? 'released' : 'nothing to release');
  },

  // headersSent/writableEnded/finished through a response, and the order of
  // 'finish', 'close' and end()'s callback; read back with /report.
  '/state'(req, res) {
    const k = query(req).get('k');
    const rec = { states: {}, events: [] };
    reports.set(k, rec);
    res.on('finish', () => {
      rec.events.push('finish');
      rec.states.onFinish = outState(res);
    });
    res.on('close', () => rec.events.push('close'));
    req.on('close', () => rec.events.push('req-close'));
    rec.states.start = outState(res);
    res.write('x');
    rec.states.afterWrite = outState(res);
    res.end('y', () => rec.events.push('end-callback'));
    rec.states.afterEnd = outState(res);
  },

  // A big streamed response: write() until it returns false, then wait for
  // 'drain'. The counts are read back with /report.
  '/big'(req, res) {
    const q = query(req);
    const k = q.get('k');
    const total = Number(q.get('total'));
    const chunk = Buffer.alloc(65536, 'z');
    const rec = { falses: 0, drains: 0, sent: 0, needDrainSeen: false, events: [] };
    reports.set(k, rec);
    res.setHeader('Content-Type', 'application/octet-stream');
    res.on('finish', () => rec.events.push('finish'));
    res.on('close', () => rec.events.push('close'));
    const pump = () => {
      while (rec.sent < total) {
        const ok = res.write(chunk);
        rec.sent += chunk.length;
        if (!ok) {
          rec.falses++;
          if (res.writableNeedDrain) rec.needDrainSeen = true;
          res.once('drain', () => {
            rec.drains++;
            pump();
          });
          return;
        }
      }
      res.end();
    };
    pump();
  },

  '/report'(req, res) {
    json(res, reports.get(query(req).get('k')) || null);
  },

  // Writes once the client has gone: false, and the callback's error.
  '/write-after-close'(req, res) {
    const k = query(req).get('k');
    res.write('first');
    res.on('close', () => {
      const rec = { destroyed: res.destroyed };
      rec.ok = res.write('more', (e) => {
        rec.cbErr = e ? e.code : null;
        console.log(`EVENTS ${k} ${JSON.stringify(rec)}`);
      });
    });
  },

  // As '/abort', with no 'error' listener on the request: nothing uncaught.
  '/abort-quiet'(req, res) {
    const k = query(req).get('k');
    const rec = { req: [] };
    req.on('aborted', () => rec.req.push('aborted'));
    req.on('end', () => rec.req.push('end'));
    req.on('close', () => {
      rec.req.push('close');
      setTimeout(() => console.log(`EVENTS ${k} ${JSON.stringify(rec)}`), 300);
    });
    req.on('data', () => {});
  },

  // Never answers by itself: the client goes away (mid-body or while waiting
  // for the response) and the events seen in the next 500 ms go to stdout.
  '/abort'(req, res) {
    const k = query(req).get('k');
    // order: the request's, the response's and the socket's events as one
    // sequence (the socket closes before the request's 'error' and 'close').
    const rec = { req: [], res: [], order: [] };
    const on = (emitter, list, name, what = () => name) => emitter.on(name, (...a) => {
      list.push(what(...a));
      rec.order.push(`${emitter === req ? 'req' : emitter === res ? 'res' : 'socket'} ${what(...a)}`);
    });
    on(req, rec.req, 'aborted');
    on(req, rec.req, 'error', (e) => `error:${e.code}`);
    on(req, rec.req, 'end');
    on(req, rec.req, 'close');
    on(req.socket, [], 'close');
    on(res, rec.res, 'finish');
    res.on('close', () => {
      rec.res.push('close');
      rec.order.push('res close');
      setTimeout(() => {
        rec.reqAborted = req.aborted;
        rec.reqComplete = req.complete;
        rec.resWritableEnded = res.writableEnded;
        rec.resWritableFinished = res.writableFinished;
        console.log(`EVENTS ${k} ${JSON.stringify(rec)}`);
      }, 300);
    });
    req.on('data', () => {});
  },

  '/whoami'(req, res) {
    res.setHeader('X-Env-Id', ENV_ID);
    res.end(ENV_ID);
  },
};

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  const route = routes[path];
  if (route) return route(req, res);
  res.statusCode = 404;
  res.end('no route');
});
server.listen(port, '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port} ${ENV_ID}`);
});
