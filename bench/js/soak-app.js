// bench/soak's app: kuai's App with three middlewares and a router; GET
// /users/:id answers JSON, POST /echo reads a JSON body (2 KiB from the
// soak's client) and answers its size. kuai only (require('kuai')).
'use strict';
const { App, Router } = require('kuai');
const build = require('./app-def');

const app = build(App, Router);
const router = new Router();
router.post('/echo', async (ctx) => {
  const chunks = [];
  for await (const c of ctx.req) chunks.push(c);
  const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  ctx.body = { received: body.data.length };
});
app.use(router.routes());
app.listen(Number(process.env.PORT), process.env.HOST || '127.0.0.1');
