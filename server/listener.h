// Listening sockets: one per reactor, all bound to the same address with
// SO_REUSEPORT so the kernel spreads new connections across the reactors.
#pragma once

#include <string>
#include <vector>

namespace kuai::server {

// Opens `count` sockets on host:port. Port 0 picks a free port and writes it back.
// joinExisting: the port is already ours (another reactor's socket), so skip the
// check that nobody else holds it. Throws std::runtime_error("cannot listen on
// H:P: <reason>").
std::vector<int> openListeners(const std::string& host, int& port, int count,
                               bool joinExisting = false);

// Sticky clients: the kernel hands each new connection on this socket's
// SO_REUSEPORT group to the socket chosen by a hash of the client's address
// (IPv4, or IPv6 folded to 32 bits), the `groupSize` sockets being the
// group's in the order they joined it. A client's connections then all
// reach the same reactor: for apps that keep per-process session state
// (long-polling transports such as socket.io's). Without it the kernel
// hashes the whole address and port pair, spreading one client's
// connections. On failure, false with the reason in `err`.
bool steerByClientAddress(int fd, unsigned groupSize, std::string& err);

// systemd socket activation (sd_listen_fds(3)): the listening sockets passed
// in as fds 3.. when $LISTEN_PID is this process and $LISTEN_FDS counts them.
// Taken once (the variables are removed, so children do not see them).
class InheritedSockets {
 public:
  static InheritedSockets& get();
  bool any() const { return !fds_.empty(); }
  // The passed sockets bound to host:port (host resolved as for listening),
  // spread over `count` reactors: each gets at least one descriptor (a
  // socket serving several reactors is duplicated for each: they share its
  // queue; with more sockets than reactors, some take two, so that none is
  // left without a reader). Empty when none matches; taken ones are no
  // longer offered.
  // Port 0 takes the sockets of the address whatever their port, and sets
  // `port` to theirs.
  std::vector<std::vector<int>> take(const std::string& host, int& port, int count);
  // Closes the sockets nobody took (a connection waiting in one is refused
  // rather than left waiting).
  void closeUnused();
  // Descriptions of the sockets nobody took ("127.0.0.1:8080"), for a message.
  std::vector<std::string> unused() const;

 private:
  InheritedSockets();
  std::vector<int> fds_;
};

// Set when the listening sockets are handed to another process (a SIGUSR2
// upgrade): closing ours must then leave the sockets listening.
void setListenersHandedOver();
bool listenersHandedOver();

}  // namespace kuai::server
