// Evaluates a JavaScript config file for kuai (`kuai --config kuai.config.js`):
// run by the pinned node as `node -e SOURCE FILE`, it prints {"config": VALUE}
// on stdout, or {"error": {"path", "message"}} when the value holds something
// JSON cannot carry (a function, undefined, a symbol, a Map...); exceptions
// (syntax errors, missing modules) are left to Node, which prints them on
// stderr and exits non-zero. The config's own console output goes to stderr so
// that stdout carries only the result. Embedded in the kuai binary and the
// addon (BUILD.bazel: config_evaluator); server/config_file.cc runs it.
'use strict';
const path = require('path');
const file = path.resolve(process.argv[1]);
const realWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);
let finished = false;
function finish(result) {
  finished = true;
  realWrite(JSON.stringify(result) + '\n', () => process.exit(0));
}
function fail(at, message) { finish({ error: { path: at, message } }); }
process.on('exit', (code) => {
  if (!finished && code === 0) {
    require('fs').writeSync(1, JSON.stringify({ error: { path: '',
      message: 'no config came out (the exported Promise never settled, or the file called process.exit())' } }) + '\n');
  }
});
const ONLY = ' (a config holds only JSON data: objects, arrays, strings, numbers, booleans, null)';
function check(v, at, seen) {
  switch (typeof v) {
    case 'string': case 'boolean': return null;
    case 'number': return Number.isFinite(v) ? null : { at, message: String(v) + ' is not a finite number' };
    case 'function': return { at, message: 'a function cannot be used here' + ONLY };
    case 'undefined': return { at, message: 'the value is undefined (leave the key out instead)' };
    case 'symbol': return { at, message: 'a symbol cannot be used here' + ONLY };
    case 'bigint': return { at, message: 'a BigInt cannot be used here (use a number)' };
  }
  if (v === null) return null;
  if (seen.has(v)) return { at, message: 'circular reference' };
  const proto = Object.getPrototypeOf(v);
  if (Array.isArray(v)) {
    seen.add(v);
    for (let i = 0; i < v.length; i++) {
      const e = check(v[i], at + '[' + i + ']', seen);
      if (e) return e;
    }
    seen.delete(v);
    return null;
  }
  if (proto !== Object.prototype && proto !== null) {
    const name = (proto && proto.constructor && proto.constructor.name) || 'object';
    return { at, message: 'a ' + name + ' cannot be used here' + ONLY };
  }
  seen.add(v);
  for (const k of Object.keys(v)) {
    const e = check(v[k], at ? at + '.' + k : k, seen);
    if (e) return e;
  }
  seen.delete(v);
  return null;
}
async function evaluate(m) {
  if (typeof m === 'function') m = m();
  m = await m;
  if (m !== null && typeof m === 'object' && !Array.isArray(m) &&
      Object.getPrototypeOf(m) === Object.prototype && Object.keys(m).length === 0) {
    return fail('', 'the file exports an empty object (expected module.exports = { listen, routes, ... })');
  }
  const e = check(m, '', new Set());
  if (e) return fail(e.at, e.message);
  finish({ config: m });
}
function importDefault() {
  return import(require('url').pathToFileURL(file).href).then((ns) => {
    if (!('default' in ns)) {
      fail('', 'the module has no default export (expected export default { listen, routes, ... })');
      return new Promise(() => {});
    }
    return ns.default;
  });
}
// An error from the config file: printed as Node prints an uncaught one, but
// without a rethrow from here being shown as its source.
function die(e) {
  if (e instanceof SyntaxError) {  // uncaught, Node shows the file, line and caret
    process.nextTick(() => { throw e; });
    return;
  }
  process.stderr.write(require('util').inspect(e) + '\n');
  process.exit(1);
}
let exported;
if (file.endsWith('.mjs')) {
  exported = importDefault();
} else {
  try {
    exported = require(file);
  } catch (e) {
    if (!e || e.code !== 'ERR_REQUIRE_ESM') die(e);
    exported = importDefault();
  }
}
Promise.resolve(exported).then(evaluate).catch(die);
