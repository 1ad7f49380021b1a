'use strict';

const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const { App, compose, HttpError } = require('..');
const { startApp, send, fetchApp } = require('./helpers');

test('App options and defaults', () => {
  const app = new App({ proxy: true, subdomainOffset: 3, proxyIpHeader: 'X-Real-IP', maxIpsCount: 2, env: 'test', keys: ['a'] });
  assert.strictEqual(app.proxy, true);
  assert.strictEqual(app.subdomainOffset, 3);
  assert.strictEqual(app.proxyIpHeader, 'X-Real-IP');
  assert.strictEqual(app.maxIpsCount, 2);
  assert.strictEqual(app.env, 'test');
  assert.deepStrictEqual(app.keys, ['a']);
  assert.deepStrictEqual(app.toJSON(), { subdomainOffset: 3, proxy: true, env: 'test' });
  const d = new App();
  assert.strictEqual(d.proxy, false);
  assert.strictEqual(d.subdomainOffset, 2);
  assert.strictEqual(d.proxyIpHeader, 'X-Forwarded-For');
  assert.strictEqual(d.maxIpsCount, 0);
  assert.ok(d instanceof require('node:events'));
  assert.throws(() => d.use('nope'), /middleware must be a function/);
  assert.strictEqual(d.use(() => {}), d, 'use() chains');
  assert.strictEqual(App.HttpError, HttpError);
});

test('middleware runs in onion order; next() twice rejects', async () => {
  const app = new App();
  app.silent = true;
  const errors = [];
  app.on('error', (err) => errors.push(err.message));
  app.use(async (ctx, next) => { ctx.state.order = ['a']; await next(); ctx.state.order.push('a2'); ctx.body = ctx.state.order.join(','); });
  app.use(async (ctx, next) => { ctx.state.order.push('b'); await next(); ctx.state.order.push('b2'); });
  app.use((ctx, next) => { ctx.state.order.push('c'); if (ctx.path === '/twice') return next().then(() => next()); });
  const s = await startApp(app);
  try {
    assert.strictEqual((await send(s.port, 'GET', '/')).body, 'a,b,c,b2,a2');
    const r = await send(s.port, 'GET', '/twice');
    assert.strictEqual(r.status, 500);
    assert.deepStrictEqual(errors, ['next() called multiple times']);
  } finally { await s.close(); }
});

test('compose is exported and usable on its own', async () => {
  const seen = [];
  const fn = compose([async (c, n) => { seen.push(1); await n(); seen.push(4); }, async (c, n) => { seen.push(2); await n(); seen.push(3); }]);
  await fn({}, async () => seen.push('end'));
  assert.deepStrictEqual(seen, [1, 2, 'end', 3, 4]);
  assert.throws(() => compose([1]), /functions/);
});

test('listen() is http.createServer(app.callback()).listen()', async () => {
  const app = new App();
  app.use((ctx) => { ctx.body = 'listening'; });
  const server = app.listen(0, '127.0.0.1');
  assert.ok(server instanceof http.Server);
  await new Promise((r) => server.once('listening', r));
  const res = await send(server.address().port, 'GET', '/');
  server.close();
  assert.strictEqual(res.body, 'listening');
});

test('app.context / app.request / app.response are extendable prototypes', async () => {
  const app = new App();
  app.context.db = 'db-handle';
  app.request.shout = function () { return this.path.toUpperCase(); };
  app.response.hello = function () { this.body = 'hello'; };
  app.use((ctx) => {
    assert.strictEqual(ctx.request.ctx, ctx);
    assert.strictEqual(ctx.response.request, ctx.request);
    assert.strictEqual(ctx.request.response, ctx.response);
    assert.strictEqual(ctx.app, app);
    assert.ok(ctx.req instanceof http.IncomingMessage);
    assert.ok(ctx.res instanceof http.ServerResponse);
    assert.deepStrictEqual(ctx.state, {});
    ctx.response.hello();
    ctx.set('X-Db', ctx.db);
    ctx.set('X-Shout', ctx.request.shout());
  });
  const r = await fetchApp(app, 'GET', '/abc');
  assert.strictEqual(r.body, 'hello');
  assert.strictEqual(r.headers['x-db'], 'db-handle');
  assert.strictEqual(r.headers['x-shout'], '/ABC');
  // other apps are unaffected
  assert.strictEqual(new App().context.db, undefined);
});

test('default error handler logs non-exposed errors, not 404s or exposed ones, and honours silent', async () => {
  const original = console.error;
  const logged = [];
  console.error = (msg) => logged.push(msg);
  try {
    const app = new App();
    app.use((ctx) => {
      if (ctx.path === '/500') throw new Error('kaboom');
      if (ctx.path === '/404') ctx.throw(404);
      ctx.throw(400, 'bad');
    });
    const s = await startApp(app);
    try {
      await send(s.port, 'GET', '/404');
      await send(s.port, 'GET', '/400');
      assert.strictEqual(logged.length, 0);
      await send(s.port, 'GET', '/500');
      assert.strictEqual(logged.length, 1);
      assert.match(logged[0], /^\n {2}Error: kaboom/);
      app.silent = true;
      await send(s.port, 'GET', '/500');
      assert.strictEqual(logged.length, 1);
    } finally { await s.close(); }
    assert.throws(() => app.onerror('str'), /non-error thrown/);
  } finally {
    console.error = original;
  }
});

test("app.on('error') receives (err, ctx); a custom listener replaces the default", async () => {
  const app = new App();
  let got;
  app.on('error', (err, ctx) => { got = { msg: err.message, path: ctx.path }; });
  app.use(() => { throw new Error('oops'); });
  const r = await fetchApp(app, 'GET', '/p');
  assert.strictEqual(r.status, 500);
  assert.strictEqual(r.body, 'Internal Server Error');
  assert.deepStrictEqual(got, { msg: 'oops', path: '/p' });
});

test('non-Error throws become errors', async () => {
  const app = new App();
  let got;
  app.on('error', (err) => { got = err; });
  app.use(() => { throw { a: 1 }; }); // eslint-disable-line no-throw-literal
  const r = await fetchApp(app, 'GET', '/');
  assert.strictEqual(r.status, 500);
  assert.match(got.message, /non-error thrown: {"a":1}/);
});

test('ctx.respond = false leaves the response to the app', async () => {
  const app = new App();
  app.use((ctx) => {
    ctx.respond = false;
    ctx.body = 'ignored';
    ctx.res.writeHead(299, { 'content-type': 'text/x-raw' });
    ctx.res.end('raw');
  });
  const r = await fetchApp(app, 'GET', '/');
  assert.strictEqual(r.status, 299);
  assert.strictEqual(r.body, 'raw');
});

test('errors after headers are sent are reported with err.headerSent', async () => {
  const app = new App();
  let got;
  app.on('error', (err) => { got = err; });
  app.use(async (ctx) => {
    ctx.res.writeHead(200);
    ctx.res.write('partial');
    ctx.res.end();
    throw new Error('late');
  });
  const r = await fetchApp(app, 'GET', '/');
  assert.strictEqual(r.body, 'partial');
  assert.strictEqual(got.headerSent, true);
});

test('asyncLocalStorage option exposes app.currentContext', async () => {
  const app = new App({ asyncLocalStorage: true });
  app.use(async (ctx) => {
    await new Promise((r) => setTimeout(r, 1));
    ctx.body = String(app.currentContext === ctx);
  });
  assert.strictEqual((await fetchApp(app, 'GET', '/')).body, 'true');
  assert.strictEqual(app.currentContext, undefined);
});

test('ctx/request/response toJSON and inspect', async () => {
  const app = new App();
  app.use((ctx) => {
    ctx.body = 'x';
    const json = ctx.toJSON();
    ctx.body = {
      keys: Object.keys(json),
      req: json.request,
      status: json.response.status,
      inspect: require('node:util').inspect(ctx).includes('originalUrl'),
    };
  });
  const r = JSON.parse((await fetchApp(app, 'GET', '/q?x=1')).body);
  assert.deepStrictEqual(r.keys, ['request', 'response', 'app', 'originalUrl', 'req', 'res', 'socket']);
  assert.strictEqual(r.req.method, 'GET');
  assert.strictEqual(r.req.url, '/q?x=1');
  assert.strictEqual(r.status, 200);
  assert.strictEqual(r.inspect, true);
});
