// A Hono 4 app exported as it is (`export default app`): `deno serve`, Bun and
// `kuai app.mjs` serve its fetch(); tests/integration/test_fetch.py compares
// kuai's answers with Deno's. hono_app.js serves the same app through
// @hono/node-server (kuai's and node's http).
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';

const app = new Hono();
app.use('*', async (c, next) => {
  await next();
  c.header('x-powered', 'hono');
});
app.get('/', (c) => c.text('Hello Hono!'));
app.get('/users/:id', (c) => c.json({ id: c.req.param('id'), q: c.req.query('q') ?? null }));
app.post('/echo', async (c) => {
  const body = await c.req.json();
  return c.json({ got: body, type: c.req.header('content-type') }, 201);
});
app.get('/stream', () => new Response(new ReadableStream({
  start(controller) {
    for (const part of ['one ', 'two ', 'three']) controller.enqueue(new TextEncoder().encode(part));
    controller.close();
  },
}), { headers: { 'content-type': 'text/plain' } }));
app.get('/redirect', (c) => c.redirect('/users/7', 301));
app.get('/headers', (c) => {
  c.header('x-seen', c.req.header('x-rep') ?? 'none');
  c.header('set-cookie', 'h=1');
  return c.body('with headers');
});
app.get('/fail', () => { throw new HTTPException(418, { message: 'teapot' }); });
app.notFound((c) => c.text(`no route for ${c.req.path}`, 404));

export default app;
