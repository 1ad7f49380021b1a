// ServerConfig: everything the CLI (and later the config file) decides, read-only
// once the reactors start. Each reactor holds a const reference to the one copy
// owned by main().
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "parser/request_parser.h"
#include "server/site.h"
#include "server/static_files.h"
#include "tls/tls.h"

namespace kuai::server {

enum class IoBackend { kAuto, kUring, kEpoll };

struct Timeouts {
  uint32_t headerMs = 10'000;   // whole request head must arrive within this -> 408
  uint32_t idleMs = 10'000;     // idle keep-alive connection -> closed
  uint32_t bodyMs = 30'000;     // no body byte for this long -> 408
  uint32_t sendMs = 60'000;     // client reads nothing of a pending response -> closed
  uint32_t lingerMs = 5'000;    // reading leftovers after the last response
  uint32_t shutdownMs = 10'000; // graceful shutdown deadline
  // Given on the command line: they hold for scripts' servers too (which
  // otherwise follow Node's headersTimeout / requestTimeout).
  bool headerExplicit = false;
  bool bodyExplicit = false;
};

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  int threads = 0;  // 0: one per available core
  // --sticky: a client's connections all go to one reactor, chosen by its
  // address (steerByClientAddress), instead of being spread by the kernel.
  bool sticky = false;
  IoBackend io = IoBackend::kAuto;
  bool tls = false;  // the listener speaks TLS (certificates in tlsConfig)
  Http2 http2 = Http2::kOn;  // --no-http2, --h2c
  tls::TlsConfig tlsConfig;
  parser::Limits limits;
  Timeouts timeouts;
  uint32_t maxRequestsPerConnection = 1000;
  bool serveStatic = false;
  StaticOptions statics;
  bool compression = true;  // --no-compression
  // Script mode: `kuai app.js` / `kuai -e CODE` runs a script per reactor thread,
  // in the pinned node with the scripting addon.
  bool scriptMode = false;
  std::string script;                   // path, or "" with eval
  std::string eval;                     // -e / -p source
  bool evalStdin = false;               // the source comes from stdin (`-`, or no script off a terminal)
  bool print = false;                   // -p: print the value (thread 0), as `node -p`
  bool repl = false;                    // -i, or nothing to run on a terminal: Node's REPL
  bool checkSyntax = false;             // -c: `node --check` the script and exit
  std::vector<std::string> scriptArgs;  // process.argv[2...]
  std::vector<std::string> nodeArgs;    // Node / V8 options for node's own command line
  std::vector<std::string> requireModules;    // -r MODULE, loaded before the script in every environment
  std::vector<std::string> imports;     // --import MODULE, likewise (after the -r ones)
  struct Inspect {
    enum class Mode { kOff, kOn, kBreak, kWait } mode = Mode::kOff;
    std::string host = "127.0.0.1";
    int port = 9229;  // thread k listens on port + k (0: each picks one)
  } inspect;
  bool watch = false;                   // --watch: reload the environments when files change
  std::vector<std::string> watchPaths;  // --watch-path: what to watch (default: the loaded files)
  uint32_t cpuBudgetMs = 5000;          // one call into JS may run this long
  // Native fixed responses: exact path -> body (text/plain).
  std::vector<std::pair<std::string, std::string>> responds;
  // Config-file mode (kuai --config FILE): listeners and routes from the file;
  // the options in `given` (the command line's, by canonical name: "--port")
  // override it.
  std::string configFile;
  std::set<std::string> given;
  bool checkConfigOnly = false;  // kuai --check-config FILE
  std::shared_ptr<const Site> site;
};

}  // namespace kuai::server
