// Sockets a script's own net.Server or dgram.Socket listens on, shared by the
// reactors' environments the way Node's cluster workers share what their
// primary opened: each environment is a cluster worker (js/cluster_worker.js)
// and asks here for its socket.
#pragma once

#include <v8.h>

#include <string>

namespace kuai::scripting {

// shareListen('tcp', key, host, port) -> [fd, port] | null
//   A listening TCP socket with SO_REUSEPORT: the first environment to ask
//   for `key` checks that nobody else holds the port (and picks one for port
//   0); the others join that port. null: it cannot be had (the caller lets
//   Node's own listen report why).
// shareListen('udp4' | 'udp6', key, ip, port, v6only) -> [fd, port] | -errno
//   A bound UDP socket, shared the same way.
// shareListen('unix', key, path, backlog) -> fd | -errno
//   One listening Unix socket for every environment (a duplicate each: they
//   share its queue).
void shareListen(const v8::FunctionCallbackInfo<v8::Value>& args);

// shareUnlisten(key): an environment closed its server on a Unix socket; the
// last one to close it unlinks the path, as Node does when its server closes.
void shareUnlisten(const v8::FunctionCallbackInfo<v8::Value>& args);

// The same from C++: a duplicate of the listening Unix socket at `path`
// (bound by the first caller, with `backlog`), or -errno.
int shareUnixSocket(const std::string& path, int backlog);
// One user of `path` is done with it; the last unlinks it.
void releaseUnixSocket(const std::string& path);

}  // namespace kuai::scripting
