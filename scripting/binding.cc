// The binding: the object of native functions an environment's bootstrap
// (js/bootstrap.js) receives, through which kuai's JS (http_server.js,
// http_client.js, app.js) reaches the reactor: listen/route/closeServer and
// setTimeouts for servers, the request and client handle templates, the
// callbacks C++ calls back into, and the environment's lifecycle (started,
// restart, markExit, watchFiles). Each function gets its Environment as data.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "scripting/embedded_js.h"
#include "scripting/environment.h"
#include "scripting/js_client.h"
#include "scripting/js_server.h"
#include "scripting/shared_sockets.h"
#include "scripting/thread_scripting.h"
#include "scripting/v8_util.h"
#include "server/cli.h"
#include "server/listener.h"
#include "server/reactor.h"

namespace kuai::scripting {

namespace {

// listen() from N environments binds the same address once per reactor. The
// first to come checks that the port is free and picks one for port 0; the
// others join it with SO_REUSEPORT. Keyed by host, port and the call's order.
std::mutex gListenMutex;
std::map<std::string, int> gListenPorts;

// An https server's TLS context, made once for all the reactors' listeners
// of the same listen() when their options are the same (they run the same
// script, and renew its certificates alike): one set of session-ticket keys
// and one session cache, so a client resumes its session on whichever
// reactor its next connection reaches. Keyed like gListenPorts; under
// gListenMutex.
struct SharedTls {
  std::string options;  // what the context was made from (tlsOptionsText)
  std::weak_ptr<tls::TlsContext> context;
};
std::map<std::string, SharedTls> gTlsContexts;

std::string tlsOptionsText(const tls::TlsConfig& c) {
  std::string out;
  auto add = [&](const std::string& s) { out.append(std::to_string(s.size())).append(":").append(s); };
  for (const tls::CertificateConfig& cert : c.certificates) {
    add(cert.certPem);
    add(cert.keyPem);
    add(cert.keyPassphrase);
    add(cert.pfx);
  }
  for (const std::string& a : c.alpn) add(a);
  add(c.clientCaPem);
  add(std::to_string(c.minVersion) + "/" + std::to_string(int(c.clientCerts)));
  return out;
}

// The context for `config` at `key`: the one another reactor made from the
// same options, or a new one (null with the reason in `err`).
std::shared_ptr<tls::TlsContext> sharedTlsContext(const std::string& key, const tls::TlsConfig& config,
                                                  std::string& err) {
  std::string options = tlsOptionsText(config);
  {
    std::lock_guard<std::mutex> lock(gListenMutex);
    auto it = gTlsContexts.find(key);
    if (it != gTlsContexts.end() && it->second.options == options) {
      if (std::shared_ptr<tls::TlsContext> made = it->second.context.lock()) return made;
    }
  }
  std::shared_ptr<tls::TlsContext> made = tls::createTlsContext(config, err);
  if (made) {
    std::lock_guard<std::mutex> lock(gListenMutex);
    gTlsContexts[key] = SharedTls{std::move(options), made};
  }
  return made;
}

// Node keeps one inspector host and port for the whole process, read by the
// inspector's I/O thread as it starts: two threads opening theirs at once can
// both end up on the port set last. They open one at a time (inspector.open
// returns once its server listens).
std::mutex gInspectorOpen;

void lockInspector(const v8::FunctionCallbackInfo<v8::Value>&) { gInspectorOpen.lock(); }
void unlockInspector(const v8::FunctionCallbackInfo<v8::Value>&) { gInspectorOpen.unlock(); }

std::mutex gWatchFilesMutex;
std::vector<std::string> gWatchedFiles;
std::function<void()> gWatchListener;

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
  fn("setSecureContext", &Environment::setSecureContext);
  fn("close", &Environment::closeServer);
  fn("closeConnections", &Environment::closeConnections);
  fn("connectionBytes", &Environment::connectionBytes);
  fn("answerClientError", &Environment::answerClientError);
  fn("route", &Environment::route);
  fn("setTimeouts", &Environment::setTimeouts);
  fn("setCallbacks", &Environment::setCallbacks);
  fn("setClientCallbacks", &Environment::setClientCallbacks);
  fn("clientRequest", &JsClientCall::start);
  fn("markExit", &Environment::markExit);
  fn("restart", &Environment::restart);
  fn("started", &Environment::started);
  fn("watchFiles", &Environment::watchFiles);
  fn("shareListen", &shareListen);
  fn("shareUnlisten", &shareUnlisten);
  fn("lockInspector", &lockInspector);
  fn("unlockInspector", &unlockInspector);
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
  set("evalStdin", v8::Boolean::New(iso, options_.evalStdin));
  set("print", v8::Boolean::New(iso, options_.print));
  set("repl", v8::Boolean::New(iso, options_.repl));
  set("requires", strings(options_.requireModules));
  set("imports", strings(options_.imports));
  set("apps", strings(options_.apps));
  set("watch", v8::Boolean::New(iso, options_.watch));
  v8::Local<v8::Object> serveDefaults = v8::Object::New(iso);
  serveDefaults->Set(ctx, str(iso, "host"), str(iso, options_.serveHost)).Check();
  serveDefaults->Set(ctx, str(iso, "port"), v8::Integer::New(iso, options_.servePort)).Check();
  set("serveDefaults", serveDefaults);
  set("hostGiven", v8::Boolean::New(iso, options_.serveHostGiven));
  set("portGiven", v8::Boolean::New(iso, options_.servePortGiven));
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

  // A request's handle: its methods live on a shared prototype, so that
  // making one per request copies only the internal field and the fields
  // below (an instance template holding the methods copied all of them).
  v8::Local<v8::FunctionTemplate> exClass = v8::FunctionTemplate::New(iso);
  v8::Local<v8::ObjectTemplate> exProto = exClass->PrototypeTemplate();
  v8::Local<v8::ObjectTemplate> ex = exClass->InstanceTemplate();
  ex->SetInternalFieldCount(1);
  // Fields the JS side sets on every handle, declared up front so all handles
  // share one shape.
  ex->Set(str(iso, "req"), v8::Null(iso));
  ex->Set(str(iso, "res"), v8::Null(iso));
  ex->Set(str(iso, "paused"), v8::False(iso));
  ex->Set(str(iso, "tunnel"), v8::Null(iso));
  ex->Set(str(iso, "body"), v8::False(iso));
  auto method = [&](v8::Local<v8::ObjectTemplate> proto, const char* name, v8::FunctionCallback fn) {
    proto->Set(str(iso, name), v8::FunctionTemplate::New(iso, fn));
  };
  method(exProto, "writeHead", &JsExchange::writeHead);
  method(exProto, "write", &JsExchange::write);
  method(exProto, "end", &JsExchange::end);
  method(exProto, "pauseBody", &JsExchange::pauseBody);
  method(exProto, "resumeBody", &JsExchange::resumeBody);
  method(exProto, "startRaw", &JsExchange::startRaw);
  method(exProto, "writeContinue", &JsExchange::writeContinue);
  method(exProto, "writeInformational", &JsExchange::writeInformational);
  method(exProto, "setTrailers", &JsExchange::setTrailers);
  method(exProto, "setHighWater", &JsExchange::setHighWater);
  method(exProto, "abort", &JsExchange::abort);
  method(exProto, "local", &JsExchange::local);
  method(exProto, "tlsInfo", &JsExchange::tlsInfo);
  method(exProto, "bytes", &JsExchange::bytes);
  exchangeTemplate.Reset(iso, ex);

  v8::Local<v8::FunctionTemplate> clientClass = v8::FunctionTemplate::New(iso);
  v8::Local<v8::ObjectTemplate> clientProto = clientClass->PrototypeTemplate();
  v8::Local<v8::ObjectTemplate> client = clientClass->InstanceTemplate();
  client->SetInternalFieldCount(1);
  client->Set(str(iso, "req"), v8::Null(iso));
  client->Set(str(iso, "paused"), v8::False(iso));
  method(clientProto, "write", &JsClientCall::jsWrite);
  method(clientProto, "end", &JsClientCall::jsEnd);
  method(clientProto, "abort", &JsClientCall::jsAbort);
  method(clientProto, "drain", &JsClientCall::jsDrain);
  clientTemplate.Reset(iso, client);
  return b;
}

// From JS: this environment cannot go on (an uncaught exception). It is replaced
// at the reactor's next turn; nothing is torn down while JS is on the stack.
// While the script starts, it means the script cannot start.
void Environment::restart(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  if (!self->loaded_) {
    // Still in the main script's first turn (its next-ticks included: a
    // server's 'error' for a port in use comes there): the script cannot
    // start. Replacing the environment would fail the same way, forever.
    self->startState_ = Start::kFailed;  // start() reports it
    return;
  }
  if (self->startState_ == Start::kRunning) {
    self->startFailedLate();
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
                       {"onSocketClose", &self->onSocketClose},
                       {"onSwitched", &self->onSwitched},
                       {"onClientError", &self->onClientError}});
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

// listen(host, port[, {cert, key}[, http2]]) -> [serverId, boundPort]; http2:
// 0 HTTP/1.1 only, 1 HTTP/2 and HTTP/1.1 (ALPN h2 first; h2c by its preface),
// 2 HTTP/2 only (an http2 server without allowHTTP1). Throws with code
// EADDRINUSE etc. A socket this thread kept open through an environment's
// replacement is taken back by the listen() with the same address and order.
// The TLS configuration a script's server gives (https.createServer's
// options as js/http_server.js passes them: cert/key/ca/pfx arrays of PEM
// or latin1 strings, passphrase, requestCert, rejectUnauthorized,
// minVersion) for listen() and setSecureContext(). http2: 1 offers h2 and
// http/1.1 by ALPN, 2 h2 only.
static tls::TlsConfig scriptTlsConfig(v8::Isolate* iso, v8::Local<v8::Context> ctx, v8::Local<v8::Object> o, int http2) {
  auto list = [&](const char* name) {
    std::vector<std::string> out;
    v8::Local<v8::Value> v;
    if (o->Get(ctx, str(iso, name)).ToLocal(&v) && v->IsArray()) {
      v8::Local<v8::Array> a = v.As<v8::Array>();
      for (uint32_t i = 0; i < a->Length(); ++i) out.push_back(toStdString(iso, a->Get(ctx, i).ToLocalChecked()));
    }
    return out;
  };
  std::vector<std::string> certs = list("cert"), keys = list("key"), cas = list("ca");
  std::vector<std::string> pfxs;  // binary: latin1 strings of their bytes
  {
    v8::Local<v8::Value> v;
    if (o->Get(ctx, str(iso, "pfx")).ToLocal(&v) && v->IsArray()) {
      v8::Local<v8::Array> a = v.As<v8::Array>();
      for (uint32_t i = 0; i < a->Length(); ++i) {
        v8::Local<v8::Value> item = a->Get(ctx, i).ToLocalChecked();
        if (item->IsString()) pfxs.push_back(oneByte(iso, item.As<v8::String>()));
      }
    }
  }
  auto text = [&](const char* name) {
    v8::Local<v8::Value> v;
    return o->Get(ctx, str(iso, name)).ToLocal(&v) && v->IsString() ? toStdString(iso, v) : std::string();
  };
  auto flag = [&](const char* name) {
    v8::Local<v8::Value> v;
    return o->Get(ctx, str(iso, name)).ToLocal(&v) && v->BooleanValue(iso);
  };
  tls::TlsConfig config;
  if (http2 == 1) config.alpn = {"h2", "http/1.1"};
  if (http2 == 2) config.alpn = {"h2"};
  std::string passphrase = text("passphrase");
  for (size_t i = 0; i < certs.size() && i < keys.size(); ++i) {
    tls::CertificateConfig c;
    c.certFile = "options.cert[" + std::to_string(i) + "]";
    c.keyFile = "options.key[" + std::to_string(i) + "]";
    c.certPem = certs[i];
    c.keyPem = keys[i];
    c.keyPassphrase = passphrase;
    config.certificates.push_back(std::move(c));
  }
  for (size_t i = 0; i < pfxs.size(); ++i) {  // PKCS#12 archives
    tls::CertificateConfig c;
    c.certFile = c.keyFile = "options.pfx[" + std::to_string(i) + "]";
    c.pfx = std::move(pfxs[i]);
    c.keyPassphrase = passphrase;
    config.certificates.push_back(std::move(c));
  }
  // requestCert (and rejectUnauthorized): client certificates, verified
  // against options.ca. minVersion: 'TLSv1.3' raises the floor.
  if (flag("requestCert")) {
    config.clientCerts = flag("rejectUnauthorized") ? tls::ClientCerts::kRequire : tls::ClientCerts::kRequest;
    for (const std::string& ca : cas) config.clientCaPem += ca + "\n";
  }
  if (text("minVersion") == "TLSv1.3") config.minVersion = 0x0304;
  return config;
}

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
  if (port < 0) {
    // A Unix socket (host is its path): one socket, a duplicate per reactor.
    if (!slot->listener) {
      fd = shareUnixSocket(host, 511);
      if (fd < 0) {
        std::string code = fd == -EADDRINUSE ? "EADDRINUSE" : fd == -EACCES ? "EACCES" : "ELISTEN";
        throwError(iso, "listen " + code + ": " + (fd == -EADDRINUSE ? "address already in use" : std::strerror(-fd)) +
                            " " + host, code.c_str());
        return;
      }
    }
  } else if (slot->listener) {
    std::lock_guard<std::mutex> lock(gListenMutex);
    bound = gListenPorts[key];
  } else {
    try {
      std::lock_guard<std::mutex> lock(gListenMutex);
      auto it = gListenPorts.find(key);
      if (it == gListenPorts.end()) {
        std::vector<int> fds = server::openListeners(host, bound, 1);
        fd = fds[0];
        // --sticky: the reactors' sockets for this server (joining after
        // this one) take a client's connections by its address.
        const server::ServerConfig& sc = self->reactor_.config();
        std::string why;
        if (sc.sticky && sc.threads > 1 && !server::steerByClientAddress(fd, unsigned(sc.threads), why)) {
          ::close(fd);
          throw std::runtime_error(why);
        }
        gListenPorts[key] = bound;
      } else {
        bound = it->second;
        fd = server::openListeners(host, bound, 1, /*joinExisting=*/true)[0];
      }
    } catch (const std::exception& e) {
      // Node's shape: "listen EADDRINUSE: address already in use 127.0.0.1:8080".
      std::string msg = e.what();
      const char* code = msg.find("already in use") != std::string::npos ? "EADDRINUSE"
                         : msg.find("permission") != std::string::npos   ? "EACCES"
                                                                         : "ELISTEN";
      size_t why = msg.rfind(": ");
      std::string where = host.find(':') != std::string::npos ? "[" + host + "]" : host;
      throwError(iso,
                 std::string("listen ") + code + ": " + (why == std::string::npos ? msg : msg.substr(why + 2)) +
                     " " + where + ":" + std::to_string(port),
                 code);
      return;
    }
  }
  // https.createServer: args[2] = {cert: [pem...], key: [pem...]}.
  int http2 = args.Length() > 3 ? args[3]->Int32Value(ctx).FromMaybe(0) : 0;
  std::shared_ptr<tls::TlsContext> tlsContext;
  if (args.Length() > 2 && args[2]->IsObject()) {
    std::string tlsErr;
    tlsContext = sharedTlsContext(key, scriptTlsConfig(iso, ctx, args[2].As<v8::Object>(), http2), tlsErr);
    if (!tlsContext) {
      if (fd >= 0) ::close(fd);
      if (fd >= 0 && port < 0) releaseUnixSocket(host);
      throwError(iso, tlsErr, "ERR_KUAI_TLS");
      return;
    }
  }
  int id = self->nextServerId_++;
  JsServer* srv = self->owner_.addServer(std::make_unique<JsServer>(*self, id));
  bool tls = tlsContext != nullptr;
  if (slot->listener) {
    slot->listener->tls = std::move(tlsContext);
  } else {
    slot->listener = self->reactor_.addListener(fd, slot, std::move(tlsContext));
    // A Unix socket is one socket for every reactor: closing it here must
    // leave it listening for the others.
    slot->listener->shared = port < 0;
  }
  slot->listener->h2c = !tls && http2 != 0;
  slot->listener->http1 = http2 != 2;
  self->servers_[id] = srv;
  slot->claim(srv);
  v8::Local<v8::Array> out = v8::Array::New(iso, 2);
  out->Set(ctx, 0, v8::Integer::New(iso, id)).Check();
  out->Set(ctx, 1, v8::Integer::New(iso, bound)).Check();
  args.GetReturnValue().Set(out);
}

// setSecureContext(serverId, tlsOptions, http2): a listening https server's
// TLS from now on (server.setSecureContext): new handshakes use it, open
// connections keep theirs. Throws ERR_KUAI_TLS, the old one kept, when the
// options do not make a context.
void Environment::setSecureContext(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  int id = args[0]->Int32Value(ctx).FromMaybe(-1);
  auto it = self->servers_.find(id);
  if (it == self->servers_.end() || !it->second->slot || !it->second->slot->listener || !args[1]->IsObject()) return;
  ServerSlot* slot = it->second->slot;
  if (!slot->listener->tls) return;  // not a TLS listener
  int http2 = args[2]->Int32Value(ctx).FromMaybe(0);
  std::string err;
  std::shared_ptr<tls::TlsContext> next =
      sharedTlsContext(slot->key(), scriptTlsConfig(iso, ctx, args[1].As<v8::Object>(), http2), err);
  if (!next) {
    throwError(iso, err, "ERR_KUAI_TLS");
    return;
  }
  slot->listener->tls = std::move(next);
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

// setTimeouts(serverId, headersTimeoutMs, requestTimeoutMs, requireHost):
// Node's limits for the connections the server accepts from now on (0:
// none), and whether an HTTP/1.1 request needs a Host field.
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
  l->requireHost = args.Length() < 4 || args[3]->BooleanValue(args.GetIsolate());
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

// closeConnections([connId...], now): this reactor's connections with these
// ids close once the call returns: at once (now), or gracefully (only when
// between requests). See Reactor::closeConnections.
void Environment::closeConnections(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  v8::Isolate* iso = args.GetIsolate();
  v8::Local<v8::Context> ctx = iso->GetCurrentContext();
  if (!args[0]->IsArray()) return;
  v8::Local<v8::Array> list = args[0].As<v8::Array>();
  std::vector<uint64_t> ids;
  ids.reserve(list->Length());
  for (uint32_t i = 0; i < list->Length(); ++i) {
    v8::Local<v8::Value> v;
    if (list->Get(ctx, i).ToLocal(&v) && v->IsNumber()) ids.push_back(uint64_t(v.As<v8::Number>()->Value()));
  }
  if (!ids.empty()) self->reactor_.closeConnections(std::move(ids), args[1]->BooleanValue(iso));
}

// connectionBytes(connId): [bytesRead, bytesWritten] of this reactor's open
// connection with that id, or undefined.
void Environment::connectionBytes(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  if (args.Length() < 1 || !args[0]->IsNumber()) return;
  uint64_t read = 0;
  uint64_t written = 0;
  if (!self->reactor_.connectionBytes(uint64_t(args[0].As<v8::Number>()->Value()), read, written)) return;
  args.GetReturnValue().Set(numberPair(args.GetIsolate(), read, written));
}

// answerClientError(connId, bytes, then): raw bytes for a connection whose
// failed request a 'clientError' listener answers; then 0: keep it open, 1:
// close once sent (socket.end), 2: close now (socket.destroy). See
// Reactor::answerClientError.
void Environment::answerClientError(const v8::FunctionCallbackInfo<v8::Value>& args) {
  Environment* self = envFrom(args);
  if (!args[0]->IsNumber()) return;
  std::string bytes;
  if (args[1]->IsArrayBufferView()) {
    auto view = args[1].As<v8::ArrayBufferView>();
    bytes.resize(view->ByteLength());
    view->CopyContents(bytes.data(), bytes.size());
  }
  int then = args[2]->IsInt32() ? args[2].As<v8::Int32>()->Value() : 0;
  self->reactor_.answerClientError(uint64_t(args[0].As<v8::Number>()->Value()), std::move(bytes),
                                   then == 2   ? server::Reactor::RawThen::kDestroy
                                   : then == 1 ? server::Reactor::RawThen::kEnd
                                               : server::Reactor::RawThen::kKeep);
}

std::vector<std::string> watchedFiles() {
  std::lock_guard<std::mutex> lock(gWatchFilesMutex);
  return gWatchedFiles;
}

void setWatchListener(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(gWatchFilesMutex);
  gWatchListener = std::move(fn);
}

}  // namespace kuai::scripting
