#include "scripting/environment.h"

#include <cstdio>
#include <filesystem>

#include "scripting/embedded_js.h"
#include "scripting/js_client.h"
#include "scripting/js_server.h"
#include "scripting/thread_scripting.h"
#include "scripting/watchdog.h"
#include "scripting/v8_util.h"
#include "server/log.h"
#include "server/reactor.h"

namespace kuai::scripting {

namespace {

node::MultiIsolatePlatform* gPlatform = nullptr;
// Every environment is deserialized from node's built-in snapshot (the main
// environment's own), so creating one costs a few milliseconds.
node::EmbedderSnapshotData::Pointer gSnapshot;
std::atomic<int> gExitCode{0};

}  // namespace

void setPlatform(node::MultiIsolatePlatform* platform) {
  gPlatform = platform;
  gSnapshot = node::EmbedderSnapshotData::BuiltinSnapshotData();
}

// ---------------------------------------------------------------- Environment

Environment::Environment(ThreadScripting& owner, server::Reactor& reactor, const ScriptOptions& options,
                         bool firstStart)
    : owner_(owner), reactor_(reactor), options_(options), firstStart_(firstStart) {}

Environment::~Environment() {
  unregisterWatch(this);  // the watchdog must not look at it any more
  cancelClientCalls();
  if (setup_) {
    {
      v8::HandleScope hs(isolate_);
      v8::Context::Scope cs(setup_->context());
      if (!stopped_) {
        int code = node::EmitProcessExit(env_).FromMaybe(0);
        if (code != 0) gExitCode.store(code);
      }
    }
    node::Stop(env_);
    for (auto* g : {&onRequest, &onBody, &onBodyEnd, &onAbort, &onDrain, &onSocketClose, &onSwitched, &onClientError, &onClientHead,
                    &onClientData, &onClientEnd, &onClientAbort, &onClientFail, &onClientResume}) {
      g->Reset();
    }
    exchangeTemplate.Reset();
    clientTemplate.Reset();
    binding.Reset();
  }
  if (keeperOpen_) {
    // Closed before node frees the loop, which must have no handle left.
    uv_close(reinterpret_cast<uv_handle_t*>(&keeper_), nullptr);
    uv_run(loop_, UV_RUN_NOWAIT);
  }
  isolateScope_.reset();
  locker_.reset();
  setup_.reset();
}

int Environment::timeoutMs() const {
  // libuv measures timers against its cached clock, which only moves in
  // uv_run(): refresh it, or a pending timer would seem forever in the future.
  // A loop with nothing alive (a server's sockets are the reactor's, not
  // libuv's) has nothing to wait for: libuv says 0, which would spin.
  if (!uv_loop_alive(loop_)) return -1;
  uv_update_time(loop_);
  return uv_backend_timeout(loop_);
}

void Environment::runBatch(void (*work)(void*), void* arg) {
  if (stopped_) {
    work(arg);
    return;
  }
  v8::HandleScope hs(isolate_);
  v8::Context::Scope cs(context());
  jsSince.store(monotonicMs(), std::memory_order_relaxed);
  {
    node::CallbackScope scope(isolate_, binding.Get(isolate_), node::async_context{0, 0});
    inBatch_ = true;
    work(arg);
    inBatch_ = false;
  }  // next-ticks and promise jobs of the whole batch run here
  jsSince.store(0, std::memory_order_relaxed);
  afterJs();
}

v8::MaybeLocal<v8::Value> Environment::call(const v8::Global<v8::Function>& fn, int argc,
                                            v8::Local<v8::Value>* argv) {
  if (fn.IsEmpty() || stopped_) return {};
  if (inBatch_) {
    // Inside runBatch: its scopes are already open.
    return fn.Get(isolate_)->Call(context(), v8::Undefined(isolate_), argc, argv);
  }
  v8::Local<v8::Context> ctx = context();
  v8::Context::Scope cs(ctx);
  jsSince.store(monotonicMs(), std::memory_order_relaxed);
  v8::MaybeLocal<v8::Value> r;
  {
    node::CallbackScope scope(isolate_, binding.Get(isolate_), node::async_context{0, 0});
    // An exception becomes an uncaught exception, reported by Node.
    r = fn.Get(isolate_)->Call(ctx, v8::Undefined(isolate_), argc, argv);
  }
  jsSince.store(0, std::memory_order_relaxed);
  afterJs();
  return r;
}

void Environment::afterJs() {
  if (!terminated.load() && !isolate_->IsExecutionTerminating()) return;
  stopped_ = true;
  owner_.requestRestart(terminatedWhy.empty() ? "its JavaScript was terminated" : terminatedWhy);
}

void Environment::releaseSlots() {
  for (auto& [id, srv] : servers_) {
    if (srv->slot) srv->slot->release();
  }
}

void Environment::abandon() {
  stopped_ = true;
  releaseSlots();
  for (auto& [id, srv] : servers_) srv->orphan();
  servers_.clear();
  std::vector<JsExchange*> open(exchanges.begin(), exchanges.end());
  for (JsExchange* ex : open) ex->abandon();
  cancelClientCalls();
}

void Environment::cancelClientCalls() {
  std::vector<JsClientCall*> calls(clientCalls.begin(), clientCalls.end());
  for (JsClientCall* c : calls) c->cancel();
  clientCalls.clear();
}

size_t Environment::nearHeapLimit(void* data, size_t current, size_t initial) {
  auto* self = static_cast<Environment*>(data);
  self->terminatedWhy = "its heap neared the limit (" + std::to_string(current >> 20) + " MiB)";
  self->terminated.store(true);
  self->isolate_->TerminateExecution();
  // Room to unwind; the environment is replaced right after.
  return current + current / 2;
}

void Environment::runOnce() {
  if (stopped_) return;
  v8::HandleScope hs(isolate_);
  v8::Context::Scope cs(context());
  jsSince.store(monotonicMs(), std::memory_order_relaxed);
  // uv_run does nothing on a loop with no referenced handle, which this one
  // often is (its servers' sockets are the reactor's): the keeper makes it
  // run a whole turn, so that unreferenced handles (the inspector's messages,
  // the platform's tasks) are polled and their callbacks run.
  uv_ref(reinterpret_cast<uv_handle_t*>(&keeper_));
  uv_run(loop_, UV_RUN_NOWAIT);
  uv_unref(reinterpret_cast<uv_handle_t*>(&keeper_));
  jsSince.store(0, std::memory_order_relaxed);
  afterJs();
  if (stopped_) return;
  if (!uv_loop_alive(loop_)) {
    gPlatform->DrainTasks(isolate_);
    if (!uv_loop_alive(loop_)) {
      // As Node does when its loop runs dry: 'beforeExit', which may schedule more.
      node::EmitProcessBeforeExit(env_);
    }
  }
}

bool Environment::start(std::string& err) {
  std::vector<std::string> errors;
  std::vector<std::string> args = {options_.execPath};
  if (!options_.script.empty()) {
    std::error_code ec;
    auto abs = std::filesystem::absolute(options_.script, ec);
    args.push_back(ec ? options_.script : abs.lexically_normal().string());
  }
  for (const auto& a : options_.args) args.push_back(a);
  // Owns process state as Node's main thread does (process.chdir(), umask...);
  // the main environment keeps the inspector's SIGUSR1 for itself. Files a
  // script opens with fs.open() are closed when its environment is replaced.
  auto flags = node::EnvironmentFlags::Flags(node::EnvironmentFlags::kOwnsProcessState |
                                             node::EnvironmentFlags::kNoStartDebugSignalHandler |
                                             node::EnvironmentFlags::kTrackUnmanagedFds);
  setup_ = node::CommonEnvironmentSetup::CreateFromSnapshot(gPlatform, &errors, gSnapshot.get(), args,
                                                            options_.execArgv, flags);
  if (!setup_) {
    err = "cannot create the Node environment";
    for (const auto& e : errors) err += ": " + e;
    return false;
  }
  isolate_ = setup_->isolate();
  env_ = setup_->env();
  loop_ = setup_->event_loop();
  uv_check_init(loop_, &keeper_);
  uv_check_start(&keeper_, [](uv_check_t*) {});
  uv_unref(reinterpret_cast<uv_handle_t*>(&keeper_));
  keeperOpen_ = true;
  locker_ = std::make_unique<v8::Locker>(isolate_);
  isolateScope_ = std::make_unique<v8::Isolate::Scope>(isolate_);
  v8::HandleScope hs(isolate_);
  v8::Context::Scope cs(setup_->context());

  // process.exit() ends the process, as in Node. An uncaught exception (Node
  // has printed it) ends only this environment, which is then replaced; while
  // the script starts, it means the script cannot start.
  node::SetProcessExitHandler(env_, [this](node::Environment*, int code) {
    if (explicitExit_) {
      std::fflush(stdout);
      std::fflush(stderr);
      std::_Exit(code);
    }
    if (!loaded_) {
      startState_ = Start::kFailed;
      stopped_ = true;
      terminated.store(true);
      isolate_->TerminateExecution();
    } else if (startState_ == Start::kRunning) {
      startFailedLate();
    } else {
      // A fatal error with no JS handler in the way: replace the environment
      // at the next turn (terminating here would unbalance Node's callback
      // scopes).
      owner_.requestRestart("a fatal error");
    }
  });
  isolate_->AddNearHeapLimitCallback(&Environment::nearHeapLimit, this);
  registerWatch(this);

  jsSince.store(monotonicMs());
  v8::MaybeLocal<v8::Value> r = node::LoadEnvironment(
      env_, [this](const node::StartExecutionCallbackInfo& info) { return bootstrap(info); });
  jsSince.store(0);
  loaded_ = true;
  if (r.IsEmpty() && startState_ == Start::kRunning && !terminated.load()) startState_ = Start::kFailed;
  return checkStarted(err);
}

// The main script's first turn is over (LoadEnvironment drains next-ticks and
// promise jobs: a CommonJS entry has run, and an ES module entry has evaluated
// unless it awaits I/O at top level). An ES module entry still awaiting counts
// as started: its servers need the reactor running. If it fails later, see
// startFailedLate().
bool Environment::checkStarted(std::string& err) {
  if (startState_ == Start::kFailed || terminated.load()) {
    if (terminated.load() && !terminatedWhy.empty()) err = "the main script was stopped: " + terminatedWhy;
    stopped_ = true;
    return false;
  }
  return true;
}

// An uncaught exception before the entry finished evaluating (an ES module's
// top-level await that rejected): the script cannot start. At the process's
// start that ends it, as in Node; a replacement environment stays stopped
// (its routes answer 503) until the next reload.
void Environment::startFailedLate() {
  startState_ = Start::kFailed;
  if (firstStart_) {
    server::logLine(server::LogLevel::kError, "kuai: cannot start: the script failed to start\n");
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(1);
  }
  server::logLine(server::LogLevel::kError, "kuai: thread %d: the script did not start again\n", reactor_.index());
  stopped_ = true;
  owner_.stopEnvironment();
}

v8::MaybeLocal<v8::Value> Environment::bootstrap(const node::StartExecutionCallbackInfo& info) {
  v8::Isolate* iso = isolate_;
  v8::EscapableHandleScope hs(iso);
  v8::Local<v8::Context> ctx = context();
  v8::Local<v8::Object> b = makeBinding();
  binding.Reset(iso, b);
  const EmbeddedFile* boot = findEmbeddedJs("bootstrap.js");
  v8::ScriptOrigin origin(str(iso, "kuai:bootstrap.js"));
  v8::Local<v8::Script> script;
  if (!v8::Script::Compile(ctx, str(iso, std::string_view(boot->data, boot->size)), &origin).ToLocal(&script)) {
    return {};
  }
  v8::Local<v8::Value> fn;
  if (!script->Run(ctx).ToLocal(&fn) || !fn->IsFunction()) return {};
  v8::Local<v8::Value> argv[3] = {info.process_object, info.native_require, b};
  v8::Local<v8::Value> out;
  if (!fn.As<v8::Function>()->Call(ctx, v8::Undefined(iso), 3, argv).ToLocal(&out)) return {};
  return hs.Escape(out);
}

int scriptExitCode() { return gExitCode.load(); }

}  // namespace kuai::scripting
