// Listening sockets: one per reactor, all bound to the same address with
// SO_REUSEPORT so the kernel spreads new connections across the reactors.
#pragma once

#include <string>
#include <vector>

namespace kuai::server {

// Opens `count` sockets on host:port. Port 0 picks a free port and writes it back.
// Throws std::runtime_error("cannot listen on H:P: <reason>").
std::vector<int> openListeners(const std::string& host, int& port, int count);

}  // namespace kuai::server
