'use strict';
// A Hono 4 app served by @hono/node-server 2 (which needs Node >= 20): under
// kuai its http.createServer is kuai's. Listens on $PORT, prints LISTENING <port>.
const { serve } = require('@hono/node-server');
const { Hono } = require('hono');
const { HTTPException } = require('hono/http-exception');

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
app.get('/stream', (c) => new Response(new ReadableStream({
  start(controller) {
    for (const part of ['one ', 'two ', 'three']) controller.enqueue(new TextEncoder().encode(part));
    controller.close();
  },
}), { headers: { 'content-type': 'text/plain' } }));
app.get('/redirect', (c) => c.redirect('/users/7', 301));
app.get('/fail', () => { throw new HTTPException(418, { message: 'teapot' }); });
app.notFound((c) => c.text(`no route for ${c.req.path}`, 404));

serve({ fetch: app.fetch, port: Number(process.env.PORT), hostname: '127.0.0.1' }, (info) => {
  console.log(`LISTENING ${info.port}`);
});
