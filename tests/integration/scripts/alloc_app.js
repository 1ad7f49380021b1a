// Bytes allocated per request, read from V8's heap statistics
// (test_scripting_alloc.py): kuai's App with three middlewares and a router
// (the shape of the benchmark's `app` case), and a bare http.createServer
// answer. GET /__allocated answers V8's running total.
'use strict';
const http = require('http');
const v8 = require('v8');
const { App, Router } = require('kuai');

const app = new App();
app.silent = true;
let served = 0;
app.use(async (ctx, next) => {
  const start = process.hrtime.bigint();
  await next();
  served++;
  ctx.set('x-response-time', `${(Number(process.hrtime.bigint() - start) / 1000).toFixed(0)}us`);
});
app.use(async (ctx, next) => {
  ctx.set('x-powered-by', 'kuai');
  ctx.set('cache-control', 'no-store');
  await next();
});
app.use(async (ctx, next) => {
  try {
    await next();
  } catch (err) {
    ctx.status = err.status || 500;
    ctx.body = { error: err.expose ? err.message : 'Internal Server Error' };
  }
});
const router = new Router();
router.get('/users/:id', (ctx) => {
  ctx.body = { id: Number(ctx.params.id), name: `user ${ctx.params.id}`, served };
});
router.get('/hello', (ctx) => {
  ctx.body = 'Hello, World!';
});
app.use(router.routes()).use(router.allowedMethods());
const appHandler = app.callback();

http.createServer((req, res) => {
  if (req.url === '/__allocated') {
    res.end(String(v8.getHeapStatistics().total_allocated_bytes));
  } else if (req.url === '/plain') {
    res.end('Hello, World!');
  } else {
    appHandler(req, res);
  }
}).listen(0, '127.0.0.1', function () {
  console.log(`LISTENING ${this.address().port}`);
});
