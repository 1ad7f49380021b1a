'use strict';
// socket.io 4 on an http server: acknowledged events (text and a 200 KB
// binary), a message pushed on connection, rooms. Prints "LISTENING <port>".
const http = require('http');
const { Server } = require('socket.io');

const server = http.createServer((req, res) => res.end(`plain ${req.url}`));
const io = new Server(server);
io.on('connection', (socket) => {
  socket.emit('welcome', `hello over ${socket.conn.transport.name}`);
  socket.on('echo', (msg, ack) => ack(`echo:${msg}`));
  socket.on('size', (buf, ack) => ack(buf.length));
  socket.on('join', (room, ack) => {
    socket.join(room);
    ack([...socket.rooms].filter((r) => r !== socket.id));
  });
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
