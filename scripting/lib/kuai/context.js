'use strict';

// The prototype of `ctx` (Koa's Context). One ctx per request, made with
// Object.create(app.context) in application.js. Request and response
// properties are reached through accessors defined once on this prototype
// (below, at module load), never per request.

const util = require('util');
const { createError, assert } = require('./errors');
const { Cookies } = require('./cookies');
const { messages } = require('./errors');

const kCookies = Symbol('kuai.cookies');

const context = {
  inspect() {
    if (this === context) return this;
    return this.toJSON();
  },
  [util.inspect.custom]() { return this.inspect(); },

  toJSON() {
    return {
      request: this.request.toJSON(),
      response: this.response.toJSON(),
      app: this.app.toJSON(),
      originalUrl: this.originalUrl,
      req: '<original node req>',
      res: '<original node res>',
      socket: '<original node socket>',
    };
  },

  // http-assert: ctx.assert(value, status, message, props).
  assert,

  // http-errors: ctx.throw(status, message, props) in any order.
  throw(...args) {
    throw createError(...args);
  },

  // Turns an error into the response (unless headers are out already) and
  // reports it through app.emit('error').
  onerror(err) {
    if (err == null) return;
    const isError = err instanceof Error || Object.prototype.toString.call(err) === '[object Error]';
    if (!isError) err = new Error(util.format('non-error thrown: %j', err));

    let headerSent = false;
    if (this.headerSent || !this.writable) {
      headerSent = err.headerSent = true;
    }

    this.app.emit('error', err, this);
    if (headerSent) return;

    const res = this.res;
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    if (err.headers) this.set(err.headers);
    this.type = 'text';

    let status = err.status || err.statusCode;
    if (typeof status !== 'number' || !messages[status]) status = 500;

    const phrase = messages[status];
    const body = err.expose ? err.message : phrase;
    this.status = err.status = status;
    this.length = Buffer.byteLength(body);
    res.end(body);
  },

  get cookies() {
    let cookies = this[kCookies];
    if (cookies === undefined) {
      cookies = this[kCookies] = new Cookies(this.req, this.res, {
        keys: this.app.keys,
        secure: this.request.secure,
      });
    }
    return cookies;
  },
  set cookies(value) { this[kCookies] = value; },
};

// Accessors and methods forwarded to ctx.request / ctx.response.
function delegateMethods(target, name, methods) {
  for (const method of methods) {
    Object.defineProperty(target, method, {
      // `arguments` forwarded as they are: no array per call.
      value: {
        [method]() {
          const target = this[name];
          return target[method].apply(target, arguments);
        },
      }[method],
      writable: true, configurable: true, enumerable: false,
    });
  }
}

function delegateAccessors(target, name, props, writable) {
  for (const prop of props) {
    const desc = {
      get() { return this[name][prop]; },
      configurable: true, enumerable: true,
    };
    if (writable) desc.set = function (val) { this[name][prop] = val; };
    Object.defineProperty(target, prop, desc);
  }
}

delegateMethods(context, 'response', [
  'attachment', 'redirect', 'back', 'remove', 'vary', 'has', 'set', 'append', 'flushHeaders',
]);
delegateAccessors(context, 'response', [
  'status', 'message', 'body', 'length', 'type', 'lastModified', 'etag',
], true);
delegateAccessors(context, 'response', ['headerSent', 'writable'], false);

delegateMethods(context, 'request', [
  'acceptsLanguages', 'acceptsEncodings', 'acceptsCharsets', 'accepts', 'get', 'is',
]);
delegateAccessors(context, 'request', [
  'querystring', 'idempotent', 'socket', 'search', 'method', 'query', 'path', 'url', 'accept',
], true);
delegateAccessors(context, 'request', [
  'origin', 'href', 'subdomains', 'protocol', 'host', 'hostname', 'URL', 'header', 'headers',
  'secure', 'stale', 'fresh', 'ips', 'ip',
], false);

module.exports = context;
