// `fastify`: the `app` case as an unmodified Fastify 5 app (two hooks and a
// route answering JSON), run under kuai, Node, Bun and Deno.
'use strict';
const Fastify = require('fastify');

const app = Fastify({ logger: false });
let served = 0;

// 1. timer: x-response-time, as the other apps' first middleware.
app.addHook('onRequest', async (request) => {
  request.startedAt = process.hrtime.bigint();
});
app.addHook('onSend', async (request, reply, payload) => {
  served++;
  const us = Number(process.hrtime.bigint() - request.startedAt) / 1000;
  reply.header('x-response-time', `${us.toFixed(0)}us`);
  return payload;
});
// 2. headers common to every response.
app.addHook('preHandler', async (request, reply) => {
  reply.header('x-powered-by', 'bench');
  reply.header('cache-control', 'no-store');
});
// 3. errors as JSON.
app.setErrorHandler((err, request, reply) => {
  reply.code(err.statusCode || 500).send({ error: err.statusCode ? err.message : 'Internal Server Error' });
});

app.get('/users/:id', async (request, reply) => {
  const id = Number(request.params.id);
  if (!Number.isInteger(id) || id < 0) return reply.code(400).send({ error: 'bad user id' });
  return { id, name: `user ${id}`, served };
});

app.listen({ port: Number(process.env.PORT), host: process.env.HOST || '127.0.0.1' });
