// The server side of a script's http.Server: JsServer (one per listen() or app
// route in one environment) turns each request into a JS handle and the
// 'request' event; JsExchange is that request's C++ side (the handle's methods
// writeHead/write/end reach it; the connection's events reach JS through it);
// ServerSlot is what a listener keeps: it forwards to the current
// environment's JsServer and holds requests while there is none.
// Everything here lives on one reactor thread.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "scripting/environment.h"
#include "server/exchange.h"

namespace kuai::scripting {

class JsServer final : public server::Handler {
 public:
  JsServer(Environment& env, int id) : env_(&env), id_(id) {}
  void onRequest(const parser::Request& req, const std::shared_ptr<server::Exchange>& ex) override;
  void onConnectionClose(uint64_t id, uint64_t bytesRead, uint64_t bytesWritten) override;
  bool answersContinue() const override { return true; }  // 'checkContinue', as Node
  // Node's 'clientError': true when the script has a listener for it.
  bool onClientError(const server::Handler::ClientError& e) override;
  // Its environment is gone.
  void orphan() { env_ = nullptr; }
  int id() const { return id_; }
  ServerSlot* slot = nullptr;

 private:
  Environment* env_;
  int id_;
};

// A request head copied out of the receive buffer (the parser's views go
// stale once the wake-up is over), for a request that waits.
struct OwnedRequest {
  std::string storage;  // method, target and fields, back to back
  parser::Request req;
  explicit OwnedRequest(const parser::Request& from);
};

class ServerSlot final : public server::Handler {
 public:
  ServerSlot(ThreadScripting& owner, std::string key);
  ~ServerSlot() override;

  void onRequest(const parser::Request& req, const std::shared_ptr<server::Exchange>& ex) override;
  void onConnectionClose(uint64_t id, uint64_t bytesRead, uint64_t bytesWritten) override;
  bool answersContinue() const override { return true; }
  bool onClientError(const server::Handler::ClientError& e) override {
    return target_ != nullptr && target_->onClientError(e);
  }

  // A server of the current environment answers from now on; requests that
  // waited go to it once the current call into JS has returned.
  void claim(JsServer* server);
  // Its server's environment stops taking requests: they wait from now on.
  void release();
  bool claimed() const { return target_ != nullptr; }
  // No environment took this slot back: close its listener and answer the
  // requests that waited with 503.
  void close();
  // The same, but the listener stays open and answers 503 until an
  // environment claims the slot again (--watch: the next edit may fix it).
  void refuse();

  const std::string& key() const { return key_; }
  server::Listener* listener = nullptr;  // null for app routes, or after server.close()

 private:
  class Waiting;
  void replay();

  ThreadScripting& owner_;
  std::string key_;
  JsServer* target_ = nullptr;
  std::deque<std::unique_ptr<Waiting>> waiting_;
  bool replayScheduled_ = false;
  bool refusing_ = false;
};

class JsExchange final : public server::ExchangeListener {
 public:
  // bodyDone: the request has no body (parser::Request::bodyless).
  JsExchange(Environment& env, std::shared_ptr<server::Exchange> ex, v8::Local<v8::Object> handle, bool bodyDone);
  ~JsExchange() override { env_.exchanges.erase(this); }

  // The environment is going away: finish the response without JS.
  void abandon();
  server::Exchange& exchange() { return *ex_; }

  void onBody(std::string_view chunk) override;
  void onBodyEnd() override;
  void onAbort() override;
  void onDrain() override;
  void onSwitched() override;

  // Around the request's own call into JS: the response may end in there,
  // and this object must not go before the call returns.
  void enter() { ++depth_; }
  void leave() {
    --depth_;
    maybeRelease();
  }

  // The handle's methods.
  static void writeHead(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void write(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void end(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void pauseBody(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void resumeBody(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void startRaw(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void writeContinue(const v8::FunctionCallbackInfo<v8::Value>& args);
  // (status, headerLines): a 1xx before the head (res.writeEarlyHints).
  static void writeInformational(const v8::FunctionCallbackInfo<v8::Value>& args);
  // (headerLines): trailer fields for the end of a chunked body (addTrailers).
  static void setTrailers(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void setHighWater(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void abort(const v8::FunctionCallbackInfo<v8::Value>& args);
  // () -> [address, port] of this end of the connection, or undefined.
  static void local(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void tlsInfo(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void bytes(const v8::FunctionCallbackInfo<v8::Value>& args);

 private:
  static JsExchange* from(const v8::FunctionCallbackInfo<v8::Value>& args);
  static bool writeValue(JsExchange* self, v8::Isolate* iso, v8::Local<v8::Value> v);
  // Calls fn(handle[, extra]) in JS. While it runs, this object must not go
  // (JS may end the response inside); it releases itself afterwards if done.
  void notify(const v8::Global<v8::Function>& fn, v8::Local<v8::Value> extra = {});
  // After end() and the request body's end (or an abort) nothing more comes:
  // unlink from the JS handle and go.
  void maybeRelease();

  Environment& env_;
  std::shared_ptr<server::Exchange> ex_;
  v8::Global<v8::Object> handle_;
  bool bodyDone_ = false;
  bool aborted_ = false;
  int depth_ = 0;
};

// The 503 page for a request no environment can answer.
void answerUnavailable(server::Exchange& ex);

}  // namespace kuai::scripting
