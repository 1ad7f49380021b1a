// One outbound request of kuai's http client (js/http_client.js): the
// Downstream a ProxyCall of the thread's Agent drives, forwarding the response
// to the request's JS handle, whose methods (write/end/abort/drain) reach the
// call's ExchangeListener side. Owned by the ProxyCall (shared); holds itself
// until the call detaches, or the environment goes away first.
// Lives on one reactor thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "scripting/environment.h"
#include "server/proxy_call.h"

namespace kuai::scripting {

class JsClientCall final : public server::Downstream {
 public:
  JsClientCall(Environment& env, v8::Local<v8::Object> handle);
  ~JsClientCall() override { handle_.Reset(); }

  std::shared_ptr<JsClientCall> self;  // while the JS handle may reach this
  server::ExchangeListener* call = nullptr;
  bool detached = false;

  bool valid() const override { return env_ != nullptr && !cancelled_; }
  bool headersSent() const override { return headSeen_; }
  void head(const parser::Response& resp) override;
  // Never asked for (OutboundRequest::upgrade is false): treat as broken.
  void upgrade(const parser::Response&) override { abort(); }
  bool write(std::string_view bytes) override;
  void end() override;
  void abort() override;
  void fail(int status, const char* why) override;
  // The upstream is slow to take the request body: write() says false until
  // resumeBody, which JS sees as 'drain'.
  void pauseBody() override { bodyPaused_ = true; }
  void resumeBody() override;
  void detach() override;
  void trailers(std::string_view lines) override;
  std::string requestTrailers() const override { return requestTrailers_; }

  // The environment is going away: stop the call without telling JS.
  void cancel();
  // Unlinks from the JS handle; the ProxyCall keeps this object until it goes.
  void release();

  // The handle's methods.
  static void jsWrite(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void jsEnd(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void jsAbort(const v8::FunctionCallbackInfo<v8::Value>& args);
  static void jsDrain(const v8::FunctionCallbackInfo<v8::Value>& args);

  // clientRequest(address, port, head, flags) -> handle (the binding function).
  static void start(const v8::FunctionCallbackInfo<v8::Value>& args);

 private:
  static JsClientCall* from(const v8::FunctionCallbackInfo<v8::Value>& args);
  void notify(const v8::Global<v8::Function>* fn);

  Environment* env_;
  v8::Global<v8::Object> handle_;
  bool headSeen_ = false;
  bool bodyPaused_ = false;
  bool cancelled_ = false;
  std::string trailers_;         // the response's, handed to JS with its end
  std::string requestTrailers_;  // req.addTrailers(), given with handle.end()
};

}  // namespace kuai::scripting
