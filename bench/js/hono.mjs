// `hono`: the `app` case (three middlewares, then a route answering JSON) as a
// Hono 4 app, exported as a fetch-style module; kuai, Deno (deno serve) and Bun
// serve it unchanged.
import { Hono } from 'hono';

const app = new Hono();

// 1. logger-timer: times the rest of the chain, sets x-response-time.
let served = 0;
app.use(async (c, next) => {
  const start = performance.now();
  await next();
  served++;
  c.header('x-response-time', `${((performance.now() - start) * 1000).toFixed(0)}us`);
});

// 2. headers common to every response.
app.use(async (c, next) => {
  c.header('x-powered-by', 'bench');
  c.header('cache-control', 'no-store');
  await next();
});

// 3. error wrapper: a thrown error becomes a JSON error body.
app.use(async (c, next) => {
  try {
    await next();
  } catch (err) {
    c.res = c.json({ error: 'Internal Server Error' }, 500);
  }
});

app.get('/users/:id', (c) => {
  const id = Number(c.req.param('id'));
  if (!Number.isInteger(id) || id < 0) return c.json({ error: 'bad user id' }, 400);
  return c.json({ id, name: `user ${id}`, served });
});

export default {
  port: Number(process.env.PORT),
  hostname: process.env.HOST || '127.0.0.1',
  fetch: app.fetch,
};
