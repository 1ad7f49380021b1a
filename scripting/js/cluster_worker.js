// Each reactor's environment is a cluster worker, as each process that Node's
// cluster primary forks is one: `cluster.isPrimary` is false, `cluster.worker`
// is this reactor's (id = reactor index + 1), so a script written for
// `cluster` runs its worker branch on every core, and its primary branch (the
// forks) does not run: the reactors are the workers. PM2's cluster mode runs
// scripts the same way.
//
// A worker's net.Server and dgram.Socket ask the primary for their socket
// (cluster._getServer); here kuai plays the primary: a TCP or UDP port is
// opened with SO_REUSEPORT in every environment (the kernel spreads the
// connections), a Unix socket once and shared. Without this every reactor
// after the first would fail with EADDRINUSE.
//
// Installed lazily (loading `cluster` costs a millisecond and child_process):
// before the first net listen, and when a script loads cluster or dgram.
'use strict';

const kUdpIpv6Only = 1;  // libuv's UV_UDP_IPV6ONLY

// httpServers(): this environment's listening http/https/http2 servers.
module.exports = function install(binding, require, httpServers) {
  const net = require('net');
  let installed = false;
  const listenCounts = new Map();  // host:port -> listens so far (the key's order)
  const opened = new Set();  // net.Servers and dgram.Sockets listening through us

  const originalListen = net.Server.prototype.listen;
  net.Server.prototype.listen = function listen(...args) {
    ensure();
    return originalListen.apply(this, args);
  };

  function ensure() {
    if (installed) return;
    installed = true;
    const cluster = require('cluster');
    const dgram = require('dgram');
    const Worker = cluster.Worker;
    // The primary's own API (fork, workers, settings, ...) is not a worker's.
    for (const key of Object.keys(cluster)) {
      if (key[0] !== '_' || key === '_setupWorker' || key === '_getServer') delete cluster[key];
    }
    cluster.isWorker = true;
    cluster.isMaster = false;
    cluster.isPrimary = false;
    cluster.worker = makeWorker(Worker);
    cluster.Worker = Worker;
    cluster._setupWorker = () => {};
    cluster._getServer = (obj, options, cb) => {
      if (obj instanceof net.Server) return listenNet(obj, options);
      if (obj instanceof dgram.Socket) return bindUdp(dgram, obj, options, cb);
      throw new TypeError('cluster._getServer: a net.Server or a dgram.Socket is expected');
    };
  }

  function nextKey(base) {
    const n = listenCounts.get(base) || 0;
    listenCounts.set(base, n + 1);
    return `${base}#${n}`;
  }

  function listenNet(server, { address, port, addressType, fd, flags, backlog }) {
    track(server);
    // A given fd, or IPv6-only: the socket as the script asked for it.
    if ((typeof fd === 'number' && fd >= 0) || flags) {
      return server._listen2(address, port, addressType, backlog, fd, flags);
    }
    if (port < 0) {  // a Unix socket
      const path = address[0] === '\0' ? address : require('path').resolve(address);
      const shared = binding.shareListen('unix', path, path, backlog | 0);
      if (shared < 0) return server._listen2(address, port, addressType, backlog);  // Node's error
      server.once('close', () => binding.shareUnlisten(path));
      return server._listen2(null, null, null, backlog, shared);
    }
    const key = nextKey(`${address}:${port}`);
    let shared = null;
    for (const host of address ? [address] : ['::', '0.0.0.0']) {
      shared = binding.shareListen('tcp', key, host, port);
      if (shared !== null) break;
    }
    // Not to be had (the port is taken, say): Node's own listen says why.
    if (shared === null) return server._listen2(address, port, addressType, backlog, undefined, flags);
    return server._listen2(null, null, null, backlog, shared[0]);
  }

  function bindUdp(dgram, socket, { address, port, addressType, fd, flags }, cb) {
    let result = fd;
    if (!(typeof fd === 'number' && fd >= 0)) {
      const key = nextKey(`${addressType} ${address}:${port}`);
      result = binding.shareListen(addressType, key, address, port | 0, (flags & kUdpIpv6Only) !== 0);
      if (typeof result === 'number') return cb(result, null);  // -errno
      result = result[0];
    }
    // A UDP handle of Node's own around the descriptor (a spare socket's).
    const spare = dgram.createSocket(addressType);
    const state = spare[Object.getOwnPropertySymbols(spare).find((s) => s.description === 'state symbol')];
    const err = state.handle.open(result);
    if (err) return cb(err, null);
    track(socket);
    return cb(0, state.handle);
  }

  function track(obj) {
    obj.once('listening', () => {
      opened.add(obj);
      obj.once('close', () => opened.delete(obj));
    });
  }

  function makeWorker(Worker) {
    class KuaiWorker extends Worker {
      // No primary to talk to: the IPC channel is closed.
      send(...args) {
        const cb = args.findLast((a) => typeof a === 'function');
        if (cb) {
          const e = new Error('Channel closed');
          e.code = 'ERR_IPC_CHANNEL_CLOSED';
          process.nextTick(cb, e);
        }
        return false;
      }
      isConnected() { return false; }
      isDead() { return false; }
      // This worker stops listening: its servers close (the reactor goes on
      // with its connections; the native routes of a config stay).
      disconnect() {
        if (this.state === 'disconnected' || this.state === 'destroying') return this;
        this.exitedAfterDisconnect = true;
        this.state = 'disconnected';
        for (const s of opened) s.close();
        for (const s of httpServers()) s.close();
        process.nextTick(() => this.emit('disconnect'));
        return this;
      }
      // A worker that ends is replaced by a fresh one, as a primary forks
      // again on 'exit': this reactor's environment starts anew.
      destroy() {
        this.exitedAfterDisconnect = true;
        this.state = 'destroying';
        binding.restart('cluster.worker.kill()');
      }
      kill() { this.destroy(); }
    }
    const worker = new KuaiWorker({ id: binding.reactor + 1, process, state: 'online' });
    // 'listening' once one of its servers listens, as Node's worker.
    let state = null;
    Object.defineProperty(worker, 'state', {
      get: () => state ?? (opened.size > 0 || httpServers().length > 0 ? 'listening' : 'online'),
      set: (v) => { state = v; },
      enumerable: true,
      configurable: true,
    });
    return worker;
  }

  return ensure;
};
