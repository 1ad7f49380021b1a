// runServer: starts one reactor thread per core (or --threads), prints where it
// listens, waits for SIGTERM/SIGINT and drains. Runs on the main thread.
#pragma once

#include "server/config.h"

namespace kuai::server {

// Returns the process exit code. Errors are printed as one "kuai: ..." line.
int runServer(ServerConfig config);

}  // namespace kuai::server
