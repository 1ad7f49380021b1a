// The `app` case, defined once for both frameworks: build(App, Router) with
// kuai's App/Router (app-kuai.js) or Koa 3 and @koa/router 13 (app-koa.js).
// Three middlewares, then a router; GET /users/:id answers JSON.
'use strict';

module.exports = function build(App, Router) {
  const app = new App();
  app.silent = true;

  // 1. logger-timer: times the rest of the chain, sets x-response-time and
  //    counts requests (no per-request output: that would measure the terminal).
  let served = 0;
  app.use(async (ctx, next) => {
    const start = process.hrtime.bigint();
    await next();
    served++;
    const us = Number(process.hrtime.bigint() - start) / 1000;
    ctx.set('x-response-time', `${us.toFixed(0)}us`);
  });

  // 2. headers common to every response.
  app.use(async (ctx, next) => {
    ctx.set('x-powered-by', 'bench');
    ctx.set('cache-control', 'no-store');
    await next();
  });

  // 3. error wrapper: turns a thrown error into a JSON error body.
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      ctx.status = err.status || 500;
      ctx.body = { error: err.expose ? err.message : 'Internal Server Error' };
      ctx.app.emit('error', err, ctx);
    }
  });

  const router = new Router();
  router.get('/users/:id', (ctx) => {
    const id = Number(ctx.params.id);
    if (!Number.isInteger(id) || id < 0) ctx.throw(400, 'bad user id');
    ctx.body = { id, name: `user ${id}`, served };
  });
  router.get('/hello', (ctx) => {
    ctx.body = 'Hello, World!';
  });
  app.use(router.routes()).use(router.allowedMethods());
  app.on('error', () => {});
  return app;
};
