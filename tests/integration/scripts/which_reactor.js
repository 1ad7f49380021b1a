'use strict';
// Answers every request with an id drawn when this environment loaded the
// script: one per reactor thread, so a client sees which reactor served it.
const http = require('http');

const id = Math.random().toString(36).slice(2, 10);
const server = http.createServer((req, res) => res.end(id));
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
