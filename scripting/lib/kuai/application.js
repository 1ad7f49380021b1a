'use strict';

// App: Koa 3's Application. Holds the middleware list and the prototypes
// (app.context / app.request / app.response) every request's ctx inherits
// from; callback() returns the (req, res) handler for http.createServer,
// which runs the middleware (onion order) and then writes ctx.body out.
// One App per isolate; under kuai each reactor thread runs its own copy of
// the script, so nothing here is shared between threads.

const EventEmitter = require('events');
const http = require('http');
const { Stream, Readable } = require('stream');
const util = require('util');
const contextProto = require('./context');
const requestProto = require('./request');
const responseProto = require('./response');
const { HttpError } = require('./errors');

const kEmptyStatus = new Set([204, 205, 304]);

// compose([a, b, c]) -> (ctx, next) => Promise. Each middleware gets a
// fresh `next` that may be called once; calling it again rejects.
function compose(middleware) {
  if (!Array.isArray(middleware)) throw new TypeError('Middleware stack must be an array!');
  for (const fn of middleware) {
    if (typeof fn !== 'function') throw new TypeError('Middleware must be composed of functions!');
  }
  const count = middleware.length;
  return function composed(ctx, next) {
    let last = -1;
    const step = (i) => {
      if (i <= last) return Promise.reject(new Error('next() called multiple times'));
      last = i;
      const fn = i < count ? middleware[i] : next;
      if (fn === undefined) return Promise.resolve();
      try {
        return Promise.resolve(fn(ctx, () => step(i + 1)));
      } catch (err) {
        return Promise.reject(err);
      }
    };
    return step(0);
  };
}

function toNodeStream(body) {
  if (typeof Blob !== 'undefined' && body instanceof Blob) return Readable.fromWeb(body.stream());
  if (typeof Response !== 'undefined' && body instanceof Response) {
    return body.body ? Readable.fromWeb(body.body) : null;
  }
  if (typeof ReadableStream !== 'undefined' && body instanceof ReadableStream) return Readable.fromWeb(body);
  return undefined;
}

// Writes ctx.body to the Node response once the middleware is done.
function respond(ctx) {
  if (ctx.respond === false) return;
  if (!ctx.writable) return;

  const res = ctx.res;
  const response = ctx.response;
  let body = response._body;
  const code = res.statusCode;

  if (kEmptyStatus.has(code)) {
    ctx.body = null;
    res.end();
    return;
  }

  if (ctx.method === 'HEAD') {
    if (!res.headersSent && !res.hasHeader('Content-Length')) {
      const length = response.length;
      if (Number.isInteger(length)) response.length = length;
    }
    res.end();
    return;
  }

  if (body == null) {
    if (response._explicitNullBody) {
      res.removeHeader('Content-Type');
      res.removeHeader('Transfer-Encoding');
      res.setHeader('Content-Length', '0');
      res.end();
      return;
    }
    body = ctx.req.httpVersionMajor >= 2 ? String(code) : (res.statusMessage || http.STATUS_CODES[code] || String(code));
    if (!res.headersSent) {
      response.type = 'text';
      res.setHeader('Content-Length', String(Buffer.byteLength(body)));
    }
    res.end(body);
    return;
  }

  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    res.end(body);
    return;
  }
  if (body instanceof Stream) {
    body.pipe(res);
    return;
  }
  const stream = toNodeStream(body);
  if (stream !== undefined) {
    if (stream === null) { res.end(); return; }
    stream.once('error', (err) => ctx.onerror(err));
    res.once('close', () => stream.destroy());
    stream.pipe(res);
    return;
  }

  body = JSON.stringify(body);
  if (!res.headersSent) res.setHeader('Content-Length', String(Buffer.byteLength(body)));
  res.end(body);
}

// ctx, ctx.request and ctx.response come from constructors whose prototypes
// are app.context, app.request and app.response: objects of one constructor
// share a shape with room for the fields every request sets (an object from
// Object.create grows its property store field by field instead). Made again
// if the app's prototypes were replaced.
const kShapes = Symbol('kuai.shapes');

function shapesOf(app) {
  let s = app[kShapes];
  if (s !== undefined && s.context === app.context && s.request === app.request &&
      s.response === app.response) {
    return s;
  }
  const Context = function (application, req, res) {
    this.request = null;
    this.response = null;
    this.app = application;
    this.req = req;
    this.res = res;
    this.originalUrl = req.url;
    this.state = {};
  };
  const Request = function (application, req, res, ctx) {
    this.app = application;
    this.req = req;
    this.res = res;
    this.ctx = ctx;
    this.response = null;
    this.originalUrl = req.url;
  };
  const Response = function (application, req, res, ctx) {
    this.app = application;
    this.req = req;
    this.res = res;
    this.ctx = ctx;
    this.request = null;
  };
  Context.prototype = app.context;
  Request.prototype = app.request;
  Response.prototype = app.response;
  s = { context: app.context, request: app.request, response: app.response, Context, Request, Response };
  app[kShapes] = s;
  return s;
}

class App extends EventEmitter {
  constructor(options) {
    super();
    options = options || {};
    this.proxy = options.proxy || false;
    this.subdomainOffset = options.subdomainOffset || 2;
    this.proxyIpHeader = options.proxyIpHeader || 'X-Forwarded-For';
    this.maxIpsCount = options.maxIpsCount || 0;
    this.env = options.env || process.env.NODE_ENV || 'development';
    this.compose = options.compose || compose;
    if (options.keys) this.keys = options.keys;
    this.middleware = [];
    this.context = Object.create(contextProto);
    this.request = Object.create(requestProto);
    this.response = Object.create(responseProto);
    if (options.asyncLocalStorage) {
      const { AsyncLocalStorage } = require('async_hooks');
      this.ctxStorage = options.asyncLocalStorage instanceof AsyncLocalStorage
        ? options.asyncLocalStorage : new AsyncLocalStorage();
    }
    this.silent = undefined;
  }

  // Same as http.createServer(app.callback()).listen(...args).
  listen(...args) {
    const server = http.createServer(this.callback());
    return server.listen(...args);
  }

  toJSON() {
    return { subdomainOffset: this.subdomainOffset, proxy: this.proxy, env: this.env };
  }

  inspect() { return this.toJSON(); }
  [util.inspect.custom]() { return this.inspect(); }

  use(fn) {
    if (typeof fn !== 'function') throw new TypeError('middleware must be a function!');
    this.middleware.push(fn);
    return this;
  }

  // The (req, res) request listener.
  callback() {
    const fn = this.compose(this.middleware);
    if (!this.listenerCount('error')) this.on('error', this.onerror);
    const handleRequest = (req, res) => {
      const ctx = this.createContext(req, res);
      if (this.ctxStorage) return this.ctxStorage.run(ctx, () => this.handleRequest(ctx, fn));
      return this.handleRequest(ctx, fn);
    };
    return handleRequest;
  }

  get currentContext() {
    return this.ctxStorage ? this.ctxStorage.getStore() : undefined;
  }

  handleRequest(ctx, fnMiddleware) {
    ctx.res.statusCode = 404;
    return fnMiddleware(ctx).then(() => respond(ctx), (err) => ctx.onerror(err));
  }

  createContext(req, res) {
    const s = shapesOf(this);
    const context = new s.Context(this, req, res);
    const request = context.request = new s.Request(this, req, res, context);
    const response = context.response = new s.Response(this, req, res, context);
    request.response = response;
    response.request = request;
    return context;
  }

  // Default 'error' listener: log what the client was not told about.
  onerror(err) {
    const isError = err instanceof Error || Object.prototype.toString.call(err) === '[object Error]';
    if (!isError) throw new TypeError(util.format('non-error thrown: %j', err));
    if (err.status === 404 || err.expose) return;
    if (this.silent) return;
    const msg = err.stack || err.toString();
    console.error(`\n${msg.replace(/^/gm, '  ')}\n`);
  }

  static get default() { return App; }
}

App.HttpError = HttpError;

module.exports = { App, compose, respond };
