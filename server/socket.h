// Socket: an outbound TCP connection (a proxy's upstream connection) driven by
// the reactor's backend, the twin of Connection for the client side. The
// reactor creates it (connect), reads into its provided buffers (io_uring) or
// its read buffer (epoll) and sends its OutputQueue; the owner gets callbacks
// on the reactor's thread. Reactor::closeSocket detaches the owner at once; the
// backend frees the Socket once no operation is in flight.
#pragma once

#include <sys/socket.h>

#include <cstdint>

#include "server/output_queue.h"

namespace kuai::server {

class Socket;

class SocketOwner {
 public:
  virtual ~SocketOwner() = default;
  // The connect finished: err 0, or a negative errno (ECONNREFUSED...).
  virtual void onSocketConnect(Socket* s, int err) = 0;
  virtual void onSocketData(Socket* s, const char* data, size_t len) = 0;
  // The peer closed (err 0) or the connection failed (negative errno).
  virtual void onSocketEof(Socket* s, int err) = 0;
  // Everything queued in out has been handed to the kernel.
  virtual void onSocketDrained(Socket* s) = 0;
};

// 16-byte aligned: the io_uring backend tags pointers with 4 low bits.
class alignas(16) Socket {
 public:
  int fd = -1;
  SocketOwner* owner = nullptr;
  OutputQueue out;
  sockaddr_storage addr{};  // stays valid while an io_uring connect reads it
  socklen_t addrLen = 0;
  bool connected = false;
  bool closed = false;   // closeSocket() called: no more callbacks
  bool reading = true;   // the owner wants data
  bool dirty = false;    // on the reactor's socket flush list
  uint8_t backendFlags = 0;
  uint8_t opsInFlight = 0;
  int connectError = 0;  // epoll: a connect that failed at once, reported later
  Socket* prev = nullptr;  // the reactor's list of sockets
  Socket* next = nullptr;
};

}  // namespace kuai::server
