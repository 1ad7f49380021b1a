'use strict';

// require('kuai'): the built-in, dependency-free Koa-style framework.
//
//   const { App, Router, createError, HttpError } = require('kuai');
//
// App follows Koa 3's Application, Router follows @koa/router 13; see
// README.md in this folder for the API surface and known differences.
//
//   const { request, get, fetch } = require('kuai');
//
// The http client: Node's http.request / http.get and the WHATWG fetch over
// the reactor thread's native keep-alive pools (scripting/js/http_client.js,
// loaded on first use). Outside kuai (plain node, with this folder on
// NODE_PATH) they are Node's own http.request, http.get and global fetch.

const { App, compose } = require('./application');
const { Router, Layer } = require('./router');
const { createError, HttpError, isHttpError } = require('./errors');
const { Cookies, Keys } = require('./cookies');

module.exports = {
  App,
  Router,
  Layer,
  HttpError,
  createError,
  isHttpError,
  compose,
  Cookies,
  Keys,
};

let client = null;
function httpClient() {
  if (client === null) {
    if (__filename.startsWith('/@kuai/')) {
      client = require('../http_client.js');
    } else {
      const http = require('http');
      client = { request: http.request, get: http.get, fetch: (...a) => globalThis.fetch(...a),
        ClientRequest: http.ClientRequest };
    }
  }
  return client;
}
// serve(): fetch-style handlers (scripting/js/fetch_server.js), as Deno.serve.
Object.defineProperty(module.exports, 'serve', {
  enumerable: true,
  configurable: true,
  get() {
    if (!__filename.startsWith('/@kuai/')) {
      return () => { throw new Error("require('kuai').serve() runs under kuai (kuai app.js)"); };
    }
    return require('../fetch_server.js').serve;
  },
});

for (const name of ['request', 'get', 'fetch', 'ClientRequest']) {
  Object.defineProperty(module.exports, name, {
    enumerable: true,
    configurable: true,
    get: () => httpClient()[name],
  });
}
