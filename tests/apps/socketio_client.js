'use strict';
// The socket.io client for socketio_app.js: node socketio_client.js PORT
// TRANSPORTS (e.g. polling or polling,websocket). Prints one JSON line of
// what came back, or "FAILED ..." and exits 1.
const { io } = require('socket.io-client');

const [port, transports] = [process.argv[2], process.argv[3].split(',')];
const socket = io(`http://127.0.0.1:${port}`, { transports, reconnection: false });
const got = [];
const fail = (why) => {
  console.log(`FAILED ${why} after ${JSON.stringify(got)}`);
  process.exit(1);
};
const timer = setTimeout(() => fail('timeout'), 10000);
socket.on('welcome', (m) => got.push(m));
socket.on('connect_error', (e) => fail(`connect_error ${e.message}`));
socket.on('disconnect', (why) => { if (why !== 'io client disconnect') fail(`disconnect ${why}`); });
socket.on('connect', async () => {
  try {
    got.push(await socket.emitWithAck('echo', 'first'));
    got.push(await socket.emitWithAck('size', Buffer.alloc(200000, 7)));
    got.push(await socket.emitWithAck('join', 'room-1'));
    for (let i = 0; i < 30; i++) got.push(await socket.emitWithAck('echo', i));
    // Long enough for polling,websocket to have upgraded.
    await new Promise((resolve) => setTimeout(resolve, 300));
    got.push(socket.io.engine.transport.name);
    got.push(await socket.emitWithAck('echo', 'last'));
  } catch (e) {
    fail(e.message);
  }
  clearTimeout(timer);
  console.log(JSON.stringify(got));
  socket.disconnect();
});
