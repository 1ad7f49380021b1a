'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { Readable } = require('node:stream');
const { App } = require('..');
const { startApp, send } = require('./helpers');

// One app, many paths: each handler sets the response a different way.
const routes = {
  '/string': (ctx) => { ctx.body = 'hello'; },
  '/html': (ctx) => { ctx.body = '<h1>hi</h1>'; },
  '/buffer': (ctx) => { ctx.body = Buffer.from('bytes'); },
  '/stream': (ctx) => { ctx.body = Readable.from(['s1', 's2']); },
  '/json': (ctx) => { ctx.body = { a: 1, b: [true, null] }; },
  '/array': (ctx) => { ctx.body = [1, 2]; },
  '/null': (ctx) => { ctx.body = 'x'; ctx.body = null; },
  '/404': () => {},
  '/status204': (ctx) => { ctx.body = 'gone'; ctx.status = 204; },
  '/status304': (ctx) => { ctx.status = 304; ctx.body = 'x'; },
  '/explicit-status': (ctx) => { ctx.status = 201; ctx.body = 'made'; },
  '/message': (ctx) => { ctx.status = 200; ctx.message = 'Very OK'; ctx.body = ctx.message; },
  '/type': (ctx) => { ctx.type = 'svg'; ctx.body = '<svg/>'; },
  '/type-keep': (ctx) => { ctx.type = 'text/csv'; ctx.body = 'a,b'; },
  '/type-unknown': (ctx) => { ctx.body = 'x'; ctx.type = 'nonsense-ext'; },
  '/length': (ctx) => { ctx.body = 'héllo'; ctx.set('X-Len', String(ctx.length)); },
  '/redirect': (ctx) => { ctx.redirect('/to?a=<b>'); },
  '/redirect-abs': (ctx) => { ctx.status = 307; ctx.redirect('http://example.com/a b'); },
  '/redirect-back': (ctx) => { ctx.redirect('back', '/alt'); },
  '/back': (ctx) => { ctx.back('/alt'); },
  '/attachment': (ctx) => { ctx.attachment('dir/photo.png'); ctx.body = Buffer.from([1]); },
  '/attachment-none': (ctx) => { ctx.attachment(); ctx.body = 'x'; },
  '/etag': (ctx) => {
    ctx.etag = 'v1';
    ctx.lastModified = 'Tue, 02 Jan 2024 03:04:05 GMT';
    ctx.body = 'cached';
    ctx.set('X-Etag', ctx.etag);
    ctx.set('X-LM', String(ctx.lastModified.getTime()));
    if (ctx.fresh) ctx.status = 304;
    ctx.set('X-Stale', String(ctx.stale));
  },
  '/weak-etag': (ctx) => { ctx.etag = 'W/"w"'; ctx.body = 'x'; },
  '/headers': (ctx) => {
    ctx.set('X-One', 1);
    ctx.set({ 'X-Two': 'two', 'X-List': ['a', 3] });
    ctx.append('X-List', 'b');
    ctx.append('X-New', 'n');
    ctx.set('X-Gone', 'x');
    ctx.remove('X-Gone');
    ctx.vary('Accept');
    ctx.vary('accept, Origin');
    ctx.body = {
      has: ctx.response.has('x-one'),
      get: ctx.response.get('X-Two'),
      type: ctx.response.is('json') || 'no',
      headerSent: ctx.headerSent,
      writable: ctx.writable,
      header: Object.keys(ctx.response.header).sort(),
    };
  },
  '/flush': async (ctx) => {
    ctx.set('X-Flushed', 'yes');
    ctx.status = 200;
    ctx.flushHeaders();
    ctx.set('X-Too-Late', 'x');
    ctx.body = String(ctx.headerSent);
  },
  '/stream-error': (ctx) => { ctx.body = new Readable({ read() { this.destroy(new Error('boom')); } }); },
  '/stream-error-late': (ctx) => {
    let n = 0;
    ctx.body = new Readable({
      read() {
        if (n++ === 0) this.push('first chunk ');
        else setTimeout(() => this.destroy(new Error('late boom')), 5);
      },
    });
  },
  '/blob': (ctx) => { ctx.body = new Blob(['blob data'], { type: 'text/plain' }); },
  '/web-stream': (ctx) => { ctx.body = new Blob(['web']).stream(); },
  '/fetch-response': (ctx) => { ctx.body = new Response('from response', { status: 202, headers: { 'content-type': 'text/x-r' } }); },
  '/status-invalid': (ctx) => { ctx.status = 'abc'; },
  '/json-null': (ctx) => { ctx.type = 'json'; ctx.body = null; },
};

let server;
let errors;
test.before(async () => {
  const app = new App();
  errors = [];
  app.on('error', (err) => errors.push(err.message));
  app.use(async (ctx) => { const fn = routes[ctx.path]; if (fn) await fn(ctx); });
  server = await startApp(app);
});
test.after(() => server.close());

const get = (path, headers) => send(server.port, 'GET', path, headers);

test('string bodies: text/plain or text/html by the first character', async () => {
  let r = await get('/string');
  assert.strictEqual(r.status, 200);
  assert.strictEqual(r.headers['content-type'], 'text/plain; charset=utf-8');
  assert.strictEqual(r.headers['content-length'], '5');
  assert.strictEqual(r.body, 'hello');
  r = await get('/html');
  assert.strictEqual(r.headers['content-type'], 'text/html; charset=utf-8');
});

test('Buffer -> application/octet-stream; stream -> piped; object/array -> JSON', async () => {
  let r = await get('/buffer');
  assert.strictEqual(r.headers['content-type'], 'application/octet-stream');
  assert.strictEqual(r.headers['content-length'], '5');
  r = await get('/stream');
  assert.strictEqual(r.headers['content-type'], 'application/octet-stream');
  assert.strictEqual(r.headers['transfer-encoding'], 'chunked');
  assert.strictEqual(r.body, 's1s2');
  r = await get('/json');
  assert.strictEqual(r.headers['content-type'], 'application/json; charset=utf-8');
  assert.strictEqual(r.body, '{"a":1,"b":[true,null]}');
  assert.strictEqual(r.headers['content-length'], String(r.body.length));
  assert.strictEqual((await get('/array')).body, '[1,2]');
});

test('null body -> 204 without Content-Type; default 404; 204/304 strip the body', async () => {
  let r = await get('/null');
  assert.strictEqual(r.status, 204);
  assert.strictEqual(r.headers['content-type'], undefined);
  assert.strictEqual(r.body, '');
  r = await get('/404');
  assert.strictEqual(r.status, 404);
  assert.strictEqual(r.body, 'Not Found');
  assert.strictEqual(r.headers['content-type'], 'text/plain; charset=utf-8');
  r = await get('/status204');
  assert.strictEqual(r.status, 204);
  assert.strictEqual(r.body, '');
  assert.strictEqual(r.headers['content-length'], undefined);
  r = await get('/status304');
  assert.strictEqual(r.status, 304);
  assert.strictEqual(r.body, '');
  r = await get('/json-null'); // as Koa: the JSON literal, status untouched
  assert.strictEqual(r.status, 404);
  assert.strictEqual(r.body, 'null');
});

test('status and message', async () => {
  assert.strictEqual((await get('/explicit-status')).status, 201);
  const r = await get('/message');
  assert.strictEqual(r.message, 'Very OK');
  assert.strictEqual(r.body, 'Very OK');
  assert.strictEqual((await get('/status-invalid')).status, 500);
  assert.ok(errors.some((m) => /status code must be a number/.test(m)));
});

test('type and length', async () => {
  assert.strictEqual((await get('/type')).headers['content-type'], 'image/svg+xml');
  assert.strictEqual((await get('/type-keep')).headers['content-type'], 'text/csv; charset=utf-8');
  assert.strictEqual((await get('/type-unknown')).headers['content-type'], undefined);
  assert.strictEqual((await get('/length')).headers['x-len'], '6');
});

test('HEAD sends no body but keeps Content-Length', async () => {
  const r = await send(server.port, 'HEAD', '/json');
  assert.strictEqual(r.status, 200);
  assert.strictEqual(r.body, '');
  assert.strictEqual(r.headers['content-length'], '23');
  assert.strictEqual(r.headers['content-type'], 'application/json; charset=utf-8');
});

test('redirect: Location, 302 by default, HTML or text body, back', async () => {
  let r = await get('/redirect', { accept: 'application/json' });
  assert.strictEqual(r.status, 302);
  assert.strictEqual(r.headers.location, '/to?a=%3Cb%3E');
  assert.strictEqual(r.body, 'Redirecting to /to?a=<b>.');
  r = await get('/redirect', { accept: 'text/html' });
  assert.strictEqual(r.headers['content-type'], 'text/html; charset=utf-8');
  assert.strictEqual(r.body, 'Redirecting to /to?a=&lt;b&gt;.');
  r = await get('/redirect-abs');
  assert.strictEqual(r.status, 307);
  assert.strictEqual(r.headers.location, 'http://example.com/a%20b');
  assert.strictEqual((await get('/redirect-back', { referer: '/prev' })).headers.location, '/prev');
  assert.strictEqual((await get('/redirect-back')).headers.location, '/alt');
  assert.strictEqual((await get('/back', { referer: '/prev' })).headers.location, '/prev');
  assert.strictEqual((await get('/back', { referer: 'http://other.example/x' })).headers.location, '/alt');
});

test('attachment sets Content-Disposition and type from the extension', async () => {
  let r = await get('/attachment');
  assert.strictEqual(r.headers['content-disposition'], 'attachment; filename="photo.png"');
  assert.strictEqual(r.headers['content-type'], 'image/png');
  r = await get('/attachment-none');
  assert.strictEqual(r.headers['content-disposition'], 'attachment');
});

test('etag, lastModified, fresh -> 304', async () => {
  let r = await get('/etag');
  assert.strictEqual(r.status, 200);
  assert.strictEqual(r.headers.etag, '"v1"');
  assert.strictEqual(r.headers['x-etag'], '"v1"');
  assert.strictEqual(r.headers['last-modified'], 'Tue, 02 Jan 2024 03:04:05 GMT');
  assert.strictEqual(r.headers['x-lm'], String(Date.parse('2024-01-02T03:04:05Z')));
  assert.strictEqual(r.headers['x-stale'], 'true');
  r = await get('/etag', { 'if-none-match': '"v1"' });
  assert.strictEqual(r.status, 304);
  assert.strictEqual(r.body, '');
  r = await get('/etag', { 'if-none-match': '"other"' });
  assert.strictEqual(r.status, 200);
  r = await get('/etag', { 'if-modified-since': 'Wed, 03 Jan 2024 00:00:00 GMT' });
  assert.strictEqual(r.status, 304);
  r = await get('/etag', { 'if-modified-since': 'Mon, 01 Jan 2024 00:00:00 GMT' });
  assert.strictEqual(r.status, 200);
  r = await get('/etag', { 'if-none-match': '"v1"', 'cache-control': 'no-cache' });
  assert.strictEqual(r.status, 200);
  assert.strictEqual((await get('/weak-etag')).headers.etag, 'W/"w"');
});

test('set/append/remove/vary/has/get/headerSent/writable', async () => {
  const r = await get('/headers');
  const b = JSON.parse(r.body);
  assert.strictEqual(r.headers['x-one'], '1');
  assert.strictEqual(r.headers['x-two'], 'two');
  assert.strictEqual(r.headers['x-list'], 'a, 3, b');
  assert.strictEqual(r.headers['x-new'], 'n');
  assert.strictEqual(r.headers['x-gone'], undefined);
  assert.strictEqual(r.headers.vary, 'Accept, Origin');
  assert.deepStrictEqual(b, {
    has: true, get: 'two', type: 'no', headerSent: false, writable: true,
    header: ['vary', 'x-list', 'x-new', 'x-one', 'x-two'],
  });
});

test('flushHeaders sends headers early; later set() is ignored', async () => {
  const r = await get('/flush');
  assert.strictEqual(r.headers['x-flushed'], 'yes');
  assert.strictEqual(r.headers['x-too-late'], undefined);
  assert.strictEqual(r.body, 'true');
});

test('stream errors: 500 before headers, cut connection after', async () => {
  errors.length = 0;
  let r = await get('/stream-error');
  assert.strictEqual(r.status, 500);
  assert.strictEqual(r.body, 'Internal Server Error');
  assert.deepStrictEqual(errors, ['boom']);
  r = await get('/stream-error-late');
  assert.strictEqual(r.status, 200);
  assert.strictEqual(r.aborted, true);
  assert.strictEqual(r.body, 'first chunk ');
  assert.ok(errors.includes('late boom'));
});

test('Blob, web ReadableStream and fetch Response bodies', async () => {
  let r = await get('/blob');
  assert.strictEqual(r.body, 'blob data');
  assert.strictEqual(r.headers['content-type'], 'text/plain; charset=utf-8');
  assert.strictEqual(r.headers['content-length'], '9');
  r = await get('/web-stream');
  assert.strictEqual(r.body, 'web');
  assert.strictEqual(r.headers['content-type'], 'application/octet-stream');
  r = await get('/fetch-response');
  assert.strictEqual(r.status, 202);
  assert.strictEqual(r.body, 'from response');
  assert.strictEqual(r.headers['content-type'], 'text/x-r; charset=utf-8');
});
