'use strict';
// For the --watch tests: answers "<version> <threadId>", the version from a
// module of its own (the file the test edits).
const http = require('http');
const { threadId } = require('worker_threads');
const version = require('./watch_version.js');
const server = http.createServer((req, res) => {
  // A little asynchronous work, so that requests are in flight at a swap.
  setTimeout(() => res.end(`${version} ${threadId}`), 2);
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port} ${version}`);
});
