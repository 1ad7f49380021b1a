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

}  // namespace kuai::server
