// `app` with Koa 3 and @koa/router 13 from npm; run under kuai, Node, Bun and Deno.
'use strict';
const Koa = require('koa');
const Router = require('@koa/router');
require('./app-def')(Koa, Router)
  .listen(Number(process.env.PORT), process.env.HOST || '127.0.0.1');
