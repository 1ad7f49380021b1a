#include "scripting/environment.h"

#include <node.h>
#include <node_buffer.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <set>
#include <thread>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>

#include "scripting/embedded_js.h"
#include "server/agent.h"
#include "server/listener.h"
#include "server/proxy.h"
#include "server/reactor.h"

namespace kuai::scripting {

namespace {

std::unique_ptr<node::MultiIsolatePlatform> gPlatform;
std::unique_ptr<node::InitializationResult> gInit;
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

uint64_t monotonicMs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1'000'000;
}

v8::Local<v8::String> str(v8::Isolate* iso, std::string_view s) {
  return v8::String::NewFromUtf8(iso, s.data(), v8::NewStringType::kNormal, int(s.size()))
      .ToLocalChecked();
}

// HTTP field values and reason phrases as Node's parser gives them: latin1.
v8::Local<v8::String> latin1(v8::Isolate* iso, std::string_view s) {
  return v8::String::NewFromOneByte(iso, reinterpret_cast<const uint8_t*>(s.data()),
                                    v8::NewStringType::kNormal, int(s.size()))
      .ToLocalChecked();
}

std::string toStdString(v8::Isolate* iso, v8::Local<v8::Value> v) {
  v8::String::Utf8Value u(iso, v);
  return *u ? std::string(*u, size_t(u.length())) : std::string();
}

void throwError(v8::Isolate* iso, const std::string& msg, const char* code = nullptr) {
  v8::Local<v8::Value> e = v8::Exception::Error(str(iso, msg));
  if (code) {
    e.As<v8::Object>()->Set(iso->GetCurrentContext(), str(iso, "code"), str(iso, code)).Check();
  }
  iso->ThrowException(e);
}

}  // namespace

class JsExchange;
class JsClientCall;
class JsServer;
class ThreadScripting;
class Environment;
void registerWatch(Environment* e);
void unregisterWatch(Environment* e);

// One Node environment (isolate, context, libuv loop) on one reactor thread.
// ThreadScripting replaces it with a fresh one when it has to be given up.
class Environment final {
 public:
  Environment(ThreadScripting& owner, server::Reactor& reactor, const ScriptOptions& options)
      : owner_(owner), reactor_(reactor), options_(options) {}
  ~Environment();

  bool start(std::string& err);

  int fd() const { return uv_backend_fd(loop_); }
  int timeoutMs() const {
    // libuv measures timers against its cached clock, which only moves in
    // uv_run(): refresh it, or a pending timer would seem forever in the future.
    // A loop with nothing alive (a server's sockets are the reactor's, not
    // libuv's) has nothing to wait for: libuv says 0, which would spin.
    if (!uv_loop_alive(loop_)) return -1;
    uv_update_time(loop_);
    return uv_backend_timeout(loop_);
  }
  void runOnce();
  bool alive() const { return !stopped_ && uv_loop_alive(loop_); }
  // One callback scope around a reactor wake-up's worth of calls into JS.
  void runBatch(void (*work)(void*), void* arg);
  // Stops JS for good (the environment is about to be replaced): answers 503 to
  // the requests still open and unhooks everything from the reactor.
  void abandon();

  // Watchdog: when the current call into JS began (0: not in JS).
  std::atomic<uint64_t> jsSince{0};
  std::atomic<bool> terminated{false};
  void markExplicitExit() { explicitExit_ = true; }
  std::set<JsExchange*> exchanges;  // requests this environment still answers
  std::set<JsClientCall*> clientCalls;  // outbound requests (kuai's http client) in flight

  v8::Isolate* isolate() const { return isolate_; }
  v8::Local<v8::Context> context() const { return setup_->context(); }
  server::Reactor& reactor() { return reactor_; }

  // Calls a JS callback stored by the bootstrap, inside a callback scope so
  // that process.nextTick and promise jobs run afterwards, as Node does.
  // Returns what fn returned (empty when it threw or JS is stopped).
  v8::MaybeLocal<v8::Value> call(const v8::Global<v8::Function>& fn, int argc,
                                 v8::Local<v8::Value>* argv);

  v8::Global<v8::Function> onRequest_, onBody_, onBodyEnd_, onAbort_, onDrain_, onSocketClose_;
  // The http client's events (js/http_client.js).
  v8::Global<v8::Function> onClientHead_, onClientData_, onClientEnd_, onClientAbort_,
      onClientFail_, onClientResume_;
  v8::Global<v8::ObjectTemplate> exchangeTemplate_, clientTemplate_;
  v8::Global<v8::Object> binding_;

 private:
  v8::MaybeLocal<v8::Value> bootstrap(const node::StartExecutionCallbackInfo& info);
  v8::Local<v8::Object> makeBinding();
  void afterJs();  // after any call into JS: act on a termination
  static size_t nearHeapLimit(void* data, size_t current, size_t initial);
  static void markExit(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void restart(const v8::FunctionCallbackInfo<v8::Value>& args);

  static void listen(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void closeServer(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void route(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void setTimeouts(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void setCallbacks(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void setClientCallbacks(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void clientRequest(const v8::FunctionCallbackInfo<v8::Value>& args);
  void cancelClientCalls();

  ThreadScripting& owner_;
  server::Reactor& reactor_;
  ScriptOptions options_;
  bool starting_ = false;
  bool inBatch_ = false;
  bool startFailed_ = false;
  bool explicitExit_ = false;
  std::unique_ptr<node::CommonEnvironmentSetup> setup_;
  v8::Isolate* isolate_ = nullptr;
  node::Environment* env_ = nullptr;
  uv_loop_t* loop_ = nullptr;
  std::unique_ptr<v8::Locker> locker_;
  std::unique_ptr<v8::Isolate::Scope> isolateScope_;
  bool stopped_ = false;
  bool exitEmitted_ = false;
  std::map<int, JsServer*> servers_;  // owned by ThreadScripting (they outlive us)
  int nextServerId_ = 1;
  std::map<std::string, int> listenCounts_;
 public:
  std::string terminatedWhy_;
};

// The AsyncHandler behind one JS server.listen(): hands each request to JS.
class JsServer final : public server::AsyncHandler {
 public:
  JsServer(Environment& env, int id) : env_(&env), id_(id) {}
  void onRequest(const parser::Request& req, const std::shared_ptr<server::Exchange>& ex) override;
  void onConnectionClose(uint64_t id) override;
  bool answersContinue() const override { return true; }  // 'checkContinue', as Node
  // Its environment is gone: connections it accepted earlier get 503.
  void orphan() { env_ = nullptr; }
  server::Listener* listener = nullptr;
  std::string key;  // host:port#n, to hand the socket to a replacement environment

 private:
  Environment* env_;
  int id_;
};

// The LoopDriver a reactor sees: the thread's current Environment, replaced
// after an uncaught exception, a handler over its CPU budget or a heap near its
// limit, while the other threads keep serving.
class ThreadScripting final : public server::LoopDriver {
 public:
  ThreadScripting(server::Reactor& reactor, const ScriptOptions& options)
      : reactor_(reactor), options_(options) {}
  ~ThreadScripting() override;

  bool start(std::string& err) {
    env_ = std::make_unique<Environment>(*this, reactor_, options_);
    return env_->start(err);
  }
  int fd() const override { return env_->fd(); }
  int timeoutMs() const override { return restart_ ? 0 : env_->timeoutMs(); }
  void runOnce() override;
  bool alive() const override { return restart_ || env_->alive(); }
  void runBatch(void (*work)(void*), void* arg) override {
    if (restart_ || !env_) {
      work(arg);
    } else {
      env_->runBatch(work, arg);
    }
  }

  void requestRestart(std::string why) {
    if (restart_) return;
    restart_ = true;
    why_ = std::move(why);
  }
  JsServer* addServer(std::unique_ptr<JsServer> s) {
    servers_.push_back(std::move(s));
    return servers_.back().get();
  }
  // A replaced environment's listening sockets stay open (no connection is
  // refused meanwhile) and go to the new environment's listen() with the same
  // address and order; those it does not claim are closed.
  void park(const std::string& key, server::Listener* l) { parked_[key] = l; }
  server::Listener* unpark(const std::string& key) {
    auto it = parked_.find(key);
    if (it == parked_.end()) return nullptr;
    server::Listener* l = it->second;
    parked_.erase(it);
    return l;
  }
  void closeParked() {
    for (auto& [key, l] : parked_) reactor_.removeListener(l);
    parked_.clear();
  }
  // The thread's keep-alive pools for the scripts' outbound requests: they
  // outlive a replaced environment (made on first use).
  server::Agent& agent() {
    if (!agent_) agent_ = std::make_unique<server::Agent>(reactor_);
    return *agent_;
  }

 private:
  server::Reactor& reactor_;
  ScriptOptions options_;
  std::unique_ptr<server::Agent> agent_;
  std::unique_ptr<Environment> env_;
  std::vector<std::unique_ptr<JsServer>> servers_;
  std::map<std::string, server::Listener*> parked_;
  bool restart_ = false;
  std::string why_;
};

// The C++ side of one request's JS handle: receives the Exchange's events and
// forwards them to JS; the handle's methods (writeHead/write/end) reach it.
class JsExchange final : public server::ExchangeListener {
 public:
  JsExchange(Environment& env, std::shared_ptr<server::Exchange> ex, v8::Local<v8::Object> handle)
      : env_(env), ex_(std::move(ex)), handle_(env.isolate(), handle) {
    ex_->setListener(this);
    handle->SetAlignedPointerInInternalField(0, this);
    env_.exchanges.insert(this);
  }
  ~JsExchange() override { env_.exchanges.erase(this); }

  // The environment is going away: finish the response without JS.
  void abandon() {
    if (!ex_->ended()) {
      if (!ex_->headersSent()) {
        ex_->writeHead(503, {}, "Content-Type: text/plain; charset=utf-8\r\n", 20);
        ex_->write("Service Unavailable\n");
      }
      ex_->end();
    }
    ex_->setListener(nullptr);
    delete this;
  }

  server::Exchange& exchange() { return *ex_; }
  bool ownedBy(const Environment* e) const { return &env_ == e; }

  void onBody(std::string_view chunk) override {
    v8::HandleScope hs(env_.isolate());
    v8::Context::Scope cs(env_.context());
    notify(env_.onBody_,
           node::Buffer::Copy(env_.isolate(), chunk.data(), chunk.size()).ToLocalChecked());
  }
  void onBodyEnd() override {
    bodyDone_ = true;
    notify(env_.onBodyEnd_);
  }
  void onAbort() override {
    aborted_ = true;
    notify(env_.onAbort_);
  }
  void onDrain() override { notify(env_.onDrain_); }
  void onFinish() override {}

  // Calls fn(handle[, extra]) in JS. While it runs, this object must not go
  // (JS may end the response inside); it releases itself afterwards if done.
  void notify(const v8::Global<v8::Function>& fn, v8::Local<v8::Value> extra = {}) {
    v8::HandleScope hs(env_.isolate());
    v8::Context::Scope cs(env_.context());
    v8::Local<v8::Value> argv[2] = {handle_.Get(env_.isolate()), extra};
    ++depth_;
    env_.call(fn, extra.IsEmpty() ? 1 : 2, argv);
    --depth_;
    maybeRelease();
  }

  // After end() and the request body's end (or an abort) nothing more comes:
  // unlink from the JS handle and go.
  void maybeRelease() {
    if (depth_ > 0) return;  // inside one of our own callbacks: it releases on return
    if (!(aborted_ || (bodyDone_ && ex_->ended()))) return;
    v8::HandleScope hs(env_.isolate());
    handle_.Get(env_.isolate())->SetAlignedPointerInInternalField(0, nullptr);
    ex_->setListener(nullptr);
    delete this;
  }

  static JsExchange* from(const v8::FunctionCallbackInfo<v8::Value>& args) {
    v8::Local<v8::Object> self = args.This();
    if (self->InternalFieldCount() < 1) return nullptr;
    return static_cast<JsExchange*>(self->GetAlignedPointerFromInternalField(0));
  }

  static void writeHead(const v8::FunctionCallbackInfo<v8::Value>& args) {
    JsExchange* self = from(args);
    if (!self) return;
    v8::Isolate* iso = args.GetIsolate();
    int status = args[0]->Int32Value(iso->GetCurrentContext()).FromMaybe(200);
    std::string reason = args[1]->IsString() ? toStdString(iso, args[1]) : std::string();
    std::string lines = toStdString(iso, args[2]);
    int64_t length = int64_t(args[3]->NumberValue(iso->GetCurrentContext()).FromMaybe(-1));
    int keepAlive = args[4]->Int32Value(iso->GetCurrentContext()).FromMaybe(-1);
    self->ex_->writeHead(status, reason, lines, length, keepAlive);
  }

  static bool writeValue(JsExchange* self, v8::Isolate* iso, v8::Local<v8::Value> v) {
    if (node::Buffer::HasInstance(v)) {
      return self->ex_->write(std::string_view(node::Buffer::Data(v), node::Buffer::Length(v)));
    }
    if (v->IsString()) {
      v8::Local<v8::String> s = v.As<v8::String>();
      std::string buf(size_t(s->Utf8Length(iso)), '\0');
      s->WriteUtf8(iso, buf.data(), int(buf.size()), nullptr, v8::String::NO_NULL_TERMINATION);
      return self->ex_->write(buf);
    }
    return true;
  }

  static void write(const v8::FunctionCallbackInfo<v8::Value>& args) {
    JsExchange* self = from(args);
    if (!self) {
      args.GetReturnValue().Set(true);
      return;
    }
    bool ok = writeValue(self, args.GetIsolate(), args[0]);
    args.GetReturnValue().Set(ok);
  }

  static void pauseBody(const v8::FunctionCallbackInfo<v8::Value>& args) {
    if (JsExchange* self = from(args)) self->ex_->pauseBody();
  }
  static void resumeBody(const v8::FunctionCallbackInfo<v8::Value>& args) {
    if (JsExchange* self = from(args)) self->ex_->resumeBody();
  }

  // An 'upgrade' listener took the connection: raw bytes both ways from now.
  static void startRaw(const v8::FunctionCallbackInfo<v8::Value>& args) {
    if (JsExchange* self = from(args)) self->ex_->startRaw();
  }
  static void writeContinue(const v8::FunctionCallbackInfo<v8::Value>& args) {
    if (JsExchange* self = from(args)) self->ex_->writeContinue();
  }
  // Closes the connection after what is queued (an upgraded socket's end or
  // destroy, a response that cannot be finished).
  static void abort(const v8::FunctionCallbackInfo<v8::Value>& args) {
    JsExchange* self = from(args);
    if (!self) return;
    self->ex_->abort();
    self->aborted_ = true;
    self->maybeRelease();
  }

  static void end(const v8::FunctionCallbackInfo<v8::Value>& args) {
    JsExchange* self = from(args);
    if (!self) return;
    if (args.Length() > 0 && !args[0]->IsUndefined() && !args[0]->IsNull()) {
      writeValue(self, args.GetIsolate(), args[0]);
    }
    self->ex_->end();
    self->maybeRelease();
  }

 private:
  Environment& env_;
  std::shared_ptr<server::Exchange> ex_;
  v8::Global<v8::Object> handle_;
  bool bodyDone_ = false;
  bool aborted_ = false;
  int depth_ = 0;
};

// One outbound request of kuai's http client (js/http_client.js): the
// Downstream a ProxyCall of the thread's Agent drives, forwarding the response
// to the request's JS handle, whose methods (write/end/abort/drain) reach the
// call's ExchangeListener side. Owned by the ProxyCall (shared); holds itself
// until the call detaches, or the environment goes away first.
class JsClientCall final : public server::Downstream {
 public:
  JsClientCall(Environment& env, v8::Local<v8::Object> handle)
      : env_(&env), handle_(env.isolate(), handle) {
    handle->SetAlignedPointerInInternalField(0, this);
    env.clientCalls.insert(this);
  }
  ~JsClientCall() override { handle_.Reset(); }

  std::shared_ptr<JsClientCall> self;   // while the JS handle may reach this
  server::ExchangeListener* call = nullptr;
  bool detached = false;

  bool valid() const override { return env_ != nullptr && !cancelled_; }
  bool headersSent() const override { return headSeen_; }

  void head(const parser::Response& resp) override {
    headSeen_ = true;
    if (!valid()) return;
    v8::Isolate* iso = env_->isolate();
    v8::HandleScope hs(iso);
    v8::Local<v8::Context> ctx = env_->context();
    v8::Context::Scope cs(ctx);
    std::vector<v8::Local<v8::Value>> items;
    items.reserve(resp.headers.size() * 2);
    for (const parser::Header& h : resp.headers) {
      items.push_back(latin1(iso, h.name));
      items.push_back(latin1(iso, h.value));
    }
    v8::Local<v8::Value> argv[5] = {
        handle_.Get(iso),
        v8::Integer::New(iso, resp.status),
        latin1(iso, resp.reason),
        v8::Array::New(iso, items.data(), items.size()),
        v8::Integer::New(iso, resp.versionMinor),
    };
    env_->call(env_->onClientHead_, 5, argv);
  }

  // Never asked for (OutboundRequest::upgrade is false): treat as broken.
  void upgrade(const parser::Response&) override { abort(); }

  bool write(std::string_view bytes) override {
    if (!valid()) return true;
    v8::Isolate* iso = env_->isolate();
    v8::HandleScope hs(iso);
    v8::Local<v8::Context> ctx = env_->context();
    v8::Context::Scope cs(ctx);
    v8::Local<v8::Value> argv[2] = {
        handle_.Get(iso),
        node::Buffer::Copy(iso, bytes.data(), bytes.size()).ToLocalChecked(),
    };
    v8::Local<v8::Value> r;
    bool full = env_->call(env_->onClientData_, 2, argv).ToLocal(&r) && r->IsFalse();
    // JS may have cancelled the call from its 'data' handler: the call is
    // over then, nothing to pause. Otherwise false (the response stream is
    // full) stops the reading of the upstream until the handle's drain().
    return !full || !valid();
  }

  void end() override { notify(env_ ? &env_->onClientEnd_ : nullptr); }
  void abort() override { notify(env_ ? &env_->onClientAbort_ : nullptr); }

  void fail(int status, const char* why) override {
    if (!valid()) return;
    v8::Isolate* iso = env_->isolate();
    v8::HandleScope hs(iso);
    v8::Local<v8::Context> ctx = env_->context();
    v8::Context::Scope cs(ctx);
    v8::Local<v8::Value> argv[3] = {handle_.Get(iso), v8::Integer::New(iso, status),
                                    str(iso, why ? why : "")};
    env_->call(env_->onClientFail_, 3, argv);
  }

  // The upstream is slow to take the request body: write() says false until
  // resumeBody, which JS sees as 'drain'.
  void pauseBody() override { bodyPaused_ = true; }
  void resumeBody() override {
    if (!bodyPaused_) return;
    bodyPaused_ = false;
    notify(env_ ? &env_->onClientResume_ : nullptr);
  }

  void detach() override {
    detached = true;
    call = nullptr;
    release();
  }

  // The environment is going away: stop the call without telling JS.
  void cancel() {
    cancelled_ = true;
    if (server::ExchangeListener* c = call) {
      call = nullptr;
      c->onAbort();  // detaches (and releases) at once
    }
    release();
  }

  // Unlinks from the JS handle; the ProxyCall keeps this object until it goes.
  void release() {
    Environment* env = env_;
    env_ = nullptr;
    if (env) {
      env->clientCalls.erase(this);
      v8::HandleScope hs(env->isolate());
      handle_.Get(env->isolate())->SetAlignedPointerInInternalField(0, nullptr);
    }
    handle_.Reset();
    std::shared_ptr<JsClientCall> keep = std::move(self);  // may be the last reference
  }

  static JsClientCall* from(const v8::FunctionCallbackInfo<v8::Value>& args) {
    v8::Local<v8::Object> self = args.This();
    if (self->InternalFieldCount() < 1) return nullptr;
    return static_cast<JsClientCall*>(self->GetAlignedPointerFromInternalField(0));
  }

  // handle.write(buffer | string) -> false when the caller should wait for 'drain'.
  static void jsWrite(const v8::FunctionCallbackInfo<v8::Value>& args) {
    JsClientCall* self = from(args);
    if (!self || !self->call) {
      args.GetReturnValue().Set(true);
      return;
    }
    v8::Isolate* iso = args.GetIsolate();
    v8::Local<v8::Value> v = args[0];
    if (node::Buffer::HasInstance(v)) {
      size_t n = node::Buffer::Length(v);
      if (n > 0) self->call->onBody(std::string_view(node::Buffer::Data(v), n));
    } else if (v->IsString()) {
      v8::Local<v8::String> s = v.As<v8::String>();
      std::string buf(size_t(s->Utf8Length(iso)), '\0');
      s->WriteUtf8(iso, buf.data(), int(buf.size()), nullptr, v8::String::NO_NULL_TERMINATION);
      if (!buf.empty()) self->call->onBody(buf);
    }
    // onBody may have detached the call (and released this object's link).
    self = from(args);
    args.GetReturnValue().Set(!self || !self->bodyPaused_);
  }
  // handle.end(): the request body is complete.
  static void jsEnd(const v8::FunctionCallbackInfo<v8::Value>& args) {
    JsClientCall* self = from(args);
    if (self && self->call) self->call->onBodyEnd();
  }
  // handle.abort(): cancel (req.destroy()); nothing more comes from the call.
  static void jsAbort(const v8::FunctionCallbackInfo<v8::Value>& args) {
    JsClientCall* self = from(args);
    if (!self) return;
    self->cancelled_ = true;
    std::shared_ptr<JsClientCall> keep = self->self;
    if (server::ExchangeListener* c = self->call) {
      self->call = nullptr;
      c->onAbort();
    }
    if (keep) keep->release();
  }
  // handle.drain(): JS took the response data it had refused; read on.
  static void jsDrain(const v8::FunctionCallbackInfo<v8::Value>& args) {
    JsClientCall* self = from(args);
    if (self && self->call) self->call->onDrain();
  }

 private:
  void notify(const v8::Global<v8::Function>* fn) {
    if (!valid() || !fn) return;
    v8::Isolate* iso = env_->isolate();
    v8::HandleScope hs(iso);
    v8::Local<v8::Context> ctx = env_->context();
    v8::Context::Scope cs(ctx);
    v8::Local<v8::Value> argv[1] = {handle_.Get(iso)};
    env_->call(*fn, 1, argv);
  }

  Environment* env_;
  v8::Global<v8::Object> handle_;
  bool headSeen_ = false;
  bool bodyPaused_ = false;
  bool cancelled_ = false;
};

void JsServer::onRequest(const parser::Request& req, const std::shared_ptr<server::Exchange>& ex) {
  if (!env_) {
    ex->writeHead(503, {}, "Content-Type: text/plain; charset=utf-8\r\n", 20);
    ex->write("Service Unavailable\n");
    ex->end();
    return;
  }
  Environment& env_ = *this->env_;
  v8::Isolate* iso = env_.isolate();
  v8::HandleScope hs(iso);
  v8::Local<v8::Context> ctx = env_.context();
  v8::Context::Scope cs(ctx);
  v8::Local<v8::Object> handle =
      env_.exchangeTemplate_.Get(iso)->NewInstance(ctx).ToLocalChecked();
  new JsExchange(env_, ex, handle);  // owned by the handle's lifecycle (maybeRelease)
  // rawHeaders in one allocation (element-by-element stores are much slower).
  v8::Local<v8::Value> items[2 * 100 + 2];
  size_t n = std::min<size_t>(req.headers.size(), 100);
  std::vector<v8::Local<v8::Value>> spill;
  v8::Local<v8::Value>* out = items;
  if (req.headers.size() > 100) {
    spill.resize(req.headers.size() * 2);
    out = spill.data();
    n = req.headers.size();
  }
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = str(iso, req.headers[i].name);
    out[2 * i + 1] = str(iso, req.headers[i].value);
  }
  v8::Local<v8::Array> raw = v8::Array::New(iso, out, 2 * n);
  // 1: an Upgrade request (llhttp's rule: Upgrade + Connection: upgrade);
  // 2: it has an Expect field. JS looks closer only then.
  int flags = (req.upgrade ? 1 : 0) | (req.hasHeader("expect") ? 2 : 0);
  v8::Local<v8::Value> argv[11] = {
      v8::Integer::New(iso, id_),
      handle,
      str(iso, req.method),
      str(iso, req.target),
      raw,
      v8::Integer::New(iso, req.versionMinor),
      str(iso, ex->remoteAddress()),
      v8::Integer::New(iso, ex->remotePort()),
      v8::Boolean::New(iso, ex->encrypted()),
      v8::Number::New(iso, double(ex->connectionId())),
      v8::Integer::New(iso, flags),
  };
  env_.call(env_.onRequest_, 11, argv);
}

void JsServer::onConnectionClose(uint64_t id) {
  if (!env_) return;
  v8::Isolate* iso = env_->isolate();
  v8::HandleScope hs(iso);
  v8::Context::Scope cs(env_->context());
  v8::Local<v8::Value> argv[1] = {v8::Number::New(iso, double(id))};
  env_->call(env_->onSocketClose_, 1, argv);
}

Environment::~Environment() {
  unregisterWatch(this);
  cancelClientCalls();
  if (setup_) {
    {
      v8::HandleScope hs(isolate_);
      v8::Context::Scope cs(setup_->context());
      if (!exitEmitted_ && !stopped_) node::EmitProcessExit(env_);
    }
    node::Stop(env_);
    onRequest_.Reset();
    onBody_.Reset();
    onBodyEnd_.Reset();
    onAbort_.Reset();
    onDrain_.Reset();
    onSocketClose_.Reset();
    onClientHead_.Reset();
    onClientData_.Reset();
    onClientEnd_.Reset();
    onClientAbort_.Reset();
    onClientFail_.Reset();
    onClientResume_.Reset();
    exchangeTemplate_.Reset();
    clientTemplate_.Reset();
    binding_.Reset();
  }
  isolateScope_.reset();
  locker_.reset();
  setup_.reset();
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
    node::CallbackScope scope(isolate_, binding_.Get(isolate_), node::async_context{0, 0});
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
    node::CallbackScope scope(isolate_, binding_.Get(isolate_), node::async_context{0, 0});
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
  owner_.requestRestart(terminatedWhy_.empty() ? "its JavaScript was terminated" : terminatedWhy_);
}

void Environment::abandon() {
  stopped_ = true;
  for (auto& [id, srv] : servers_) {
    if (srv->listener) owner_.park(srv->key, srv->listener);
    srv->listener = nullptr;
    // An app route answers 503 until the replacement has loaded its script.
    if (srv->key.rfind("app:", 0) == 0) reactor_.setAppHandler(srv->key.substr(4), nullptr);
    srv->orphan();
  }
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
  self->terminatedWhy_ = "its heap neared the limit (" + std::to_string(current >> 20) + " MiB)";
  self->terminated.store(true);
  self->isolate_->TerminateExecution();
  // Room to unwind; the environment is replaced right after.
  return current + current / 2;
}

// From JS: this environment cannot go on (an uncaught exception). It is replaced
// at the reactor's next turn; nothing is torn down while JS is on the stack.
void Environment::restart(const v8::FunctionCallbackInfo<v8::Value>& args) {
  auto* self = static_cast<Environment*>(args.Data().As<v8::External>()->Value());
  self->owner_.requestRestart(toStdString(args.GetIsolate(), args[0]));
}

void Environment::markExit(const v8::FunctionCallbackInfo<v8::Value>& args) {
  static_cast<Environment*>(args.Data().As<v8::External>()->Value())->markExplicitExit();
}

void Environment::runOnce() {
  if (stopped_) return;
  v8::HandleScope hs(isolate_);
  v8::Context::Scope cs(context());
  jsSince.store(monotonicMs(), std::memory_order_relaxed);
  uv_run(loop_, UV_RUN_NOWAIT);
  jsSince.store(0, std::memory_order_relaxed);
  afterJs();
  if (stopped_) return;
  if (!uv_loop_alive(loop_) && !exitEmitted_) {
    gPlatform->DrainTasks(isolate_);
    if (!uv_loop_alive(loop_)) {
      // As Node does when its loop runs dry: 'beforeExit', which may schedule more.
      node::EmitProcessBeforeExit(env_);
    }
  }
}

bool Environment::start(std::string& err) {
  std::vector<std::string> errors;
  std::vector<std::string> args = {gInit->args().empty() ? "kuai" : gInit->args()[0]};
  if (!options_.script.empty()) {
    std::error_code ec;
    auto abs = std::filesystem::absolute(options_.script, ec);
    args.push_back(ec ? options_.script : abs.string());
  }
  for (const auto& a : options_.args) args.push_back(a);
  setup_ = node::CommonEnvironmentSetup::Create(
      gPlatform.get(), &errors, args, gInit->exec_args(),
      node::EnvironmentFlags::Flags(node::EnvironmentFlags::kOwnsProcessState |
                                    node::EnvironmentFlags::kNoRegisterESMLoader));
  if (!setup_) {
    err = "cannot create the Node environment";
    for (const auto& e : errors) err += ": " + e;
    return false;
  }
  isolate_ = setup_->isolate();
  env_ = setup_->env();
  loop_ = setup_->event_loop();
  locker_ = std::make_unique<v8::Locker>(isolate_);
  isolateScope_ = std::make_unique<v8::Isolate::Scope>(isolate_);
  v8::HandleScope hs(isolate_);
  v8::Context::Scope cs(setup_->context());

  // process.exit() ends the process, as in Node. An uncaught exception (Node
  // has printed it) ends only this environment, which is then replaced; while
  // the main script first runs, it means the script cannot start.
  node::SetProcessExitHandler(env_, [this](node::Environment*, int code) {
    if (explicitExit_) {
      std::fflush(stdout);
      std::fflush(stderr);
      std::_Exit(code);
    }
    if (starting_) {
      startFailed_ = true;
      stopped_ = true;
      terminated.store(true);
      isolate_->TerminateExecution();
    } else {
      // A fatal error with no JS handler in the way: replace the environment
      // at the next turn (terminating here would unbalance Node's callback
      // scopes).
      owner_.requestRestart("a fatal error");
    }
  });
  isolate_->AddNearHeapLimitCallback(&Environment::nearHeapLimit, this);
  registerWatch(this);

  starting_ = true;
  jsSince.store(monotonicMs());
  v8::MaybeLocal<v8::Value> r = node::LoadEnvironment(
      env_, [this](const node::StartExecutionCallbackInfo& info) { return bootstrap(info); });
  jsSince.store(0);
  starting_ = false;
  if (r.IsEmpty() || startFailed_ || terminated.load()) {
    if (terminated.load() && !startFailed_) {
      err = "the main script did not finish within its CPU budget";
    }
    if (terminated.load() && !terminatedWhy_.empty() && !startFailed_) {
      err = "the main script was stopped: " + terminatedWhy_;
    }
    return false;
  }
  return true;
}

v8::Local<v8::Object> Environment::makeBinding() {
  v8::Isolate* iso = isolate_;
  v8::Local<v8::Context> ctx = context();
  v8::Local<v8::Object> b = v8::Object::New(iso);
  v8::Local<v8::External> self = v8::External::New(iso, this);
  auto fn = [&](const char* name, v8::FunctionCallback cb) {
    b->Set(ctx, str(iso, name),
           v8::FunctionTemplate::New(iso, cb, self)->GetFunction(ctx).ToLocalChecked())
        .Check();
  };
  fn("listen", &Environment::listen);
  fn("close", &Environment::closeServer);
  fn("route", &Environment::route);
  fn("setTimeouts", &Environment::setTimeouts);
  fn("setCallbacks", &Environment::setCallbacks);
  fn("setClientCallbacks", &Environment::setClientCallbacks);
  fn("clientRequest", &Environment::clientRequest);
  fn("markExit", &Environment::markExit);
  fn("restart", &Environment::restart);
  b->Set(ctx, str(iso, "reactor"), v8::Integer::New(iso, reactor_.index())).Check();

  v8::Local<v8::Object> sources = v8::Object::New(iso);
  for (size_t i = 0; i < kEmbeddedJsCount; ++i) {
    sources->Set(ctx, str(iso, kEmbeddedJs[i].name),
                 str(iso, std::string_view(kEmbeddedJs[i].data, kEmbeddedJs[i].size)))
        .Check();
  }
  b->Set(ctx, str(iso, "sources"), sources).Check();
  b->Set(ctx, str(iso, "script"), str(iso, options_.script)).Check();
  b->Set(ctx, str(iso, "eval"), str(iso, options_.eval)).Check();
  b->Set(ctx, str(iso, "hasEval"), v8::Boolean::New(iso, !options_.eval.empty())).Check();
  v8::Local<v8::Array> apps = v8::Array::New(iso, int(options_.apps.size()));
  for (size_t i = 0; i < options_.apps.size(); ++i) {
    apps->Set(ctx, uint32_t(i), str(iso, options_.apps[i])).Check();
  }
  b->Set(ctx, str(iso, "apps"), apps).Check();

  v8::Local<v8::ObjectTemplate> ex = v8::ObjectTemplate::New(iso);
  ex->SetInternalFieldCount(1);
  // Fields the JS side sets on every handle, declared up front so all handles
  // share one shape.
  ex->Set(str(iso, "req"), v8::Null(iso));
  ex->Set(str(iso, "res"), v8::Null(iso));
  ex->Set(str(iso, "paused"), v8::False(iso));
  ex->Set(str(iso, "tunnel"), v8::Null(iso));
  ex->Set(str(iso, "writeHead"), v8::FunctionTemplate::New(iso, &JsExchange::writeHead));
  ex->Set(str(iso, "write"), v8::FunctionTemplate::New(iso, &JsExchange::write));
  ex->Set(str(iso, "end"), v8::FunctionTemplate::New(iso, &JsExchange::end));
  ex->Set(str(iso, "pauseBody"), v8::FunctionTemplate::New(iso, &JsExchange::pauseBody));
  ex->Set(str(iso, "resumeBody"), v8::FunctionTemplate::New(iso, &JsExchange::resumeBody));
  ex->Set(str(iso, "startRaw"), v8::FunctionTemplate::New(iso, &JsExchange::startRaw));
  ex->Set(str(iso, "writeContinue"), v8::FunctionTemplate::New(iso, &JsExchange::writeContinue));
  ex->Set(str(iso, "abort"), v8::FunctionTemplate::New(iso, &JsExchange::abort));
  exchangeTemplate_.Reset(iso, ex);

  v8::Local<v8::ObjectTemplate> client = v8::ObjectTemplate::New(iso);
  client->SetInternalFieldCount(1);
  client->Set(str(iso, "req"), v8::Null(iso));
  client->Set(str(iso, "paused"), v8::False(iso));
  client->Set(str(iso, "write"), v8::FunctionTemplate::New(iso, &JsClientCall::jsWrite));
  client->Set(str(iso, "end"), v8::FunctionTemplate::New(iso, &JsClientCall::jsEnd));
  client->Set(str(iso, "abort"), v8::FunctionTemplate::New(iso, &JsClientCall::jsAbort));
  client->Set(str(iso, "drain"), v8::FunctionTemplate::New(iso, &JsClientCall::jsDrain));
  clientTemplate_.Reset(iso, client);
  return b;
}

v8::MaybeLocal<v8::Value> Environment::bootstrap(const node::StartExecutionCallbackInfo& info) {
  v8::Isolate* iso = isolate_;
  v8::EscapableHandleScope hs(iso);
  v8::Local<v8::Context> ctx = context();
  v8::Local<v8::Object> binding = makeBinding();
  binding_.Reset(iso, binding);
  const EmbeddedFile* boot = findEmbeddedJs("bootstrap.js");
  v8::ScriptOrigin origin(iso, str(iso, "kuai:bootstrap.js"));
  v8::Local<v8::Script> script;
  if (!v8::Script::Compile(ctx, str(iso, std::string_view(boot->data, boot->size)), &origin)
           .ToLocal(&script)) {
    return {};
  }
  v8::Local<v8::Value> fn;
  if (!script->Run(ctx).ToLocal(&fn) || !fn->IsFunction()) return {};
  v8::Local<v8::Value> argv[3] = {info.process_object, info.native_require, binding};
  v8::MaybeLocal<v8::Value> r = fn.As<v8::Function>()->Call(ctx, v8::Undefined(iso), 3, argv);
  v8::Local<v8::Value> out;
  if (!r.ToLocal(&out)) return {};
  return hs.Escape(out);
}

namespace {
// Keeps the functions named in args[0] (an object of callbacks) in `slots`.
void readCallbacks(const v8::FunctionCallbackInfo<v8::Value>& args,
                   std::initializer_list<std::pair<const char*, v8::Global<v8::Function>*>> slots) {
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  v8::Local<v8::Object> o = args[0].As<v8::Object>();
  for (const auto& [name, out] : slots) {
    v8::Local<v8::Value> v = o->Get(ctx, str(iso, name)).ToLocalChecked();
    if (v->IsFunction()) out->Reset(iso, v.As<v8::Function>());
  }
}
}  // namespace

void Environment::setCallbacks(const v8::FunctionCallbackInfo<v8::Value>& args) {
  auto* self = static_cast<Environment*>(args.Data().As<v8::External>()->Value());
  readCallbacks(args, {{"onRequest", &self->onRequest_},
                       {"onBody", &self->onBody_},
                       {"onBodyEnd", &self->onBodyEnd_},
                       {"onAbort", &self->onAbort_},
                       {"onDrain", &self->onDrain_},
                       {"onSocketClose", &self->onSocketClose_}});
}

void Environment::setClientCallbacks(const v8::FunctionCallbackInfo<v8::Value>& args) {
  auto* self = static_cast<Environment*>(args.Data().As<v8::External>()->Value());
  readCallbacks(args, {{"onHead", &self->onClientHead_},
                       {"onData", &self->onClientData_},
                       {"onEnd", &self->onClientEnd_},
                       {"onAbort", &self->onClientAbort_},
                       {"onFail", &self->onClientFail_},
                       {"onResume", &self->onClientResume_}});
}

// clientRequest(address, port, head, flags) -> handle. address: an IP literal;
// head: the request line and fields, blank line included (latin1); flags:
// 1 idempotent, 2 has a body, 4 chunked body (framed natively), 8 HEAD.
// The response comes through the client callbacks; throws when the address is
// not a literal or the port is out of range.
void Environment::clientRequest(const v8::FunctionCallbackInfo<v8::Value>& args) {
  auto* self = static_cast<Environment*>(args.Data().As<v8::External>()->Value());
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  std::string address = toStdString(iso, args[0]);
  int port = args[1]->Int32Value(ctx).FromMaybe(0);
  server::OutboundRequest req;
  v8::Local<v8::String> head;
  if (!args[2]->ToString(ctx).ToLocal(&head)) return;
  req.head.resize(size_t(head->Length()));
  head->WriteOneByte(iso, reinterpret_cast<uint8_t*>(req.head.data()), 0, int(req.head.size()),
                     v8::String::NO_NULL_TERMINATION);
  int flags = args[3]->Int32Value(ctx).FromMaybe(0);
  req.idempotent = (flags & 1) != 0;
  req.hasBody = (flags & 2) != 0;
  req.chunked = (flags & 4) != 0;
  req.isHead = (flags & 8) != 0;
  req.upgrade = false;

  v8::Local<v8::Object> handle;
  if (!self->clientTemplate_.Get(iso)->NewInstance(ctx).ToLocal(&handle)) return;
  auto c = std::make_shared<JsClientCall>(*self, handle);
  c->self = c;
  std::string err;
  server::ExchangeListener* l = self->owner_.agent().request(address, port, c, std::move(req), err);
  if (!l) {
    c->release();
    throwError(iso, err.empty() ? "cannot start the request" : err, "ERR_INVALID_ADDRESS");
    return;
  }
  // A call that failed at once (no socket) has detached already; its failure
  // reaches JS through onFail.
  if (!c->detached) c->call = l;
  args.GetReturnValue().Set(handle);
}

// listen(host, port) -> [serverId, boundPort]; throws with code EADDRINUSE etc.
void Environment::listen(const v8::FunctionCallbackInfo<v8::Value>& args) {
  auto* self = static_cast<Environment*>(args.Data().As<v8::External>()->Value());
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  std::string host = toStdString(iso, args[0]);
  int port = args[1]->Int32Value(ctx).FromMaybe(0);
  std::string base = host + ":" + std::to_string(port);
  int nth = self->listenCounts_[base]++;
  std::string key = base + "#" + std::to_string(nth);

  int fd = -1;
  int bound = port;
  server::Listener* reused = self->owner_.unpark(key);
  if (reused) {
    std::lock_guard<std::mutex> lock(gListenMutex);
    bound = gListenPorts[key];
  }
  if (!reused) try {
    std::lock_guard<std::mutex> lock(gListenMutex);
    auto it = gListenPorts.find(key);
    if (it == gListenPorts.end()) {
      std::vector<int> fds = server::openListeners(host, bound, 1);
      fd = fds[0];
      gListenPorts[key] = bound;
    } else {
      bound = it->second;
      std::vector<int> fds = server::openListeners(host, bound, 1, /*joinExisting=*/true);
      fd = fds[0];
    }
  } catch (const std::exception& e) {
    std::string msg = e.what();
    throwError(iso, "listen " + msg.substr(msg.find(':') == std::string::npos ? 0 : 0),
               msg.find("already in use") != std::string::npos ? "EADDRINUSE"
               : msg.find("permission") != std::string::npos ? "EACCES"
                                                            : "ELISTEN");
    return;
  }
  // https.createServer: args[2] = {cert: [pem...], key: [pem...]}.
  std::shared_ptr<tls::TlsContext> tlsContext;
  if (args.Length() > 2 && args[2]->IsObject()) {
    // (fd may be -1 here when a parked socket is reused.)
    v8::Local<v8::Object> o = args[2].As<v8::Object>();
    auto list = [&](const char* name) {
      std::vector<std::string> out;
      v8::Local<v8::Value> v = o->Get(ctx, str(iso, name)).ToLocalChecked();
      if (v->IsArray()) {
        v8::Local<v8::Array> a = v.As<v8::Array>();
        for (uint32_t i = 0; i < a->Length(); ++i) {
          out.push_back(toStdString(iso, a->Get(ctx, i).ToLocalChecked()));
        }
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
      if (reused) self->owner_.park(key, reused);
      throwError(iso, tlsErr, "ERR_KUAI_TLS");
      return;
    }
  }
  int id = self->nextServerId_++;
  JsServer* srv = self->owner_.addServer(std::make_unique<JsServer>(*self, id));
  srv->key = key;
  if (reused) {
    reused->handler = srv;
    reused->tls = std::move(tlsContext);
    srv->listener = reused;
  } else {
    srv->listener = self->reactor_.addListener(fd, srv, std::move(tlsContext));
  }
  self->servers_[id] = srv;
  v8::Local<v8::Array> out = v8::Array::New(iso, 2);
  out->Set(ctx, 0, v8::Integer::New(iso, id)).Check();
  out->Set(ctx, 1, v8::Integer::New(iso, bound)).Check();
  args.GetReturnValue().Set(out);
}

// route(appPath) -> serverId: the server answers a config file's app route.
void Environment::route(const v8::FunctionCallbackInfo<v8::Value>& args) {
  auto* self = static_cast<Environment*>(args.Data().As<v8::External>()->Value());
  v8::Isolate* iso = args.GetIsolate();
  std::string app = toStdString(iso, args[0]);
  int id = self->nextServerId_++;
  JsServer* srv = self->owner_.addServer(std::make_unique<JsServer>(*self, id));
  srv->key = "app:" + app;
  self->servers_[id] = srv;
  self->reactor_.setAppHandler(app, srv);
  args.GetReturnValue().Set(v8::Integer::New(iso, id));
}

// setTimeouts(serverId, headersTimeoutMs, requestTimeoutMs): Node's limits for
// the connections the server accepts from now on (0: none).
void Environment::setTimeouts(const v8::FunctionCallbackInfo<v8::Value>& args) {
  auto* self = static_cast<Environment*>(args.Data().As<v8::External>()->Value());
  v8::Local<v8::Context> ctx = args.GetIsolate()->GetCurrentContext();
  int id = args[0]->Int32Value(ctx).FromMaybe(0);
  auto it = self->servers_.find(id);
  if (it == self->servers_.end() || !it->second->listener) return;
  auto ms = [&](int i) {
    double v = args[i]->NumberValue(ctx).FromMaybe(0);
    return v > 0 && v < 4e9 ? uint32_t(v) : 0u;
  };
  server::Listener* l = it->second->listener;
  l->headersTimeoutMs = ms(1);
  l->requestTimeoutMs = ms(2);
  l->nodeTimeouts = true;
}

void Environment::closeServer(const v8::FunctionCallbackInfo<v8::Value>& args) {
  auto* self = static_cast<Environment*>(args.Data().As<v8::External>()->Value());
  int id = args[0]->Int32Value(args.GetIsolate()->GetCurrentContext()).FromMaybe(0);
  auto it = self->servers_.find(id);
  if (it == self->servers_.end()) return;
  if (it->second->listener) self->reactor_.removeListener(it->second->listener);
  it->second->listener = nullptr;
  // The handler object stays: connections accepted earlier may still use it.
}

// The watchdog: one thread for the process, looking at every environment's
// current call into JS a few times a second.
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
      e->terminatedWhy_ =
          "JavaScript ran for more than its CPU budget (" + std::to_string(gCpuBudgetMs.load()) + " ms)";
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

ThreadScripting::~ThreadScripting() {
  if (env_) env_.reset();
}

void ThreadScripting::runOnce() {
  if (!restart_) {
    env_->runOnce();
    if (!restart_) return;
  }
  std::fprintf(stderr, "kuai: thread %d: %s; starting a fresh JavaScript environment\n",
               reactor_.index(), why_.c_str());
  env_->abandon();
  env_.reset();
  restart_ = false;
  why_.clear();
  std::string err;
  env_ = std::make_unique<Environment>(*this, reactor_, options_);
  if (!env_->start(err)) {
    std::fprintf(stderr, "kuai: thread %d: the script did not start again%s%s\n",
                 reactor_.index(), err.empty() ? "" : ": ", err.c_str());
    env_->abandon();
  }
  closeParked();
}

bool initializeNode(const std::string& argv0, const ScriptOptions& options, std::string& err,
                    int& exitCode) {
  exitCode = -1;
  std::vector<std::string> args = {argv0};
  for (const auto& a : options.nodeArgs) args.push_back(a);
  gInit = node::InitializeOncePerProcess(
      args, node::ProcessInitializationFlags::Flags(
                node::ProcessInitializationFlags::kNoInitializeV8 |
                node::ProcessInitializationFlags::kNoInitializeNodeV8Platform |
                node::ProcessInitializationFlags::kNoDefaultSignalHandling));
  for (const std::string& e : gInit->errors()) {
    if (!err.empty()) err += "; ";
    err += e;
  }
  if (gInit->early_return()) {
    exitCode = gInit->exit_code();
    return false;
  }
  gPlatform = node::MultiIsolatePlatform::Create(2);
  v8::V8::InitializePlatform(gPlatform.get());
  v8::V8::Initialize();
  return true;
}

void shutdownNode() {
  if (!gPlatform) return;
  v8::V8::Dispose();
  v8::V8::DisposePlatform();
  node::TearDownOncePerProcess();
}

std::unique_ptr<server::LoopDriver> startEnvironment(server::Reactor& reactor,
                                                     const ScriptOptions& options,
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
  auto env = std::make_unique<ThreadScripting>(reactor, options);
  bool ok = env->start(err);
  if (reactor.index() == 0) {
    std::lock_guard<std::mutex> lock(gStartMutex);
    gFirstStart = ok ? 1 : -1;
    gStartCv.notify_all();
  }
  if (!ok) {
    if (err.empty()) err = "the script failed to start";
    return nullptr;
  }
  return env;
}

int scriptExitCode() { return gExitCode.load(); }

}  // namespace kuai::scripting
