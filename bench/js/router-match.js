'use strict';
// Route lookup cost against the size of the table: kuai's Router (a trie of
// literal segments in front of the RegExps from 16 layers on) next to
// @koa/router (every layer's RegExp tested in order), for a REST-shaped
// table `/api/v1/resourceN/:id` plus a few `use()` layers. Prints nanoseconds
// per match() for a hit on the last route, a hit on the first and a miss.
//
//   .deps/node/bin/node bench/js/router-match.js
//
// One process, one core, about 10 s; no network.

const path = require('path');
const root = path.join(__dirname, '..', '..');
const { Router } = require(path.join(root, 'scripting/lib/kuai'));
let KoaRouter = null;
try {
  KoaRouter = require(path.join(root, 'tests/apps/node_modules/@koa/router'));
} catch {
  // tools/setup installs it for the tests; without it only kuai is measured.
}

function table(RouterClass, n) {
  const r = new RouterClass();
  const noop = () => {};
  r.use(noop);
  r.use('/api', noop);
  for (let i = 0; i < n; i++) r.get(`/api/v1/resource${i}/:id`, noop);
  return r;
}

function nsPerMatch(router, n) {
  const paths = [`/api/v1/resource${n - 1}/42`, '/api/v1/resource0/42', '/static/app.js'];
  let sink = 0;
  const run = (count) => {
    for (let k = 0; k < count; k++) sink += router.match(paths[k % 3], 'GET').path.length;
  };
  run(30000);  // warm up
  const count = Math.max(3000, Math.floor(3e6 / n));
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const t = process.hrtime.bigint();
    run(count);
    best = Math.min(best, Number(process.hrtime.bigint() - t) / count);
  }
  if (sink === 0) throw new Error('nothing matched');
  return best;
}

console.log('routes   kuai ns/match   @koa/router ns/match');
for (const n of [4, 8, 16, 50, 200, 1000]) {
  const kuai = nsPerMatch(table(Router, n), n);
  const koa = KoaRouter ? nsPerMatch(table(KoaRouter, n), n) : NaN;
  console.log(`${String(n).padStart(6)}   ${kuai.toFixed(0).padStart(13)}   ${koa.toFixed(0).padStart(20)}`);
}
