'use strict';
// The order in which Node runs queued callbacks, as seen from a request
// handler (an I/O callback), from a request body's events, from a timer and
// from an fs callback. Each route answers with the order it saw.
const http = require('http');
const fs = require('fs');

function queueAll(order, tag) {
  setTimeout(() => order.push(`${tag}timeout`), 0);
  setImmediate(() => order.push(`${tag}immediate`));
  process.nextTick(() => order.push(`${tag}nextTick`));
  Promise.resolve().then(() => order.push(`${tag}promise`));
  queueMicrotask(() => order.push(`${tag}microtask`));
  order.push(`${tag}sync`);
}

function answerLater(res, order) {
  setTimeout(() => res.end(JSON.stringify(order)), 30);
}

const server = http.createServer((req, res) => {
  const order = [];
  if (req.url === '/handler') {
    queueAll(order, '');
    answerLater(res, order);
  } else if (req.url === '/body') {
    req.on('data', () => queueAll(order, 'data:'));
    req.on('end', () => {
      queueAll(order, 'end:');
      answerLater(res, order);
    });
  } else if (req.url === '/timer') {
    setTimeout(() => {
      queueAll(order, '');
      answerLater(res, order);
    }, 5);
  } else if (req.url === '/fs') {
    fs.readFile(__filename, () => {
      queueAll(order, '');
      answerLater(res, order);
    });
  } else if (req.url === '/nested') {
    // nextTick inside a promise job, promise inside a nextTick.
    Promise.resolve().then(() => {
      order.push('promise1');
      process.nextTick(() => order.push('tickFromPromise'));
      Promise.resolve().then(() => order.push('promise2'));
    });
    process.nextTick(() => {
      order.push('tick1');
      Promise.resolve().then(() => order.push('promiseFromTick'));
      process.nextTick(() => order.push('tick2'));
    });
    answerLater(res, order);
  } else {
    res.statusCode = 404;
    res.end();
  }
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
