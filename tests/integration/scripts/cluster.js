'use strict';
// A script written for Node's cluster module: the primary forks two workers
// (and forks again when one exits); each worker serves HTTP on $PORT, a raw
// TCP server on a port 0 they share, a Unix socket and a UDP socket on a
// port 0 they share. Under kuai each reactor is one of those workers.
// Each worker prints "LISTENING <port> <tcp port> <udp port> <unix path>"
// once all four listen.

const cluster = require('cluster');
const dgram = require('dgram');
const http = require('http');
const net = require('net');
const os = require('os');
const path = require('path');

const port = Number(process.env.PORT);
const sockPath = path.join(os.tmpdir(), `kuai-cluster-test-${port}.sock`);

if (cluster.isPrimary) {
  try { require('fs').unlinkSync(sockPath); } catch {}
  let stopping = false;
  for (let i = 0; i < 2; i++) cluster.fork();
  cluster.on('exit', () => { if (!stopping) cluster.fork(); });
  process.on('SIGTERM', () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill();
    process.exit(0);
  });
} else {
  const id = cluster.worker.id;
  const shape = () => ({
    isPrimary: cluster.isPrimary,
    isMaster: cluster.isMaster,
    isWorker: cluster.isWorker,
    fork: typeof cluster.fork,
    workers: typeof cluster.workers,
    workerKeys: Object.keys(cluster.worker).filter((k) => k[0] !== '_').sort(),
    state: cluster.worker.state,
    processIsOurs: cluster.worker.process === process,
    dead: cluster.worker.isDead(),
  });
  const server = http.createServer((req, res) => {
    if (req.url === '/shape') return res.end(JSON.stringify(shape()));
    if (req.url === '/kill') {
      res.end('bye');
      return setTimeout(() => cluster.worker.kill(), 50);
    }
    return res.end(`worker ${id}`);
  });
  let pending = 4;
  const ready = () => {
    if (--pending > 0) return;
    console.log(`LISTENING ${port} ${tcp.address().port} ${udp.address().port} ${sockPath}`);
  };
  server.listen(port, '127.0.0.1', ready);
  const tcp = net.createServer((c) => c.end(`tcp worker ${id}`)).listen(0, ready);
  const unix = net.createServer((c) => c.end(`unix worker ${id}`)).listen(sockPath, ready);
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, from) => udp.send(`udp worker ${id}: ${msg}`, from.port, from.address));
  udp.bind(0, '127.0.0.1', ready);
  unix.on('error', (e) => console.log(`UNIX ERROR ${e.message}`));
}
