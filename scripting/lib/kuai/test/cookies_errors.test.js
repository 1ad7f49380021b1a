'use strict';

const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const { App, createError, HttpError, isHttpError, Keys } = require('..');
const { startApp, send, fetchApp } = require('./helpers');

// Keygrip format: base64url(HMAC-SHA1(key, "name=value")) without padding.
const sign = (data, key) => crypto.createHmac('sha1', key).update(data).digest('base64url');

test('cookies: set plain and signed, read back, attributes', async () => {
  const app = new App({ keys: ['new', 'old'] });
  app.use((ctx) => {
    if (ctx.path === '/set') {
      ctx.cookies.set('a', '1');
      ctx.cookies.set('s', 'v', { signed: true, maxAge: 60000, sameSite: 'strict', partitioned: true, domain: 'x.test' });
      ctx.cookies.set('lax', 'l', { signed: false, sameSite: true, httpOnly: false, path: '/p', expires: new Date(0) });
      ctx.body = 'ok';
      return;
    }
    ctx.body = {
      a: ctx.cookies.get('a') ?? null,
      s: ctx.cookies.get('s', { signed: true }) ?? null,
      sRaw: ctx.cookies.get('s') ?? null,
    };
  });
  const s = await startApp(app);
  try {
    const r = await send(s.port, 'GET', '/set');
    const c = r.headers['set-cookie'];
    assert.strictEqual(c[0], 'a=1; path=/; httponly');
    assert.match(c[1], /^s=v; path=\/; expires=[^;]+ GMT; domain=x\.test; samesite=strict; httponly; partitioned$/);
    assert.match(c[2], new RegExp(`^s\\.sig=${sign('s=v', 'new')}; path=/; expires=`));
    assert.strictEqual(c[3], 'lax=l; path=/p; expires=Thu, 01 Jan 1970 00:00:00 GMT; samesite=strict');

    let g = await send(s.port, 'GET', '/get', { cookie: `a=1; s=v; s.sig=${sign('s=v', 'new')}` });
    assert.deepStrictEqual(JSON.parse(g.body), { a: '1', s: 'v', sRaw: 'v' });
    assert.strictEqual(g.headers['set-cookie'], undefined);

    // signed with an older key: accepted and re-signed with keys[0]
    g = await send(s.port, 'GET', '/get', { cookie: `s=v; s.sig=${sign('s=v', 'old')}` });
    assert.deepStrictEqual(JSON.parse(g.body), { a: null, s: 'v', sRaw: 'v' });
    assert.deepStrictEqual(g.headers['set-cookie'], [`s.sig=${sign('s=v', 'new')}; path=/; httponly`]);

    // tampered: rejected and the signature cookie cleared
    g = await send(s.port, 'GET', '/get', { cookie: `s=evil; s.sig=${sign('s=v', 'new')}` });
    assert.deepStrictEqual(JSON.parse(g.body), { a: null, s: null, sRaw: 'evil' });
    assert.deepStrictEqual(g.headers['set-cookie'], ['s.sig=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly']);

    // missing signature
    g = await send(s.port, 'GET', '/get', { cookie: 's=v' });
    assert.deepStrictEqual(JSON.parse(g.body), { a: null, s: null, sRaw: 'v' });
  } finally { await s.close(); }
});

test('cookies: invalid names/values, secure over http, overwrite, no keys', async () => {
  const app = new App();
  app.use((ctx) => {
    const out = {};
    for (const [k, fn] of Object.entries({
      badName: () => ctx.cookies.set('a b', 'x'),
      badValue: () => ctx.cookies.set('a', 'x;y'),
      secure: () => ctx.cookies.set('a', 'x', { secure: true }),
      signedNoKeys: () => ctx.cookies.set('a', 'x', { signed: true }),
    })) {
      try { fn(); out[k] = 'ok'; } catch (err) { out[k] = err.message; }
    }
    ctx.cookies.set('o', '1');
    ctx.cookies.set('o', '2', { overwrite: true });
    ctx.body = out;
  });
  const r = await fetchApp(app, 'GET', '/');
  assert.deepStrictEqual(JSON.parse(r.body), {
    badName: 'argument name is invalid', badValue: 'argument value is invalid',
    secure: 'Cannot send secure cookie over unencrypted connection', signedNoKeys: '.keys required for signed cookies',
  });
  assert.deepStrictEqual(r.headers['set-cookie'], ['o=2; path=/; httponly']);
});

test('cookies: a Keys instance with SHA-256 works as app.keys', async () => {
  const app = new App({ keys: new Keys(['k'], 'sha256') });
  app.use((ctx) => { ctx.cookies.set('x', 'y', { signed: true }); ctx.body = ctx.cookies.get('x', { signed: true }) ?? 'none'; });
  const r = await fetchApp(app, 'GET', '/', { cookie: `x=y; x.sig=${crypto.createHmac('sha256', 'k').update('x=y').digest('base64url')}` });
  assert.strictEqual(r.body, 'y');
  assert.strictEqual(r.headers['set-cookie'][1], `x.sig=${crypto.createHmac('sha256', 'k').update('x=y').digest('base64url')}; path=/; httponly`);
});

test('createError: http-errors semantics', () => {
  const e = createError(404, 'nope', { headers: { 'X-A': '1' }, code: 'E_NOPE' });
  assert.ok(e instanceof HttpError);
  assert.ok(e instanceof createError.NotFound);
  assert.ok(isHttpError(e));
  assert.strictEqual(e.name, 'NotFoundError');
  assert.strictEqual(e.status, 404);
  assert.strictEqual(e.statusCode, 404);
  assert.strictEqual(e.expose, true);
  assert.strictEqual(e.message, 'nope');
  assert.strictEqual(e.code, 'E_NOPE');
  assert.deepStrictEqual(e.headers, { 'X-A': '1' });
  const s = createError(503);
  assert.strictEqual(s.expose, false);
  assert.strictEqual(s.message, 'Service Unavailable');
  assert.strictEqual(createError().status, 500);
  assert.strictEqual(createError(999).status, 500);
  const unknown = createError(499);
  assert.strictEqual(unknown.status, 499);
  assert.strictEqual(unknown.name, 'BadRequestError');
  const wrapped = createError(new Error('inner'), { status: 418 });
  assert.strictEqual(wrapped.status, 500, 'props cannot set status');
  const withStatus = Object.assign(new Error('x'), { status: 409 });
  assert.strictEqual(createError(withStatus).expose, true);
  assert.throws(() => createError('msg', 400), /argument #2 unsupported type number/);
  assert.strictEqual(createError[418].name, 'ImATeapotError');
  assert.strictEqual(typeof createError.ImATeapot, 'function');
  assert.throws(() => new HttpError('x'), /abstract/);
  assert.strictEqual(isHttpError(new Error('x')), false);
});

test('ctx.throw and ctx.assert: status, exposed message, err.headers kept, other headers cleared', async () => {
  const app = new App();
  app.silent = true;
  app.use(async (ctx, next) => { ctx.set('X-Early', 'lost'); ctx.cookies.set('c', 'lost'); await next(); });
  app.use((ctx) => {
    switch (ctx.path) {
      case '/throw': ctx.throw(401, 'who are you', { headers: { 'WWW-Authenticate': 'Bearer' } }); break;
      case '/hidden': ctx.throw(502, 'upstream secrets'); break;
      case '/assert': ctx.assert(false, 403, 'forbidden!'); break;
      case '/assert-eq': ctx.assert.equal(1, 2, 409); break;
      case '/assert-ok': ctx.assert(true, 400); ctx.body = 'fine'; break;
      default: ctx.throw(new Error('plain'), 422);
    }
  });
  const s = await startApp(app);
  try {
    let r = await send(s.port, 'GET', '/throw');
    assert.strictEqual(r.status, 401);
    assert.strictEqual(r.body, 'who are you');
    assert.strictEqual(r.headers['www-authenticate'], 'Bearer');
    assert.strictEqual(r.headers['x-early'], undefined);
    assert.strictEqual(r.headers['set-cookie'], undefined);
    assert.strictEqual(r.headers['content-type'], 'text/plain; charset=utf-8');
    r = await send(s.port, 'GET', '/hidden');
    assert.strictEqual(r.status, 502);
    assert.strictEqual(r.body, 'Bad Gateway');
    r = await send(s.port, 'GET', '/assert');
    assert.deepStrictEqual([r.status, r.body], [403, 'forbidden!']);
    r = await send(s.port, 'GET', '/assert-eq');
    assert.deepStrictEqual([r.status, r.body], [409, 'Conflict']);
    r = await send(s.port, 'GET', '/assert-ok');
    assert.deepStrictEqual([r.status, r.body], [200, 'fine']);
    r = await send(s.port, 'GET', '/other');
    assert.deepStrictEqual([r.status, r.body], [500, 'Internal Server Error']);
    r = await send(s.port, 'HEAD', '/throw');
    assert.deepStrictEqual([r.status, r.body, r.headers['content-length']], [401, '', '11']);
  } finally { await s.close(); }
});
