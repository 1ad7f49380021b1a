#include "scripting/js_server.h"

#include <node_buffer.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "scripting/thread_scripting.h"
#include "scripting/v8_util.h"
#include "server/reactor.h"
#include "tls/tls.h"

namespace kuai::scripting {

void answerUnavailable(server::Exchange& ex) {
  if (ex.ended()) return;
  if (ex.headersSent()) {
    ex.end();
    return;
  }
  ex.writeError(503);
}

// ---------------------------------------------------------------- JsServer

void JsServer::onRequest(const parser::Request& req, const std::shared_ptr<server::Exchange>& ex) {
  if (!env_) {
    answerUnavailable(*ex);
    return;
  }
  Environment& env = *env_;
  v8::Isolate* iso = env.isolate();
  v8::HandleScope hs(iso);
  v8::Local<v8::Context> ctx = env.context();
  v8::Context::Scope cs(ctx);
  v8::Local<v8::Object> handle = env.exchangeTemplate.Get(iso)->NewInstance(ctx).ToLocalChecked();
  // Owned by the handle's lifecycle (maybeRelease). A request with nothing
  // after its head ends in this call: JS runs the body's end right after the
  // request (flag 32), one call into JS instead of two.
  auto* jx = new JsExchange(env, ex, handle, req.bodyless);
  // rawHeaders in one allocation (element-by-element stores are much slower).
  constexpr size_t kInline = 100;
  v8::Local<v8::Value> items[2 * kInline + 2];
  std::vector<v8::Local<v8::Value>> spill;
  v8::Local<v8::Value>* out = items;
  // HTTP/2: the pseudo-header fields first (as Node's http2 shows them);
  // http.createServer's requests leave them out (js/http_server.js).
  std::pair<std::string_view, std::string_view> pseudo[4];
  size_t p = 0;
  if (req.versionMajor == 2) {
    // In the order the client sent them (as Node's http2 lists them).
    const std::pair<std::string_view, std::string_view> kinds[4] = {
        {":method", req.method}, {":path", req.target}, {":scheme", req.scheme}, {":authority", req.authority}};
    if (req.pseudoCount > 0) {
      for (unsigned i = 0; i < req.pseudoCount; ++i) pseudo[p++] = kinds[(req.pseudoOrder >> (2 * i)) & 3];
    } else {
      pseudo[p++] = kinds[0];
      pseudo[p++] = kinds[1];
      pseudo[p++] = kinds[2];
      if (!req.authority.empty()) pseudo[p++] = kinds[3];
    }
  }
  size_t n = p + req.headers.size();
  if (n > kInline) {
    spill.resize(n * 2);
    out = spill.data();
  }
  for (size_t i = 0; i < p; ++i) {
    out[2 * i] = str(iso, pseudo[i].first);
    out[2 * i + 1] = str(iso, pseudo[i].second);
  }
  for (size_t i = p; i < n; ++i) {
    out[2 * i] = str(iso, req.headers[i - p].name);
    out[2 * i + 1] = str(iso, req.headers[i - p].value);
  }
  v8::Local<v8::Array> raw = v8::Array::New(iso, out, 2 * n);
  // 1: an Upgrade request (llhttp's rule: Upgrade + Connection: upgrade);
  // 2: it has an Expect field. JS looks closer only then. HTTP/2: 4: the
  // last field is a host made from :authority. 16: a body is announced.
  // 32: nothing follows the head (the request ends with this call).
  int flags = (req.upgrade ? 1 : 0) | (req.hasHeader("expect") ? 2 : 0) | (req.hostFromAuthority ? 4 : 0) |
              (req.contentLength > 0 || req.chunked || req.unsizedBody() ? 16 : 0) | (req.bodyless ? 32 : 0);
  v8::Local<v8::Value> argv[12] = {
      v8::Integer::New(iso, id_),
      handle,
      str(iso, req.method),
      str(iso, req.target),
      raw,
      v8::Integer::New(iso, req.versionMajor * 10 + req.versionMinor),
      str(iso, ex->remoteAddress()),
      v8::Integer::New(iso, ex->remotePort()),
      v8::Boolean::New(iso, ex->encrypted()),
      v8::Number::New(iso, double(ex->connectionId())),
      v8::Integer::New(iso, flags),
      v8::Integer::New(iso, req.streamId),
  };
  jx->enter();
  env.call(env.onRequest, 12, argv);
  jx->leave();
}

void JsServer::onConnectionClose(uint64_t id, uint64_t bytesRead, uint64_t bytesWritten) {
  if (!env_) return;
  v8::Isolate* iso = env_->isolate();
  v8::HandleScope hs(iso);
  v8::Context::Scope cs(env_->context());
  v8::Local<v8::Value> argv[3] = {v8::Number::New(iso, double(id)), v8::Number::New(iso, double(bytesRead)),
                                  v8::Number::New(iso, double(bytesWritten))};
  env_->call(env_->onSocketClose, 3, argv);
}

// Node's error codes for what the parser refused (llhttp's names where llhttp
// found it; kuai's own checks mapped to the code llhttp gives the same fault).
// Null: Node has no parse error for it (a missing Host, a body over kuai's
// limit), so the protocol's error page answers.
namespace {
const char* nodeClientErrorCode(int status, std::string_view reason) {
  if (status == 408) return "ERR_HTTP_REQUEST_TIMEOUT";
  if (status == 431 || status == 414) return "HPE_HEADER_OVERFLOW";
  if (status == 505) return "HPE_INVALID_VERSION";
  if (status == 501) return "HPE_INVALID_TRANSFER_ENCODING";
  if (status != 400) return nullptr;
  auto has = [&](std::string_view w) { return reason.find(w) != std::string_view::npos; };
  if (has("Host")) return nullptr;
  if (has("method")) return "HPE_INVALID_METHOD";
  if (has("target") || has("URL")) return "HPE_INVALID_URL";
  if (has("Transfer-Encoding") || has("chunked encoding")) return "HPE_INVALID_TRANSFER_ENCODING";
  if (has("more than one Content-Length")) return "HPE_UNEXPECTED_CONTENT_LENGTH";
  if (has("Content-Length")) return "HPE_INVALID_CONTENT_LENGTH";
  if (has("chunk")) return "HPE_INVALID_CHUNK_SIZE";
  if (has("version")) return "HPE_INVALID_VERSION";
  if (has("header") || has("trailer") || has("CR") || has("LF") || has("field")) return "HPE_INVALID_HEADER_TOKEN";
  return "HPE_INVALID_CONSTANT";
}
}  // namespace

bool JsServer::onClientError(const server::Handler::ClientError& e) {
  if (!env_) return false;
  const char* code = nodeClientErrorCode(e.status, e.reason);
  if (!code) return false;
  v8::Isolate* iso = env_->isolate();
  v8::HandleScope hs(iso);
  v8::Context::Scope cs(env_->context());
  v8::Local<v8::Value> raw = node::Buffer::Copy(iso, e.rawPacket.data(), e.rawPacket.size()).ToLocalChecked();
  v8::Local<v8::Value> argv[9] = {
      v8::Integer::New(iso, id_),
      v8::Number::New(iso, double(e.connectionId)),
      v8::Integer::New(iso, e.status),
      str(iso, code),
      str(iso, e.reason),
      raw,
      str(iso, e.remoteAddress),
      v8::Integer::New(iso, e.remotePort),
      v8::Boolean::New(iso, e.encrypted),
  };
  v8::Local<v8::Value> r;
  return env_->call(env_->onClientError, 9, argv).ToLocal(&r) && r->IsTrue();
}

// ---------------------------------------------------------------- OwnedRequest

OwnedRequest::OwnedRequest(const parser::Request& from) : req(from) {
  size_t total = from.method.size() + from.target.size() + from.host.size();
  for (const parser::Header& h : from.headers) total += h.name.size() + h.value.size();
  storage.reserve(total);  // no reallocation below: the views stay valid
  auto keep = [this](std::string_view v) {
    size_t at = storage.size();
    storage.append(v);
    return std::string_view(storage.data() + at, v.size());
  };
  req.method = keep(from.method);
  req.target = keep(from.target);
  req.host = keep(from.host);
  for (size_t i = 0; i < from.headers.size(); ++i) {
    req.headers[i].name = keep(from.headers[i].name);
    req.headers[i].value = keep(from.headers[i].value);
  }
}

// ---------------------------------------------------------------- ServerSlot

// A request that arrived while no environment took the slot: its head, the
// body bytes that came with it (reading is paused meanwhile) and whether the
// client went away.
class ServerSlot::Waiting final : public server::ExchangeListener {
 public:
  Waiting(const parser::Request& req, std::shared_ptr<server::Exchange> ex) : head(req), ex(std::move(ex)) {}
  ~Waiting() override {
    if (ex->listener() == this) ex->setListener(nullptr);
  }
  void onBody(std::string_view chunk) override { body.emplace_back(chunk); }
  void onBodyEnd() override { bodyEnd = true; }
  void onAbort() override { aborted = true; }
  void onDrain() override {}
  void onSwitched() override { switchedAt = body.size(); }

  OwnedRequest head;
  std::shared_ptr<server::Exchange> ex;
  std::vector<std::string> body;
  size_t switchedAt = SIZE_MAX;  // body[switchedAt...]: the new protocol's bytes
  bool bodyEnd = false;
  bool aborted = false;
};

ServerSlot::ServerSlot(ThreadScripting& owner, std::string key) : owner_(owner), key_(std::move(key)) {}

ServerSlot::~ServerSlot() = default;

void ServerSlot::onRequest(const parser::Request& req, const std::shared_ptr<server::Exchange>& ex) {
  if (target_ && waiting_.empty()) {
    target_->onRequest(req, ex);
    return;
  }
  if (!target_ && refusing_) {
    answerUnavailable(*ex);
    return;
  }
  auto w = std::make_unique<Waiting>(req, ex);
  ex->setListener(w.get());
  ex->pauseBody();
  waiting_.push_back(std::move(w));
}

void ServerSlot::onConnectionClose(uint64_t id, uint64_t bytesRead, uint64_t bytesWritten) {
  if (target_) target_->onConnectionClose(id, bytesRead, bytesWritten);
}

void ServerSlot::claim(JsServer* server) {
  target_ = server;
  refusing_ = false;
  server->slot = this;
  if (waiting_.empty() || replayScheduled_) return;
  // Not from inside listen(): 'request' events come after the script's turn.
  replayScheduled_ = true;
  owner_.reactor().later([](void* self) { static_cast<ServerSlot*>(self)->replay(); }, this);
}

void ServerSlot::release() {
  if (target_) target_->slot = nullptr;
  target_ = nullptr;
}

void ServerSlot::replay() {
  replayScheduled_ = false;
  while (target_ && !waiting_.empty()) {
    std::unique_ptr<Waiting> w = std::move(waiting_.front());
    waiting_.pop_front();
    std::shared_ptr<server::Exchange> ex = w->ex;
    if (w->aborted || !ex->valid()) continue;
    ex->setListener(nullptr);
    ex->resumeBody();
    target_->onRequest(w->head.req, ex);
    for (size_t i = 0; i <= w->body.size(); ++i) {
      server::ExchangeListener* l = ex->listener();
      if (!l) break;
      if (i == w->switchedAt) l->onSwitched();
      if (i < w->body.size()) l->onBody(w->body[i]);
    }
    if (w->bodyEnd) {
      if (server::ExchangeListener* l = ex->listener()) l->onBodyEnd();
    }
  }
}

void ServerSlot::close() {
  if (listener) owner_.reactor().removeListener(listener);
  listener = nullptr;
  refuse();
}

void ServerSlot::refuse() {
  release();
  refusing_ = true;
  while (!waiting_.empty()) {
    std::unique_ptr<Waiting> w = std::move(waiting_.front());
    waiting_.pop_front();
    if (w->aborted || !w->ex->valid()) continue;
    w->ex->setListener(nullptr);
    w->ex->resumeBody();
    answerUnavailable(*w->ex);
  }
}

// ---------------------------------------------------------------- JsExchange

JsExchange::JsExchange(Environment& env, std::shared_ptr<server::Exchange> ex, v8::Local<v8::Object> handle,
                       bool bodyDone)
    : env_(env), ex_(std::move(ex)), handle_(env.isolate(), handle), bodyDone_(bodyDone) {
  ex_->setListener(this);
  handle->SetAlignedPointerInInternalField(0, this, kExchangeTag);
  env_.exchanges.insert(this);
}

void JsExchange::abandon() {
  answerUnavailable(*ex_);
  ex_->setListener(nullptr);
  delete this;
}

void JsExchange::onBody(std::string_view chunk) {
  v8::HandleScope hs(env_.isolate());
  v8::Context::Scope cs(env_.context());
  notify(env_.onBody, node::Buffer::Copy(env_.isolate(), chunk.data(), chunk.size()).ToLocalChecked());
}

void JsExchange::onBodyEnd() {
  if (bodyDone_) {
    // A bodyless request: JS ran its end with the request.
    maybeRelease();
    return;
  }
  bodyDone_ = true;
  const std::string& trailers = ex_->requestTrailers();
  if (trailers.empty()) {
    notify(env_.onBodyEnd);
    return;
  }
  v8::HandleScope hs(env_.isolate());
  v8::Context::Scope cs(env_.context());
  notify(env_.onBodyEnd, str(env_.isolate(), trailers));
}

void JsExchange::onAbort() {
  aborted_ = true;
  // HTTP/2: the code of the client's RST_STREAM, for stream.rstCode.
  int64_t code = ex_ ? ex_->peerResetCode() : -1;
  if (code < 0) {
    notify(env_.onAbort);
    return;
  }
  v8::HandleScope hs(env_.isolate());
  notify(env_.onAbort, v8::Number::New(env_.isolate(), double(code)));
}

void JsExchange::onDrain() { notify(env_.onDrain); }

void JsExchange::onSwitched() { notify(env_.onSwitched); }

void JsExchange::notify(const v8::Global<v8::Function>& fn, v8::Local<v8::Value> extra) {
  v8::HandleScope hs(env_.isolate());
  v8::Context::Scope cs(env_.context());
  v8::Local<v8::Value> argv[2] = {handle_.Get(env_.isolate()), extra};
  ++depth_;
  env_.call(fn, extra.IsEmpty() ? 1 : 2, argv);
  --depth_;
  maybeRelease();
}

void JsExchange::maybeRelease() {
  if (depth_ > 0) return;  // inside one of our own callbacks: it releases on return
  if (!(aborted_ || (bodyDone_ && ex_->ended()))) return;
  v8::HandleScope hs(env_.isolate());
  handle_.Get(env_.isolate())->SetAlignedPointerInInternalField(0, nullptr, kExchangeTag);
  ex_->setListener(nullptr);
  delete this;
}

JsExchange* JsExchange::from(const v8::FunctionCallbackInfo<v8::Value>& args) {
  v8::Local<v8::Object> self = args.This();
  if (self->InternalFieldCount() < 1) return nullptr;
  return static_cast<JsExchange*>(self->GetAlignedPointerFromInternalField(0, kExchangeTag));
}

void JsExchange::writeHead(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsExchange* self = from(args);
  if (!self) return;
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  int status = args[0]->Int32Value(ctx).FromMaybe(200);
  std::string reason = args[1]->IsString() ? toStdString(iso, args[1]) : std::string();
  std::string lines = toStdString(iso, args[2]);
  int64_t length = int64_t(args[3]->NumberValue(ctx).FromMaybe(-1));
  int keepAlive = args[4]->Int32Value(ctx).FromMaybe(-1);
  // args[5]: the head's layout (Exchange::kNodeOrder...), for http's responses.
  if (args.Length() > 5) self->ex_->setHeadFlags(uint8_t(args[5]->Uint32Value(ctx).FromMaybe(0)));
  // args[6]: the server's maxRequestsPerSocket (Keep-Alive max=).
  if (args.Length() > 6) self->ex_->setKeepAliveMax(args[6]->Uint32Value(ctx).FromMaybe(0));
  self->ex_->writeHead(status, reason, lines, length, keepAlive);
}

bool JsExchange::writeValue(JsExchange* self, v8::Isolate* iso, v8::Local<v8::Value> v) {
  if (node::Buffer::HasInstance(v)) {
    return self->ex_->write(std::string_view(node::Buffer::Data(v), node::Buffer::Length(v)));
  }
  if (v->IsString()) return self->ex_->write(utf8(iso, v.As<v8::String>()));
  return true;
}

void JsExchange::write(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsExchange* self = from(args);
  if (!self) {
    args.GetReturnValue().Set(true);
    return;
  }
  args.GetReturnValue().Set(writeValue(self, args.GetIsolate(), args[0]));
}

void JsExchange::pauseBody(const v8::FunctionCallbackInfo<v8::Value>& args) {
  if (JsExchange* self = from(args)) self->ex_->pauseBody();
}

void JsExchange::resumeBody(const v8::FunctionCallbackInfo<v8::Value>& args) {
  if (JsExchange* self = from(args)) self->ex_->resumeBody();
}

// An 'upgrade' listener took the connection: raw bytes both ways from now.
void JsExchange::startRaw(const v8::FunctionCallbackInfo<v8::Value>& args) {
  if (JsExchange* self = from(args)) self->ex_->startRaw();
}

void JsExchange::writeContinue(const v8::FunctionCallbackInfo<v8::Value>& args) {
  if (JsExchange* self = from(args)) self->ex_->writeContinue();
}

void JsExchange::writeInformational(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsExchange* self = from(args);
  if (!self) return;
  v8::Isolate* iso = args.GetIsolate();
  int status = args[0]->Int32Value(iso->GetCurrentContext()).FromMaybe(0);
  self->ex_->writeInformational(status, toStdString(iso, args[1]));
}

void JsExchange::setTrailers(const v8::FunctionCallbackInfo<v8::Value>& args) {
  if (JsExchange* self = from(args)) self->ex_->setTrailers(toStdString(args.GetIsolate(), args[0]));
}

void JsExchange::setHighWater(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsExchange* self = from(args);
  if (!self) return;
  double n = args[0]->NumberValue(args.GetIsolate()->GetCurrentContext()).FromMaybe(0);
  self->ex_->setHighWater(n >= 1 ? size_t(std::min(n, 1e15)) : 1);
}

// Closes the connection after what is queued (an upgraded socket's end or
// destroy, a response that cannot be finished); over HTTP/2 resets the
// stream, with args[0] as its code when given.
void JsExchange::abort(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsExchange* self = from(args);
  if (!self) return;
  if (args.Length() > 0 && args[0]->IsUint32()) {
    self->ex_->abort(args[0].As<v8::Uint32>()->Value());
  } else {
    self->ex_->abort();
  }
  self->aborted_ = true;
  self->maybeRelease();
}

void JsExchange::local(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsExchange* self = from(args);
  if (!self) return;
  int port = 0;
  std::string address = self->ex_->localAddress(port);
  if (address.empty()) return;
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Value> pair[2] = {str(iso, address), v8::Integer::New(iso, port)};
  args.GetReturnValue().Set(v8::Array::New(iso, pair, 2));
}

// The connection's TLS: [version, cipher, cipher's IANA name, ALPN, SNI name,
// resumed, why the client's certificate did not verify ('' when it did),
// the client's certificate (DER, a Uint8Array) or undefined]; undefined in
// clear text or once the connection is gone.
void JsExchange::tlsInfo(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsExchange* self = from(args);
  if (!self) return;
  const tls::TlsSession* t = self->ex_->tlsSession();
  if (!t) return;
  v8::Isolate* iso = args.GetIsolate();
  std::string der = t->peerCertificate();
  v8::Local<v8::Value> cert = v8::Undefined(iso);
  if (!der.empty()) {
    v8::Local<v8::ArrayBuffer> buf = v8::ArrayBuffer::New(iso, der.size());
    std::memcpy(buf->Data(), der.data(), der.size());
    cert = v8::Uint8Array::New(buf, 0, der.size());
  }
  v8::Local<v8::Value> info[8] = {
      str(iso, t->version()),    str(iso, t->cipherName()), str(iso, t->cipherStandardName()),
      str(iso, t->alpnSelected()), str(iso, t->serverName()), v8::Boolean::New(iso, t->resumed()),
      str(iso, t->peerVerifyError()), cert,
  };
  args.GetReturnValue().Set(v8::Array::New(iso, info, 8));
}

// The connection's [bytesRead, bytesWritten]; undefined once it is gone.
void JsExchange::bytes(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsExchange* self = from(args);
  if (!self) return;
  uint64_t read = 0;
  uint64_t written = 0;
  if (!self->ex_->connectionBytes(read, written)) return;
  args.GetReturnValue().Set(numberPair(args.GetIsolate(), read, written));
}

void JsExchange::end(const v8::FunctionCallbackInfo<v8::Value>& args) {
  JsExchange* self = from(args);
  if (!self) return;
  if (args.Length() > 0 && !args[0]->IsUndefined() && !args[0]->IsNull()) {
    writeValue(self, args.GetIsolate(), args[0]);
  }
  self->ex_->end();
  self->maybeRelease();
}

}  // namespace kuai::scripting
