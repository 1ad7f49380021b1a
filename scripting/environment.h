// The scripting layer inside node: one Node.js environment (isolate, context,
// libuv loop) per reactor thread, created and used on that thread only, driven
// by the reactor through server::LoopDriver. Scripts get Node's real builtins;
// kuai replaces the server side of `http` (js/http_server.js) with classes over
// the reactor's connections, so a request read by a reactor is answered by the
// environment on the same thread.
//
// Ownership, per reactor thread: ThreadScripting (thread_scripting.h, the
// LoopDriver) owns the current Environment and the ServerSlots (what listeners
// and app routes hand requests to; they outlive an environment that is
// replaced). The binding (binding.cc) is what kuai's JS calls into; the
// watchdog (watchdog.h) stops a call that runs too long.
#pragma once

#include <node.h>
#include <uv.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "server/config.h"
#include "server/loop_driver.h"

namespace kuai::server {
class Agent;
class Listener;
class Reactor;
}  // namespace kuai::server

namespace kuai::scripting {

struct ScriptOptions {
  std::string execPath;               // process.execPath (the pinned node)
  std::vector<std::string> execArgv;  // node's own options (process.execArgv)
  std::string script;                 // path of the main script ("" with eval or the REPL)
  std::string eval;                   // -e / -p source
  bool evalStdin = false;             // the source was read from stdin (no builtins as globals)
  bool print = false;                 // -p: print the value (thread 0)
  bool repl = false;                  // Node's REPL (thread 0)
  std::vector<std::string> args;      // process.argv after the script
  std::vector<std::string> requireModules;  // -r, in order
  std::vector<std::string> imports;   // --import, in order
  server::ServerConfig::Inspect inspect;
  bool watch = false;                 // thread 0 reports the files it loads
  uint64_t cpuBudgetMs = 5000;        // one call into JS may run this long
  // Config-file mode: the app routes' scripts (absolute paths), each loaded in
  // every environment; its export (a (req, res) handler, or an object with
  // callback(), like a Koa or kuai App) answers that route. No main script.
  std::vector<std::string> apps;
  // Where a fetch-style main module (default export with fetch()) and
  // require('kuai').serve() without a port listen: --host/--port; given: on
  // the command line (then they win over the module's own port/hostname).
  std::string serveHost = "127.0.0.1";
  int servePort = 8080;
  bool serveHostGiven = false;
  bool servePortGiven = false;
};

// Process-wide: the platform of the node that loaded the addon, and the
// snapshot every environment is deserialized from (node's built-in one).
void setPlatform(node::MultiIsolatePlatform* platform);

class ThreadScripting;
class JsServer;
class ServerSlot;
class JsExchange;
class JsClientCall;

// One Node environment on one reactor thread. ThreadScripting replaces it with
// a fresh one when it has to be given up.
class Environment final {
 public:
  // firstStart: one of the process's first environments (not a replacement).
  Environment(ThreadScripting& owner, server::Reactor& reactor, const ScriptOptions& options, bool firstStart);
  ~Environment();

  // Creates the environment and runs the main script's first turn (or the app
  // scripts, -e code, the REPL). False with `err` (for people; Node has
  // printed the exception itself) when it cannot start.
  bool start(std::string& err);

  int fd() const { return uv_backend_fd(loop_); }
  int timeoutMs() const;
  void runOnce();
  bool alive() const { return !stopped_ && uv_loop_alive(loop_); }
  // One callback scope around a reactor wake-up's worth of calls into JS.
  void runBatch(void (*work)(void*), void* arg);
  // Stops JS for good (the environment is about to be replaced): answers 503 to
  // the requests still open and unhooks everything from the reactor.
  void abandon();
  // No more requests come here (a graceful replacement has begun): the slots
  // queue them for the next environment.
  void releaseSlots();
  // Requests this environment is still answering.
  size_t openExchanges() const { return exchanges.size(); }

  // Watchdog: when the current call into JS began (0: not in JS).
  std::atomic<uint64_t> jsSince{0};
  std::atomic<bool> terminated{false};
  std::string terminatedWhy;
  std::set<JsExchange*> exchanges;      // requests this environment still answers
  std::set<JsClientCall*> clientCalls;  // outbound requests (kuai's http client) in flight

  v8::Isolate* isolate() const { return isolate_; }
  v8::Local<v8::Context> context() const { return setup_->context(); }
  server::Reactor& reactor() { return reactor_; }
  ThreadScripting& owner() { return owner_; }

  // Calls a JS callback stored by the bootstrap, inside a callback scope so
  // that process.nextTick and promise jobs run afterwards, as Node does.
  // Returns what fn returned (empty when it threw or JS is stopped).
  v8::MaybeLocal<v8::Value> call(const v8::Global<v8::Function>& fn, int argc,
                                 v8::Local<v8::Value>* argv);

  v8::Global<v8::Function> onRequest, onBody, onBodyEnd, onAbort, onDrain, onSocketClose, onSwitched, onClientError;
  // The http client's events (js/http_client.js).
  v8::Global<v8::Function> onClientHead, onClientData, onClientEnd, onClientAbort, onClientFail,
      onClientResume;
  v8::Global<v8::ObjectTemplate> exchangeTemplate, clientTemplate;
  v8::Global<v8::Object> binding;

 private:
  v8::MaybeLocal<v8::Value> bootstrap(const node::StartExecutionCallbackInfo& info);
  v8::Local<v8::Object> makeBinding();
  bool checkStarted(std::string& err);
  void startFailedLate();
  void afterJs();  // after any call into JS: act on a termination
  void cancelClientCalls();
  static size_t nearHeapLimit(void* data, size_t current, size_t initial);

  // The binding's functions (the JS side calls them with this as data).
  static void listen(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void setSecureContext(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void closeServer(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void closeConnections(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void connectionBytes(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void answerClientError(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void route(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void setTimeouts(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void setCallbacks(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void setClientCallbacks(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void clientRequest(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void markExit(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void restart(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void started(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void watchFiles(const v8::FunctionCallbackInfo<v8::Value>& args);

  ThreadScripting& owner_;
  server::Reactor& reactor_;
  const ScriptOptions& options_;
  // kRunning until the bootstrap says the entry has been evaluated.
  enum class Start { kRunning, kStarted, kFailed } startState_ = Start::kRunning;
  bool firstStart_;
  bool loaded_ = false;  // LoadEnvironment has returned
  bool inBatch_ = false;
  bool explicitExit_ = false;
  std::unique_ptr<node::CommonEnvironmentSetup> setup_;
  v8::Isolate* isolate_ = nullptr;
  node::Environment* env_ = nullptr;
  uv_loop_t* loop_ = nullptr;
  uv_check_t keeper_{};  // referenced only inside runOnce (see there)
  bool keeperOpen_ = false;
  std::unique_ptr<v8::Locker> locker_;
  std::unique_ptr<v8::Isolate::Scope> isolateScope_;
  bool stopped_ = false;
  std::map<int, JsServer*> servers_;  // owned by ThreadScripting (they outlive us)
  int nextServerId_ = 1;
  std::map<std::string, int> listenCounts_;
};

// The exit code the scripts asked for (process.exitCode / uncaught errors).
int scriptExitCode();

// --watch: the files thread 0's environment has loaded so far (absolute
// paths), and the function to call (on any thread) when that list grows.
std::vector<std::string> watchedFiles();
void setWatchListener(std::function<void()> fn);

}  // namespace kuai::scripting
