'use strict';

// Runs the same apps under real Koa 3 + @koa/router 13 (from npm, installed
// here by `npm ci`) and under kuai's App/Router, sends the same requests to
// both and asserts identical status, body and headers (all of them except
// Date/Connection/Keep-Alive). Skips when node_modules is missing.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { Readable } = require('node:stream');
const { startApp, send } = require('../helpers');

const here = __dirname;
const installed = fs.existsSync(path.join(here, 'node_modules', 'koa')) &&
  fs.existsSync(path.join(here, 'node_modules', '@koa', 'router'));
const skip = installed ? false
  : `koa/@koa/router not installed: run \`npm ci\` in ${path.relative(process.cwd(), here) || '.'} to enable the compatibility test`;

const kuai = require('../..');

function libs() {
  return {
    koa: { App: require(path.join(here, 'node_modules', 'koa')), Router: require(path.join(here, 'node_modules', '@koa', 'router')) },
    kuai: { App: kuai.App, Router: kuai.Router },
  };
}

const kIgnored = new Set(['date', 'connection', 'keep-alive']);

function normalize(res) {
  const headers = {};
  for (const [k, v] of Object.entries(res.headers)) {
    if (!kIgnored.has(k)) headers[k] = v;
  }
  return { status: res.status, body: res.body, headers };
}

// Each case: name, build({ App, Router }) -> app, requests.
const cases = [
  {
    name: 'params, named routes, JSON, nested routers, prefixes',
    build({ App, Router }) {
      const app = new App();
      const users = new Router();
      users.get('/', (ctx) => { ctx.body = [{ id: 1 }]; });
      users.get('user', '/:id', (ctx) => { ctx.body = { id: ctx.params.id, route: ctx._matchedRoute, url: ctx.router.url('user', { id: 7 }) }; });
      users.get('/:id/posts/:post?', (ctx) => { ctx.body = { ...ctx.params }; });
      const api = new Router({ prefix: '/api' });
      api.use('/users', users.routes(), users.allowedMethods());
      api.get('/files/(.*)', (ctx) => { ctx.body = ctx.params; });
      api.get('/n/:n(\\d+)', (ctx) => { ctx.body = { n: Number(ctx.params.n) }; });
      api.get(['/a', '/b'], (ctx) => { ctx.body = ctx.path; });
      api.post('/echo/:x', (ctx) => { ctx.status = 201; ctx.body = { x: ctx.params.x, q: ctx.query }; });
      app.use(api.routes()).use(api.allowedMethods());
      return app;
    },
    requests: [
      ['GET', '/api/users'], ['GET', '/api/users/'], ['GET', '/api/users/42'], ['GET', '/api/users/h%C3%A9llo'],
      ['GET', '/api/users/1/posts'], ['GET', '/api/users/1/posts/9'], ['GET', '/api/files/a/b/c.txt'],
      ['GET', '/api/n/12'], ['GET', '/api/n/x'], ['GET', '/api/a'], ['GET', '/api/b'], ['GET', '/API/A'],
      ['POST', '/api/echo/z?a=1&a=2&b=3'], ['PUT', '/api/echo/z'], ['DELETE', '/api/users/1'],
      ['OPTIONS', '/api/users/1'], ['PROPFIND', '/api/users/1'], ['GET', '/nope'], ['HEAD', '/api/users/5'],
      ['GET', '/api/users/%E0%A4%A'],
    ],
  },
  {
    name: 'path syntax: optional, repeat, groups, suffixes, strict/sensitive, prefix params, router.url',
    build({ App, Router }) {
      const app = new App();
      const r = new Router();
      const show = (ctx) => { ctx.body = { params: ctx.params, route: ctx._matchedRoute }; };
      r.get('/opt/:a?', show);
      r.get('/star/:rest*', show);
      r.get('/plus/:rest+', show);
      r.get('/grp/:a{-:b}?', show);
      r.get('/file/:name.:ext', show);
      r.get('/re/:id(\\d+)-:slug', show);
      r.get(/^\/regex\/(\w+)$/, show);
      r.get('named', '/n/:x/:y?', (ctx) => {
        ctx.body = {
          a: ctx.router.url('named', { x: 'a b', y: 'ü' }),
          b: ctx.router.url('named', 1, 2),
          c: ctx.router.url('named', { x: 1 }, { query: { q: 'v w', z: [1, 2] } }),
          d: ctx.router.url('named', { x: 1 }, { query: 'raw=1' }),
          e: ctx.router.url('missing') instanceof Error,
          f: Router.url('/u/:id', { id: 5 }),
        };
      });
      const strict = new Router({ strict: true, sensitive: true });
      strict.get('/S/', show);
      strict.get('/t', show);
      const org = new Router({ prefix: '/orgs/:org' });
      org.use(async (ctx, next) => { ctx.set('X-Org', ctx.params.org || '-'); await next(); });
      org.get('/repos/:repo', show);
      org.get('/', show);
      const mounted = new Router();
      mounted.use('/m/:id', org.routes());
      app.use(r.routes()).use(strict.routes()).use(org.routes()).use(mounted.routes());
      app.use(r.allowedMethods());
      const only = new Router({ methods: ['GET'] });
      only.get('/only', show);
      app.use(only.routes()).use(only.allowedMethods());
      return app;
    },
    requests: [
      ['GET', '/opt'], ['GET', '/opt/'], ['GET', '/opt/1'], ['GET', '/opt/1/2'],
      ['GET', '/star'], ['GET', '/star/a/b'], ['GET', '/plus'], ['GET', '/plus/a/b/c'],
      ['GET', '/grp/x'], ['GET', '/grp/x-y'], ['GET', '/file/readme.md'], ['GET', '/file/archive.tar.gz'],
      ['GET', '/re/12-hello'], ['GET', '/re/ab-hello'], ['GET', '/regex/abc'], ['GET', '/regex/a/b'],
      ['GET', '/n/1'], ['GET', '/S/'], ['GET', '/S'], ['GET', '/s/'], ['GET', '/t'], ['GET', '/t/'],
      ['GET', '/orgs/kuai/repos/core'], ['GET', '/orgs/kuai'], ['GET', '/orgs/kuai/'],
      ['GET', '/m/7/orgs/o/repos/r'], ['POST', '/only'], ['PUT', '/only'],
    ],
  },
  {
    name: 'router.param, several middlewares, router.use middleware, allowedMethods throw',
    build({ App, Router }) {
      const app = new App();
      app.silent = true;
      const router = new Router();
      router.param('id', (id, ctx, next) => {
        if (!/^\d+$/.test(id)) ctx.throw(400, 'bad id');
        ctx.state.user = { id: Number(id) };
        return next();
      });
      router.use(async (ctx, next) => { ctx.set('X-Router-Mw', 'yes'); await next(); });
      router.get('/u/:id', async (ctx, next) => { ctx.state.n = 1; await next(); }, (ctx) => { ctx.body = { user: ctx.state.user, n: ctx.state.n }; });
      router.all('/any', (ctx) => { ctx.body = ctx.method; });
      router.redirect('/old', '/u/1');
      app.use(router.routes()).use(router.allowedMethods({ throw: true }));
      return app;
    },
    requests: [
      ['GET', '/u/5'], ['GET', '/u/x'], ['POST', '/u/5'], ['PATCH', '/any'], ['GET', '/any'],
      ['GET', '/old'], ['PROPFIND', '/u/5'], ['GET', '/missing'],
    ],
  },
  {
    name: 'bodies: string/html/buffer/stream/null/json-null/204/304/status strip',
    build({ App }) {
      const app = new App();
      app.use(async (ctx) => {
        switch (ctx.path) {
          case '/text': ctx.body = 'hello'; break;
          case '/html': ctx.body = '  <p>hi</p>'; break;
          case '/buf': ctx.body = Buffer.from('abc'); break;
          case '/stream': ctx.body = Readable.from(['a', 'b', 'c']); break;
          case '/typed-stream': ctx.type = 'text'; ctx.body = Readable.from(['x']); break;
          case '/null': ctx.body = null; break;
          case '/undefined': ctx.body = 'x'; ctx.body = undefined; break;
          case '/json-null': ctx.type = 'json'; ctx.body = null; break;
          case '/array': ctx.body = [1, 'two', { three: 3 }]; break;
          case '/204': ctx.body = 'gone'; ctx.status = 204; break;
          case '/304': ctx.status = 304; ctx.body = 'x'; break;
          case '/status-only': ctx.status = 418; break;
          case '/message': ctx.status = 202; ctx.message = 'Fine'; break;
          case '/empty': ctx.body = ''; break;
          case '/type': ctx.type = 'png'; ctx.body = Buffer.from([1, 2]); break;
          case '/type2': ctx.type = 'application/json'; ctx.body = '{"a":1}'; break;
          case '/type3': ctx.type = 'text/plain'; ctx.body = 'plain'; break;
          case '/type4': ctx.type = '.js'; ctx.body = 'x()'; break;
          case '/attachment': ctx.attachment('path/to/report.pdf'); ctx.body = 'pdf'; break;
          case '/attachment-utf8': ctx.attachment('résumé ✓.txt'); ctx.body = 'cv'; break;
          case '/set': ctx.set({ 'X-A': 1, 'X-B': ['1', 2] }); ctx.append('X-B', '3'); ctx.append('Link', '<a>'); ctx.remove('X-A'); ctx.body = 'ok'; break;
          case '/vary': ctx.vary('Origin'); ctx.vary('Accept-Encoding'); ctx.vary('origin'); ctx.body = 'v'; break;
          case '/length': ctx.body = 'héllo'; ctx.body = { len: ctx.length, type: ctx.type }; break;
          default: break;
        }
      });
      return app;
    },
    requests: [
      ['GET', '/text'], ['GET', '/html'], ['GET', '/buf'], ['GET', '/stream'], ['GET', '/typed-stream'],
      ['GET', '/null'], ['GET', '/undefined'], ['GET', '/json-null'], ['GET', '/array'], ['GET', '/204'],
      ['GET', '/304'], ['GET', '/status-only'], ['GET', '/message'], ['GET', '/empty'], ['GET', '/type'],
      ['GET', '/type2'], ['GET', '/type3'], ['GET', '/type4'], ['GET', '/attachment'], ['GET', '/attachment-utf8'],
      ['GET', '/set'], ['GET', '/vary'], ['GET', '/length'], ['GET', '/nothing'],
      ['HEAD', '/text'], ['HEAD', '/array'], ['HEAD', '/stream'], ['HEAD', '/nothing'], ['HEAD', '/null'],
    ],
  },
  {
    name: 'errors: throw/assert, expose, headers, non-errors, ENOENT',
    build({ App }) {
      const app = new App();
      app.silent = true;
      app.on('error', () => {});
      app.use(async (ctx, next) => {
        ctx.set('X-Before', 'dropped on error');
        await next();
      });
      app.use(async (ctx) => {
        switch (ctx.path) {
          case '/400': ctx.throw(400, 'name required'); break;
          case '/403': ctx.throw(403); break;
          case '/401': ctx.throw(401, 'login', { headers: { 'WWW-Authenticate': 'Basic realm="x"' } }); break;
          case '/500': throw new Error('secret detail');
          case '/503': ctx.throw(503, 'down for maintenance'); break;
          case '/expose500': { const e = new Error('shown'); e.status = 500; e.expose = true; throw e; }
          case '/assert': ctx.assert(ctx.query.ok, 422, 'ok missing'); ctx.body = 'fine'; break;
          case '/string': throw 'just a string'; // eslint-disable-line no-throw-literal
          case '/enoent': { const e = new Error('no file'); e.code = 'ENOENT'; throw e; }
          case '/weird-status': { const e = new Error('x'); e.status = 1234; throw e; }
          case '/stream-error': {
            const s = new Readable({ read() { this.destroy(new Error('boom')); } });
            ctx.body = s;
            break;
          }
          case '/err-obj': ctx.throw(404, { headers: { 'X-Reason': 'gone' } }); break;
          case '/next-twice':
            break;
          default: ctx.throw('Payment needed', 402);
        }
      });
      return app;
    },
    requests: [
      ['GET', '/400'], ['GET', '/403'], ['GET', '/401'], ['GET', '/500'], ['GET', '/503'], ['GET', '/expose500'],
      ['GET', '/assert'], ['GET', '/assert?ok=1'], ['GET', '/string'], ['GET', '/enoent'], ['GET', '/weird-status'],
      // '/stream-error' differs on purpose: Koa 3 destroys the socket, kuai sends a 500 (unit-tested).
      ['GET', '/err-obj'], ['GET', '/other'], ['HEAD', '/400'],
    ],
  },
  {
    name: 'next() twice, onion order',
    build({ App }) {
      const app = new App();
      app.silent = true;
      app.use(async (ctx, next) => {
        ctx.state.log = ['a1'];
        await next();
        ctx.state.log.push('a2');
        ctx.body = ctx.state.log;
      });
      app.use(async (ctx, next) => {
        ctx.state.log.push('b1');
        await next();
        if (ctx.path === '/twice') await next();
        ctx.state.log.push('b2');
      });
      app.use((ctx) => { ctx.state.log.push('c'); });
      return app;
    },
    requests: [['GET', '/'], ['GET', '/twice']],
  },
  {
    name: 'cookies: plain, signed, tampered, options',
    build({ App }) {
      const app = new App({ keys: ['k2', 'k1'] });
      app.use(async (ctx) => {
        if (ctx.path === '/set') {
          ctx.cookies.set('plain', 'v1', { signed: false });
          ctx.cookies.set('sess', 'abc123');
          ctx.cookies.set('opts', 'x', { path: '/p', domain: 'example.com', sameSite: 'lax', httpOnly: false, priority: 'High', overwrite: true });
          ctx.cookies.set('opts', 'y', { path: '/p', overwrite: true, signed: false });
          ctx.cookies.set('gone', null);
          ctx.body = 'set';
        } else {
          ctx.body = {
            plain: ctx.cookies.get('plain') ?? null,
            sess: ctx.cookies.get('sess', { signed: true }) ?? null,
            unsignedRead: ctx.cookies.get('sess') ?? null,
          };
        }
      });
      return app;
    },
    requests: [
      ['GET', '/set'],
      ['GET', '/get', { cookie: 'plain=v1; sess=abc123; sess.sig=SIGNED_BY_k2' }],
      ['GET', '/get', { cookie: 'sess=abc123; sess.sig=SIGNED_BY_k1' }],
      ['GET', '/get', { cookie: 'sess=abc123; sess.sig=bad' }],
      ['GET', '/get', { cookie: 'sess=abc123' }],
      ['GET', '/get'],
    ],
  },
  {
    name: 'redirect, back, accepts, fresh/304, etag, lastModified',
    build({ App }) {
      const app = new App();
      app.use(async (ctx) => {
        switch (ctx.path) {
          case '/r': ctx.redirect('/target?x=1&y=<script>'); break;
          case '/r301': ctx.status = 301; ctx.redirect('https://example.com/a b'); break;
          case '/back': ctx.back('/fallback'); break;
          case '/accepts': ctx.body = { best: ctx.accepts('json', 'html', 'text/plain'), enc: ctx.acceptsEncodings('gzip', 'br'), lang: ctx.acceptsLanguages('en', 'fr') }; break;
          case '/etag':
            ctx.etag = 'abc';
            ctx.lastModified = new Date('2024-01-02T03:04:05Z');
            ctx.body = 'cached body';
            if (ctx.fresh) ctx.status = 304;
            break;
          case '/auto-fresh':
            ctx.set('ETag', '"v1"');
            ctx.body = { data: 1 };
            break;
          case '/is': ctx.body = { is: ctx.is('json', 'urlencoded'), type: ctx.request.type, len: ctx.request.length ?? null }; break;
          case '/info': ctx.body = { path: ctx.path, qs: ctx.querystring, search: ctx.search, host: ctx.host, hostname: ctx.hostname, protocol: ctx.protocol, secure: ctx.secure, idem: ctx.idempotent, originalUrl: ctx.originalUrl, subdomains: ctx.subdomains, method: ctx.method, header: ctx.get('X-Custom'), ref: ctx.get('Referrer') }; break;
          default: ctx.status = 404;
        }
      });
      return app;
    },
    requests: [
      ['GET', '/r'], ['GET', '/r', { accept: 'text/html' }], ['GET', '/r301', { accept: 'application/json' }],
      ['GET', '/back', { referer: '/from-here' }], ['GET', '/back'], ['GET', '/back', { referer: 'http://evil.example/x' }],
      ['GET', '/accepts'], ['GET', '/accepts', { accept: 'text/html, application/json;q=0.9', 'accept-encoding': 'br;q=0.5, gzip', 'accept-language': 'fr-CA, en;q=0.8' }],
      ['GET', '/accepts', { accept: 'image/png' }],
      ['GET', '/etag'], ['GET', '/etag', { 'if-none-match': '"abc"' }], ['GET', '/etag', { 'if-none-match': 'W/"abc"' }],
      ['GET', '/etag', { 'if-modified-since': 'Tue, 02 Jan 2024 03:04:05 GMT' }],
      ['GET', '/etag', { 'if-none-match': '"abc"', 'cache-control': 'no-cache' }],
      ['HEAD', '/etag', { 'if-none-match': '"abc"' }],
      ['GET', '/is', { 'content-type': 'application/json; charset=utf-8', 'content-length': '2' }, '{}'],
      ['GET', '/is'],
      ['GET', '/info?a=1', { host: 'a.b.example.com:8080', 'x-custom': 'yes', referer: 'http://r' }],
    ],
  },
];

// Signed-cookie placeholders are replaced by real signatures (Keygrip format).
function sign(data, key) {
  return require('node:crypto').createHmac('sha1', key).update(data).digest('base64')
    .replace(/\//g, '_').replace(/\+/g, '-').replace(/=+$/, '');
}
function fillSignatures(headers) {
  if (!headers || !headers.cookie) return headers;
  return {
    ...headers,
    cookie: headers.cookie.replace(/SIGNED_BY_(\w+)/g, (_, key) => sign('sess=abc123', key)),
  };
}

test('compat: kuai App/Router vs koa@3 + @koa/router', { skip }, async (t) => {
  const { koa, kuai: ours } = libs();
  for (const c of cases) {
    await t.test(c.name, async () => {
      const a = await startApp(c.build(koa));
      const b = await startApp(c.build(ours));
      try {
        for (const [method, url, headers, body] of c.requests) {
          const h = fillSignatures(headers);
          const ra = normalize(await send(a.port, method, url, h, body));
          const rb = normalize(await send(b.port, method, url, h, body));
          assert.deepStrictEqual(rb, ra, `${method} ${url} ${JSON.stringify(headers || {})}`);
        }
      } finally {
        await a.close();
        await b.close();
      }
    });
  }
});
