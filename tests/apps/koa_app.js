'use strict';
// A Koa 3 + @koa/router 13 app: params, query, JSON, cookies (signed too), a
// streamed body, errors (thrown, ctx.throw, async), 404, 405 with Allow.
// With KOA_IMPL=kuai the same app runs on kuai's built-in App/Router
// (require('kuai'), kuai only). Listens on $PORT at 127.0.0.1; prints
// "LISTENING <port>" once listening.

const { Readable } = require('stream');

const useKuai = process.env.KOA_IMPL === 'kuai';
const Koa = useKuai ? require('kuai').App : require('koa');
const Router = useKuai ? require('kuai').Router : require('@koa/router');

const app = new Koa({ keys: ['kuai-test-key'] });
app.silent = true;

app.use(async (ctx, next) => {
  await next();
  ctx.set('X-Middleware', 'outer');
});

const router = new Router();

router.get('/users/:id', (ctx) => {
  ctx.body = { id: ctx.params.id, query: ctx.query };
});

router.put('/users/:id', (ctx) => {
  ctx.status = 204;
});

router.get('/files/*path', (ctx) => {  // path-to-regexp 8 wildcard (@koa/router 15)
  ctx.body = { path: ctx.params.path };
});

router.post('/echo', async (ctx) => {
  const chunks = [];
  for await (const c of ctx.req) chunks.push(c);
  const text = Buffer.concat(chunks).toString();
  ctx.status = 201;
  ctx.body = { got: JSON.parse(text || 'null'), type: ctx.get('content-type') };
});

router.get('/cookies', (ctx) => {
  ctx.cookies.set('plain', 'value', { signed: false });
  ctx.cookies.set('signed', 's1', { signed: true, httpOnly: true });
  ctx.body = {
    plain: ctx.cookies.get('plain') || null,
    signed: ctx.cookies.get('signed', { signed: true }) || null,
  };
});

router.get('/stream', (ctx) => {
  ctx.type = 'text/plain';
  ctx.body = Readable.from(['one\n', 'two\n', 'three\n']);
});

router.get('/text', (ctx) => {
  ctx.body = 'hello from koa';
});

router.get('/html', (ctx) => {
  ctx.body = '<p>html</p>';
});

router.get('/redirect', (ctx) => {
  ctx.redirect('/users/7');
});

router.get('/error', () => {
  throw new Error('koa sync failure');
});

router.get('/async-error', async () => {
  await new Promise((r) => setTimeout(r, 5));
  throw new Error('koa async failure');
});

router.get('/teapot', (ctx) => {
  ctx.throw(418, 'short and stout');
});

router.get('/empty', (ctx) => {
  ctx.body = null;
});

app.use(router.routes()).use(router.allowedMethods());

const port = Number(process.env.PORT);
app.listen(port, '127.0.0.1', () => console.log(`LISTENING ${port}`));
