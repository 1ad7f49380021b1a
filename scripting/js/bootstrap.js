// Runs once in each reactor thread's Node environment, before user code: makes
// require('kuai') (and import 'kuai') resolvable, installs kuai's server side of
// `http`, opens this thread's inspector when asked, then runs what the command
// line says (the main script, -e/-p code, the REPL, or a config file's apps) as
// Node would.
// Called with (process, require, binding) from scripting/environment.cc;
// `require` loads Node's public builtins.
(function bootstrap(process, require, binding) {
  'use strict';
  const path = require('path');
  const fs = require('fs');
  const Module = require('module');
  const { pathToFileURL, fileURLToPath } = require('url');

  // kuai's own modules live in the binary under a virtual folder.
  const kRoot = '/@kuai/';
  const kRootURL = 'file://' + kRoot;
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
    'fetch_server.js': (exports) => exports.install(binding),
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

  // require('kuai'): CommonJS's loader asks Module._load first.
  const originalLoad = Module._load;
  Module._load = function load(request, parent, isMain) {
    const v = typeof request === 'string' ? virtualPath(request, parent) : null;
    if (v) return loadVirtual(v);
    return originalLoad.apply(this, arguments);
  };

  // The main script's file (absolute, symlinks resolved as Node does).
  let mainFile = null;
  if (binding.script) {
    try {
      mainFile = fs.realpathSync(Module._findPath(path.resolve(binding.script), null, true) ||
                                 path.resolve(binding.script));
    } catch {
      mainFile = path.resolve(binding.script);
    }
  }
  const kStarted = Symbol.for('kuai.started');
  const watching = binding.watch && binding.reactor === 0;
  const loadedFiles = [];
  let reportScheduled = false;
  function recordLoaded(file) {
    if (file.includes('/node_modules/')) return;
    loadedFiles.push(file);
    if (!reportScheduled) {
      reportScheduled = true;
      setImmediate(() => {
        reportScheduled = false;
        binding.watchFiles(loadedFiles.splice(0));
      }).unref();
    }
  }

  // import 'kuai' (ES modules), the end of an ES module entry's evaluation
  // (the script has started), and with --watch the files this thread loads.
  const kEsmIndex = kRootURL + 'kuai/index.mjs';
  const kClusterModules = new Set(['cluster', 'node:cluster', 'dgram', 'node:dgram']);
  let clusterWorker = null;  // js/cluster_worker.js's install, once loaded
  let mainURL = null;  // the main script's URL when it is an ES module
  Module.registerHooks({
    resolve(specifier, context, next) {
      if (clusterWorker !== null && kClusterModules.has(specifier)) clusterWorker();
      if (specifier === 'kuai' || specifier === 'node:kuai') {
        if (!context.conditions || !context.conditions.includes('require')) {
          return { url: kEsmIndex, format: 'module', shortCircuit: true };
        }
      }
      return next(specifier, context);
    },
    load(url, context, next) {
      if (url === kEsmIndex) {
        const names = Object.keys(loadVirtual(kRoot + 'kuai/index.js')).filter((n) => /^[A-Za-z_$][\w$]*$/.test(n));
        const source = `import { createRequire } from 'node:module';\n` +
          `const kuai = createRequire(${JSON.stringify(kRoot + 'kuai/index.js')})('kuai');\n` +
          `export default kuai;\n` +
          names.map((n) => `export const ${n} = kuai.${n};\n`).join('');
        return { format: 'module', source, shortCircuit: true };
      }
      const result = next(url, context);
      if (url.startsWith('file:')) {
        const file = fileURLToPath(url);
        if (watching) recordLoaded(file);
        if (file === mainFile && result.format === 'module' && result.source != null) {
          mainURL = url;
          const text = typeof result.source === 'string' ? result.source : Buffer.from(result.source).toString();
          result.source = `${text}\n;globalThis[Symbol.for('kuai.started')]?.();\n`;
        }
      }
      return result;
    },
  });

  // process.exit() ends the process; anything else that ends an environment
  // (an uncaught exception) only replaces that environment.
  const reallyExit = process.reallyExit;
  process.reallyExit = function kuaiReallyExit(code) {
    binding.markExit();
    return reallyExit.call(process, code);
  };

  // The server side of http (and node:http: the same exports object).
  const httpServer = loadVirtual(kRoot + 'http_server.js');
  httpServer(require('http'), binding, require('https'));
  loadVirtual(kRoot + 'http2_server.js')(require('http2'));
  // This environment is a cluster worker (installed before the first net
  // listen, or when the script loads cluster or dgram).
  clusterWorker = loadVirtual(kRoot + 'cluster_worker.js')(binding, require, httpServer.listeningServers);

  if (binding.inspect) openInspector();
  const afterStart = [];
  let importer = null;  // dynamicImport()'s function
  // --inspect-brk: a breakpoint on the first line of the main script (in a
  // session of our own, removed once the script has started); the debugger
  // that attached sees the pause there, as with node --inspect-brk.
  const breakAtEntry = binding.inspect === 'brk' ? (file) => {
    if (!file) return;
    const inspector = require('inspector');
    const session = new inspector.Session();
    session.connect();
    session.post('Debugger.enable');
    const esc = (t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    session.post('Debugger.setBreakpointByUrl', {
      lineNumber: 0,
      urlRegex: `^(${esc(file)}|${esc(pathToFileURL(file).href)})$`,
    });
    afterStart.push(() => session.disconnect());
  } : null;

  if (binding.apps.length) {
    // kuai --config with app routes: every app script is loaded here; what it
    // exports answers its route.
    const http = require('http');
    for (const app of binding.apps) {
      const exported = Module._load(app, null, false);
      const isNamespace = exported && exported[Symbol.toStringTag] === 'Module';
      let handler = exported && (exported.__esModule || isNamespace) && exported.default ? exported.default : exported;
      if (handler && typeof handler.callback === 'function' && typeof handler.use === 'function') {
        handler = handler.callback();  // a Koa or kuai App
      } else if (typeof handler !== 'function') {
        const target = fetchServer().fetchTarget(exported);
        if (target) {
          fetchServer().serveModule(target, app);  // { fetch } (Deno, Bun, Workers, Hono)
          continue;
        }
      }
      if (typeof handler !== 'function') {
        throw new TypeError(`${app}: an app route's script must export a request handler ` +
          `(req, res) => {}, an app with callback() or an object with fetch(request); ` +
          `it exports ${typeof handler}`);
      }
      http.createServer(handler)._kuaiRoute(app);
    }
    return started();
  }

  // -r and --import, before the script, in every environment (Node's order).
  if (binding.requires.length) Module._preloadModules(binding.requires);
  if (binding.imports.length) {
    const load = dynamicImport();
    let chain = Promise.resolve();
    for (const specifier of binding.imports) chain = chain.then(() => load(specifier));
    chain.then(runEntry, (err) => { throw err; });
    return undefined;
  }
  return runEntry();

  function runEntry() {
    // -i with a script runs the script (as node); with -e, the code then the REPL.
    if (binding.repl && !binding.script) {
      if (binding.eval) evaluate(false);
      return startRepl();
    }
    if (binding.hasEval) return evaluate(true);
    process.argv[1] = path.resolve(process.argv[1]);
    let entryDone = false;
    globalThis[kStarted] = () => {
      delete globalThis[kStarted];
      entryDone = true;
      if (mainURL !== null) {
        // An ES module: its namespace, for a default export with fetch().
        dynamicImport()(mainURL).then((ns) => {
          serveDefault(ns);
          started();
        }, (err) => { throw err; });
        return;
      }
      serveDefault(process.mainModule ? process.mainModule.exports : null);
      started();
    };
    if (breakAtEntry) breakAtEntry(mainFile);
    Module.runMain(process.argv[1]);
    // A CommonJS entry has run by now; an ES module one says so itself
    // (kStarted, appended to its source) once it has evaluated.
    if (!entryDone && process.mainModule && process.mainModule.loaded) globalThis[kStarted]();
    return undefined;
  }

  // A main script whose default export (or module.exports) has fetch() is
  // served as `deno serve` serves it, on --host/--port.
  function serveDefault(exported) {
    if (!mayHaveFetch(exported)) return;  // most scripts: js/fetch_server.js stays unloaded
    const target = fetchServer().fetchTarget(exported);
    if (target) fetchServer().serveModule(target);
  }

  function mayHaveFetch(exported) {
    if (exported === null || (typeof exported !== 'object' && typeof exported !== 'function')) return false;
    const d = exported.default;
    return typeof exported.fetch === 'function' || (d != null && typeof d.fetch === 'function');
  }

  function fetchServer() {
    return loadVirtual(kRoot + 'fetch_server.js');
  }

  function dynamicImport() {
    if (importer === null) {
      const m = new Module(path.join(process.cwd(), '[kuai-import]'), null);
      m.filename = path.join(process.cwd(), '[kuai-import]');
      m.paths = Module._nodeModulePaths(process.cwd());
      importer = m._compile('module.exports = (s) => import(s);', m.filename) || m.exports;
    }
    return importer;
  }

  // -e / -p CODE (or the code read from stdin), as Node runs it: a script in
  // the global scope named [eval], with module, exports, require and
  // __dirname of a module in the current directory.
  function evaluate(start) {
    const cwd = process.cwd();
    const name = '[eval]';
    const m = new Module(name, null);
    m.filename = path.join(cwd, name);
    m.paths = Module._nodeModulePaths(cwd);
    globalThis.__filename = name;
    // As node -e / -p (not code read from stdin): the public builtins as
    // globals, each required on first use and replaceable by assignment.
    if (!binding.evalStdin) builtinsAsGlobals(m);
    const wrapper = m._compile('globalThis.module = module; globalThis.exports = exports; ' +
      'globalThis.__dirname = __dirname; globalThis.require = require; return (main) => main();',
    `${name}-wrapper`);
    const vm = require('vm');
    const result = wrapper(() => vm.runInThisContext(binding.eval, {
      filename: name,
      importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    }));
    if (binding.print && binding.reactor === 0) {
      // As `node -p`: the value is printed when the process exits.
      process.on('exit', () => console.log(result));
    }
    if (start) started();
    return result;
  }

  function builtinsAsGlobals(m) {
    for (const name of Module.builtinModules) {
      if (name[0] === '_' || name.includes('/') || name.includes(':')) continue;
      if (Object.prototype.hasOwnProperty.call(globalThis, name)) continue;
      const replace = (value) => {
        delete globalThis[name];
        globalThis[name] = value;
      };
      Object.defineProperty(globalThis, name, {
        get() {
          const exports = m.require(name);
          Object.defineProperty(globalThis, name, {
            get: () => exports, set: replace, configurable: true, enumerable: false,
          });
          return exports;
        },
        set: replace,
        configurable: true,
        enumerable: false,
      });
    }
  }

  // Node's REPL, on thread 0 (require('kuai') works in it).
  function startRepl() {
    if (binding.reactor !== 0) return started();
    const repl = require('repl');
    const os = require('os');
    if (process.stdin.isTTY) {
      process.stdout.write(`Welcome to kuai ${binding.version} (Node.js ${process.version}).\n` +
        'Type ".help" for more information.\n');
    }
    const server = repl.start({ prompt: '> ', useGlobal: true, terminal: process.stdin.isTTY });
    const history = process.env.NODE_REPL_HISTORY !== undefined ? process.env.NODE_REPL_HISTORY
      : path.join(os.homedir(), '.node_repl_history');
    if (history && process.stdin.isTTY) server.setupHistory(history, () => {});
    server.on('exit', () => process.exit());
    return started();
  }

  function started() {
    installUncaughtHandler();
    for (const fn of afterStart.splice(0)) fn();
    binding.started();
    return undefined;
  }

  // --inspect[-brk|-wait]: this thread's own inspector (port + thread index),
  // printed by Node as "Debugger listening on ws://...".
  function openInspector() {
    const inspector = require('inspector');
    binding.lockInspector();
    try {
      inspector.open(binding.inspectPort, binding.inspectHost, false);
    } finally {
      binding.unlockInspector();
    }
    if (binding.inspect === 'wait' || binding.inspect === 'brk') inspector.waitForDebugger();
  }

  // Once the entry has started: an exception nobody catches ends only this
  // thread's environment (replaced by a fresh one), unless the script listens
  // for 'uncaughtException' itself.
  function installUncaughtHandler() {
    process.on('uncaughtException', function kuaiUncaughtException(err) {
      if (process.listenerCount('uncaughtException') > 1) return;
      const text = err && err.stack ? err.stack : String(err);
      process._rawDebug(`Uncaught ${text}`);
      binding.restart('an uncaught exception');
    });
  }
});
