#include "scripting/environment.h"

#include <limits.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

#include "scripting/embedded_js.h"
#include "scripting/js_client.h"
#include "scripting/js_server.h"
#include "scripting/v8_util.h"
#include "server/agent.h"
#include "server/cli.h"
#include "server/listener.h"
#include "server/reactor.h"

namespace kuai::scripting {

namespace {

node::MultiIsolatePlatform* gPlatform = nullptr;
// Every environment is deserialized from node's built-in snapshot (the main
// environment's own), so creating one costs a few milliseconds.
node::EmbedderSnapshotData::Pointer gSnapshot;
std::atomic<int> gExitCode{0};

// listen() from N environments binds the same address once per reactor. The
// first to come checks that the port is free and picks one for port 0; the
// others join it with SO_REUSEPORT. Keyed by host, port and the call's order.
std::mutex gListenMutex;
std::map<std::string, int> gListenPorts;

// The first environment runs the main script before the others start, so that a
// script that cannot start (syntax error, missing module) is reported once.
std::mutex gStartMutex;
std::condition_variable gStartCv;
int gFirstStart = 0;  // 0: pending, 1: succeeded, -1: failed

std::mutex gThreadsMutex;
std::vector<ThreadScripting*> gThreads;  // by reactor index

std::mutex gWatchFilesMutex;
std::vector<std::string> gWatchedFiles;
std::function<void()> gWatchListener;

uint64_t monotonicMs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1'000'000;
}

Environment* envFrom(const v8::FunctionCallbackInfo<v8::Value>& args) {
  return static_cast<Environment*>(args.Data().As<v8::External>()->Value(v8::kExternalPointerTypeTagDefault));
}

// Keeps the functions named in args[0] (an object of callbacks) in `slots`.
void readCallbacks(const v8::FunctionCallbackInfo<v8::Value>& args,
                   std::initializer_list<std::pair<const char*, v8::Global<v8::Function>*>> slots) {
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  if (!args[0]->IsObject()) return;
  v8::Local<v8::Object> o = args[0].As<v8::Object>();
  for (const auto& [name, out] : slots) {
    v8::Local<v8::Value> v;
    if (o->Get(ctx, str(iso, name)).ToLocal(&v) && v->IsFunction()) out->Reset(iso, v.As<v8::Function>());
  }
}

}  // namespace

void registerWatch(Environment* e);
void unregisterWatch(Environment* e);

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
    for (auto* g : {&onRequest, &onBody, &onBodyEnd, &onAbort, &onDrain, &onSocketClose, &onClientHead,
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
    if (startState_ == Start::kRunning && !loaded_) {
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
    std::fprintf(stderr, "kuai: cannot start: the script failed to start\n");
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(1);
  }
  std::fprintf(stderr, "kuai: thread %d: the script did not start again\n", reactor_.index());
  stopped_ = true;
  owner_.stopEnvironment();
}

v8::Local<v8::Object> Environment::makeBinding() {
  v8::Isolate* iso = isolate_;
  v8::Local<v8::Context> ctx = context();
  v8::Local<v8::Object> b = v8::Object::New(iso);
  v8::Local<v8::External> self = v8::External::New(iso, this, v8::kExternalPointerTypeTagDefault);
  auto set = [&](const char* name, v8::Local<v8::Value> v) { b->Set(ctx, str(iso, name), v).Check(); };
  auto fn = [&](const char* name, v8::FunctionCallback cb) {
    set(name, v8::FunctionTemplate::New(iso, cb, self)->GetFunction(ctx).ToLocalChecked());
  };
  auto strings = [&](const std::vector<std::string>& list) {
    v8::Local<v8::Array> a = v8::Array::New(iso, int(list.size()));
    for (size_t i = 0; i < list.size(); ++i) a->Set(ctx, uint32_t(i), str(iso, list[i])).Check();
    return a;
  };
  fn("listen", &Environment::listen);
  fn("close", &Environment::closeServer);
  fn("route", &Environment::route);
  fn("setTimeouts", &Environment::setTimeouts);
  fn("setCallbacks", &Environment::setCallbacks);
  fn("setClientCallbacks", &Environment::setClientCallbacks);
  fn("clientRequest", &JsClientCall::start);
  fn("markExit", &Environment::markExit);
  fn("restart", &Environment::restart);
  fn("started", &Environment::started);
  fn("watchFiles", &Environment::watchFiles);
  set("reactor", v8::Integer::New(iso, reactor_.index()));
  set("version", str(iso, server::kVersion));

  v8::Local<v8::Object> sources = v8::Object::New(iso);
  for (size_t i = 0; i < kEmbeddedJsCount; ++i) {
    sources->Set(ctx, str(iso, kEmbeddedJs[i].name), str(iso, std::string_view(kEmbeddedJs[i].data, kEmbeddedJs[i].size)))
        .Check();
  }
  set("sources", sources);
  set("script", str(iso, options_.script));
  set("eval", str(iso, options_.eval));
  set("hasEval", v8::Boolean::New(iso, !options_.eval.empty() || (options_.script.empty() && !options_.repl &&
                                                                  options_.apps.empty())));
  set("print", v8::Boolean::New(iso, options_.print));
  set("repl", v8::Boolean::New(iso, options_.repl));
  set("requires", strings(options_.requireModules));
  set("imports", strings(options_.imports));
  set("apps", strings(options_.apps));
  set("watch", v8::Boolean::New(iso, options_.watch));
  const char* inspect = "";
  switch (options_.inspect.mode) {
    case server::ServerConfig::Inspect::Mode::kOff: inspect = ""; break;
    case server::ServerConfig::Inspect::Mode::kOn: inspect = "inspect"; break;
    case server::ServerConfig::Inspect::Mode::kBreak: inspect = "brk"; break;
    case server::ServerConfig::Inspect::Mode::kWait: inspect = "wait"; break;
  }
  set("inspect", str(iso, inspect));
  set("inspectHost", str(iso, options_.inspect.host));
  int port = options_.inspect.port == 0 ? 0 : options_.inspect.port + reactor_.index();
  set("inspectPort", v8::Integer::New(iso, port));

  v8::Local<v8::ObjectTemplate> ex = v8::ObjectTemplate::New(iso);
  ex->SetInternalFieldCount(1);
  // Fields the JS side sets on every handle, declared up front so all handles
  // share one shape.
  ex->Set(str(iso, "req"), v8::Null(iso));
  ex->Set(str(iso, "res"), v8::Null(iso));
  ex->Set(str(iso, "paused"), v8::False(iso));
  ex->Set(str(iso, "tunnel"), v8::Null(iso));
  ex->Set(str(iso, "body"), v8::False(iso));
  ex->Set(str(iso, "writeHead"), v8::FunctionTemplate::New(iso, &JsExchange::writeHead));
  ex->Set(str(iso, "write"), v8::FunctionTemplate::New(iso, &JsExchange::write));
  ex->Set(str(iso, "end"), v8::FunctionTemplate::New(iso, &JsExchange::end));
  ex->Set(str(iso, "pauseBody"), v8::FunctionTemplate::New(iso, &JsExchange::pauseBody));
  ex->Set(str(iso, "resumeBody"), v8::FunctionTemplate::New(iso, &JsExchange::resumeBody));
  ex->Set(str(iso, "startRaw"), v8::FunctionTemplate::New(iso, &JsExchange::startRaw));
  ex->Set(str(iso, "writeContinue"), v8::FunctionTemplate::New(iso, &JsExchange::writeContinue));
  ex->Set(str(iso, "abort"), v8::FunctionTemplate::New(iso, &JsExchange::abort));
  exchangeTemplate.Reset(iso, ex);

  v8::Local<v8::ObjectTemplate> client = v8::ObjectTemplate::New(iso);
  client->SetInternalFieldCount(1);
  client->Set(str(iso, "req"), v8::Null(iso));
  client->Set(str(iso, "paused"), v8::False(iso));
  client->Set(str(iso, "write"), v8::FunctionTemplate::New(iso, &JsClientCall::jsWrite));
  client->Set(str(iso, "end"), v8::FunctionTemplate::New(iso, &JsClientCall::jsEnd));
  client->Set(str(iso, "abort"), v8::FunctionTemplate::New(iso, &JsClientCall::jsAbort));
  client->Set(str(iso, "drain"), v8::FunctionTemplate::New(iso, &JsClientCall::jsDrain));
  clientTemplate.Reset(iso, client);
  return b;
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

// ------------------------------------------------------ the binding's functions

// From JS: this environment cannot go on (an uncaught exception). It is replaced
// at the reactor's next turn; nothing is torn down while JS is on the stack.
// While the script starts, it means the script cannot start.
void Environment::restart(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  if (self->startState_ == Start::kRunning) {
    if (self->loaded_) {
      self->startFailedLate();
    } else {
      self->startState_ = Start::kFailed;  // start() reports it
    }
    return;
  }
  self->owner_.requestRestart(toStdString(args.GetIsolate(), args[0]));
}

// From JS: the main script has started (its ES module entry has evaluated).
void Environment::started(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  if (self->startState_ == Start::kRunning) self->startState_ = Start::kStarted;
}

void Environment::markExit(const v8::FunctionCallbackInfo<v8::Value>& args) { envFrom(args)->explicitExit_ = true; }

// watchFiles([path...]): files this environment loaded (--watch).
void Environment::watchFiles(const v8::FunctionCallbackInfo<v8::Value>& args) {
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  if (!args[0]->IsArray()) return;
  v8::Local<v8::Array> a = args[0].As<v8::Array>();
  bool added = false;
  std::function<void()> notify;
  {
    std::lock_guard<std::mutex> lock(gWatchFilesMutex);
    for (uint32_t i = 0; i < a->Length(); ++i) {
      v8::Local<v8::Value> v;
      if (!a->Get(ctx, i).ToLocal(&v)) continue;
      std::string f = toStdString(iso, v);
      if (std::find(gWatchedFiles.begin(), gWatchedFiles.end(), f) == gWatchedFiles.end()) {
        gWatchedFiles.push_back(f);
        added = true;
      }
    }
    if (added) notify = gWatchListener;
  }
  if (notify) notify();
}

void Environment::setCallbacks(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  readCallbacks(args, {{"onRequest", &self->onRequest},
                       {"onBody", &self->onBody},
                       {"onBodyEnd", &self->onBodyEnd},
                       {"onAbort", &self->onAbort},
                       {"onDrain", &self->onDrain},
                       {"onSocketClose", &self->onSocketClose}});
}

void Environment::setClientCallbacks(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  readCallbacks(args, {{"onHead", &self->onClientHead},
                       {"onData", &self->onClientData},
                       {"onEnd", &self->onClientEnd},
                       {"onAbort", &self->onClientAbort},
                       {"onFail", &self->onClientFail},
                       {"onResume", &self->onClientResume}});
}

// listen(host, port[, {cert, key}]) -> [serverId, boundPort]; throws with code
// EADDRINUSE etc. A socket this thread kept open through an environment's
// replacement is taken back by the listen() with the same address and order.
void Environment::listen(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  std::string host = toStdString(iso, args[0]);
  int port = args[1]->Int32Value(ctx).FromMaybe(0);
  std::string base = host + ":" + std::to_string(port);
  int nth = self->listenCounts_[base]++;
  std::string key = base + "#" + std::to_string(nth);
  ServerSlot* slot = self->owner_.slot(key);

  int fd = -1;
  int bound = port;
  if (slot->listener) {
    std::lock_guard<std::mutex> lock(gListenMutex);
    bound = gListenPorts[key];
  } else {
    try {
      std::lock_guard<std::mutex> lock(gListenMutex);
      auto it = gListenPorts.find(key);
      if (it == gListenPorts.end()) {
        std::vector<int> fds = server::openListeners(host, bound, 1);
        fd = fds[0];
        gListenPorts[key] = bound;
      } else {
        bound = it->second;
        fd = server::openListeners(host, bound, 1, /*joinExisting=*/true)[0];
      }
    } catch (const std::exception& e) {
      std::string msg = e.what();
      throwError(iso, "listen " + msg,
                 msg.find("already in use") != std::string::npos ? "EADDRINUSE"
                 : msg.find("permission") != std::string::npos   ? "EACCES"
                                                                 : "ELISTEN");
      return;
    }
  }
  // https.createServer: args[2] = {cert: [pem...], key: [pem...]}.
  std::shared_ptr<tls::TlsContext> tlsContext;
  if (args.Length() > 2 && args[2]->IsObject()) {
    v8::Local<v8::Object> o = args[2].As<v8::Object>();
    auto list = [&](const char* name) {
      std::vector<std::string> out;
      v8::Local<v8::Value> v;
      if (o->Get(ctx, str(iso, name)).ToLocal(&v) && v->IsArray()) {
        v8::Local<v8::Array> a = v.As<v8::Array>();
        for (uint32_t i = 0; i < a->Length(); ++i) out.push_back(toStdString(iso, a->Get(ctx, i).ToLocalChecked()));
      }
      return out;
    };
    std::vector<std::string> certs = list("cert"), keys = list("key");
    tls::TlsConfig config;
    for (size_t i = 0; i < certs.size() && i < keys.size(); ++i) {
      tls::CertificateConfig c;
      c.certFile = "options.cert[" + std::to_string(i) + "]";
      c.keyFile = "options.key[" + std::to_string(i) + "]";
      c.certPem = certs[i];
      c.keyPem = keys[i];
      config.certificates.push_back(std::move(c));
    }
    std::string tlsErr;
    tlsContext = tls::createTlsContext(config, tlsErr);
    if (!tlsContext) {
      if (fd >= 0) ::close(fd);
      throwError(iso, tlsErr, "ERR_KUAI_TLS");
      return;
    }
  }
  int id = self->nextServerId_++;
  JsServer* srv = self->owner_.addServer(std::make_unique<JsServer>(*self, id));
  if (slot->listener) {
    slot->listener->tls = std::move(tlsContext);
  } else {
    slot->listener = self->reactor_.addListener(fd, slot, std::move(tlsContext));
  }
  self->servers_[id] = srv;
  slot->claim(srv);
  v8::Local<v8::Array> out = v8::Array::New(iso, 2);
  out->Set(ctx, 0, v8::Integer::New(iso, id)).Check();
  out->Set(ctx, 1, v8::Integer::New(iso, bound)).Check();
  args.GetReturnValue().Set(out);
}

// route(appPath) -> serverId: the server answers a config file's app route.
void Environment::route(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  v8::Isolate* iso = args.GetIsolate();
  std::string app = toStdString(iso, args[0]);
  int id = self->nextServerId_++;
  JsServer* srv = self->owner_.addServer(std::make_unique<JsServer>(*self, id));
  ServerSlot* slot = self->owner_.slot("app:" + app);
  self->servers_[id] = srv;
  self->reactor_.context().setAppHandler(app, slot);
  slot->claim(srv);
  args.GetReturnValue().Set(v8::Integer::New(iso, id));
}

// setTimeouts(serverId, headersTimeoutMs, requestTimeoutMs): Node's limits for
// the connections the server accepts from now on (0: none).
void Environment::setTimeouts(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  v8::Local<v8::Context> ctx = args.GetIsolate()->GetCurrentContext();
  int id = args[0]->Int32Value(ctx).FromMaybe(0);
  auto it = self->servers_.find(id);
  if (it == self->servers_.end() || !it->second->slot || !it->second->slot->listener) return;
  auto ms = [&](int i) {
    double v = args[i]->NumberValue(ctx).FromMaybe(0);
    return v > 0 && v < 4e9 ? uint32_t(v) : 0u;
  };
  server::Listener* l = it->second->slot->listener;
  l->headDeadlineMs = ms(1);
  l->requestDeadlineMs = ms(2);
  l->deadlines = true;
}

void Environment::closeServer(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  int id = args[0]->Int32Value(args.GetIsolate()->GetCurrentContext()).FromMaybe(0);
  auto it = self->servers_.find(id);
  if (it == self->servers_.end() || !it->second->slot) return;
  ServerSlot* slot = it->second->slot;
  if (slot->listener) self->reactor_.removeListener(slot->listener);
  slot->listener = nullptr;
  // The slot stays claimed: connections accepted earlier may still use it.
}

// ---------------------------------------------------------------- the watchdog

// One thread for the process, looking at every environment's current call into
// JS a few times a second.
namespace {
std::mutex gWatchMutex;
std::set<Environment*> gWatched;
std::atomic<uint64_t> gCpuBudgetMs{5000};
std::once_flag gWatchOnce;

void watchdog() {
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    uint64_t now = monotonicMs();
    std::lock_guard<std::mutex> lock(gWatchMutex);
    for (Environment* e : gWatched) {
      uint64_t since = e->jsSince.load(std::memory_order_relaxed);
      if (since == 0 || e->terminated.load() || now - since < gCpuBudgetMs.load()) continue;
      e->terminatedWhy = "JavaScript ran for more than its CPU budget (" + std::to_string(gCpuBudgetMs.load()) + " ms)";
      e->terminated.store(true);
      e->isolate()->TerminateExecution();
    }
  }
}
}  // namespace

void registerWatch(Environment* e) {
  std::call_once(gWatchOnce, [] { std::thread(watchdog).detach(); });
  std::lock_guard<std::mutex> lock(gWatchMutex);
  gWatched.insert(e);
}

void unregisterWatch(Environment* e) {
  std::lock_guard<std::mutex> lock(gWatchMutex);
  gWatched.erase(e);
}

// ---------------------------------------------------------------- ThreadScripting

ThreadScripting::ThreadScripting(server::Reactor& reactor, const ScriptOptions& options)
    : reactor_(reactor), options_(options) {}

ThreadScripting::~ThreadScripting() {
  {
    std::lock_guard<std::mutex> lock(gThreadsMutex);
    if (size_t(reactor_.index()) < gThreads.size() && gThreads[size_t(reactor_.index())] == this) {
      gThreads[size_t(reactor_.index())] = nullptr;
    }
  }
  env_.reset();
  slots_.clear();
}

bool ThreadScripting::start(std::string& err) {
  env_ = std::make_unique<Environment>(*this, reactor_, options_, /*firstStart=*/true);
  return env_->start(err);
}

void ThreadScripting::stopEnvironment() { stop_ = true; }

int ThreadScripting::timeoutMs() const {
  if (restart_ || stop_) return 0;
  int t = env_->timeoutMs();
  // While waiting for the open requests to end, look again now and then.
  if (replacing_ && (t < 0 || t > 50)) t = 50;
  return t;
}

void ThreadScripting::runBatch(void (*work)(void*), void* arg) {
  if (restart_ || !env_) {
    work(arg);
  } else {
    env_->runBatch(work, arg);
  }
}

void ThreadScripting::runOnce() {
  if (stop_) {
    stop_ = false;
    env_->abandon();
    closeUnclaimedSlots();
  }
  if (!restart_) env_->runOnce();
  if (replacing_ && !restart_ &&
      (env_->openExchanges() == 0 || reactor_.nowMs() >= replaceDeadlineMs_)) {
    restart_ = true;
  }
  if (restart_) replace();
}

void ThreadScripting::requestRestart(std::string why) {
  if (restart_) return;
  restart_ = true;
  why_ = std::move(why);
}

void ThreadScripting::requestReload(std::string why, std::function<void()> done) {
  if (done) onReplaced_.push_back(std::move(done));
  if (restart_ || replacing_) return;
  replacing_ = true;
  why_ = std::move(why);
  replaceDeadlineMs_ = reactor_.nowMs() + kGracefulDeadlineMs;
  env_->releaseSlots();  // new requests wait for the next environment
}

void ThreadScripting::replace() {
  std::fprintf(stderr, "kuai: thread %d: %s; starting a fresh JavaScript environment\n", reactor_.index(),
               why_.c_str());
  env_->abandon();
  env_.reset();
  restart_ = false;
  replacing_ = false;
  why_.clear();
  std::string err;
  env_ = std::make_unique<Environment>(*this, reactor_, options_, /*firstStart=*/false);
  if (!env_->start(err)) {
    std::fprintf(stderr, "kuai: thread %d: the script did not start again%s%s\n", reactor_.index(),
                 err.empty() ? "" : ": ", err.c_str());
    env_->abandon();
  }
  closeUnclaimedSlots();
  std::vector<std::function<void()>> done;
  done.swap(onReplaced_);
  for (auto& fn : done) fn();
}

void ThreadScripting::closeUnclaimedSlots() {
  for (auto& [key, slot] : slots_) {
    if (slot->claimed()) continue;
    // With --watch the next edit may bring the server back: keep its port.
    if (options_.watch) {
      slot->refuse();
    } else {
      slot->close();
    }
  }
}

JsServer* ThreadScripting::addServer(std::unique_ptr<JsServer> s) {
  servers_.push_back(std::move(s));
  return servers_.back().get();
}

ServerSlot* ThreadScripting::slot(const std::string& key) {
  auto& s = slots_[key];
  if (!s) s = std::make_unique<ServerSlot>(*this, key);
  return s.get();
}

server::Agent& ThreadScripting::agent() {
  return reactor_.context().agent();
}

std::unique_ptr<server::LoopDriver> startEnvironment(server::Reactor& reactor, const ScriptOptions& options,
                                                     std::string& err) {
  gCpuBudgetMs.store(options.cpuBudgetMs);
  // The first thread runs the script alone; the others follow once it started.
  if (reactor.index() != 0) {
    std::unique_lock<std::mutex> lock(gStartMutex);
    gStartCv.wait(lock, [] { return gFirstStart != 0; });
    if (gFirstStart < 0) {
      err = "the script failed to start";
      return nullptr;
    }
  }
  auto ts = std::make_unique<ThreadScripting>(reactor, options);
  {
    std::lock_guard<std::mutex> lock(gThreadsMutex);
    if (gThreads.size() <= size_t(reactor.index())) gThreads.resize(size_t(reactor.index()) + 1, nullptr);
    gThreads[size_t(reactor.index())] = ts.get();
  }
  bool ok = ts->start(err);
  if (reactor.index() == 0) {
    std::lock_guard<std::mutex> lock(gStartMutex);
    gFirstStart = ok ? 1 : -1;
    gStartCv.notify_all();
  }
  if (!ok) {
    if (err.empty()) err = "the script failed to start";
    return nullptr;
  }
  return ts;
}

ThreadScripting* threadScripting(int index) {
  std::lock_guard<std::mutex> lock(gThreadsMutex);
  return size_t(index) < gThreads.size() ? gThreads[size_t(index)] : nullptr;
}

int scriptExitCode() { return gExitCode.load(); }

std::vector<std::string> watchedFiles() {
  std::lock_guard<std::mutex> lock(gWatchFilesMutex);
  return gWatchedFiles;
}

void setWatchListener(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(gWatchFilesMutex);
  gWatchListener = std::move(fn);
}

}  // namespace kuai::scripting
