// Runs once in each reactor thread's Node environment, before user code:
// makes require('kuai') resolvable, installs kuai's server side of `http`, then
// runs the main script (or -e source) as Node would.
// Called with (process, internalRequire, binding) from scripting/environment.cc.
(function bootstrap(process, internalRequire, binding) {
  'use strict';
  const path = internalRequire('path');
  const { Module } = internalRequire('internal/modules/cjs/loader');

  // kuai's own modules live in the binary under a virtual folder.
  const kRoot = '/@kuai/';
  const sources = binding.sources;
  const virtualCache = new Map();

  function virtualPath(request, parent) {
    if (request === 'kuai' || request === 'node:kuai') return kRoot + 'kuai/index.js';
    if (!parent || typeof parent.filename !== 'string' || !parent.filename.startsWith(kRoot)) {
      return null;
    }
    if (!request.startsWith('./') && !request.startsWith('../')) return null;
    let p = path.posix.join(path.posix.dirname(parent.filename), request);
    if (!p.endsWith('.js')) p += '.js';
    return sources[p.slice(kRoot.length)] !== undefined ? p : null;
  }

  // Modules that need the native binding get it when first loaded.
  const installers = {
    'http_client.js': (exports) => exports.install(binding),
  };

  function loadVirtual(file) {
    const cached = virtualCache.get(file);
    if (cached) return cached.exports;
    const m = new Module(file, null);
    m.filename = file;
    m.paths = [];
    virtualCache.set(file, m);
    const name = file.slice(kRoot.length);
    m._compile(sources[name], file);
    if (installers[name]) installers[name](m.exports);
    m.loaded = true;
    return m.exports;
  }

  const originalLoad = Module._load;
  Module._load = function load(request, parent, isMain) {
    const v = typeof request === 'string' ? virtualPath(request, parent) : null;
    if (v) return loadVirtual(v);
    return originalLoad.apply(this, arguments);
  };

  // Node 18's V8 (10.2) lacks a few things current npm packages use.
  installPolyfills(internalRequire);

  // process.exit() ends the process; anything else that ends an environment
  // (an uncaught exception) only replaces that environment.
  const reallyExit = process.reallyExit;
  process.reallyExit = function kuaiReallyExit(code) {
    binding.markExit();
    return reallyExit.call(process, code);
  };

  // The server side of http (and node:http: the same exports object).
  const install = loadVirtual(kRoot + 'http_server.js');
  install(internalRequire('http'), binding, internalRequire('https'));

  if (binding.apps.length) {
    // kuai --config with app routes: every app script is loaded here; what it
    // exports answers its route.
    const http = internalRequire('http');
    for (const app of binding.apps) {
      const exported = Module._load(app, null, false);
      let handler = exported && exported.__esModule && exported.default ? exported.default : exported;
      if (handler && typeof handler.callback === 'function' && typeof handler.use === 'function') {
        handler = handler.callback();  // a Koa or kuai App
      }
      if (typeof handler !== 'function') {
        throw new TypeError(`${app}: an app route's script must export a request handler ` +
          `(req, res) => {} or an app with callback(); it exports ${typeof handler}`);
      }
      http.createServer(handler)._kuaiRoute(app);
    }
    installUncaughtHandler();
    return undefined;
  }
  if (binding.hasEval) {
    const cwd = process.cwd();
    const m = new Module('[eval]', null);
    m.filename = path.join(cwd, '[eval]');
    m.paths = Module._nodeModulePaths(cwd);
    m.loaded = true;
    const result = m._compile(binding.eval, m.filename);
    installUncaughtHandler();
    return result;
  }
  process.argv[1] = path.resolve(process.argv[1]);
  const result = Module.runMain(process.argv[1]);
  installUncaughtHandler();
  return result;

  // Once the main script has run: an exception nobody catches ends only this
  // thread's environment (replaced by a fresh one), unless the script listens
  // for 'uncaughtException' itself.
  function installPolyfills(req) {
    const define = (proto, name, fn) => {
      if (typeof proto[name] !== 'function') {
        Object.defineProperty(proto, name, { value: fn, writable: true, configurable: true });
      }
    };
    const arrayLikes = [Array.prototype, Object.getPrototypeOf(Int8Array.prototype)];
    for (const proto of arrayLikes) {
      define(proto, 'toReversed', function toReversed() {
        return Array.prototype.slice.call(this).reverse();
      });
      define(proto, 'toSorted', function toSorted(compare) {
        if (compare !== undefined && typeof compare !== 'function') {
          throw new TypeError('The comparison function must be either a function or undefined');
        }
        return Array.prototype.slice.call(this).sort(compare);
      });
      define(proto, 'with', function withAt(index, value) {
        const copy = Array.prototype.slice.call(this);
        const len = copy.length;
        let i = Math.trunc(Number(index)) || 0;
        if (i < 0) i += len;
        if (i < 0 || i >= len) throw new RangeError('Invalid index : ' + index);
        copy[i] = value;
        return copy;
      });
    }
    define(Array.prototype, 'toSpliced', function toSpliced(...args) {
      const copy = Array.prototype.slice.call(this);
      copy.splice(...args);
      return copy;
    });
    // Globals that frameworks test for (Koa 3 checks Blob, ReadableStream, Response).
    const globals = [
      ['Blob', () => req('buffer').Blob],
      ['ReadableStream', () => req('stream/web').ReadableStream],
      ['WritableStream', () => req('stream/web').WritableStream],
      ['TransformStream', () => req('stream/web').TransformStream],
    ];
    for (const [name, get] of globals) {
      if (typeof globalThis[name] === 'undefined') {
        try {
          const value = get();
          if (value) {
            Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
          }
        } catch {}
      }
    }
  }

  function installUncaughtHandler() {
    process.on('uncaughtException', function kuaiUncaughtException(err) {
      if (process.listenerCount('uncaughtException') > 1) return;
      const text = err && err.stack ? err.stack : String(err);
      process._rawDebug(`Uncaught ${text}`);
      binding.restart('an uncaught exception');
    });
  }
});
