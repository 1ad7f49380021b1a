'use strict';
// For the inspector tests: each thread's environment tags itself with its
// threadId; requests answer it.
const http = require('http');
const { threadId } = require('worker_threads');
globalThis.threadTag = `thread-${threadId}`;
const server = http.createServer((req, res) => res.end(globalThis.threadTag));
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
