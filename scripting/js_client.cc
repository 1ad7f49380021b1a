#include "scripting/js_client.h"

#include <node_buffer.h>

#include <vector>

#include "scripting/thread_scripting.h"
#include "scripting/v8_util.h"
#include "server/agent.h"
#include "server/header_lines.h"

namespace kuai::scripting {

JsClientCall::JsClientCall(Environment& env, v8::Local<v8::Object> handle)
    : env_(&env), handle_(env.isolate(), handle) {
  handle->SetAlignedPointerInInternalField(0, this, kClientCallTag);
  env.clientCalls.insert(this);
}

void JsClientCall::head(const parser::Response& resp) {
  headSeen_ = true;
  if (!valid()) return;
  v8::Isolate* iso = env_->isolate();
  v8::HandleScope hs(iso);
  v8::Context::Scope cs(env_->context());
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
  env_->call(env_->onClientHead, 5, argv);
}

bool JsClientCall::write(std::string_view bytes) {
  if (!valid()) return true;
  v8::Isolate* iso = env_->isolate();
  v8::HandleScope hs(iso);
  v8::Context::Scope cs(env_->context());
  v8::Local<v8::Value> argv[2] = {
      handle_.Get(iso),
      node::Buffer::Copy(iso, bytes.data(), bytes.size()).ToLocalChecked(),
  };
  v8::Local<v8::Value> r;
  bool full = env_->call(env_->onClientData, 2, argv).ToLocal(&r) && r->IsFalse();
  // JS may have cancelled the call from its 'data' handler: the call is over
  // then, nothing to pause. Otherwise false (the response stream is full)
  // stops the reading of the upstream until the handle's drain().
  return !full || !valid();
}

// As "Name: value\r\n" lines, values without their optional whitespace:
// what JS splits into rawTrailers.
void JsClientCall::trailers(std::string_view lines) {
  trailers_.clear();
  server::forEachHeaderLine(lines, [&](std::string_view name, std::string_view value, std::string_view) {
    if (!name.empty()) trailers_.append(name).append(": ").append(value).append("\r\n");
  });
}

void JsClientCall::end() {
  if (!valid()) return;
  v8::Isolate* iso = env_->isolate();
  v8::HandleScope hs(iso);
  v8::Context::Scope cs(env_->context());
  // The trailer fields (Latin-1 text, as the head's) go with the end.
  v8::Local<v8::Value> argv[2] = {handle_.Get(iso), v8::Undefined(iso)};
  if (!trailers_.empty()) argv[1] = latin1(iso, trailers_);
  env_->call(env_->onClientEnd, 2, argv);
}
void JsClientCall::abort() { notify(env_ ? &env_->onClientAbort : nullptr); }

void JsClientCall::fail(int status, const char* why) {
  if (!valid()) return;
  v8::Isolate* iso = env_->isolate();
  v8::HandleScope hs(iso);
  v8::Context::Scope cs(env_->context());
  v8::Local<v8::Value> argv[3] = {handle_.Get(iso), v8::Integer::New(iso, status), str(iso, why ? why : "")};
  env_->call(env_->onClientFail, 3, argv);
}

void JsClientCall::resumeBody() {
  if (!bodyPaused_) return;
  bodyPaused_ = false;
  notify(env_ ? &env_->onClientResume : nullptr);
}

void JsClientCall::detach() {
  detached = true;
  call = nullptr;
  release();
}

void JsClientCall::cancel() {
  cancelled_ = true;
  if (server::ExchangeListener* c = call) {
    call = nullptr;
    c->onAbort();  // detaches (and releases) at once
  }
  release();
}

void JsClientCall::release() {
  Environment* env = env_;
  env_ = nullptr;
  if (env) {
    env->clientCalls.erase(this);
    v8::HandleScope hs(env->isolate());
    handle_.Get(env->isolate())->SetAlignedPointerInInternalField(0, nullptr, kClientCallTag);
  }
  handle_.Reset();
  std::shared_ptr<JsClientCall> keep = std::move(self);  // may be the last reference
}

JsClientCall* JsClientCall::from(const v8::FunctionCallbackInfo<v8::Value>& args) {
  v8::Local<v8::Object> self = args.This();
  if (self->InternalFieldCount() < 1) return nullptr;
  return static_cast<JsClientCall*>(self->GetAlignedPointerFromInternalField(0, kClientCallTag));
}

// handle.write(buffer | string) -> false when the caller should wait for 'drain'.
void JsClientCall::jsWrite(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsClientCall* self = from(args);
  if (!self || !self->call) {
    args.GetReturnValue().Set(true);
    return;
  }
  v8::Local<v8::Value> v = args[0];
  if (node::Buffer::HasInstance(v)) {
    size_t n = node::Buffer::Length(v);
    if (n > 0) self->call->onBody(std::string_view(node::Buffer::Data(v), n));
  } else if (v->IsString()) {
    std::string buf = utf8(args.GetIsolate(), v.As<v8::String>());
    if (!buf.empty()) self->call->onBody(buf);
  }
  // onBody may have detached the call (and released this object's link).
  self = from(args);
  args.GetReturnValue().Set(!self || !self->bodyPaused_);
}

// handle.end(): the request body is complete.
// handle.end([trailerLines]): the request body is complete; a chunked one
// ends with these trailer fields ("Name: value\r\n" lines, checked by JS).
void JsClientCall::jsEnd(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsClientCall* self = from(args);
  if (!self || !self->call) return;
  if (args.Length() > 0 && args[0]->IsString()) {
    self->requestTrailers_ = oneByte(args.GetIsolate(), args[0].As<v8::String>());
  }
  self->call->onBodyEnd();
}

// handle.abort(): cancel (req.destroy()); nothing more comes from the call.
void JsClientCall::jsAbort(const v8::FunctionCallbackInfo<v8::Value>& args) {
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
void JsClientCall::jsDrain(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsClientCall* self = from(args);
  if (self && self->call) self->call->onDrain();
}

void JsClientCall::notify(const v8::Global<v8::Function>* fn) {
  if (!valid() || !fn) return;
  v8::Isolate* iso = env_->isolate();
  v8::HandleScope hs(iso);
  v8::Context::Scope cs(env_->context());
  v8::Local<v8::Value> argv[1] = {handle_.Get(iso)};
  env_->call(*fn, 1, argv);
}

// clientRequest(address, port, head, flags) -> handle. address: an IP literal;
// head: the request line and fields, blank line included (latin1); flags:
// 1 idempotent, 2 has a body, 4 chunked body (framed natively), 8 HEAD.
// The response comes through the client callbacks; throws when the address is
// not a literal or the port is out of range.
void JsClientCall::start(const v8::FunctionCallbackInfo<v8::Value>& args) {
  auto* env = static_cast<Environment*>(args.Data().As<v8::External>()->Value(v8::kExternalPointerTypeTagDefault));
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  std::string address = toStdString(iso, args[0]);
  int port = args[1]->Int32Value(ctx).FromMaybe(0);
  server::OutboundRequest req;
  v8::Local<v8::String> head;
  if (!args[2]->ToString(ctx).ToLocal(&head)) return;
  req.head = oneByte(iso, head);
  int flags = args[3]->Int32Value(ctx).FromMaybe(0);
  req.idempotent = (flags & 1) != 0;
  req.hasBody = (flags & 2) != 0;
  req.chunked = (flags & 4) != 0;
  req.isHead = (flags & 8) != 0;
  req.upgrade = false;

  v8::Local<v8::Object> handle;
  if (!env->clientTemplate.Get(iso)->NewInstance(ctx).ToLocal(&handle)) return;
  auto c = std::make_shared<JsClientCall>(*env, handle);
  c->self = c;
  std::string err;
  server::ExchangeListener* l = env->owner().agent().request(address, port, c, std::move(req), err);
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

}  // namespace kuai::scripting
