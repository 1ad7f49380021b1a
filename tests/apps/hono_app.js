'use strict';
// The Hono 4 app of hono_fetch.mjs served by @hono/node-server 2 (which needs
// Node >= 20): under kuai its http.createServer is kuai's. Listens on $PORT,
// prints LISTENING <port>.
const { serve } = require('@hono/node-server');
const app = require('./hono_fetch.mjs').default;

serve({ fetch: app.fetch, port: Number(process.env.PORT), hostname: '127.0.0.1' }, (info) => {
  console.log(`LISTENING ${info.port}`);
});
