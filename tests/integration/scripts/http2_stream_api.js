// Node's core HTTP/2 server API ('stream' event) and the compatibility API's
// trailers and 1xx responses, the same under node and kuai.
// Prints "LISTENING <core port> <compat port>".
'use strict';
const fs = require('fs');
const http2 = require('http2');

function tryCode(fn) {
  try {
    const r = fn();
    return r === undefined ? 'ok' : r;
  } catch (e) {
    return `${e.code}: ${e.message}`;
  }
}

const core = http2.createServer();
core.on('stream', (stream, headers, flags) => {
  const path = headers[':path'];
  switch (path) {
    case '/client-reset': {
      // Never answered: the client resets the stream mid-upload.
      const rec = [];
      stream.on('data', () => {});
      stream.on('aborted', () => rec.push('aborted'));
      if (headers['x-listen'] === '1') stream.on('error', (e) => rec.push(`error:${e.code}`));
      stream.on('close', () => console.log(
        `CLIENTRESET ${headers['x-k']} ${JSON.stringify({ rec, rstCode: stream.rstCode, aborted: stream.aborted })}`));
      return;
    }
    case '/trailers':
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      stream.on('wantTrailers', () => {
        const pseudo = tryCode(() => stream.sendTrailers({ ':status': 200 }));
        stream.sendTrailers({ 'x-sum': 'abc', 'x-two': ['1', '2'] });
        const again = tryCode(() => stream.sendTrailers({ 'x-b': '2' }));
        console.log(`TRAILERS ${pseudo} | ${again}`);
      });
      stream.write('body ');
      stream.end('done');
      return;
    case '/no-trailer-listener':
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      stream.end('plain');
      return;
    case '/request-trailers': {
      let n = 0;
      let got = null;
      stream.on('data', (c) => { n += c.length; });
      stream.on('trailers', (t, f) => { got = { ...t }; });
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(JSON.stringify({ n, trailers: got }));
      });
      return;
    }
    case '/close':
      stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    case '/close-after-write':
      stream.on('error', (e) => console.log(`STREAMERROR ${e.code} ${e.message}`));
      stream.respond({ ':status': 200 });
      stream.write('a');
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM,
        () => console.log(`CLOSED ${stream.rstCode} ${stream.closed} ${stream.destroyed}`));
      return;
    case '/early-hints':
      stream.additionalHeaders({ ':status': 103, link: '</a.css>; rel=preload' });
      stream.respond({ ':status': 200 });
      stream.end('after');
      return;
    case '/file-range':
      stream.respondWithFile(__filename, { 'content-type': 'text/plain' }, { offset: 10, length: 20 });
      return;
    case '/file-statcheck':
      stream.respondWithFile(__filename, {}, {
        statCheck(stat, h) {
          h['last-modified'] = 'then';
          h['x-regular'] = String(stat.isFile());
        },
      });
      return;
    case '/file-statcheck-false':
      stream.respondWithFile(__filename, {}, {
        statCheck() {
          stream.respond({ ':status': 304 });
          return false;
        },
      });
      return;
    case '/file-directory':
      stream.respondWithFile(__dirname, {}, {
        onError(e) {
          stream.respond({ ':status': 500 });
          stream.end(`${e.code} ${e.message}`);
        },
      });
      return;
    case '/file-trailers':
      stream.respondWithFile(__filename, { 'content-type': 'text/plain' }, { length: 10, waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-file': 'done' }));
      return;
    case '/fd': {
      const fd = fs.openSync(__filename, 'r');
      stream.respondWithFD(fd, { 'content-type': 'text/plain' }, { offset: 5, length: 7 });
      stream.on('close', () => fs.closeSync(fd));
      return;
    }
    case '/fd-statcheck': {
      const fd = fs.openSync(__filename, 'r');
      stream.respondWithFD(fd, {}, {
        statCheck(st, h, range) {
          range.offset = 2;
          range.length = 3;
          h['x-regular'] = String(st.isFile());
        },
      });
      stream.on('close', () => fs.closeSync(fd));
      return;
    }
    case '/facts':
      stream.respond({ ':status': 200, 'x-a': '1' });
      stream.end(JSON.stringify({
        id: stream.id, flags, pushAllowed: stream.pushAllowed, headersSent: stream.headersSent,
        sentHeaders: Object.keys(stream.sentHeaders), endAfterHeaders: stream.endAfterHeaders,
        headRequest: stream.headRequest, aborted: stream.aborted, closed: stream.closed,
        destroyed: stream.destroyed, pending: stream.pending, rstCode: stream.rstCode,
        encrypted: stream.session.encrypted, alpn: stream.session.alpnProtocol, type: stream.session.type,
        sameSession: stream.session === core.lastSession, sessionStreams: core.sessionStreams,
      }));
      return;
    case '/errors': {
      const out = {
        closeType: tryCode(() => stream.close('x')),
        closeRange: tryCode(() => stream.close(-1)),
        closeFraction: tryCode(() => stream.close(1.5)),
        closeCallback: tryCode(() => stream.close(0, 5)),
        trailersNotReady: tryCode(() => stream.sendTrailers({})),
        info101: tryCode(() => stream.additionalHeaders({ ':status': 101 })),
        info200: tryCode(() => stream.additionalHeaders({ ':status': 200 })),
        infoPseudo: tryCode(() => stream.additionalHeaders({ ':status': 103, ':path': '/' })),
        respondOptions: tryCode(() => stream.respond({}, 5)),
        fileOffset: tryCode(() => stream.respondWithFile(__filename, {}, { offset: 'x' })),
        fileStatCheck: tryCode(() => stream.respondWithFile(__filename, {}, { statCheck: 1 })),
        fdType: tryCode(() => stream.respondWithFD('x')),
        file204: tryCode(() => stream.respondWithFile(__filename, { ':status': 204 })),
      };
      stream.respond({ ':status': 200 });
      out.infoAfterRespond = tryCode(() => stream.additionalHeaders({ ':status': 103 }));
      out.fileAfterRespond = tryCode(() => stream.respondWithFile(__filename));
      stream.end(JSON.stringify(out));
      return;
    }
    case '/no-date':
      stream.respond({ ':status': 200, 'x-b': '2' }, { sendDate: false });
      stream.end('y');
      return;
    case '/own-date':
      stream.respond({ ':status': 200, 'x-b': '2', date: 'Thu, 01 Jan 1970 00:00:00 GMT' });
      stream.end('y');
      return;
    default:
      stream.respond({ ':status': 404 });
      stream.end();
  }
});
core.sessionStreams = 0;
core.on('session', (session) => {
  core.lastSession = session;
  session.on('stream', () => { core.sessionStreams++; });
});

const compat = http2.createServer((req, res) => {
  switch (req.url) {
    case '/add-trailers':
      res.addTrailers({ 'X-Sum': 'abc', 'x-two': ['1', '2'] });
      res.end('with trailers');
      return;
    case '/set-trailer':
      res.setTrailer('X-One', '1');
      res.end(tryCode(() => res.setTrailer('bad name', '1')));
      return;
    case '/trailers-no-body':
      res.addTrailers({ 'x-t': 'v' });
      res.end();
      return;
    case '/request-trailers': {
      const before = JSON.stringify(req.trailers);
      req.resume();
      req.on('end', () => res.end(JSON.stringify({ before, after: req.trailers, raw: req.rawTrailers })));
      return;
    }
    case '/early-hints': {
      const sent = res.writeEarlyHints({ link: '</s.css>; rel=preload; as=style', 'x-hint': 'a' });
      const bad = tryCode(() => res.writeEarlyHints({ link: 'bad' }));
      res.end(JSON.stringify({ sent, bad }));
      return;
    }
    case '/information':
      res.end(String(tryCode(() => res.writeInformation(102))));
      return;
    case '/facts':
      res.end(JSON.stringify({
        id: res.stream.id, sameSession: req.stream.session === res.stream.session,
        encrypted: res.stream.session.encrypted, alpn: res.stream.session.alpnProtocol,
      }));
      return;
    case '/no-date':
      res.sendDate = false;
      res.setHeader('X-A', '1');
      res.end('x');
      return;
    case '/own-date':
      res.setHeader('Date', 'Thu, 01 Jan 1970 00:00:00 GMT');
      res.setHeader('X-A', '1');
      res.end('x');
      return;
    default:
      res.statusCode = 404;
      res.end();
  }
});

let ready = 0;
const up = () => {
  if (++ready === 2) console.log(`LISTENING ${core.address().port} ${compat.address().port}`);
};
core.listen(Number(process.env.PORT), '127.0.0.1', up);
compat.listen(0, '127.0.0.1', up);
