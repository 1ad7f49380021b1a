// The scripting layer: one Node.js environment (isolate + context + libuv loop)
// per reactor thread, created and used on that thread only, driven by the
// reactor through server::LoopDriver. Scripts get Node's real builtins; kuai
// replaces the server side of `http` (scripting/js/http_server.js) with classes
// over the reactor's connections (server::Exchange), so a request read by a
// reactor is answered by the environment on the same thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "server/hooks.h"

namespace kuai::server {
class Reactor;
}

namespace kuai::scripting {

struct ScriptOptions {
  std::string script;                 // path of the main script ("" with eval)
  std::string eval;                   // -e source
  std::vector<std::string> args;      // process.argv[2...]
  std::vector<std::string> nodeArgs;  // V8/Node options passed through
  uint64_t cpuBudgetMs = 5000;        // one call into JS may run this long
  // Config-file mode: the app routes' scripts (absolute paths), each loaded in
  // every environment; its export (a (req, res) handler, or an object with
  // callback(), like a Koa or kuai App) answers that route. No main script.
  std::vector<std::string> apps;
};

// Process-wide set-up of Node and V8: call once from main() before any reactor
// starts. Returns false with `err` on failure; `exitCode` >= 0 when Node itself
// answered (e.g. --v8-options) and the process should exit with it.
bool initializeNode(const std::string& argv0, const ScriptOptions& options, std::string& err,
                    int& exitCode);
void shutdownNode();

class Environment;

// Creates the environment for `reactor` on the calling (reactor) thread and runs
// the main script's first turn. Null with `err` (already formatted for people)
// when the script cannot start.
std::unique_ptr<server::LoopDriver> startEnvironment(server::Reactor& reactor,
                                                     const ScriptOptions& options,
                                                     std::string& err);

// The exit code the scripts asked for (process.exitCode / uncaught errors).
int scriptExitCode();

}  // namespace kuai::scripting
