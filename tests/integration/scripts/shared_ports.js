'use strict';
// A script's own net and dgram servers under kuai's reactors (each one a
// cluster worker) report what a single node process reports: a TCP port, a
// UDP port and a Unix socket path that another process holds ($TAKEN_TCP,
// $TAKEN_UDP, $TAKEN_UNIX) give the same 'error'; port 0 is one port for
// every reactor; `exclusive: true` binds on its own. Prints one "ERROR" line
// per failure, then "LISTENING <port> <port-0 tcp> <port-0 udp>".

const dgram = require('dgram');
const http = require('http');
const net = require('net');

const port = Number(process.env.PORT);
const events = [];
let pending = 6;
const done = () => {
  if (--pending > 0) return;
  for (const e of events.sort()) console.log(e);
  console.log(`LISTENING ${port} ${any.address().port} ${anyUdp.address().port}`);
};
const report = (what) => (e) => {
  events.push(`ERROR ${what} ${e.code} ${e.syscall} ${e.message}`);
  done();
};

net.createServer().listen(Number(process.env.TAKEN_TCP), '127.0.0.1', done).on('error', report('tcp'));
net.createServer().listen(process.env.TAKEN_UNIX, done).on('error', report('unix'));
dgram.createSocket('udp4').on('error', report('udp')).bind(Number(process.env.TAKEN_UDP), '127.0.0.1', done);
const any = net.createServer((c) => c.end('tcp')).listen(0, '127.0.0.1', done);
const anyUdp = dgram.createSocket('udp4').bind(0, '127.0.0.1', done);
anyUdp.on('message', (m, from) => anyUdp.send(m, from.port, from.address));
http.createServer((req, res) => res.end('ok')).listen(port, '127.0.0.1', done);
