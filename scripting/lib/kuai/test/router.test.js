'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { App, Router } = require('..');
const { compile } = require('../pattern');
const { startApp, send } = require('./helpers');

async function serve(setup) {
  const app = new App();
  app.silent = true;
  setup(app);
  return startApp(app);
}

test('verbs, params (decoded), optional params, wildcards, HEAD via GET, several middlewares', async () => {
  const router = new Router();
  const echo = (ctx) => { ctx.body = { params: ctx.params, route: ctx._matchedRoute, routerPath: ctx.routerPath, method: ctx.method }; };
  router.get('/users/:id', echo);
  router.post('/users', echo).put('/users/:id', echo).patch('/users/:id', echo).delete('/users/:id', echo);
  router.del('/legacy/:id', echo);
  router.options('/opt', echo).head('/h', (ctx) => { ctx.set('X-H', '1'); ctx.status = 200; });
  router.get('/opt/:a?', echo);
  router.get('/files/(.*)', echo);
  router.get('/star/*', echo);
  router.get('/chain', async (ctx, next) => { ctx.state.n = 1; await next(); }, [async (ctx, next) => { ctx.state.n++; await next(); }], (ctx) => { ctx.body = { n: ctx.state.n }; });
  router.get(['/m1', '/m2'], echo);
  const s = await serve((app) => app.use(router.routes()));
  const j = async (m, p) => { const r = await send(s.port, m, p); return [r.status, r.status === 200 ? JSON.parse(r.body) : r.body, r]; };
  try {
    assert.deepStrictEqual((await j('GET', '/users/caf%C3%A9'))[1], { params: { id: 'café' }, route: '/users/:id', routerPath: '/users/:id', method: 'GET' });
    assert.deepStrictEqual((await j('GET', '/users/%E0%A4%A'))[1].params, { id: '%E0%A4%A' }, 'bad escapes stay raw');
    assert.strictEqual((await j('POST', '/users'))[1].method, 'POST');
    for (const m of ['PUT', 'PATCH', 'DELETE']) assert.strictEqual((await j(m, '/users/1'))[1].method, m);
    assert.strictEqual((await j('DELETE', '/legacy/1'))[1].method, 'DELETE');
    assert.strictEqual((await j('OPTIONS', '/opt'))[1].method, 'OPTIONS');
    const head = await send(s.port, 'HEAD', '/users/7');
    assert.strictEqual(head.status, 200);
    assert.strictEqual(head.body, '');
    assert.ok(Number(head.headers['content-length']) > 0);
    assert.strictEqual((await send(s.port, 'HEAD', '/h')).headers['x-h'], '1');
    assert.deepStrictEqual((await j('GET', '/opt'))[1].params, {});
    assert.deepStrictEqual((await j('GET', '/opt/x'))[1].params, { a: 'x' });
    assert.deepStrictEqual((await j('GET', '/files/a/b.txt'))[1].params, { 0: 'a/b.txt' });
    assert.deepStrictEqual((await j('GET', '/star/x/y'))[1].params, { 0: 'x/y' });
    assert.deepStrictEqual((await j('GET', '/chain'))[1], { n: 2 });
    assert.strictEqual((await j('GET', '/m2'))[1].route, '/m2');
    assert.strictEqual((await j('GET', '/users/1/extra'))[0], 404);
    assert.strictEqual((await j('GET', '/users/1/'))[0], 200, 'trailing slash allowed when not strict');
  } finally { await s.close(); }
});

test('allowedMethods: 405 + Allow, 501, OPTIONS 200, throw options', async () => {
  const router = new Router();
  router.get('/r', (ctx) => { ctx.body = 'r'; }).post('/r', (ctx) => { ctx.body = 'posted'; });
  const s = await serve((app) => app.use(router.routes()).use(router.allowedMethods()));
  try {
    let r = await send(s.port, 'PUT', '/r');
    assert.deepStrictEqual([r.status, r.headers.allow, r.body], [405, 'HEAD, GET, POST', 'Method Not Allowed']);
    r = await send(s.port, 'OPTIONS', '/r');
    assert.deepStrictEqual([r.status, r.headers.allow, r.body, r.headers['content-length']], [200, 'HEAD, GET, POST', '', '0']);
    r = await send(s.port, 'PROPFIND', '/r');
    assert.deepStrictEqual([r.status, r.headers.allow], [501, 'HEAD, GET, POST']);
    r = await send(s.port, 'GET', '/none');
    assert.deepStrictEqual([r.status, r.headers.allow], [404, undefined]);
  } finally { await s.close(); }

  const thrower = new Router();
  thrower.get('/t', (ctx) => { ctx.body = 't'; });
  const s2 = await serve((app) => {
    app.use(async (ctx, next) => {
      try { await next(); } catch (err) { ctx.status = err.status; ctx.body = `caught ${err.name}`; }
    });
    app.use(thrower.routes()).use(thrower.allowedMethods({ throw: true }));
  });
  const custom = new Router();
  custom.get('/c', (ctx) => { ctx.body = 'c'; });
  const s3 = await serve((app) => app.use(custom.routes()).use(custom.allowedMethods({
    throw: true,
    methodNotAllowed: () => Object.assign(new Error('custom 405'), { status: 405, expose: true }),
    notImplemented: () => Object.assign(new Error('custom 501'), { status: 501, expose: true }),
  })));
  try {
    assert.strictEqual((await send(s2.port, 'POST', '/t')).body, 'caught MethodNotAllowedError');
    assert.strictEqual((await send(s2.port, 'PROPFIND', '/t')).body, 'caught NotImplementedError');
    assert.deepStrictEqual([(await send(s3.port, 'POST', '/c')).body, (await send(s3.port, 'PROPFIND', '/c')).body], ['custom 405', 'custom 501']);
  } finally { await s2.close(); await s3.close(); }
});

test('named routes and url()', () => {
  const router = new Router({ prefix: '/api' });
  router.get('user', '/users/:id', () => {});
  router.get('post', '/users/:id/posts/:post?', () => {});
  router.get('files', '/files/(.*)', () => {});
  router.get('sym', '/static', () => {});
  assert.strictEqual(router.url('user', { id: 3 }), '/api/users/3');
  assert.strictEqual(router.url('user', 4), '/api/users/4');
  assert.strictEqual(router.url('user', { id: 'a b/c' }), '/api/users/a%20b%2Fc');
  assert.strictEqual(router.url('post', { id: 1 }), '/api/users/1/posts');
  assert.strictEqual(router.url('post', 1, 2), '/api/users/1/posts/2');
  assert.strictEqual(router.url('user', { id: 1 }, { query: { a: [1, 2], b: 'x y' } }), '/api/users/1?a=1&a=2&b=x%20y');
  assert.strictEqual(router.url('files'), '/api/files/');
  assert.strictEqual(router.url('sym', { query: 'x=1' }), '/api/static?x=1');
  assert.ok(router.url('nope') instanceof Error);
  assert.throws(() => router.url('user', {}), /Expected "id" to be a string/);
  assert.strictEqual(Router.url('/a/:b', { b: 1 }), '/a/1');
  assert.strictEqual(router.route('user').name, 'user');
  assert.strictEqual(router.route('nope'), false);
});

test('router.param runs in path order before handlers; prefix(); nested routers; use(path, mw)', async () => {
  const users = new Router();
  users.param('id', async (id, ctx, next) => { ctx.state.trail.push(`id:${id}`); await next(); });
  users.get('/:id/posts/:pid', (ctx) => { ctx.state.trail.push('handler'); ctx.body = { trail: ctx.state.trail, params: ctx.params }; });
  users.param('pid', (pid, ctx, next) => { ctx.state.trail.push(`pid:${pid}`); return next(); });

  const api = new Router();
  api.use(async (ctx, next) => { ctx.state.trail = ['api-mw']; await next(); });
  api.use('/users', async (ctx, next) => { ctx.state.trail.push('users-mw'); await next(); });
  api.use('/users', users.routes());
  api.get('/status', (ctx) => { ctx.body = ctx.state.trail; });
  api.prefix('/v1/');
  api.get('/late', (ctx) => { ctx.body = ctx.path; });

  const s = await serve((app) => app.use(api.routes()).use(api.allowedMethods()));
  try {
    let r = await send(s.port, 'GET', '/v1/users/5/posts/9');
    assert.deepStrictEqual(JSON.parse(r.body), { trail: ['api-mw', 'users-mw', 'id:5', 'pid:9', 'handler'], params: { id: '5', pid: '9' } });
    r = await send(s.port, 'GET', '/v1/status');
    assert.deepStrictEqual(JSON.parse(r.body), ['api-mw']);
    assert.strictEqual((await send(s.port, 'GET', '/v1/late')).body, '/v1/late');
    assert.strictEqual((await send(s.port, 'GET', '/status')).status, 404);
    assert.strictEqual((await send(s.port, 'POST', '/v1/users/5/posts/9')).status, 405);
  } finally { await s.close(); }
});

test('router middleware only runs when a route matched; next() falls through to later app middleware', async () => {
  const router = new Router();
  let ran = 0;
  router.use(async (ctx, next) => { ran++; await next(); });
  router.get('/a', async (ctx, next) => { ctx.body = 'a'; await next(); });
  const s = await serve((app) => {
    app.use(router.routes());
    app.use((ctx) => { ctx.set('X-After', 'yes'); });
  });
  try {
    let r = await send(s.port, 'GET', '/a');
    assert.deepStrictEqual([r.body, r.headers['x-after'], ran], ['a', 'yes', 1]);
    r = await send(s.port, 'GET', '/b');
    assert.deepStrictEqual([r.status, r.headers['x-after'], ran], [404, 'yes', 1]);
  } finally { await s.close(); }
});

test('strict, sensitive, exclusive, host, methods, middleware()', async () => {
  const strict = new Router({ strict: true, sensitive: true });
  strict.get('/Case/', (ctx) => { ctx.body = 'strict'; });
  const exclusive = new Router({ exclusive: true });
  exclusive.get('/e/(.*)', (ctx, next) => { ctx.body = 'general'; return next(); });
  exclusive.get('/e/special', (ctx) => { ctx.body = `special${ctx.body ? '+' + ctx.body : ''}`; });
  const hosted = new Router({ host: 'api.test' });
  hosted.get('/host', (ctx) => { ctx.body = 'hosted'; });
  const s = await serve((app) => app.use(strict.middleware()).use(exclusive.routes()).use(hosted.routes()));
  try {
    assert.strictEqual((await send(s.port, 'GET', '/Case/')).body, 'strict');
    assert.strictEqual((await send(s.port, 'GET', '/Case')).status, 404);
    assert.strictEqual((await send(s.port, 'GET', '/case/')).status, 404);
    assert.strictEqual((await send(s.port, 'GET', '/e/special')).body, 'special');
    assert.strictEqual((await send(s.port, 'GET', '/host', { host: 'api.test' })).body, 'hosted');
    assert.strictEqual((await send(s.port, 'GET', '/host', { host: 'other.test' })).status, 404);
  } finally { await s.close(); }
});

test('redirect(), all(), errors on bad registration, next() twice in a route', async () => {
  const router = new Router();
  router.get('home', '/home', (ctx) => { ctx.body = 'home'; });
  router.redirect('/old', 'home');
  router.redirect('/perm', '/home', 308);
  router.all('/any', (ctx) => { ctx.body = ctx.method; });
  router.get('/twice', async (ctx, next) => { await next(); await next(); });
  assert.throws(() => router.get('/bad', 42), /middleware` must be a function/);
  assert.throws(() => router.get(), /You have to provide a path/);
  const s = await serve((app) => app.use(router.routes()));
  try {
    let r = await send(s.port, 'GET', '/old');
    assert.deepStrictEqual([r.status, r.headers.location], [301, '/home']);
    r = await send(s.port, 'POST', '/perm');
    assert.deepStrictEqual([r.status, r.headers.location], [308, '/home']);
    assert.strictEqual((await send(s.port, 'PATCH', '/any')).body, 'PATCH');
    assert.strictEqual((await send(s.port, 'GET', '/twice')).status, 500);
  } finally { await s.close(); }
});

test('pattern compiler: syntax and errors', () => {
  const m = (p, path, opts) => { const r = compile(p, opts).regexp.exec(path); return r && r.slice(1); };
  assert.deepStrictEqual(m('/:a-:b', '/x-y-z'), ['x-y', 'z']);
  assert.deepStrictEqual(m('/:file.:ext', '/a.tar.gz'), ['a.tar', 'gz']);
  assert.deepStrictEqual(m('/:id(\\d+)', '/12'), ['12']);
  assert.strictEqual(m('/:id(\\d+)', '/ab'), null);
  assert.deepStrictEqual(m('/p/:rest+', '/p/a/b'), ['a/b']);
  assert.deepStrictEqual(m('/p/:rest*', '/p'), [undefined]);
  assert.deepStrictEqual(m('/:a{-:b}?', '/x-y'), ['x', 'y']);
  assert.deepStrictEqual(m('/a\\:b', '/a:b'), []);
  assert.deepStrictEqual(m('/u', '/u/more', { end: false }), []);
  assert.strictEqual(m('/u', '/users', { end: false }), null);
  assert.throws(() => compile('/:a:b'), /Must have text between two parameters/);
  assert.throws(() => compile('/:'), /Missing parameter name/);
  assert.throws(() => compile('/(a(b))'), /Capturing groups are not allowed/);
  assert.throws(() => compile('/(ab'), /Unbalanced pattern/);
  assert.throws(() => compile('/a?'), /Unexpected MODIFIER/);
  const { keys } = compile('/:a/(.*)/:b?');
  assert.deepStrictEqual(keys.map((k) => k.name), ['a', 0, 'b']);
});

test('path-to-regexp 8 wildcards (@koa/router 15): *name takes the rest of the path', async () => {
  const { regexp, keys } = compile('/files/*path', {});
  assert.deepStrictEqual(keys.map((k) => k.name), ['path']);
  assert.deepStrictEqual(regexp.exec('/files/a/b/c.txt').slice(1), ['a/b/c.txt']);
  assert.strictEqual(regexp.test('/files/'), false, 'one character at least');
  const router = new Router();
  router.get('/files/*path', (ctx) => { ctx.body = { path: ctx.params.path }; });
  const s = await serve((app) => app.use(router.routes()));
  try {
    const r = await send(s.port, 'GET', '/files/x/y%20z.txt');
    assert.strictEqual(r.status, 200);
    assert.deepStrictEqual(JSON.parse(r.body), { path: 'x/y z.txt' });
    assert.strictEqual((await send(s.port, 'GET', '/files')).status, 404);
  } finally {
    s.close();
  }
});
