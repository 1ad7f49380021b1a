'use strict';

// Router.match() on tables of 16 layers or more goes through a trie of the
// literal segments the patterns start with (router.js, PathIndex). It must
// give exactly what testing every layer in order gives: checked here on
// random tables and paths built from the pieces that make the trie's cases
// (literal segments in any case, parameters with '/' and '.' prefixes,
// groups, wildcards, RegExp layers, router.use() layers, options), and on
// every way a table can change after it was first matched.

const test = require('node:test');
const assert = require('node:assert');
const { Router } = require('..');

// What match() computes, one layer at a time.
function linearMatch(router, path, method) {
  const onPath = [];
  const withMethod = [];
  let route = false;
  for (const layer of router.stack) {
    if (!layer.regexp.test(path)) continue;
    onPath.push(layer);
    if (layer.methods.length === 0 || layer.methods.includes(method)) {
      withMethod.push(layer);
      if (layer.methods.length > 0) route = true;
    }
  }
  let pathAndMethod = withMethod;
  if (router.exclusive && route) {
    let lastRoute = null;
    for (const layer of withMethod) if (layer.methods.length > 0) lastRoute = layer;
    pathAndMethod = [lastRoute];
  }
  return { path: onPath, pathAndMethod, route };
}

function assertSame(router, path, method) {
  const got = router.match(path, method);
  const want = linearMatch(router, path, method);
  const names = (layers) => layers.map((l) => `${router.stack.indexOf(l)}:${String(l.path)}`);
  assert.deepStrictEqual({ path: names(got.path), pathAndMethod: names(got.pathAndMethod), route: got.route },
    { path: names(want.path), pathAndMethod: names(want.pathAndMethod), route: want.route },
    `${method} ${JSON.stringify(path)}`);
}

// A small deterministic PRNG (xorshift32): failures reproduce.
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}

const WORDS = ['api', 'API', 'Api', 'v1', 'v2', 'users', 'Users', 'files', 'a', 'b', 'caf\u00e9', '\u03c3', 'k', 'x-y', 'a.b', '%41'];
const PATH_WORDS = [...WORDS, '\u03c2', '\u212a', 'K', 'CAF\u00c9', '42', '', 'json', 'users.json', 'api#x', 'a?b',
  'x', 'files%2Fa', 'USERS'];

function pick(r, list) { return list[Math.floor(r() * list.length)]; }

function randomPattern(r) {
  const n = 1 + Math.floor(r() * 3);
  let p = '';
  for (let i = 0; i < n; i++) p += '/' + pick(r, WORDS);
  const tail = pick(r, ['', '', '/', '/:id', '/:id?', '.:ext', '/:rest*', '/:rest+', '(.*)', '/(.*)', '/*',
    '{.:fmt}?', '{/:opt}?', '-:slug', '/*path', '/:id/' + pick(r, WORDS), '/:id(\\d+)']);
  return p + tail;
}

function randomPath(r) {
  const n = Math.floor(r() * 5);
  let p = '';
  for (let i = 0; i < n; i++) p += '/' + pick(r, PATH_WORDS);
  p += pick(r, ['', '', '/', '.json', '#frag', '?q=1', '//', '/x/y']);
  if (r() < 0.05) p = p.slice(1);  // no leading '/'
  return p;
}

function randomRouter(r, size) {
  const router = new Router({ exclusive: r() < 0.2, strict: r() < 0.2, sensitive: r() < 0.2 });
  const noop = () => {};
  for (let i = 0; i < size; i++) {
    const kind = r();
    if (kind < 0.1) router.use(noop);  // every path
    else if (kind < 0.2) router.use(randomPattern(r).replace(/[.{(*:-].*$/, '') || '/', noop);
    else if (kind < 0.25) router.get(new RegExp('^/' + pick(r, WORDS) + '(?:/|$)', 'i'), noop);
    else {
      const method = pick(r, ['get', 'post', 'put', 'all', 'delete']);
      const opts = r() < 0.2 ? { sensitive: r() < 0.5, strict: r() < 0.5 } : null;
      if (opts) router.register(randomPattern(r), [method === 'all' ? 'get' : method], noop, opts);
      else router[method](randomPattern(r), noop);
    }
  }
  return router;
}

test('random tables: the index matches what testing every layer gives', () => {
  const r = rng(20261206);
  let indexed = 0;
  for (let t = 0; t < 300; t++) {
    const router = randomRouter(r, 16 + Math.floor(r() * 60));
    if (r() < 0.3) router.prefix('/' + pick(r, WORDS));
    for (let q = 0; q < 80; q++) assertSame(router, randomPath(r), pick(r, ['GET', 'HEAD', 'POST', 'PUT', 'DELETE']));
    if (router._index) indexed++;
  }
  assert.strictEqual(indexed, 300, 'every table of 16 layers or more was matched through the index');
});

test('paths that only a careful index gets right', () => {
  const router = new Router();
  const noop = () => {};
  for (const p of ['/files.:ext', '/users{.:fmt}?', '/API/v1', '/caf\u00e9/:id', '/\u03c3/x', '/a/:id',
    '/k', '/items-:id', '/deep/a/b/c', '/deep/:x/b']) router.get(p, noop);
  for (let i = 0; i < 8; i++) router.get(`/filler${i}/:id`, noop);  // past the index's threshold
  router.use('/api', noop);
  for (const path of ['/files.json', '/users.xml', '/users', '/api/v1', '/API/V1/', '/Api', '/apix',
    '/caf\u00e9/1', '/CAF\u00c9/1', '/\u03c2/x', '/\u03a3/x', '/\u212a', '/K', '/items-7', '/deep/a/b/c',
    '/deep/q/b', '/deep/A/B/C', '/api#x', '/users?x', '/users#', '', 'api', '//api']) {
    assertSame(router, path, 'GET');
  }
  assert.ok(router._index, 'matched through the index');
});

test('a table changed after it was matched is matched as changed', () => {
  const noop = () => {};
  const router = new Router();
  for (let i = 0; i < 20; i++) router.get(`/r${i}/:id`, noop);
  assert.strictEqual(router.match('/r3/1', 'GET').path.length, 1);
  assert.strictEqual(router.match('/late/1', 'GET').path.length, 0);

  router.get('/late/:id', noop);  // registered later
  assertSame(router, '/late/1', 'GET');
  assert.strictEqual(router.match('/late/1', 'GET').path.length, 1);

  router.prefix('/v2');  // every pattern recompiled
  assert.strictEqual(router.match('/r3/1', 'GET').path.length, 0);
  assert.strictEqual(router.match('/v2/r3/1', 'GET').path.length, 1);

  router.stack[0].setPrefix('/old');  // one layer changed in place
  assertSame(router, '/old/v2/r0/1', 'GET');
  assert.strictEqual(router.match('/old/v2/r0/1', 'GET').path.length, 1);

  const other = new Router();
  other.get('/elsewhere', noop);  // another router's compile leaves this one's answers alone
  assertSame(router, '/v2/r5/9', 'GET');

  // A layer's RegExp replaced by hand: matched by that RegExp, as before.
  router.stack[3].regexp = /^\/by-hand$/i;
  assertSame(router, '/by-hand', 'GET');
  assert.strictEqual(router.match('/by-hand', 'GET').path.length, 1);

  // The stack itself edited: a layer swapped for another router's.
  router.stack[1] = other.stack[0];
  assertSame(router, '/elsewhere', 'GET');
  assert.strictEqual(router.match('/elsewhere', 'GET').path.length, 1);
  router.stack.splice(2, 1);
  assertSame(router, '/v2/r2/1', 'GET');
  assert.strictEqual(router.match('/v2/r2/1', 'GET').path.length, 0);

  // A nested router mounted under a path.
  const inner = new Router();
  for (let i = 0; i < 9; i++) inner.get(`/n${i}`, noop);
  router.use('/mount', inner.routes());
  assertSame(router, '/v2/mount/n4', 'GET');
  assert.strictEqual(router.match('/v2/mount/n4', 'GET').path.length, 1);
  assert.ok(router._index, 'matched through the index');
});

test('a large table answers through the app as a small one does', async () => {
  const { App } = require('..');
  const { startApp, send } = require('./helpers');
  const app = new App();
  app.silent = true;
  const router = new Router();
  router.use('/api', async (ctx, next) => { await next(); ctx.set('X-Api', '1'); });
  for (let i = 0; i < 500; i++) {
    router.get(`/api/v1/resource${i}/:id`, (ctx) => { ctx.body = `r${i} ${ctx.params.id}`; });
  }
  router.post('/api/v1/resource7/:id', (ctx) => { ctx.body = 'posted'; });
  app.use(router.routes()).use(router.allowedMethods());
  const s = await startApp(app);
  try {
    let res = await send(s.port, 'GET', '/api/v1/resource499/abc');
    assert.strictEqual(res.body, 'r499 abc');
    assert.strictEqual(res.headers['x-api'], '1');
    res = await send(s.port, 'GET', '/API/V1/Resource7/x');
    assert.strictEqual(res.body, 'r7 x');
    res = await send(s.port, 'POST', '/api/v1/resource7/x');
    assert.strictEqual(res.body, 'posted');
    res = await send(s.port, 'DELETE', '/api/v1/resource7/x');
    assert.strictEqual(res.status, 405);
    assert.strictEqual(res.headers.allow, 'HEAD, GET, POST');
    res = await send(s.port, 'GET', '/api/v1/resource500/x');
    assert.strictEqual(res.status, 404);
  } finally {
    await s.close();
  }
});
