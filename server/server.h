// runServer: starts one reactor thread per core (or --threads), prints where it
// listens, waits for SIGTERM/SIGINT and drains. Runs on the main thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "server/config.h"
#include "server/hooks.h"

namespace kuai::server {

class Reactor;

// Runs on each reactor thread once its backend is up, before it serves: returns
// the thread's event loop (a Node environment) or null with `err` set.
using ThreadStart = std::function<std::unique_ptr<LoopDriver>(Reactor&, std::string& err)>;

// Returns the process exit code. Errors are printed as one "kuai: ..." line.
// In script mode there is no listener of its own: scripts listen themselves, and
// the process ends when every thread's loop has nothing left to do.
int runServer(ServerConfig config, ThreadStart threadStart = {});

}  // namespace kuai::server
