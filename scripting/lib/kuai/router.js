'use strict';

// Router: the @koa/router 13 API over kuai's own path patterns (pattern.js).
// A Router is a list of Layers (one per registered path: its methods, its
// compiled RegExp, its middleware). routes() returns one middleware that
// tests the request path against every layer in order (a precompiled RegExp
// each), then runs the middleware of the layers that matched, in order,
// with ctx.params filled from each layer's captures. allowedMethods()
// answers 405/501/OPTIONS from what matched.
//
// Per request: one RegExp exec per candidate layer, one result object, and
// one small closure per middleware step (the `next` handed to it); nothing
// compiled. A table of kIndexFrom layers or more is first narrowed by a trie
// of the literal segments its paths begin with (PathIndex below), so a
// request tests the layers that can match it, not the whole table.

const http = require('http');
const qs = require('querystring');
const { compile, parse, toPath } = require('./pattern');
const { createError } = require('./errors');

const kAllMethods = http.METHODS.map((m) => m.toLowerCase());

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function flatten(list, out = []) {
  for (const item of list) {
    if (Array.isArray(item)) flatten(item, out);
    else out.push(item);
  }
  return out;
}

// One registered path: methods, middleware stack and compiled pattern.
class Layer {
  constructor(path, methods, middleware, opts = {}) {
    this.opts = opts;
    this.name = opts.name || null;
    this.methods = [];
    this.paramNames = [];
    this.stack = flatten(Array.isArray(middleware) ? middleware : [middleware]);
    for (const method of methods) {
      const upper = method.toUpperCase();
      this.methods.push(upper);
      if (upper === 'GET') this.methods.unshift('HEAD');
    }
    for (const fn of this.stack) {
      if (typeof fn !== 'function') {
        throw new TypeError(`${this.methods.toString()} \`${this.name || path}\`: \`middleware\` must be a function, not \`${typeof fn}\``);
      }
    }
    this.path = path;
    this.compilePath();
  }

  compilePath() {
    const { regexp, keys, tokens } = compile(this.path, this.opts);
    this.regexp = regexp;
    this.paramNames = keys;
    this.tokens = tokens;
    this.tokensOf = regexp;  // the RegExp `tokens` describe (PathIndex)
  }

  match(path) { return this.regexp.test(path); }

  // Captured groups for `path` (empty when the layer ignores captures).
  captures(path) {
    if (this.opts.ignoreCaptures) return [];
    const m = this.regexp.exec(path);
    return m ? m.slice(1) : [];
  }

  // Adds this layer's decoded params to `params` (created if absent).
  params(path, captures, params = {}) {
    const names = this.paramNames;
    for (let i = 0; i < captures.length; i++) {
      const key = names[i];
      const c = captures[i];
      if (key && c !== undefined && c.length > 0) params[key.name] = safeDecode(c);
    }
    return params;
  }

  // Builds a URL from params (object, or positional values) and options
  // ({ query: string | object } plus toPath options).
  url(params, options, ...more) {
    let args = params;
    if (typeof params !== 'object' || params === null) {
      args = [params, options, ...more].filter((v) => v !== undefined);
      options = undefined;
      if (args.length && typeof args[args.length - 1] === 'object') options = args.pop();
    }
    const path = typeof this.path === 'string' ? this.path.replace(/\(\.\*\)/g, '') : '';
    const tokens = parse(path);
    let replace = {};
    if (Array.isArray(args)) {
      let j = 0;
      for (const token of tokens) {
        if (typeof token !== 'string' && token.name !== '') replace[token.name] = args[j++];
      }
    } else if (tokens.some((t) => typeof t !== 'string' && t.name !== '')) {
      replace = args;
    } else if (!options) {
      options = args;
    }
    let url = toPath(tokens, replace, { encode: encodeURIComponent, ...options });
    if (options && options.query) {
      const q = typeof options.query === 'string' ? options.query : qs.stringify(options.query);
      if (q) url += q[0] === '?' ? q : '?' + q;
    }
    return url;
  }

  // router.param(): insert `fn` before the handlers, after the param
  // middleware of params that come earlier in the path.
  param(param, fn) {
    const names = this.paramNames.map((p) => p.name);
    const x = names.indexOf(param);
    if (x === -1) return this;
    const middleware = function paramMiddleware(ctx, next) {
      return fn.call(this, ctx.params[param], ctx, next);
    };
    middleware.param = param;
    const stack = this.stack;
    let i = 0;
    for (; i < stack.length; i++) {
      const p = stack[i].param;
      if (!p || names.indexOf(p) > x) break;
    }
    stack.splice(i, 0, middleware);
    return this;
  }

  setPrefix(prefix) {
    if (typeof this.path === 'string' && this.path) {
      this.path = this.path !== '/' || this.opts.strict === true ? `${prefix}${this.path}` : prefix;
      this.compilePath();
    }
    return this;
  }

  clone() {
    const layer = Object.create(Layer.prototype);
    Object.assign(layer, this);
    layer.stack = this.stack.slice();
    layer.methods = this.methods.slice();
    return layer;
  }
}

class Router {
  constructor(opts = {}) {
    this.opts = opts;
    this.methods = opts.methods || ['HEAD', 'OPTIONS', 'GET', 'PUT', 'PATCH', 'POST', 'DELETE'];
    this.exclusive = !!opts.exclusive;
    this.host = opts.host;
    this.params = {};
    this.stack = [];
  }

  static url(path, ...args) {
    return Layer.prototype.url.apply({ path }, args);
  }

  // router.use([path | paths], ...middleware | router.routes())
  use(...middleware) {
    if (Array.isArray(middleware[0]) && typeof middleware[0][0] === 'string') {
      const paths = middleware[0];
      for (const p of paths) this.use(p, ...middleware.slice(1));
      return this;
    }
    const hasPath = typeof middleware[0] === 'string';
    const path = hasPath ? middleware.shift() : undefined;
    const prefixHasParam = !!this.opts.prefix && compile(this.opts.prefix).keys.length > 0;

    for (const m of flatten(middleware)) {
      if (m && m.router) {
        // Mount a router: copy its layers under our path and prefix.
        const nested = m.router;
        const copies = [];
        for (const layer of nested.stack) {
          const copy = layer.clone();
          if (path) copy.setPrefix(path);
          if (this.opts.prefix) copy.setPrefix(this.opts.prefix);
          this.stack.push(copy);
          copies.push(copy);
        }
        for (const key of Object.keys(this.params)) {
          for (const copy of copies) copy.param(key, this.params[key]);
        }
      } else {
        this.register(path || '([^/]*)', [], m, {
          end: false,
          ignoreCaptures: !hasPath && !prefixHasParam,
        });
      }
    }
    return this;
  }

  prefix(prefix) {
    prefix = prefix.replace(/\/$/, '');
    this.opts.prefix = prefix;
    for (const layer of this.stack) layer.setPrefix(prefix);
    return this;
  }

  // The middleware that dispatches to matching routes.
  routes() {
    const router = this;
    const dispatch = function dispatch(ctx, next) {
      if (router.host !== undefined && !router.matchHost(ctx.host)) return next();
      const path = router.opts.routerPath || ctx.newRouterPath || ctx.path || ctx.routerPath;
      const matched = router.match(path, ctx.method);
      if (ctx.matched) ctx.matched.push(...matched.path);
      else ctx.matched = matched.path;
      ctx.router = router;
      if (!matched.route) return next();

      const layers = matched.pathAndMethod;
      const last = layers[layers.length - 1];
      ctx._matchedRoute = last.path;
      if (last.name) ctx._matchedRouteName = last.name;
      return runLayers(ctx, path, layers, next);
    };
    dispatch.router = this;
    return dispatch;
  }

  middleware() { return this.routes(); }

  allowedMethods(options = {}) {
    const implemented = this.methods;
    return async function allowedMethods(ctx, next) {
      await next();
      if (ctx.status && ctx.status !== 404) return;
      const allowed = {};
      if (ctx.matched) {
        for (const route of ctx.matched) {
          for (const method of route.methods) allowed[method] = method;
        }
      }
      const allowedList = Object.keys(allowed);
      if (!implemented.includes(ctx.method)) {
        if (options.throw) {
          throw typeof options.notImplemented === 'function' ? options.notImplemented() : createError(501);
        }
        ctx.status = 501;
        ctx.set('Allow', allowedList.join(', '));
      } else if (allowedList.length > 0) {
        if (ctx.method === 'OPTIONS') {
          ctx.status = 200;
          ctx.body = '';
          ctx.set('Allow', allowedList.join(', '));
        } else if (!allowed[ctx.method]) {
          if (options.throw) {
            throw typeof options.methodNotAllowed === 'function' ? options.methodNotAllowed() : createError(405);
          }
          ctx.status = 405;
          ctx.set('Allow', allowedList.join(', '));
        }
      }
    };
  }

  all(name, path, ...middleware) {
    return this.verb(kAllMethods, name, path, middleware);
  }

  redirect(source, destination, code) {
    if (typeof source === 'symbol' || (typeof source === 'string' && source[0] !== '/')) {
      const url = this.url(source);
      if (url instanceof Error) throw url;
      source = url;
    }
    if (typeof destination === 'symbol' || (typeof destination === 'string' && destination[0] !== '/' && !destination.includes('://'))) {
      const url = this.url(destination);
      if (url instanceof Error) throw url;
      destination = url;
    }
    return this.all(source, (ctx) => {
      ctx.redirect(destination);
      ctx.status = code || 301;
    });
  }

  register(path, methods, middleware, opts = {}) {
    if (Array.isArray(path)) {
      for (const p of path) this.register(p, methods, middleware, opts);
      return this;
    }
    const layer = new Layer(path, methods, middleware, {
      end: opts.end !== false,
      name: opts.name,
      sensitive: opts.sensitive || this.opts.sensitive || false,
      strict: opts.strict || this.opts.strict || false,
      prefix: opts.prefix || this.opts.prefix || '',
      ignoreCaptures: opts.ignoreCaptures,
    });
    if (this.opts.prefix) layer.setPrefix(this.opts.prefix);
    for (const key of Object.keys(this.params)) layer.param(key, this.params[key]);
    this.stack.push(layer);
    return layer;
  }

  route(name) {
    for (const layer of this.stack) {
      if (layer.name && layer.name === name) return layer;
    }
    return false;
  }

  url(name, ...params) {
    const route = this.route(name);
    if (route) return route.url(...params);
    return new Error(`No route found for name: ${String(name)}`);
  }

  match(path, method) {
    // The arrays are made with their first layer (most paths match one):
    // an empty array's first push reserves room for 16.
    let onPath = null;
    let withMethod = null;
    let route = false;
    const stack = this.stack.length < kIndexFrom ? this.stack : this.index().candidates(path);
    for (let i = 0; i < stack.length; i++) {
      const layer = stack[i];
      if (!layer.regexp.test(path)) continue;
      if (onPath === null) onPath = [layer];
      else onPath.push(layer);
      if (layer.methods.length === 0 || layer.methods.includes(method)) {
        if (withMethod === null) withMethod = [layer];
        else withMethod.push(layer);
        if (layer.methods.length > 0) route = true;
      }
    }
    const matched = { path: onPath === null ? [] : onPath, pathAndMethod: withMethod === null ? [] : withMethod, route };
    if (this.exclusive && matched.route) {
      let lastRoute = null;
      for (const layer of matched.pathAndMethod) if (layer.methods.length > 0) lastRoute = layer;
      matched.pathAndMethod = [lastRoute];
    }
    return matched;
  }

  // The trie over this.stack, rebuilt when the stack or a pattern in it
  // changed (checked on every use: two identity tests per layer, against a
  // RegExp test per layer without it).
  index() {
    let index = this._index;
    if (index === undefined || !index.current(this.stack)) {
      index = new PathIndex(this.stack);
      Object.defineProperty(this, '_index', { value: index, writable: true, configurable: true });
    }
    return index;
  }

  matchHost(input) {
    const host = this.host;
    if (!host) return true;
    if (!input) return false;
    if (typeof host === 'string') return input === host;
    if (host instanceof RegExp) return host.test(input);
    return false;
  }

  param(param, middleware) {
    this.params[param] = middleware;
    for (const layer of this.stack) layer.param(param, middleware);
    return this;
  }

  // Shared body of get/post/...: (name?, path | paths, ...middleware).
  verb(methods, name, path, middleware) {
    if (typeof path === 'string' || path instanceof RegExp || (Array.isArray(path) && typeof name === 'string')) {
      // named route
    } else {
      middleware = [path, ...middleware];
      path = name;
      name = null;
    }
    if (typeof path !== 'string' && !(path instanceof RegExp) && (!Array.isArray(path) || path.length === 0)) {
      throw new Error(`You have to provide a path when adding a ${methods.length > 1 ? 'all' : methods[0]} handler`);
    }
    this.register(path, methods, middleware, { name });
    return this;
  }
}

// Tables this long are matched through a PathIndex; shorter ones layer by
// layer (a few RegExp tests cost less than checking and walking the index).
const kIndexFrom = 16;

// The layers that may match a path, by the literal segments their patterns
// start with. A layer whose pattern begins '/api/v1/users/:id' can only match
// a path whose first segments are 'api', 'v1', 'users': it sits at that node
// of the trie. Layers with no such segments (a parameter or RegExp first,
// router.use() without a path) sit at the root. Each node keeps, in
// registration order, its own layers and those of every node above it, so a
// request walks down by its segments and tests the list where the walk ends:
// a superset of the layers that match, in the order of the stack, each still
// tested by its RegExp. Segments are compared lower-cased (case-sensitive
// layers only get extra candidates) and cut at '/', '#' and '?' (what a
// pattern's segment may not contain). Only ASCII literals are keyed: a
// case-insensitive RegExp never matches a non-ASCII character with an ASCII
// one, but toLowerCase() could disagree with it on non-ASCII pairs.
class PathIndex {
  constructor(stack) {
    this.layers = stack.slice();
    this.patterns = stack.map((layer) => layer.regexp);
    const root = { children: new Map(), own: [], layers: null };
    for (let i = 0; i < stack.length; i++) {
      let node = root;
      for (const segment of literalSegments(stack[i])) {
        let child = node.children.get(segment);
        if (child === undefined) {
          child = { children: new Map(), own: [], layers: null };
          node.children.set(segment, child);
        }
        node = child;
      }
      node.own.push(i);
    }
    const fill = (node, above) => {
      // Both lists are in stack order: merge them.
      const merged = [];
      let a = 0;
      let b = 0;
      while (a < above.length || b < node.own.length) {
        if (b === node.own.length || (a < above.length && above[a] < node.own[b])) merged.push(above[a++]);
        else merged.push(node.own[b++]);
      }
      node.layers = merged.map((i) => stack[i]);
      for (const child of node.children.values()) fill(child, merged);
    };
    fill(root, []);
    this.root = root;
  }

  // Whether `stack` holds the layers this index was built from, with the
  // same patterns.
  current(stack) {
    if (stack.length !== this.layers.length) return false;
    for (let i = 0; i < stack.length; i++) {
      if (stack[i] !== this.layers[i] || stack[i].regexp !== this.patterns[i]) return false;
    }
    return true;
  }

  candidates(path) {
    let node = this.root;
    if (typeof path !== 'string' || path.charCodeAt(0) !== 47 /* / */) return node.layers;
    const n = path.length;
    let start = 1;
    while (start <= n && node.children.size > 0) {
      let end = start;
      for (; end < n; end++) {
        const c = path.charCodeAt(end);
        if (c === 47 || c === 35 /* # */ || c === 63 /* ? */) break;
      }
      const child = node.children.get(path.slice(start, end).toLowerCase());
      if (child === undefined) break;
      node = child;
      start = end + 1;
    }
    return node.layers;
  }
}

// The whole segments of literal text a layer's pattern starts with,
// lower-cased: '/api/v1/users/:id' -> ['api', 'v1', 'users']; '/files.:ext'
// -> [] (its first segment is 'files' followed by more); a RegExp or a
// pattern starting with a parameter -> [].
function literalSegments(layer) {
  const tokens = layer.tokens;
  if (layer.tokensOf !== layer.regexp || !tokens || tokens.length === 0 || typeof tokens[0] !== 'string') return [];
  const text = tokens[0];
  if (text[0] !== '/') return [];
  const parts = text.split('/');
  // The text's last segment is whole only if the pattern ends there or a
  // parameter or group led by '/' comes next.
  const next = tokens[1];
  const lastWhole = next === undefined || (typeof next !== 'string' && next.prefix[0] === '/');
  const whole = parts.slice(1, lastWhole ? parts.length : parts.length - 1);
  const out = [];
  for (const segment of whole) {
    if (segment === '' || !/^[\x21-\x7e]+$/.test(segment) || /[#?]/.test(segment)) break;
    out.push(segment.toLowerCase());
  }
  return out;
}

// Runs the middleware of the matched layers in order; entering a layer
// sets ctx.params from its captures. `next` of the last step is the app's.
function runLayers(ctx, path, layers, done) {
  let last = -1;
  let counter = 0;
  const step = (layerIndex, fnIndex, n) => {
    if (n <= last) return Promise.reject(new Error('next() called multiple times'));
    last = n;
    let layer = layers[layerIndex];
    while (layer !== undefined && fnIndex >= layer.stack.length) {
      layer = layers[++layerIndex];
      fnIndex = 0;
    }
    if (layer === undefined) {
      if (typeof done !== 'function') return Promise.resolve();
      try {
        return Promise.resolve(done());
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (fnIndex === 0) {
      const captures = layer.captures(path);
      ctx.captures = captures;
      ctx.request.params = ctx.params = layer.params(path, captures, ctx.params);
      ctx.routerPath = layer.path;
      ctx.routerName = layer.name;
      ctx._matchedRoute = layer.path;
      if (layer.name) ctx._matchedRouteName = layer.name;
    }
    const fn = layer.stack[fnIndex];
    const nextN = ++counter;
    try {
      return Promise.resolve(fn(ctx, () => step(layerIndex, fnIndex + 1, nextN)));
    } catch (err) {
      return Promise.reject(err);
    }
  };
  return step(0, 0, counter);
}

// get/post/put/... for every HTTP method, and del as delete.
for (const method of kAllMethods) {
  Router.prototype[method] = function (name, path, ...middleware) {
    return this.verb([method], name, path, middleware);
  };
}
Router.prototype.del = Router.prototype.delete;

Router.Layer = Layer;
Router.PathIndex = PathIndex;

module.exports = { Router, Layer };
