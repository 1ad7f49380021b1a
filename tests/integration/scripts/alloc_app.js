// Bytes allocated per request, read from V8's heap statistics
// (test_scripting_alloc.py): the benchmark's `app` case itself (kuai's App
// with three middlewares and a router, bench/js/app-def.js), and a bare
// http.createServer answer. GET /__allocated answers V8's running total.
'use strict';
const http = require('http');
const path = require('path');
const v8 = require('v8');
const { App, Router } = require('kuai');

const build = require(path.join(__dirname, '..', '..', '..', 'bench', 'js', 'app-def.js'));
const appHandler = build(App, Router).callback();

http.createServer((req, res) => {
  if (req.url === '/__allocated') {
    res.end(String(v8.getHeapStatistics().total_allocated_bytes));
  } else if (req.url === '/plain') {
    res.end('Hello, World!');
  } else {
    appHandler(req, res);
  }
}).listen(0, '127.0.0.1', function () {
  console.log(`LISTENING ${this.address().port}`);
});
